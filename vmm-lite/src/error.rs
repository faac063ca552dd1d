//! vmm-lite's error type: each variant's message is what the user reads.

use std::path::PathBuf;

/// Everything that can stop vmm-lite from building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// /dev/kvm cannot be opened.
    #[error(
        "no usable KVM: cannot open /dev/kvm ({0}); vmm-lite needs the kvm module loaded and read-write access to /dev/kvm (add the user to the kvm group)"
    )]
    KvmUnavailable(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed while building the VM.
    #[error("KVM: {what}: {source}")]
    Kvm {
        /// The ioctl or step that failed, e.g. "KVM_SET_CPUID2".
        what: &'static str,
        /// The ioctl's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A file named in the configuration cannot be used.
    #[error("{what} {path}: {reason}")]
    BadFile {
        /// What the file is for, e.g. "initrd" or "console file".
        what: &'static str,
        /// The file as configured.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Guest memory could not be created or written.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The kernel could not be loaded.
    #[error("loading the kernel {path}: {reason}")]
    Kernel {
        /// The kernel image as configured.
        path: PathBuf,
        /// Why loading it failed.
        reason: String,
    },
    /// The kernel command line is invalid or too long.
    #[error("kernel command line: {0}")]
    Cmdline(String),
    /// A device could not be created or failed while the VM ran.
    #[error("device error: {0}")]
    Device(String),
    /// A vCPU hit a fatal exit (triple fault, internal error, failed entry).
    #[error("vCPU fault: {0}")]
    Vcpu(String),
    /// The watchdog fired before the guest ended.
    #[error("watchdog: the guest did not end within {0:?}; stopped it")]
    Watchdog(std::time::Duration),
    /// A host system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What vmm-lite was doing.
        what: String,
        /// The system call's error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Self {
        move |source| Self::Kvm { what, source }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

/// vmm-lite's result.
pub type Result<T> = std::result::Result<T, Error>;

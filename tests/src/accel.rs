//! Which accelerator QEMU should use on this host.
//!
//! `/dev/kvm` existing proves little: on a PVM host (`kvm_pvm` module) it only runs guests
//! built for PVM, and a stock Linux guest hangs right after decompression. So the probe
//! rejects PVM, then checks that a VM can really be created; anything else falls back to
//! TCG (software emulation), which is slower but always correct.

use std::fmt;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

use hull_image::vm_args;

/// The accelerator a guest boots with, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation; the reason says why KVM was not used.
    Tcg {
        /// Why KVM was not used, for the test log (e.g. a PVM host, no `/dev/kvm`).
        reason: String,
    },
}

impl Accel {
    /// The accelerator as hull-image's VM description names it.
    pub fn vm_accel(&self) -> vm_args::Accel {
        match self {
            Accel::Kvm => vm_args::Accel::Kvm,
            Accel::Tcg { .. } => vm_args::Accel::Tcg,
        }
    }

    /// The value for QEMU's `-machine accel=`.
    pub fn qemu_name(&self) -> &'static str {
        self.vm_accel().qemu_name()
    }

    /// The value for QEMU's `-cpu`.
    pub fn qemu_cpu(&self) -> &'static str {
        self.vm_accel().qemu_cpu()
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Accel::Kvm => write!(f, "kvm"),
            Accel::Tcg { reason } => write!(f, "tcg ({reason})"),
        }
    }
}

/// `HULL_ACCEL=kvm|tcg` forces a choice; otherwise [`probe_host`] decides.
pub fn detect() -> Accel {
    match std::env::var("HULL_ACCEL").ok().as_deref() {
        Some("kvm") => Accel::Kvm,
        Some("tcg") => Accel::Tcg {
            reason: "HULL_ACCEL=tcg".into(),
        },
        _ => probe_host(Path::new("/sys/module"), Path::new("/dev/kvm")),
    }
}

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_API_VERSION: libc::c_int = 12;

/// Decides between KVM and TCG by looking at the host, without booting anything.
pub fn probe_host(sys_module: &Path, dev_kvm: &Path) -> Accel {
    if sys_module.join("kvm_pvm").exists() {
        return Accel::Tcg {
            reason: "host KVM is PVM, which cannot run a stock Linux guest".into(),
        };
    }
    let kvm = match OpenOptions::new().read(true).write(true).open(dev_kvm) {
        Ok(f) => f,
        Err(e) => {
            return Accel::Tcg {
                reason: format!("cannot open {}: {e}", dev_kvm.display()),
            };
        }
    };
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns an integer; the fd
    // is a valid open file for the whole call.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != KVM_API_VERSION {
        return Accel::Tcg {
            reason: format!("KVM API version {version}, expected {KVM_API_VERSION}"),
        };
    }
    // SAFETY: KVM_CREATE_VM with machine type 0 returns a new fd or -1; no memory is
    // passed to the kernel.
    let vm = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Accel::Tcg {
            reason: format!("KVM_CREATE_VM failed: {}", std::io::Error::last_os_error()),
        };
    }
    // SAFETY: `vm` is a file descriptor that the ioctl above just created and nothing
    // else owns.
    unsafe { libc::close(vm) };
    Accel::Kvm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_module_means_tcg() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("kvm_pvm")).unwrap();
        let accel = probe_host(dir.path(), Path::new("/dev/kvm"));
        assert!(matches!(accel, Accel::Tcg { ref reason } if reason.contains("PVM")));
    }

    #[test]
    fn missing_dev_kvm_means_tcg() {
        let dir = tempfile::tempdir().unwrap();
        let accel = probe_host(dir.path(), &dir.path().join("no-kvm"));
        assert!(matches!(accel, Accel::Tcg { ref reason } if reason.contains("cannot open")));
        assert_eq!(accel.qemu_name(), "tcg");
        assert_eq!(accel.qemu_cpu(), "max");
    }
}

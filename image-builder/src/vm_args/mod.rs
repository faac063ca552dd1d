//! The one source of VM command lines: what a hull guest is booted with, described once
//! ([`VmSpec`]), and turned into the argument vector of each VMM that can run it.
//!
//! The attach guide `hull-image` prints renders its QEMU and vmm-lite lines from these
//! vectors (shell-quoted, [`shell`]), and the end-to-end harness (`hull-e2e`) boots
//! exactly these vectors, so what users read is what the tests boot.
//!
//! - [`attachment`]: how a disk image becomes the root (`nvdimm`, `virtio-pmem`,
//!   `virtio-blk`), the device the guest sees, the root part of the kernel command line.
//! - [`memory`]: guest RAM and the room persistent-memory regions need beside it.
//! - [`qemu`], [`vmm_lite`]: one argv builder per VMM, from the same [`VmSpec`].
//!   cloud-hypervisor and Firecracker appear in the guide as text (their configuration is
//!   short and has no harness behind it); [`Vmm`] names all four.
//!
//! Images are always attached read-only: `readonly=on` for QEMU, `ro` for vmm-lite,
//! `discard_writes=on` and `readonly=on` for cloud-hypervisor, `is_read_only` for
//! Firecracker; the root is mounted `ro`.

pub mod attachment;
pub mod memory;
pub mod qemu;
pub mod shell;
pub mod spec;
pub mod vmm;
pub mod vmm_lite;

pub use attachment::{Attachment, VERITY_DM_NAME, VerityRoot, root_cmdline};
pub use spec::{
    Accel, Boot, Console, Disk, DiskAttach, FsShare, Hotplug, PMEM_ALIGN, PortForward, RootImage,
    UserNic, VmArgsError, VmSpec, Vsock, file_size,
};
pub use vmm::Vmm;

impl Vmm {
    /// The arguments (without the program) that boot `spec`, for the VMMs that have a
    /// builder here.
    pub fn argv(self, spec: &VmSpec) -> Result<Vec<String>, VmArgsError> {
        match self {
            Vmm::Qemu => qemu::argv(spec),
            Vmm::VmmLite => vmm_lite::argv(spec),
            Vmm::CloudHypervisor | Vmm::Firecracker => Err(VmArgsError::Unsupported {
                vmm: self,
                what: "be started from a VmSpec (the attach guide writes its configuration)".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_qemu_and_vmm_lite_build_argv() {
        let spec = spec::test_spec::harness();
        assert!(Vmm::Qemu.argv(&spec).is_ok());
        for vmm in [Vmm::CloudHypervisor, Vmm::Firecracker] {
            let err = vmm.argv(&spec).unwrap_err();
            assert!(err.to_string().starts_with(vmm.name()), "{err}");
        }
    }
}

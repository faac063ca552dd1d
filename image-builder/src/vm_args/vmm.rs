//! The VMMs hull guests run under, and the root attachments each offers.

use super::attachment::Attachment;

/// A virtual machine monitor hull guests run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vmm {
    /// QEMU (`qemu-system-x86_64`): every attachment, argv from [`crate::vm_args::qemu`].
    Qemu,
    /// cloud-hypervisor: virtio-pmem and virtio-blk; the guide writes its command line.
    CloudHypervisor,
    /// Firecracker: virtio-blk only; the guide writes its configuration.
    Firecracker,
    /// The VMM bundled with hull (`vmm-lite/`): virtio-mmio devices, hybrid vsock.
    VmmLite,
}

impl Vmm {
    /// Every VMM, in the order the manifest and the guide list them.
    pub const ALL: [Vmm; 4] = [
        Vmm::Qemu,
        Vmm::CloudHypervisor,
        Vmm::Firecracker,
        Vmm::VmmLite,
    ];

    /// The name the manifest and the guide use.
    pub fn name(self) -> &'static str {
        match self {
            Vmm::Qemu => "qemu",
            Vmm::CloudHypervisor => "cloud-hypervisor",
            Vmm::Firecracker => "firecracker",
            Vmm::VmmLite => "vmm-lite",
        }
    }

    /// The program to run.
    pub fn program(self) -> &'static str {
        match self {
            Vmm::Qemu => "qemu-system-x86_64",
            Vmm::CloudHypervisor => "cloud-hypervisor",
            Vmm::Firecracker => "firecracker",
            Vmm::VmmLite => "vmm-lite",
        }
    }

    /// The ways this VMM can attach a root image.
    pub fn attachments(self) -> &'static [Attachment] {
        match self {
            Vmm::Qemu => &Attachment::ALL,
            Vmm::CloudHypervisor | Vmm::VmmLite => &[Attachment::VirtioPmem, Attachment::VirtioBlk],
            Vmm::Firecracker => &[Attachment::VirtioBlk],
        }
    }

    /// The VMMs that can attach a root image as `attachment`.
    pub fn offering(attachment: Attachment) -> Vec<Vmm> {
        Vmm::ALL
            .into_iter()
            .filter(|vmm| vmm.attachments().contains(&attachment))
            .collect()
    }
}

impl std::fmt::Display for Vmm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmms_per_attachment() {
        assert_eq!(Vmm::offering(Attachment::Nvdimm), [Vmm::Qemu]);
        assert_eq!(
            Vmm::offering(Attachment::VirtioPmem),
            [Vmm::Qemu, Vmm::CloudHypervisor, Vmm::VmmLite]
        );
        assert_eq!(
            Vmm::offering(Attachment::VirtioBlk),
            [
                Vmm::Qemu,
                Vmm::CloudHypervisor,
                Vmm::Firecracker,
                Vmm::VmmLite
            ]
        );
    }
}

//! How a disk image is attached as the guest's root: the root device the guest sees and
//! the root part of the kernel command line.
//!
//! | attachment | QEMU device | guest root device | DAX |
//! |---|---|---|---|
//! | `nvdimm` | `nvdimm` (ACPI NFIT) | `/dev/pmem0p1` | yes |
//! | `virtio-pmem` | `virtio-pmem-pci` (cloud-hypervisor, vmm-lite `--pmem`) | `/dev/pmem0p1` | yes |
//! | `virtio-blk` | `virtio-blk-pci` (cloud-hypervisor `--disk`, Firecracker drive, vmm-lite `--disk`) | `/dev/vda1` | no |
//!
//! On virtio-pmem the kernel's pmem driver probes the namespace for a pfn block just as
//! on an NVDIMM, finds ours, and so `/dev/pmem0` starts 2 MiB into the file, at the
//! second MBR: the root is `/dev/pmem0p1` there too, not `/dev/pmem0`. (A
//! `--no-dax-header` image has no pfn block: `/dev/pmem0` is the whole file, its
//! partition is again `pmem0p1`, but without DAX, which needs the pfn block's struct
//! pages.)

use serde::{Deserialize, Serialize};

use crate::mkfs::FsType;

/// A way of attaching the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Attachment {
    /// A QEMU `nvdimm` (ACPI NFIT); the pfn header makes it fsdax: `/dev/pmem0p1`, DAX.
    Nvdimm,
    /// virtio-pmem; the kernel probes the same pfn header: `/dev/pmem0p1`, DAX.
    VirtioPmem,
    /// virtio-blk: `/dev/vda1`, no DAX.
    VirtioBlk,
}

impl Attachment {
    /// Every attachment, in the order the manifest and the guide list them.
    pub const ALL: [Attachment; 3] = [
        Attachment::Nvdimm,
        Attachment::VirtioPmem,
        Attachment::VirtioBlk,
    ];

    /// The name the manifest uses.
    pub fn name(self) -> &'static str {
        match self {
            Attachment::Nvdimm => "nvdimm",
            Attachment::VirtioPmem => "virtio-pmem",
            Attachment::VirtioBlk => "virtio-blk",
        }
    }

    /// The partition the guest mounts as `/`.
    pub fn root_device(self) -> &'static str {
        match self {
            Attachment::Nvdimm | Attachment::VirtioPmem => "/dev/pmem0p1",
            Attachment::VirtioBlk => "/dev/vda1",
        }
    }

    /// Whether the root is mapped with DAX (pmem with the pfn header, and no dm-verity,
    /// which has no DAX support).
    pub fn dax(self, dax_header: bool, verity: bool) -> bool {
        dax_header && !verity && self != Attachment::VirtioBlk
    }

    /// Whether the image is a persistent-memory region (plugged into guest memory).
    pub fn is_pmem(self) -> bool {
        self != Attachment::VirtioBlk
    }
}

impl std::fmt::Display for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the root command line needs to know about a dm-verity image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityRoot {
    /// The dm table with `{dev}` where the partition goes.
    pub table_template: String,
}

/// The dm device name of a verified root.
pub const VERITY_DM_NAME: &str = "hull-root";

/// The root part of the kernel command line for one attachment.
pub fn root_cmdline(
    attachment: Attachment,
    fs: FsType,
    dax_header: bool,
    verity: Option<&VerityRoot>,
) -> String {
    let dev = attachment.root_device();
    match verity {
        None => {
            let mut s = format!("root={dev} rootfstype={} ro", fs.name());
            if attachment.dax(dax_header, false) {
                s.push_str(" rootflags=dax");
            }
            s
        }
        Some(v) => format!(
            "dm-mod.create=\"{VERITY_DM_NAME},,,ro,{}\" dm-mod.waitfor={dev} root=/dev/dm-0 \
             rootfstype={} ro",
            v.table_template.replace("{dev}", dev),
            fs.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_lines_per_attachment() {
        assert_eq!(
            root_cmdline(Attachment::Nvdimm, FsType::Ext4, true, None),
            "root=/dev/pmem0p1 rootfstype=ext4 ro rootflags=dax"
        );
        assert_eq!(
            root_cmdline(Attachment::VirtioPmem, FsType::Erofs, true, None),
            "root=/dev/pmem0p1 rootfstype=erofs ro rootflags=dax"
        );
        assert_eq!(
            root_cmdline(Attachment::VirtioBlk, FsType::Ext4, true, None),
            "root=/dev/vda1 rootfstype=ext4 ro"
        );
        assert_eq!(
            root_cmdline(Attachment::Nvdimm, FsType::Ext4, false, None),
            "root=/dev/pmem0p1 rootfstype=ext4 ro"
        );
    }

    #[test]
    fn verity_root_line() {
        let v = VerityRoot {
            table_template: "0 8 verity 1 {dev} {dev} 4096 4096 1 1 sha256 aa bb".into(),
        };
        let line = root_cmdline(Attachment::VirtioBlk, FsType::Erofs, true, Some(&v));
        assert_eq!(
            line,
            "dm-mod.create=\"hull-root,,,ro,0 8 verity 1 /dev/vda1 /dev/vda1 4096 4096 1 1 \
             sha256 aa bb\" dm-mod.waitfor=/dev/vda1 root=/dev/dm-0 rootfstype=erofs ro"
        );
        assert!(!Attachment::Nvdimm.dax(true, true));
    }
}

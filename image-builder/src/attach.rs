//! How an image is attached to a VM: the root device the guest sees, the kernel command
//! line, and the VMM command lines (the attach guide `hull-image` prints).
//!
//! | attachment | QEMU device | guest root device | DAX |
//! |---|---|---|---|
//! | `nvdimm` | `nvdimm` (ACPI NFIT) | `/dev/pmem0p1` | yes |
//! | `virtio-pmem` | `virtio-pmem-pci` (cloud-hypervisor `--pmem`) | `/dev/pmem0p1` | yes |
//! | `virtio-blk` | `virtio-blk-pci` (cloud-hypervisor `--disk`, Firecracker drive) | `/dev/vda1` | no |
//!
//! On virtio-pmem the kernel's pmem driver probes the namespace for a pfn block just as
//! on an NVDIMM, finds ours, and so `/dev/pmem0` starts 2 MiB into the file, at the
//! second MBR: the root is `/dev/pmem0p1` there too, not `/dev/pmem0`. (A
//! `--no-dax-header` image has no pfn block: `/dev/pmem0` is the whole file, its
//! partition is again `pmem0p1`, but without DAX, which needs the pfn block's struct
//! pages.)
//!
//! Images are always attached read-only: `readonly=on` for QEMU, `discard_writes=on` and
//! `readonly=on` for cloud-hypervisor, `is_read_only` for Firecracker; the root is
//! mounted `ro`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::mkfs::FsType;

/// A way of attaching the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Attachment {
    Nvdimm,
    VirtioPmem,
    VirtioBlk,
}

impl Attachment {
    pub const ALL: [Attachment; 3] = [
        Attachment::Nvdimm,
        Attachment::VirtioPmem,
        Attachment::VirtioBlk,
    ];

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

    /// VMMs that offer this attachment.
    pub fn vmms(self) -> &'static [&'static str] {
        match self {
            Attachment::Nvdimm => &["qemu"],
            Attachment::VirtioPmem => &["qemu", "cloud-hypervisor", "vmm-lite"],
            Attachment::VirtioBlk => &["qemu", "cloud-hypervisor", "firecracker", "vmm-lite"],
        }
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

/// What the guide needs: absolute paths and the per-attachment command lines.
#[derive(Debug, Clone)]
pub struct GuideInput {
    pub image: String,
    pub image_bytes: u64,
    pub fs: FsType,
    pub dax_header: bool,
    /// `None`: no kernel given; the guide shows placeholders.
    pub vmlinux: Option<String>,
    pub bzimage: Option<String>,
    /// (attachment, root command line).
    pub cmdlines: Vec<(Attachment, String)>,
    pub verity_root_hash: Option<String>,
}

/// Guest RAM in the examples.
pub const EXAMPLE_MEM_MIB: u64 = 256;

/// `maxmem` for QEMU: RAM plus the image, rounded up to 1 GiB (pmem is plugged into the
/// hotplug area, which must hold it).
pub fn qemu_maxmem_mib(mem_mib: u64, image_bytes: u64) -> u64 {
    (mem_mib + image_bytes.div_ceil(1 << 20)).div_ceil(1024) * 1024
}

fn cmdline_for(input: &GuideInput, a: Attachment) -> String {
    input
        .cmdlines
        .iter()
        .find(|(x, _)| *x == a)
        .map(|(_, c)| c.clone())
        .unwrap_or_default()
}

/// Shell-quotes a word if needed (single quotes).
fn sh(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The attach guide: exact command lines for QEMU (nvdimm, virtio-pmem, virtio-blk),
/// cloud-hypervisor (pmem, disk), Firecracker (drive), vmm-lite (pmem, disk) and Kata's
/// `configuration.toml`.
pub fn guide(input: &GuideInput) -> String {
    let img = sh(&input.image);
    let size = input.image_bytes;
    let bz = sh(input.bzimage.as_deref().unwrap_or("BZIMAGE"));
    let vmlinux = sh(input.vmlinux.as_deref().unwrap_or("VMLINUX"));
    let maxmem = qemu_maxmem_mib(EXAMPLE_MEM_MIB, size);
    let mem = EXAMPLE_MEM_MIB;
    let q_common = format!(
        "qemu-system-x86_64 -machine q35,accel=kvm{{NVDIMM}} -cpu host -smp 1 \\\n    \
         -m {mem}M,slots=2,maxmem={maxmem}M -nodefaults -display none -serial stdio \\\n    \
         -device vhost-vsock-pci,guest-cid=3 -kernel {bz} \\\n    "
    );
    let pmem_backend = format!(
        "-object memory-backend-file,id=pm0,mem-path={img},size={size},share=on,readonly=on"
    );
    let c = |a| sh(&format!("console=ttyS0 {}", cmdline_for(input, a)));
    let mut g = String::new();
    let _ = writeln!(
        g,
        "# Attaching {} ({} bytes, {}{})",
        input.image,
        size,
        input.fs,
        if input.dax_header {
            ", DAX header"
        } else {
            ", no DAX header"
        }
    );
    if let Some(h) = &input.verity_root_hash {
        let _ = writeln!(g, "# dm-verity root hash: {h}");
    }
    let _ = writeln!(
        g,
        "# Always read-only. The agent listens on vsock port 1024 (guest CID 3 below).\n"
    );
    if input.vmlinux.is_none() {
        let _ = writeln!(
            g,
            "# (No --kernel given: replace BZIMAGE/VMLINUX with `hull-image kernel -o DIR` output.)\n"
        );
    }
    let _ = writeln!(
        g,
        "## QEMU, NVDIMM{}\n{}{} \\\n    {pmem_backend} \\\n    -device nvdimm,memdev=pm0,id=nv0,unarmed=on\n",
        if input.dax_header { " (DAX)" } else { "" },
        q_common.replace("{NVDIMM}", ",nvdimm=on"),
        format_args!("-append {}", c(Attachment::Nvdimm)),
    );
    let _ = writeln!(
        g,
        "## QEMU, virtio-pmem{}\n{}{} \\\n    {pmem_backend} \\\n    -device virtio-pmem-pci,memdev=pm0,id=vpm0\n",
        if input.dax_header { " (DAX)" } else { "" },
        q_common.replace("{NVDIMM}", ""),
        format_args!("-append {}", c(Attachment::VirtioPmem)),
    );
    let _ = writeln!(
        g,
        "## QEMU, virtio-blk\n{}{} \\\n    -drive file={img},if=none,id=root,format=raw,readonly=on \\\n    -device virtio-blk-pci,drive=root\n",
        q_common.replace("{NVDIMM}", ""),
        format_args!("-append {}", c(Attachment::VirtioBlk)),
    );
    let _ = writeln!(
        g,
        "## cloud-hypervisor, pmem (virtio-pmem{})\ncloud-hypervisor --kernel {vmlinux} --cpus boot=1 --memory size={mem}M \\\n    \
         --serial tty --console off --vsock cid=3,socket=/tmp/hull-ch.vsock \\\n    \
         --cmdline {} \\\n    --pmem file={img},discard_writes=on\n",
        if input.dax_header { ", DAX" } else { "" },
        c(Attachment::VirtioPmem)
    );
    let _ = writeln!(
        g,
        "## cloud-hypervisor, disk (virtio-blk)\ncloud-hypervisor --kernel {vmlinux} --cpus boot=1 --memory size={mem}M \\\n    \
         --serial tty --console off --vsock cid=3,socket=/tmp/hull-ch.vsock \\\n    \
         --cmdline {} \\\n    --disk path={img},readonly=on\n",
        c(Attachment::VirtioBlk)
    );
    let fc_args = format!(
        "console=ttyS0 reboot=k panic=1 pci=off {}",
        cmdline_for(input, Attachment::VirtioBlk)
    );
    let fc = serde_json::json!({
        "boot-source": {
            "kernel_image_path": input.vmlinux.as_deref().unwrap_or("VMLINUX"),
            "boot_args": fc_args,
        },
        "drives": [{
            "drive_id": "rootfs",
            "path_on_host": input.image,
            "is_root_device": false,
            "is_read_only": true,
        }],
        "machine-config": { "vcpu_count": 1, "mem_size_mib": mem },
        "vsock": { "guest_cid": 3, "uds_path": "/tmp/hull-fc.vsock" },
    });
    let _ = writeln!(
        g,
        "## Firecracker (virtio-blk over MMIO; `firecracker --no-api --config-file hull-fc.json`)\n\
         # hull-fc.json:\n{}\n",
        serde_json::to_string_pretty(&fc).unwrap_or_default()
    );
    // vmm-lite has no ACPI: init reboots (hull.shutdown=reboot) through the i8042 (reboot=k,
    // which vmm-lite adds), and vmm-lite exits 0.
    let lite = |a| {
        sh(&format!(
            "console=ttyS0 hull.shutdown=reboot {}",
            cmdline_for(input, a)
        ))
    };
    let lite_common = format!(
        "vmm-lite --kernel {bz} --mem {mem}M --vcpus 1 --vsock uds=/tmp/hull-vmm-lite.vsock,cid=3 \\\n    "
    );
    let _ = writeln!(
        g,
        "## vmm-lite, virtio-pmem{} (this repository's VMM)\n{lite_common}--append {} \\\n    --pmem {img}\n",
        if input.dax_header { " (DAX)" } else { "" },
        lite(Attachment::VirtioPmem)
    );
    let _ = writeln!(
        g,
        "## vmm-lite, virtio-blk\n{lite_common}--append {} \\\n    --disk {img},ro\n",
        lite(Attachment::VirtioBlk)
    );
    let _ = writeln!(
        g,
        "## Kata Containers, configuration.toml (Kata adds root= itself: pmem0p1 on NVDIMM/virtio-pmem, vda1 on virtio-blk)\n\
         [hypervisor.qemu]\nkernel = \"{}\"\nimage = \"{}\"\nrootfs_type = \"{}\"\ndisable_image_nvdimm = false   # true: attach as virtio-blk\n\n\
         [hypervisor.clh]\nkernel = \"{}\"\nimage = \"{}\"\nrootfs_type = \"{}\"",
        input.bzimage.as_deref().unwrap_or("BZIMAGE"),
        input.image,
        input.fs,
        input.vmlinux.as_deref().unwrap_or("VMLINUX"),
        input.image,
        input.fs,
    );
    g
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

    #[test]
    fn maxmem_holds_ram_and_image() {
        assert_eq!(qemu_maxmem_mib(256, 10 << 20), 1024);
        assert_eq!(qemu_maxmem_mib(256, 900 << 20), 2048);
    }

    #[test]
    fn guide_has_every_vmm_read_only() {
        let input = GuideInput {
            image: "/b/rootfs.ext4.img".into(),
            image_bytes: 10 << 20,
            fs: FsType::Ext4,
            dax_header: true,
            vmlinux: Some("/b/kernel/vmlinux".into()),
            bzimage: Some("/b/kernel/bzImage".into()),
            cmdlines: Attachment::ALL
                .iter()
                .map(|a| (*a, root_cmdline(*a, FsType::Ext4, true, None)))
                .collect(),
            verity_root_hash: None,
        };
        let g = guide(&input);
        for want in [
            "-machine q35,accel=kvm,nvdimm=on",
            "-m 256M,slots=2,maxmem=1024M",
            "memory-backend-file,id=pm0,mem-path=/b/rootfs.ext4.img,size=10485760,share=on,readonly=on",
            "-device nvdimm,memdev=pm0,id=nv0,unarmed=on",
            "'console=ttyS0 root=/dev/pmem0p1 rootfstype=ext4 ro rootflags=dax'",
            "-device virtio-pmem-pci,memdev=pm0",
            "-drive file=/b/rootfs.ext4.img,if=none,id=root,format=raw,readonly=on",
            "--pmem file=/b/rootfs.ext4.img,discard_writes=on",
            "--disk path=/b/rootfs.ext4.img,readonly=on",
            "--kernel /b/kernel/vmlinux",
            "\"is_read_only\": true",
            "root=/dev/vda1 rootfstype=ext4 ro",
            "kernel = \"/b/kernel/bzImage\"",
            "image = \"/b/rootfs.ext4.img\"",
            "rootfs_type = \"ext4\"",
            "vmm-lite --kernel /b/kernel/bzImage --mem 256M",
            "'console=ttyS0 hull.shutdown=reboot root=/dev/pmem0p1 rootfstype=ext4 ro rootflags=dax' \\\n    --pmem /b/rootfs.ext4.img",
            "--disk /b/rootfs.ext4.img,ro",
        ] {
            assert!(g.contains(want), "missing {want:?} in\n{g}");
        }
        assert!(!g.contains("readonly=off"));
    }
}

//! The attach guide `hull-image` prints after a build and on `hull-image attach`: for
//! every VMM ([`Vmm`]) and every way it can attach the image, the exact command line with
//! the image's own paths and size.
//!
//! The QEMU and vmm-lite lines are the argument vectors of [`crate::vm_args`], the same
//! the end-to-end harness boots, shell-quoted; cloud-hypervisor, Firecracker and Kata
//! Containers get their configuration written here.

use std::fmt::Write as _;

use crate::mkfs::FsType;
use crate::vm_args::shell::{quote, render};
use crate::vm_args::{
    Accel, Attachment, Boot, Console, RootImage, VmArgsError, VmSpec, Vmm, Vsock,
};

/// What the guide needs: absolute paths and the per-attachment command lines.
#[derive(Debug, Clone)]
pub struct GuideInput {
    /// Absolute path of the image file.
    pub image: String,
    /// Size of the image file in bytes (what the pmem and NVDIMM devices are sized to).
    pub image_bytes: u64,
    /// The image's root filesystem.
    pub fs: FsType,
    /// Whether the image carries the DAX header (pfn block and second MBR).
    pub dax_header: bool,
    /// `None`: no kernel given; the guide shows placeholders.
    pub vmlinux: Option<String>,
    /// Absolute path of the kernel's `bzImage`; `None` shows a placeholder.
    pub bzimage: Option<String>,
    /// (attachment, root command line).
    pub cmdlines: Vec<(Attachment, String)>,
    /// The dm-verity root hash in hex, when the image was built with `--verity`.
    pub verity_root_hash: Option<String>,
}

/// Guest RAM in the examples.
pub const EXAMPLE_MEM_MIB: u64 = 256;

/// The guest CID in the examples.
pub const EXAMPLE_CID: u32 = 3;

impl GuideInput {
    fn cmdline(&self, a: Attachment) -> String {
        self.cmdlines
            .iter()
            .find(|(x, _)| *x == a)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    }

    fn bzimage(&self) -> &str {
        self.bzimage.as_deref().unwrap_or("BZIMAGE")
    }

    fn vmlinux(&self) -> &str {
        self.vmlinux.as_deref().unwrap_or("VMLINUX")
    }

    /// The VM the guide boots with `vmm`, the image attached as `attachment`.
    fn spec(&self, vmm: Vmm, attachment: Attachment) -> VmSpec {
        VmSpec {
            kernel: self.bzimage().into(),
            boot: Boot::Image(RootImage {
                path: self.image.clone().into(),
                bytes: self.image_bytes,
                attachment,
            }),
            cmdline: format!("console=ttyS0 {}", self.cmdline(attachment)),
            memory_mib: EXAMPLE_MEM_MIB,
            cpus: 1,
            accel: Accel::Kvm,
            vsock: match vmm {
                Vmm::VmmLite => Vsock::Hybrid {
                    cid: EXAMPLE_CID,
                    uds: "/tmp/hull-vmm-lite.vsock".into(),
                },
                _ => Vsock::Kernel { cid: EXAMPLE_CID },
            },
            shares: Vec::new(),
            disks: Vec::new(),
            nic: None,
            console: Console::Stdio,
            qmp: None,
            hotplug: None,
        }
    }

    /// One section's title.
    fn title(&self, vmm: Vmm, a: Attachment) -> String {
        let dax = if a.dax(self.dax_header, self.verity_root_hash.is_some()) {
            ", DAX"
        } else {
            ""
        };
        match (vmm, a) {
            (Vmm::Qemu, Attachment::Nvdimm) => format!("QEMU, NVDIMM{}", paren(dax)),
            (Vmm::Qemu, _) => format!("QEMU, {a}{}", paren(dax)),
            (Vmm::CloudHypervisor, Attachment::VirtioBlk) => {
                "cloud-hypervisor, disk (virtio-blk)".into()
            }
            (Vmm::CloudHypervisor, _) => format!("cloud-hypervisor, pmem (virtio-pmem{dax})"),
            (Vmm::Firecracker, _) => {
                "Firecracker (virtio-blk over MMIO; `firecracker --no-api --config-file \
                 hull-fc.json`)"
                    .into()
            }
            (Vmm::VmmLite, Attachment::VirtioBlk) => "vmm-lite, disk (virtio-blk over MMIO)".into(),
            (Vmm::VmmLite, _) => format!("vmm-lite, pmem (virtio-pmem over MMIO{dax})"),
        }
    }

    /// One section's body: the command line, or the VMM's configuration.
    fn body(&self, vmm: Vmm, a: Attachment) -> Result<String, VmArgsError> {
        let root = quote(&format!("console=ttyS0 {}", self.cmdline(a)));
        let img = quote(&self.image);
        let vmlinux = quote(self.vmlinux());
        let mem = EXAMPLE_MEM_MIB;
        Ok(match vmm {
            Vmm::Qemu | Vmm::VmmLite => render(vmm.program(), &vmm.argv(&self.spec(vmm, a))?),
            Vmm::CloudHypervisor => format!(
                "cloud-hypervisor --kernel {vmlinux} --cpus boot=1 --memory size={mem}M \\\n    \
                 --serial tty --console off --vsock cid={EXAMPLE_CID},socket=/tmp/hull-ch.vsock \\\n    \
                 --cmdline {root} \\\n    {}",
                if a == Attachment::VirtioBlk {
                    format!("--disk path={img},readonly=on")
                } else {
                    format!("--pmem file={img},discard_writes=on")
                }
            ),
            Vmm::Firecracker => {
                let fc = serde_json::json!({
                    "boot-source": {
                        "kernel_image_path": self.vmlinux(),
                        "boot_args": format!(
                            "console=ttyS0 reboot=k panic=1 pci=off {}",
                            self.cmdline(a)
                        ),
                    },
                    "drives": [{
                        "drive_id": "rootfs",
                        "path_on_host": self.image,
                        "is_root_device": false,
                        "is_read_only": true,
                    }],
                    "machine-config": { "vcpu_count": 1, "mem_size_mib": mem },
                    "vsock": { "guest_cid": EXAMPLE_CID, "uds_path": "/tmp/hull-fc.vsock" },
                });
                format!(
                    "# hull-fc.json:\n{}",
                    serde_json::to_string_pretty(&fc).unwrap_or_default()
                )
            }
        })
    }
}

/// `, DAX` as ` (DAX)`.
fn paren(dax: &str) -> String {
    dax.strip_prefix(", ")
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// The attach guide: exact command lines for QEMU (nvdimm, virtio-pmem, virtio-blk),
/// cloud-hypervisor (pmem, disk), Firecracker (drive), vmm-lite (pmem, disk) and Kata's
/// `configuration.toml`.
pub fn guide(input: &GuideInput) -> String {
    let mut g = String::new();
    let _ = writeln!(
        g,
        "# Attaching {} ({} bytes, {}{})",
        input.image,
        input.image_bytes,
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
        "# Always read-only. The agent listens on vsock port 1024 (guest CID {EXAMPLE_CID} below).\n"
    );
    if input.vmlinux.is_none() {
        let _ = writeln!(
            g,
            "# (No --kernel given: replace BZIMAGE/VMLINUX with `hull-image kernel -o DIR` output.)\n"
        );
    }
    for vmm in Vmm::ALL {
        for &a in vmm.attachments() {
            let body = input
                .body(vmm, a)
                .unwrap_or_else(|e| format!("# not available: {e}"));
            let _ = writeln!(g, "## {}\n{body}\n", input.title(vmm, a));
        }
    }
    let _ = writeln!(
        g,
        "## Kata Containers, configuration.toml (Kata adds root= itself: pmem0p1 on NVDIMM/virtio-pmem, vda1 on virtio-blk)\n\
         [hypervisor.qemu]\nkernel = \"{}\"\nimage = \"{}\"\nrootfs_type = \"{}\"\ndisable_image_nvdimm = false   # true: attach as virtio-blk\n\n\
         [hypervisor.clh]\nkernel = \"{}\"\nimage = \"{}\"\nrootfs_type = \"{}\"",
        input.bzimage(),
        input.image,
        input.fs,
        input.vmlinux(),
        input.image,
        input.fs,
    );
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm_args::root_cmdline;

    fn input() -> GuideInput {
        GuideInput {
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
        }
    }

    #[test]
    fn guide_has_every_vmm_read_only() {
        let g = guide(&input());
        for want in [
            "-machine q35,accel=kvm,nvdimm=on",
            "-m 256M,slots=2,maxmem=1024M",
            "memory-backend-file,id=pm0,mem-path=/b/rootfs.ext4.img,size=10485760,share=on,readonly=on",
            "-device nvdimm,memdev=pm0,id=nv0,unarmed=on",
            "'console=ttyS0 root=/dev/pmem0p1 rootfstype=ext4 ro rootflags=dax'",
            "-device virtio-pmem-pci,memdev=pm0",
            "-drive file=/b/rootfs.ext4.img,if=none,id=root,format=raw,readonly=on",
            "-device vhost-vsock-pci,guest-cid=3",
            "--pmem file=/b/rootfs.ext4.img,discard_writes=on",
            "--disk path=/b/rootfs.ext4.img,readonly=on",
            "--kernel /b/kernel/vmlinux",
            "\"is_read_only\": true",
            "root=/dev/vda1 rootfstype=ext4 ro",
            "vmm-lite --kernel /b/kernel/bzImage --pmem /b/rootfs.ext4.img",
            "--disk /b/rootfs.ext4.img,ro",
            "--vsock uds=/tmp/hull-vmm-lite.vsock,cid=3",
            "kernel = \"/b/kernel/bzImage\"",
            "image = \"/b/rootfs.ext4.img\"",
            "rootfs_type = \"ext4\"",
        ] {
            assert!(g.contains(want), "missing {want:?} in\n{g}");
        }
        assert!(!g.contains("readonly=off"));
        assert!(!g.contains("not available"), "{g}");
    }

    #[test]
    fn the_qemu_lines_are_the_harness_builder_quoted() {
        let input = input();
        let g = guide(&input);
        for a in Attachment::ALL {
            let argv = Vmm::Qemu.argv(&input.spec(Vmm::Qemu, a)).unwrap();
            let line = render("qemu-system-x86_64", &argv);
            assert!(g.contains(&line), "{a}: {line}\nnot in\n{g}");
        }
        // Only a pmem attachment needs room beside RAM.
        let blk = Vmm::Qemu
            .argv(&input.spec(Vmm::Qemu, Attachment::VirtioBlk))
            .unwrap();
        assert!(blk.windows(2).any(|w| w[0] == "-m" && w[1] == "256M"));
    }

    #[test]
    fn placeholders_without_a_kernel() {
        let g = guide(&GuideInput {
            vmlinux: None,
            bzimage: None,
            ..input()
        });
        assert!(g.contains("No --kernel given"), "{g}");
        assert!(g.contains("-kernel BZIMAGE"), "{g}");
        assert!(g.contains("--kernel VMLINUX"), "{g}");
    }
}

//! vmm-lite's arguments for a [`VmSpec`]:
//!
//! ```text
//! vmm-lite --kernel K [--initrd I | --disk IMG,ro | --pmem IMG] [--append CMDLINE]
//!          --mem 256M --vcpus N --vsock uds=PATH[,cid=3] [--fs tag=T,socket=S]...
//!          [--console FILE]
//! ```
//!
//! Its devices are virtio-mmio: no PCI slots (disks are attached in order, the root image
//! first), no NVDIMM, no NIC, and it runs on KVM only. Its vsock is hybrid: the host dials
//! the `uds` socket and sends `CONNECT <port>`, as with Firecracker.

use super::attachment::Attachment;
use super::spec::{Accel, Boot, Console, DiskAttach, VmArgsError, VmSpec, Vsock};
use super::vmm::Vmm;

fn unsupported(what: impl Into<String>) -> VmArgsError {
    VmArgsError::Unsupported {
        vmm: Vmm::VmmLite,
        what: what.into(),
    }
}

fn disk_arg(path: &std::path::Path) -> String {
    // Always read-only.
    format!("{},ro", path.display())
}

/// vmm-lite's arguments (without the program name) for `spec`.
pub fn argv(spec: &VmSpec) -> Result<Vec<String>, VmArgsError> {
    if spec.accel != Accel::Kvm {
        return Err(unsupported("run without KVM"));
    }
    if spec.nic.is_some() {
        return Err(unsupported("attach a NIC"));
    }
    if spec.qmp.is_some() {
        return Err(unsupported("serve QMP"));
    }
    if spec.hotplug.is_some() {
        return Err(unsupported("hot-plug vCPUs, memory or PCI devices"));
    }
    let mut args: Vec<String> = vec!["--kernel".into(), spec.kernel.display().to_string()];
    match &spec.boot {
        Boot::Initrd(initrd) => args.extend(["--initrd".into(), initrd.display().to_string()]),
        Boot::Image(image) => match image.attachment {
            Attachment::Nvdimm => return Err(unsupported("attach an NVDIMM")),
            Attachment::VirtioPmem => {
                args.extend(["--pmem".into(), image.path.display().to_string()])
            }
            Attachment::VirtioBlk => args.extend(["--disk".into(), disk_arg(&image.path)]),
        },
    }
    for disk in &spec.disks {
        match disk.attach {
            DiskAttach::VirtioBlk { .. } => args.extend(["--disk".into(), disk_arg(&disk.image)]),
            DiskAttach::VirtioPmem { .. } => {
                args.extend(["--pmem".into(), disk.image.display().to_string()])
            }
        }
    }
    if !spec.cmdline.is_empty() {
        args.extend(["--append".into(), spec.cmdline.clone()]);
    }
    args.extend([
        "--mem".into(),
        format!("{}M", spec.memory_mib),
        "--vcpus".into(),
        spec.cpus.to_string(),
    ]);
    match &spec.vsock {
        Vsock::Hybrid { cid, uds } => {
            args.extend(["--vsock".into(), format!("uds={},cid={cid}", uds.display())])
        }
        Vsock::Kernel { .. } | Vsock::VhostUser { .. } => {
            return Err(unsupported(
                "use a vhost vsock backend (it serves a hybrid vsock itself)",
            ));
        }
    }
    for share in &spec.shares {
        args.extend([
            "--fs".into(),
            format!("tag={},socket={}", share.tag, share.socket.display()),
        ]);
    }
    if let Console::File(path) = &spec.console {
        args.extend(["--console".into(), path.display().to_string()]);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::super::spec::test_spec::{harness, image};
    use super::super::spec::{Disk, FsShare, Hotplug, UserNic};
    use super::*;

    fn lite(spec: VmSpec) -> VmSpec {
        VmSpec {
            accel: Accel::Kvm,
            vsock: Vsock::Hybrid {
                cid: 3,
                uds: "/run/x/vm.vsock".into(),
            },
            ..spec
        }
    }

    #[test]
    fn initrd_boot_with_a_share_and_a_console_file() {
        let mut spec = lite(harness());
        spec.shares.push(FsShare {
            tag: "kataShared".into(),
            socket: "/run/x/virtiofsd-0.sock".into(),
        });
        assert_eq!(
            argv(&spec).unwrap(),
            [
                "--kernel",
                "/k/bzImage",
                "--initrd",
                "/k/initrd.img",
                "--append",
                "console=ttyS0 panic=-1 reboot=acpi agent.log=debug",
                "--mem",
                "256M",
                "--vcpus",
                "1",
                "--vsock",
                "uds=/run/x/vm.vsock,cid=3",
                "--fs",
                "tag=kataShared,socket=/run/x/virtiofsd-0.sock",
                "--console",
                "/run/x/console.log",
            ]
        );
    }

    #[test]
    fn images_are_attached_read_only_root_first() {
        let mut spec = lite(image(Attachment::VirtioBlk));
        spec.disks.push(Disk::virtio_blk("/d/data.img", 0x10));
        let joined = argv(&spec).unwrap().join(" ");
        assert!(
            joined.contains("--disk /b/rootfs.ext4.img,ro --disk /d/data.img,ro"),
            "{joined}"
        );
        let pmem = argv(&lite(image(Attachment::VirtioPmem)))
            .unwrap()
            .join(" ");
        assert!(pmem.contains("--pmem /b/rootfs.ext4.img"), "{pmem}");
    }

    #[test]
    fn what_vmm_lite_cannot_do_is_refused_by_name() {
        for (spec, what) in [
            (lite(image(Attachment::Nvdimm)), "NVDIMM"),
            (harness(), "KVM"),
            (
                VmSpec {
                    accel: Accel::Kvm,
                    ..harness()
                },
                "vsock",
            ),
            (
                VmSpec {
                    nic: Some(UserNic {
                        mac: "52:54:00:00:00:01".into(),
                        pci_slot: 5,
                        network: ([10, 0, 2, 0].into(), 24),
                        gateway: [10, 0, 2, 2].into(),
                        dns: [10, 0, 2, 3].into(),
                        forwards: Vec::new(),
                        reach_host: false,
                    }),
                    ..lite(harness())
                },
                "NIC",
            ),
            (
                VmSpec {
                    qmp: Some("/run/x/qmp.sock".into()),
                    ..lite(harness())
                },
                "QMP",
            ),
            (
                VmSpec {
                    hotplug: Some(Hotplug {
                        max_cpus: 2,
                        memory_slots: 1,
                        max_memory_mib: 1024,
                        root_ports: 1,
                    }),
                    ..lite(harness())
                },
                "hot-plug",
            ),
        ] {
            let err = argv(&spec).unwrap_err().to_string();
            assert!(err.starts_with("vmm-lite cannot"), "{err}");
            assert!(err.contains(what), "{err}");
        }
    }
}

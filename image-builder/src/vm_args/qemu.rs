//! QEMU's arguments for a [`VmSpec`] (q35, PCI devices).
//!
//! In order: the machine (`q35`; `memory-backend=mem0` when a vhost-user daemon must
//! share guest memory, `nvdimm=on` for an NVDIMM root), CPU, memory ([`super::memory`]),
//! no default devices, no user config, no display, `-no-reboot` (a guest reboot ends
//! QEMU), the serial console, kernel, then the root (`-initrd`, or the image: a read-only
//! shared `memory-backend-file` under `nvdimm,unarmed=on` or `virtio-pmem-pci`, or a
//! read-only `virtio-blk-pci` drive), the command line, vsock, virtio-fs shares, further
//! disks, the NIC. Then, when asked: the QMP socket (`-qmp unix:PATH,server=on,wait=off`)
//! and, for hot-plug ([`Hotplug`]), the PCIe root ports `rp0`, `rp1`, ... at fixed slots;
//! hot-plug also widens `-smp` (`maxcpus=`) and `-m` (`slots=`, `maxmem=`).

use super::attachment::Attachment;
use super::memory::{HotplugRoom, qemu_memory_arg};
use super::spec::{Accel, Boot, Console, DiskAttach, Hotplug, UserNic, VmArgsError, VmSpec, Vsock};
use super::vmm::Vmm;

impl Accel {
    /// The value for QEMU's `-machine accel=`.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The value for QEMU's `-cpu`.
    pub fn qemu_cpu(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        }
    }
}

/// QEMU's arguments (without the program name) for `spec`.
pub fn argv(spec: &VmSpec) -> Result<Vec<String>, VmArgsError> {
    let image = spec.root_image();
    let nvdimm = image.is_some_and(|i| i.attachment == Attachment::Nvdimm);
    let vhost_user = matches!(spec.vsock, Vsock::VhostUser { .. }) || !spec.shares.is_empty();
    let mut machine = format!("q35,accel={}", spec.accel.qemu_name());
    if vhost_user {
        // vhost-user daemons map guest RAM: it must be a shareable memfd.
        machine.push_str(",memory-backend=mem0");
    }
    if nvdimm {
        machine.push_str(",nvdimm=on");
    }
    let mut args: Vec<String> = vec![
        "-name".into(),
        "hull-guest".into(),
        "-machine".into(),
        machine,
        "-cpu".into(),
        spec.accel.qemu_cpu().into(),
        "-smp".into(),
        match &spec.hotplug {
            Some(h) => format!("{},maxcpus={}", spec.cpus, h.max_cpus.max(spec.cpus)),
            None => spec.cpus.to_string(),
        },
        "-m".into(),
        qemu_memory_arg(
            spec.memory_mib,
            &spec.pmem_region_sizes(),
            spec.hotplug.map(|h| HotplugRoom {
                slots: h.memory_slots,
                max_memory_mib: h.max_memory_mib,
            }),
        ),
    ];
    if vhost_user {
        args.extend([
            "-object".into(),
            format!(
                "memory-backend-memfd,id=mem0,size={}M,share=on",
                spec.memory_mib
            ),
        ]);
    }
    args.extend([
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-serial".into(),
        match &spec.console {
            Console::Stdio => "stdio".into(),
            Console::File(path) => format!("file:{}", path.display()),
        },
        "-kernel".into(),
        spec.kernel.display().to_string(),
    ]);
    match &spec.boot {
        Boot::Initrd(initrd) => args.extend(["-initrd".into(), initrd.display().to_string()]),
        // Read-only everywhere: the backend file, the device, the mount.
        Boot::Image(i) => match i.attachment {
            Attachment::Nvdimm | Attachment::VirtioPmem => args.extend([
                "-object".into(),
                format!(
                    "memory-backend-file,id=pm0,mem-path={},size={},share=on,readonly=on",
                    i.path.display(),
                    i.bytes
                ),
                "-device".into(),
                if i.attachment == Attachment::Nvdimm {
                    "nvdimm,memdev=pm0,id=nv0,unarmed=on".into()
                } else {
                    "virtio-pmem-pci,memdev=pm0,id=vpm0".into()
                },
            ]),
            Attachment::VirtioBlk => args.extend([
                "-drive".into(),
                format!(
                    "file={},if=none,id=root,format=raw,readonly=on",
                    i.path.display()
                ),
                "-device".into(),
                "virtio-blk-pci,drive=root".into(),
            ]),
        },
    }
    args.extend(["-append".into(), spec.cmdline.clone()]);
    match &spec.vsock {
        Vsock::Kernel { cid } => {
            args.extend(["-device".into(), format!("vhost-vsock-pci,guest-cid={cid}")])
        }
        Vsock::VhostUser { socket } => args.extend([
            "-chardev".into(),
            format!("socket,id=vsock0,path={}", socket.display()),
            "-device".into(),
            "vhost-user-vsock-pci,chardev=vsock0".into(),
        ]),
        Vsock::Hybrid { .. } => {
            return Err(VmArgsError::Unsupported {
                vmm: Vmm::Qemu,
                what: "serve a hybrid vsock itself (use a vhost-user backend such as \
                       vhost-device-vsock)"
                    .into(),
            });
        }
    }
    for (i, share) in spec.shares.iter().enumerate() {
        args.extend([
            "-chardev".into(),
            format!("socket,id=fs{i},path={}", share.socket.display()),
            "-device".into(),
            format!("vhost-user-fs-pci,chardev=fs{i},tag={}", share.tag),
        ]);
    }
    if spec
        .disks
        .iter()
        .any(|d| matches!(d.attach, DiskAttach::Scsi { .. }))
    {
        args.extend(["-device".into(), format!("virtio-scsi-pci,id={SCSI_BUS}")]);
    }
    for (i, disk) in spec.disks.iter().enumerate() {
        match disk.attach {
            DiskAttach::VirtioBlk { slot, writable } => args.extend([
                "-drive".into(),
                format!(
                    "file={},if=none,id=disk{i},format=raw{}",
                    disk.image.display(),
                    if writable { "" } else { ",readonly=on" }
                ),
                "-device".into(),
                format!("virtio-blk-pci,drive=disk{i},addr=0x{slot:02x}"),
            ]),
            DiskAttach::VirtioPmem { size } => args.extend([
                "-object".into(),
                format!(
                    "memory-backend-file,id=pmem{i},mem-path={},size={size},share=on,readonly=on",
                    disk.image.display()
                ),
                "-device".into(),
                format!("virtio-pmem-pci,memdev=pmem{i}"),
            ]),
            DiskAttach::Scsi { target, lun } => args.extend([
                "-drive".into(),
                format!(
                    "file={},if=none,id=disk{i},format=raw,readonly=on",
                    disk.image.display()
                ),
                "-device".into(),
                format!(
                    "scsi-hd,drive=disk{i},bus={SCSI_BUS}.0,channel=0,scsi-id={target},lun={lun}"
                ),
            ]),
        }
    }
    if let Some(nic) = &spec.nic {
        args.extend(nic_args(nic));
    }
    if let Some(qmp) = &spec.qmp {
        args.extend([
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp.display()),
        ]);
    }
    if let Some(hotplug) = &spec.hotplug {
        if hotplug.root_ports > Hotplug::MAX_ROOT_PORTS {
            return Err(VmArgsError::Unsupported {
                vmm: Vmm::Qemu,
                what: format!(
                    "place {} PCIe root ports: slots 0x18 to 0x1e hold {} at most",
                    hotplug.root_ports,
                    Hotplug::MAX_ROOT_PORTS
                ),
            });
        }
        for i in 0..hotplug.root_ports {
            args.extend([
                "-device".into(),
                format!(
                    "pcie-root-port,id=rp{i},bus=pcie.0,chassis={},addr=0x{:02x}",
                    u32::from(i) + 1,
                    Hotplug::root_port_slot(i)
                ),
            ]);
        }
    }
    Ok(args)
}

/// The id of the virtio-scsi controller SCSI disks sit on.
const SCSI_BUS: &str = "scsi0";

/// `-netdev user,...` and its `virtio-net-pci` device.
pub fn nic_args(nic: &UserNic) -> Vec<String> {
    let (net, prefix) = nic.network;
    let mut netdev = format!(
        "user,id=n0,net={net}/{prefix},host={},dns={},restrict={}",
        nic.gateway,
        nic.dns,
        if nic.reach_host { "off" } else { "on" }
    );
    for f in &nic.forwards {
        netdev.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{}-:{}",
            f.host_port, f.guest_port
        ));
    }
    vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        format!(
            "virtio-net-pci,netdev=n0,mac={},addr={:#x}",
            nic.mac, nic.pci_slot
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::spec::test_spec::{harness, image};
    use super::super::spec::{Disk, FsShare, Hotplug, PortForward};
    use super::*;

    fn value_after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    fn args(spec: &VmSpec) -> Vec<String> {
        argv(spec).unwrap()
    }

    #[test]
    fn initrd_boot_has_an_initrd_and_no_disk() {
        let args = args(&harness());
        assert_eq!(value_after(&args, "-initrd"), ["/k/initrd.img"]);
        assert_eq!(value_after(&args, "-m"), ["256M"]);
        assert!(value_after(&args, "-drive").is_empty());
    }

    #[test]
    fn nvdimm_boot_maps_the_image_read_only() {
        let args = args(&image(Attachment::Nvdimm));
        assert_eq!(
            value_after(&args, "-machine"),
            ["q35,accel=tcg,memory-backend=mem0,nvdimm=on"]
        );
        assert_eq!(value_after(&args, "-m"), ["256M,slots=2,maxmem=1024M"]);
        assert!(value_after(&args, "-initrd").is_empty());
        assert!(value_after(&args, "-object").contains(
            &"memory-backend-file,id=pm0,mem-path=/b/rootfs.ext4.img,size=8388608,share=on,readonly=on"
        ));
        assert!(value_after(&args, "-device").contains(&"nvdimm,memdev=pm0,id=nv0,unarmed=on"));
    }

    #[test]
    fn virtio_pmem_boot_has_a_read_only_backend() {
        let args = args(&image(Attachment::VirtioPmem));
        assert_eq!(
            value_after(&args, "-machine"),
            ["q35,accel=tcg,memory-backend=mem0"]
        );
        assert!(value_after(&args, "-device").contains(&"virtio-pmem-pci,memdev=pm0,id=vpm0"));
        assert!(
            value_after(&args, "-object").iter().any(
                |o| o.starts_with("memory-backend-file") && o.ends_with("share=on,readonly=on")
            )
        );
    }

    #[test]
    fn virtio_blk_boot_is_a_read_only_drive() {
        let args = args(&image(Attachment::VirtioBlk));
        assert_eq!(
            value_after(&args, "-drive"),
            ["file=/b/rootfs.ext4.img,if=none,id=root,format=raw,readonly=on"]
        );
        assert!(value_after(&args, "-device").contains(&"virtio-blk-pci,drive=root"));
        assert_eq!(value_after(&args, "-m"), ["256M"]);
        assert!(!args.iter().any(|a| a.contains("memory-backend-file")));
        // The vsock device is there in every mode.
        assert!(value_after(&args, "-device").contains(&"vhost-user-vsock-pci,chardev=vsock0"));
    }

    #[test]
    fn harness_line_shares_memory_with_vhost_user_and_never_reboots() {
        let joined = args(&harness()).join(" ");
        assert!(joined.starts_with("-name hull-guest -machine q35,accel=tcg,memory-backend=mem0"));
        assert!(joined.contains("memory-backend-memfd,id=mem0,size=256M,share=on"));
        assert!(joined.contains("-no-reboot"));
        assert!(joined.contains("socket,id=vsock0,path=/run/x/vhost-vsock.sock"));
        assert!(joined.contains("-serial file:/run/x/console.log"));
        assert!(joined.contains("-append console=ttyS0 panic=-1 reboot=acpi agent.log=debug"));
    }

    #[test]
    fn kernel_vsock_needs_no_shared_memory() {
        let spec = VmSpec {
            accel: Accel::Kvm,
            vsock: Vsock::Kernel { cid: 3 },
            console: Console::Stdio,
            ..image(Attachment::Nvdimm)
        };
        let args = args(&spec);
        assert_eq!(value_after(&args, "-machine"), ["q35,accel=kvm,nvdimm=on"]);
        assert_eq!(value_after(&args, "-cpu"), ["host"]);
        assert_eq!(value_after(&args, "-serial"), ["stdio"]);
        assert!(value_after(&args, "-device").contains(&"vhost-vsock-pci,guest-cid=3"));
        assert!(!args.iter().any(|a| a.contains("memfd")));
        let hybrid = VmSpec {
            vsock: Vsock::Hybrid {
                cid: 3,
                uds: "/x".into(),
            },
            ..spec
        };
        assert!(argv(&hybrid).is_err());
    }

    #[test]
    fn shares_and_disks_become_devices() {
        let mut spec = harness();
        spec.shares.push(FsShare {
            tag: "kataShared".into(),
            socket: "/run/x/virtiofsd-0.sock".into(),
        });
        spec.disks.push(Disk::virtio_blk("/img/blk.ext4", 0x10));
        spec.disks.push(Disk {
            image: "/img/pmem.ext4".into(),
            attach: DiskAttach::VirtioPmem { size: 16 << 20 },
        });
        let joined = args(&spec).join(" ");
        assert!(
            joined.contains("-chardev socket,id=fs0,path=/run/x/virtiofsd-0.sock"),
            "{joined}"
        );
        assert!(joined.contains("-device vhost-user-fs-pci,chardev=fs0,tag=kataShared"));
        assert!(joined.contains("file=/img/blk.ext4,if=none,id=disk0,format=raw,readonly=on"));
        assert!(joined.contains("-device virtio-blk-pci,drive=disk0,addr=0x10"));
        assert!(joined.contains(
            "memory-backend-file,id=pmem1,mem-path=/img/pmem.ext4,size=16777216,share=on,readonly=on"
        ));
        assert!(joined.contains("-m 256M,slots=2,maxmem=1024M"), "{joined}");
        assert!(!args(&harness()).join(" ").contains("maxmem"));
        assert!(
            !joined.contains("scsi"),
            "no SCSI disk, no controller: {joined}"
        );
    }

    #[test]
    fn scsi_disks_share_one_controller() {
        let mut spec = harness();
        spec.disks.push(Disk::scsi("/img/a.ext4", 0, 0));
        spec.disks.push(Disk::scsi("/img/b.ext4", 1, 2));
        let args = args(&spec);
        let devices = value_after(&args, "-device");
        let controllers = devices
            .iter()
            .filter(|d| d.starts_with("virtio-scsi-pci"))
            .count();
        assert_eq!(controllers, 1, "{devices:?}");
        assert!(devices.contains(&"virtio-scsi-pci,id=scsi0"));
        assert!(devices.contains(&"scsi-hd,drive=disk0,bus=scsi0.0,channel=0,scsi-id=0,lun=0"));
        assert!(devices.contains(&"scsi-hd,drive=disk1,bus=scsi0.0,channel=0,scsi-id=1,lun=2"));
        let drives = value_after(&args, "-drive");
        assert!(drives.contains(&"file=/img/b.ext4,if=none,id=disk1,format=raw,readonly=on"));
    }

    #[test]
    fn only_a_scratch_disk_asked_for_as_such_is_writable() {
        let mut spec = harness();
        spec.disks.push(Disk::virtio_blk("/img/ro.img", 0x10));
        spec.disks
            .push(Disk::virtio_blk_writable("/img/swap.img", 0x11));
        let joined = args(&spec).join(" ");
        assert!(joined.contains("file=/img/ro.img,if=none,id=disk0,format=raw,readonly=on"));
        assert!(joined.contains("file=/img/swap.img,if=none,id=disk1,format=raw -device"));
        assert!(joined.contains("-device virtio-blk-pci,drive=disk1,addr=0x11"));
    }

    #[test]
    fn user_nic_is_isolated_with_loopback_forwards() {
        let mut nic = UserNic {
            mac: "52:54:00:12:34:56".into(),
            pci_slot: 5,
            network: ([10, 0, 2, 0].into(), 24),
            gateway: [10, 0, 2, 2].into(),
            dns: [10, 0, 2, 3].into(),
            forwards: vec![PortForward {
                host_port: 8080,
                guest_port: 80,
            }],
            reach_host: false,
        };
        assert_eq!(
            nic_args(&nic),
            [
                "-netdev",
                "user,id=n0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,restrict=on,\
                 hostfwd=tcp:127.0.0.1:8080-:80",
                "-device",
                "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,addr=0x5",
            ]
        );
        nic.reach_host = true;
        let spec = VmSpec {
            nic: Some(nic),
            ..harness()
        };
        assert!(args(&spec).join(" ").contains("restrict=off"));
        assert!(!args(&harness()).join(" ").contains("-netdev"));
    }

    #[test]
    fn qmp_and_hotplug_only_when_asked() {
        let plain = args(&harness());
        assert!(value_after(&plain, "-qmp").is_empty());
        assert_eq!(value_after(&plain, "-smp"), ["1"]);
        assert!(!plain.join(" ").contains("pcie-root-port"));

        let spec = VmSpec {
            qmp: Some("/run/x/qmp.sock".into()),
            hotplug: Some(Hotplug {
                max_cpus: 4,
                memory_slots: 2,
                max_memory_mib: 1024,
                root_ports: 2,
            }),
            ..harness()
        };
        let args = args(&spec);
        assert_eq!(
            value_after(&args, "-qmp"),
            ["unix:/run/x/qmp.sock,server=on,wait=off"]
        );
        assert_eq!(value_after(&args, "-smp"), ["1,maxcpus=4"]);
        assert_eq!(value_after(&args, "-m"), ["256M,slots=2,maxmem=1024M"]);
        let devices = value_after(&args, "-device");
        assert!(devices.contains(&"pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x18"));
        assert!(devices.contains(&"pcie-root-port,id=rp1,bus=pcie.0,chassis=2,addr=0x19"));
        assert_eq!(Hotplug::root_port_device_pci_path(1), "19/00");

        let crowded = VmSpec {
            hotplug: Some(Hotplug {
                root_ports: Hotplug::MAX_ROOT_PORTS + 1,
                ..spec.hotplug.unwrap()
            }),
            ..spec
        };
        let err = argv(&crowded).unwrap_err().to_string();
        assert!(err.contains("8 PCIe root ports"), "{err}");
    }
}

//! What a guest is booted with, whatever the VMM: [`VmSpec`] and its parts.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::attachment::Attachment;
use super::vmm::Vmm;

/// What can go wrong while describing a VM or turning it into a command line.
#[derive(Debug, thiserror::Error)]
pub enum VmArgsError {
    /// The VMM has no way to do what the description asks.
    #[error("{vmm} cannot {what}")]
    Unsupported {
        /// The VMM.
        vmm: Vmm,
        /// What it was asked to do, as the end of "{vmm} cannot ...".
        what: String,
    },

    /// A persistent-memory image must be a whole number of 2 MiB blocks.
    #[error("{}: {bytes} bytes is not a multiple of 2 MiB, as virtio-pmem needs", path.display())]
    PmemSize {
        /// The image.
        path: PathBuf,
        /// Its size in bytes.
        bytes: u64,
    },

    /// An image to attach cannot be read.
    #[error("cannot read the size of {}", path.display())]
    Io {
        /// The image.
        path: PathBuf,
        /// Why its size could not be read.
        #[source]
        source: std::io::Error,
    },
}

/// The size a persistent-memory region must be a multiple of.
pub const PMEM_ALIGN: u64 = 2 << 20;

/// Everything a guest is booted with, whatever the VMM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The kernel: a bzImage for QEMU and vmm-lite.
    pub kernel: PathBuf,
    /// What the guest's root comes from.
    pub boot: Boot,
    /// The whole kernel command line.
    pub cmdline: String,
    /// Guest RAM in MiB (persistent-memory regions come on top, see [`super::memory`]).
    pub memory_mib: u64,
    /// Number of virtual CPUs.
    pub cpus: u32,
    /// Whether the VMM uses KVM or emulates.
    pub accel: Accel,
    /// How the guest's virtio-vsock reaches the host.
    pub vsock: Vsock,
    /// virtio-fs shares, each served by a vhost-user daemon (virtiofsd) on its socket.
    pub shares: Vec<FsShare>,
    /// Further images, always read-only.
    pub disks: Vec<Disk>,
    /// A NIC on user-mode networking; `None` for no network.
    pub nic: Option<UserNic>,
    /// Where the serial console goes.
    pub console: Console,
    /// A QMP socket the VMM serves (QEMU: `-qmp unix:PATH,server=on,wait=off`), for
    /// hot-plug and queries while the guest runs; `None` for none.
    pub qmp: Option<PathBuf>,
    /// Room to hot-plug vCPUs, memory and PCI devices; `None` (the default) leaves the
    /// machine as booted.
    pub hotplug: Option<Hotplug>,
}

/// What may be hot-plugged into a running guest (QEMU): vCPUs up to `max_cpus`, memory
/// devices into `memory_slots` up to `max_memory_mib`, and PCI devices into
/// `root_ports` PCIe root ports (q35's root bus takes no hot-plugged device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hotplug {
    /// The most vCPUs the guest can have (`-smp N,maxcpus=`).
    pub max_cpus: u32,
    /// Slots for hot-plugged memory devices (pc-dimm), beside the persistent-memory ones.
    pub memory_slots: u32,
    /// The most RAM the guest can have in MiB, boot RAM and hot-plugged memory together
    /// (persistent-memory regions come on top).
    pub max_memory_mib: u64,
    /// The number of `pcie-root-port`s, `rp0`, `rp1`, ..., at slots
    /// [`Hotplug::FIRST_ROOT_PORT_SLOT`] and up of the root bus: a device hot-plugged
    /// into `rpN` sits at slot 0 behind it, Kata PCI path `{port slot:02x}/00`. At most
    /// [`Hotplug::MAX_ROOT_PORTS`].
    pub root_ports: u8,
}

impl Hotplug {
    /// The root-bus slot of root port `rp0`; `rpN` is at this slot plus N (clear of the
    /// slots QEMU assigns itself from 01 up and of the harness's disks at 0x10).
    pub const FIRST_ROOT_PORT_SLOT: u8 = 0x18;

    /// The most root ports: slots 0x18 to 0x1e (q35's ICH9 functions sit at 0x1f).
    pub const MAX_ROOT_PORTS: u8 = 7;

    /// The root-bus slot of root port `index` (past [`Hotplug::MAX_ROOT_PORTS`] it is not
    /// one QEMU gets: [`crate::vm_args::qemu::argv`] refuses that many).
    pub fn root_port_slot(index: u8) -> u8 {
        Self::FIRST_ROOT_PORT_SLOT.saturating_add(index)
    }

    /// The Kata PCI path (`{port slot:02x}/00`) of the device hot-plugged into root port
    /// `index`.
    pub fn root_port_device_pci_path(index: u8) -> String {
        format!("{:02x}/00", Self::root_port_slot(index))
    }
}

/// Hardware virtualization or software emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// KVM (`/dev/kvm`): the default, and the only choice of vmm-lite.
    #[default]
    Kvm,
    /// QEMU's TCG (the only choice where `/dev/kvm` cannot run a stock Linux guest).
    Tcg,
}

/// What the guest's root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// An initramfs, unpacked into RAM.
    Initrd(PathBuf),
    /// A disk image built by `hull-image image`, attached one way.
    Image(RootImage),
}

/// A root image and how it is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootImage {
    /// The image file.
    pub path: PathBuf,
    /// Its size: a pmem memory backend takes it explicitly.
    pub bytes: u64,
    /// How the guest sees it.
    pub attachment: Attachment,
}

/// How the guest's virtio-vsock reaches the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vsock {
    /// The host kernel's vhost-vsock (`/dev/vhost-vsock`): host programs use `AF_VSOCK`.
    Kernel {
        /// The guest's CID.
        cid: u32,
    },
    /// A vhost-user backend (such as `vhost-device-vsock`) listening on `socket`; the
    /// backend owns the guest CID and the hybrid-vsock socket the host dials.
    VhostUser {
        /// The backend's vhost-user socket.
        socket: PathBuf,
    },
    /// A hybrid vsock served by the VMM itself: the host dials `uds` and sends
    /// `CONNECT <port>`.
    Hybrid {
        /// The guest's CID.
        cid: u32,
        /// The Unix socket on the host that the VMM listens on.
        uds: PathBuf,
    },
}

/// A virtio-fs share: the guest mounts `tag`, a vhost-user daemon serves `socket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsShare {
    /// The tag the guest mounts (`mount -t virtiofs TAG DIR`).
    pub tag: String,
    /// The vhost-user socket the daemon listens on.
    pub socket: PathBuf,
}

/// A raw disk image, attached read-only (the host's image stays intact) unless it is a
/// scratch disk made writable on purpose ([`Disk::virtio_blk_writable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file.
    pub image: PathBuf,
    /// How the guest sees it.
    pub attach: DiskAttach,
}

/// How a [`Disk`] reaches the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskAttach {
    /// virtio-blk; on PCI at this slot of the root bus, so the guest finds it by the Kata
    /// PCI path `{slot:02x}` (keep it clear of the slots QEMU assigns itself, from 01 up).
    /// A virtio-mmio VMM has no slots and attaches disks in order.
    VirtioBlk {
        /// The device's slot on the root PCI bus.
        slot: u8,
        /// Whether the guest may write to it; only for scratch disks (swap, volumes
        /// that grow), never for a guest image.
        writable: bool,
    },
    /// virtio-pmem of `size` bytes (the image's size, a multiple of 2 MiB): the guest sees
    /// `/dev/pmemN`.
    VirtioPmem {
        /// The region's size in bytes.
        size: u64,
    },
    /// A SCSI disk (`scsi-hd`) on a virtio-scsi controller, at channel 0, this target and
    /// LUN: the guest finds it by the Kata SCSI address `{target}:{lun}`. The controller
    /// is added once, only when a SCSI disk is attached (QEMU only).
    Scsi {
        /// The SCSI target id (`scsi-id`, up to 255).
        target: u8,
        /// The logical unit number.
        lun: u16,
    },
}

impl Disk {
    /// `image` as virtio-blk at `slot`.
    pub fn virtio_blk(image: impl Into<PathBuf>, slot: u8) -> Self {
        Self {
            image: image.into(),
            attach: DiskAttach::VirtioBlk {
                slot,
                writable: false,
            },
        }
    }

    /// `image` as a writable virtio-blk disk at `slot`: a scratch disk the guest may
    /// change (swap, a volume to grow), never a guest image.
    pub fn virtio_blk_writable(image: impl Into<PathBuf>, slot: u8) -> Self {
        Self {
            image: image.into(),
            attach: DiskAttach::VirtioBlk {
                slot,
                writable: true,
            },
        }
    }

    /// `image` as a SCSI disk at `target`:`lun`.
    pub fn scsi(image: impl Into<PathBuf>, target: u8, lun: u16) -> Self {
        Self {
            image: image.into(),
            attach: DiskAttach::Scsi { target, lun },
        }
    }

    /// `image` as virtio-pmem; its size must be a multiple of 2 MiB.
    pub fn virtio_pmem(image: impl Into<PathBuf>) -> Result<Self, VmArgsError> {
        let image = image.into();
        let bytes = file_size(&image)?;
        if bytes == 0 || bytes % PMEM_ALIGN != 0 {
            return Err(VmArgsError::PmemSize { path: image, bytes });
        }
        Ok(Self {
            image,
            attach: DiskAttach::VirtioPmem { size: bytes },
        })
    }
}

/// The size of the file at `path`.
pub fn file_size(path: &Path) -> Result<u64, VmArgsError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| VmArgsError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// A NIC on user-mode networking (QEMU's slirp): no tap device, bridge or privilege.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNic {
    /// The NIC's MAC, colon-separated hex.
    pub mac: String,
    /// Its slot on the root PCI bus.
    pub pci_slot: u8,
    /// The network's address and prefix length (the guest is expected inside it).
    pub network: (Ipv4Addr, u8),
    /// The router, which is the host's loopback as the guest sees it.
    pub gateway: Ipv4Addr,
    /// The DNS server the guest is told about, inside [`UserNic::network`].
    pub dns: Ipv4Addr,
    /// Host TCP ports of 127.0.0.1 forwarded to guest ports.
    pub forwards: Vec<PortForward>,
    /// Whether the guest may open connections itself (else it can only answer).
    pub reach_host: bool,
}

/// A TCP port of 127.0.0.1 on the host forwarded to a guest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    /// The port on the host's 127.0.0.1.
    pub host_port: u16,
    /// The guest port it reaches.
    pub guest_port: u16,
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Console {
    /// The VMM's standard output.
    #[default]
    Stdio,
    /// A file on the host, which the VMM writes the console output to.
    File(PathBuf),
}

impl VmSpec {
    /// The root image, when the guest boots from one.
    pub fn root_image(&self) -> Option<&RootImage> {
        match &self.boot {
            Boot::Image(image) => Some(image),
            Boot::Initrd(_) => None,
        }
    }

    /// The sizes of every persistent-memory region: the root image when it is attached
    /// as NVDIMM or virtio-pmem, and every virtio-pmem disk.
    pub fn pmem_region_sizes(&self) -> Vec<u64> {
        let root = self
            .root_image()
            .filter(|image| image.attachment.is_pmem())
            .map(|image| image.bytes);
        let disks = self.disks.iter().filter_map(|d| match d.attach {
            DiskAttach::VirtioPmem { size } => Some(size),
            DiskAttach::VirtioBlk { .. } | DiskAttach::Scsi { .. } => None,
        });
        root.into_iter().chain(disks).collect()
    }
}

#[cfg(test)]
pub(crate) mod test_spec {
    use super::*;
    use crate::vm_args::attachment::Attachment;

    /// A spec like the harness's: initrd, TCG, vhost-user vsock, console to a file.
    pub fn harness() -> VmSpec {
        VmSpec {
            kernel: "/k/bzImage".into(),
            boot: Boot::Initrd("/k/initrd.img".into()),
            cmdline: "console=ttyS0 panic=-1 reboot=acpi agent.log=debug".into(),
            memory_mib: 256,
            cpus: 1,
            accel: Accel::Tcg,
            vsock: Vsock::VhostUser {
                socket: "/run/x/vhost-vsock.sock".into(),
            },
            shares: Vec::new(),
            disks: Vec::new(),
            nic: None,
            console: Console::File("/run/x/console.log".into()),
            qmp: None,
            hotplug: None,
        }
    }

    /// `harness()` booting an 8 MiB ext4 image attached as `attachment`.
    pub fn image(attachment: Attachment) -> VmSpec {
        VmSpec {
            boot: Boot::Image(RootImage {
                path: "/b/rootfs.ext4.img".into(),
                bytes: 8 << 20,
                attachment,
            }),
            ..harness()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm_args::attachment::Attachment;

    #[test]
    fn pmem_images_must_be_2mib_multiples() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("odd.img");
        std::fs::write(&image, vec![0u8; 4096]).unwrap();
        let err = Disk::virtio_pmem(&image).unwrap_err();
        assert!(err.to_string().contains("2 MiB"), "{err}");
        let file = std::fs::File::create(&image).unwrap();
        file.set_len(4 << 20).unwrap();
        assert_eq!(
            Disk::virtio_pmem(&image).unwrap().attach,
            DiskAttach::VirtioPmem { size: 4 << 20 }
        );
        let missing = Disk::virtio_pmem(dir.path().join("none")).unwrap_err();
        assert!(missing.to_string().contains("none"), "{missing}");
    }

    #[test]
    fn pmem_regions_are_the_pmem_root_and_pmem_disks() {
        assert!(test_spec::harness().pmem_region_sizes().is_empty());
        assert!(
            test_spec::image(Attachment::VirtioBlk)
                .pmem_region_sizes()
                .is_empty()
        );
        let mut spec = test_spec::image(Attachment::Nvdimm);
        spec.disks.push(Disk::virtio_blk("/d/blk.img", 0x10));
        spec.disks.push(Disk {
            image: "/d/pmem.img".into(),
            attach: DiskAttach::VirtioPmem { size: 4 << 20 },
        });
        assert_eq!(spec.pmem_region_sizes(), [8 << 20, 4 << 20]);
    }
}

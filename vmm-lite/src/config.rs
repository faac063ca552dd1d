//! [`VmConfig`]: everything a VM is built from. The CLI parses flags into it; library users
//! fill it directly.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Where the serial console's output goes.
pub enum Console {
    /// The VMM's standard output.
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
    /// Any writer (tests capture the console this way).
    Writer(Box<dyn Write + Send>),
    /// Nowhere.
    Discard,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("Stdout"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Writer(_) => f.write_str("Writer(..)"),
            Self::Discard => f.write_str("Discard"),
        }
    }
}

/// A raw disk image on virtio-blk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// The image file, used as is (raw, no format header).
    pub path: PathBuf,
    /// Open the image read-only and offer the guest `VIRTIO_BLK_F_RO`.
    pub read_only: bool,
}

/// A file mapped read-only into the guest as virtio-pmem (a multiple of 2 MiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmemConfig {
    /// The file to map; its size must be a multiple of 2 MiB.
    pub path: PathBuf,
}

/// virtio-vsock exposed as a Firecracker-style hybrid-vsock Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockConfig {
    /// The socket the host dials (`CONNECT <port>\n`); guest → host port P goes to `<uds>_P`.
    pub uds: PathBuf,
    /// The guest's context id (3 unless told).
    pub cid: u64,
}

/// A vhost-user-fs device (virtiofsd) for the Kata share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    /// The mount tag the guest sees.
    pub tag: String,
    /// virtiofsd's vhost-user socket.
    pub socket: PathBuf,
}

/// virtio-net on a host tap device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The tap's name (created if missing, which needs CAP_NET_ADMIN).
    pub tap: String,
    /// The guest's MAC address.
    pub mac: [u8; 6],
}

/// A VM's configuration.
#[derive(Debug)]
pub struct VmConfig {
    /// bzImage or ELF vmlinux.
    pub kernel: PathBuf,
    /// An initrd, loaded page-aligned at the top of low RAM.
    pub initrd: Option<PathBuf>,
    /// The command line the user asked for; vmm-lite adds `reboot=k`, `panic=-1` and one
    /// `virtio_mmio.device=` per device.
    pub cmdline: String,
    /// Guest RAM in bytes (a multiple of 2 MiB, at least 16 MiB).
    pub mem_bytes: u64,
    /// The number of vCPUs, from 1 to what the MP table can describe.
    pub vcpus: u8,
    /// Where the serial console (COM1) writes.
    pub console: Console,
    /// virtio-blk disks, in the order the guest enumerates them (`vda`, `vdb`, ...).
    pub disks: Vec<DiskConfig>,
    /// virtio-pmem devices, in the order the guest enumerates them (`pmem0`, ...).
    pub pmems: Vec<PmemConfig>,
    /// The virtio-vsock device, if any (at most one).
    pub vsock: Option<VsockConfig>,
    /// vhost-user-fs devices, one per mount tag.
    pub fs: Vec<FsConfig>,
    /// virtio-net devices, one per tap.
    pub net: Vec<NetConfig>,
    /// Register the test "done" port (0xf4); for payloads, never for Linux.
    pub debug_exit: bool,
    /// Stop the guest with [`crate::Error::Watchdog`] if it has not ended by then.
    pub watchdog: Option<Duration>,
}

impl VmConfig {
    /// A configuration with 256 MiB, one vCPU, the console on stdout and nothing else.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd: None,
            cmdline: String::new(),
            mem_bytes: 256 << 20,
            vcpus: 1,
            console: Console::Stdout,
            disks: Vec::new(),
            pmems: Vec::new(),
            vsock: None,
            fs: Vec::new(),
            net: Vec::new(),
            debug_exit: false,
            watchdog: None,
        }
    }
}

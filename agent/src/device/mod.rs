//! Waiting for a block device the host plugged in.
//!
//! The host names a device by where it is plugged (a PCI path for virtio-blk, a SCSI
//! address) or by its kernel name (`/dev/vda` for virtio-mmio, `/dev/pmem0` for an
//! NVDIMM). The device may already be there (cold-plugged, or plugged before the
//! request), may appear during the wait, or never. So [`DeviceWaiter::block_device`]:
//!
//! 1. subscribes to kernel uevents first, so nothing that happens from then on is missed;
//! 2. looks in sysfs for a device that is already there;
//! 3. waits for a matching `add` uevent, up to `agent.hotplug_timeout`, looking in sysfs
//!    again when events were lost and once more at the deadline.
//!
//! No fixed sleep anywhere: a device that is there is found at once, one that appears
//! is found when its uevent arrives. The result is the device node under `/dev`, checked
//! to be a block device.

pub mod container;
pub mod cpu_mem;
pub mod pci;
pub mod uevent;

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::stat::SFlag;
use tokio::time::Instant;

pub use pci::PciPath;
pub use uevent::{Uevent, UeventError, UeventSocket, UeventSource};

/// Why a device could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The host's PCI path does not parse.
    #[error("invalid PCI path {path:?}: {reason}")]
    InvalidPciPath {
        /// The path as the host sent it.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A bridge on the PCI path has no single bus behind it in sysfs (not there yet,
    /// or not a bridge).
    #[error("PCI path {path}: cannot read the bus behind bridge {bridge}: {reason}")]
    PciBridge {
        /// The whole PCI path being resolved.
        path: String,
        /// The bridge's `pci_bus/` directory in sysfs.
        bridge: PathBuf,
        /// Why its bus could not be read.
        reason: String,
    },
    /// A device name is not one plain path component under `/dev`.
    #[error("invalid device name {name:?}: {reason}")]
    InvalidName {
        /// The name (or `/dev` path) given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A SCSI address is not `TARGET:LUN`.
    #[error("invalid SCSI address {address:?}: expected TARGET:LUN (two decimal numbers)")]
    InvalidScsiAddress {
        /// The address as the host sent it.
        address: String,
    },
    /// The device did not show up before the hot-plug timeout.
    #[error("{what} did not appear within {timeout:?} (agent.hotplug_timeout)")]
    Timeout {
        /// The device waited for, in words.
        what: String,
        /// How long the agent waited (`agent.hotplug_timeout`).
        timeout: Duration,
    },
    /// The device appeared, but its node under `/dev` is missing or not a block device.
    #[error("{what} appeared as {name}, but {node} is {problem} (is devtmpfs mounted on /dev?)")]
    BadNode {
        /// The device waited for, in words.
        what: String,
        /// The kernel name it appeared under (`vda`).
        name: String,
        /// The device node looked at.
        node: PathBuf,
        /// What is wrong with the node: missing, or not a block device.
        problem: &'static str,
    },
    /// The uevent socket could not be opened or read.
    #[error("cannot watch for devices: {0}")]
    Uevent(#[from] UeventError),
    /// A file under `/dev` or sysfs could not be examined.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A block device to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockQuery {
    /// The virtio-blk disk at a Kata PCI path.
    Pci(PciPath),
    /// A block device by its kernel name (`vda`, `pmem0`).
    Name(String),
    /// A SCSI disk by target and LUN, on channel 0 of any SCSI host.
    Scsi {
        /// The SCSI target ID.
        target: u32,
        /// The logical unit number.
        lun: u32,
    },
}

impl BlockQuery {
    /// `/dev/NAME` → [`BlockQuery::Name`]; the name must be one plain component.
    pub fn from_dev_path(path: &str) -> Result<Self, DeviceError> {
        let name = path
            .strip_prefix("/dev/")
            .ok_or_else(|| DeviceError::InvalidName {
                name: path.to_string(),
                reason: "expected /dev/NAME",
            })?;
        check_devname(name)?;
        Ok(Self::Name(name.to_string()))
    }

    /// Kata's SCSI address, `TARGET:LUN`.
    pub fn scsi(address: &str) -> Result<Self, DeviceError> {
        let invalid = || DeviceError::InvalidScsiAddress {
            address: address.to_string(),
        };
        let (target, lun) = address.split_once(':').ok_or_else(invalid)?;
        Ok(Self::Scsi {
            target: target.parse().map_err(|_| invalid())?,
            lun: lun.parse().map_err(|_| invalid())?,
        })
    }

    fn describe(&self) -> String {
        match self {
            Self::Pci(path) => format!("the block device at PCI path {path}"),
            Self::Name(name) => format!("block device {name}"),
            Self::Scsi { target, lun } => format!("the SCSI disk {target}:{lun}"),
        }
    }
}

/// Kata's drivers for block devices, shared by storages (`Storage.driver`) and container
/// devices (`Device.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockDriver {
    /// virtio-blk on PCI, named by a PCI path (`02/01`) or `/dev/NAME`.
    Blk,
    /// virtio-blk on virtio-mmio, named by the host as `/dev/NAME`.
    MmioBlk,
    /// A disk on virtio-scsi, named `TARGET:LUN`.
    Scsi,
    /// An NVDIMM or virtio-pmem region, `/dev/pmemN`.
    Nvdimm,
}

impl BlockDriver {
    /// Every block driver.
    pub const ALL: [Self; 4] = [Self::Blk, Self::MmioBlk, Self::Scsi, Self::Nvdimm];

    /// Kata's name of the driver.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blk => "blk",
            Self::MmioBlk => "mmioblk",
            Self::Scsi => "scsi",
            Self::Nvdimm => "nvdimm",
        }
    }

    /// The driver Kata names `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The device `source` names for this driver: a PCI path or `/dev/NAME` (`blk`),
    /// `/dev/NAME` (`mmioblk`), `TARGET:LUN` (`scsi`), `/dev/pmemN` (`nvdimm`).
    pub fn query(self, source: &str) -> Result<BlockQuery, DeviceError> {
        match self {
            Self::Blk if source.starts_with('/') => BlockQuery::from_dev_path(source),
            Self::Blk => Ok(BlockQuery::Pci(source.parse()?)),
            Self::MmioBlk => BlockQuery::from_dev_path(source),
            Self::Scsi => BlockQuery::scsi(source),
            Self::Nvdimm => match BlockQuery::from_dev_path(source)? {
                BlockQuery::Name(name) if name.starts_with("pmem") => Ok(BlockQuery::Name(name)),
                _ => Err(DeviceError::InvalidName {
                    name: source.to_string(),
                    reason: "expected /dev/pmemN",
                }),
            },
        }
    }
}

fn check_devname(name: &str) -> Result<(), DeviceError> {
    let invalid = |reason| DeviceError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(invalid("must be a single path component"));
    }
    Ok(())
}

/// A query made concrete: what a matching uevent or sysfs entry looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    /// The disk's devpath starts with this prefix (ending in `/`), followed by
    /// `virtioN/block/NAME`.
    PciPrefix(String),
    Name(String),
    Scsi {
        target: u32,
        lun: u32,
    },
}

impl Matcher {
    /// The device name, if `event` announces the device.
    fn matches(&self, event: &Uevent) -> Option<String> {
        if !event.is_block_add() {
            return None;
        }
        let found = match self {
            Self::PciPrefix(prefix) => {
                let rest = event.devpath.strip_prefix(prefix.as_str())?;
                let mut parts = rest.split('/');
                let virtio = parts.next()?;
                virtio
                    .strip_prefix("virtio")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    && parts.next() == Some("block")
                    && parts.next() == Some(event.devname.as_str())
                    && parts.next().is_none()
            }
            Self::Name(name) => event.devname == *name,
            Self::Scsi { target, lun } => {
                // .../hostH/targetH:0:T/H:0:T:L/block/sdX
                let (before, name) = event.devpath.rsplit_once("/block/")?;
                let address = before.rsplit('/').next()?;
                name == event.devname && scsi_address_matches(address, *target, *lun)
            }
        };
        found.then(|| event.devname.clone())
    }

    /// The device name, if sysfs shows the device already.
    fn scan(&self, sysfs: &Path) -> Option<String> {
        match self {
            Self::PciPrefix(prefix) => {
                let device = sysfs.join(prefix.trim_start_matches('/'));
                std::fs::read_dir(&device)
                    .ok()?
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("virtio"))
                    .find_map(|e| first_entry(&e.path().join("block")))
            }
            Self::Name(name) => sysfs
                .join("class/block")
                .join(name)
                .exists()
                .then(|| name.clone()),
            Self::Scsi { target, lun } => std::fs::read_dir(sysfs.join("bus/scsi/devices"))
                .ok()?
                .filter_map(Result::ok)
                .filter(|e| scsi_address_matches(&e.file_name().to_string_lossy(), *target, *lun))
                .find_map(|e| first_entry(&e.path().join("block"))),
        }
    }
}

/// `H:0:T:L` for any host H.
fn scsi_address_matches(address: &str, target: u32, lun: u32) -> bool {
    let parts: Vec<&str> = address.split(':').collect();
    matches!(parts.as_slice(), [host, "0", t, l]
        if host.parse::<u32>().is_ok() && t.parse() == Ok(target) && l.parse() == Ok(lun))
}

fn first_entry(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Finds block devices; see the module documentation.
#[derive(Debug, Clone)]
pub struct DeviceWaiter {
    sysfs: PathBuf,
    dev: PathBuf,
    timeout: Duration,
}

impl DeviceWaiter {
    /// A waiter looking at `sysfs` (`/sys`) and `dev` (`/dev`), waiting up to `timeout`.
    pub fn new(sysfs: impl Into<PathBuf>, dev: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            sysfs: sysfs.into(),
            dev: dev.into(),
            timeout,
        }
    }

    /// The guest's own `/sys` and `/dev`.
    pub fn guest(timeout: Duration) -> Self {
        Self::new("/sys", "/dev", timeout)
    }

    /// How long a wait lasts at most.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Waits for the device and returns its node, e.g. `/dev/vdb`.
    pub async fn block_device(&self, query: &BlockQuery) -> Result<PathBuf, DeviceError> {
        let mut events = UeventSocket::open()?;
        self.block_device_with(query, &mut events).await
    }

    /// [`DeviceWaiter::block_device`] with a given uevent source, subscribed already.
    pub async fn block_device_with<S: UeventSource>(
        &self,
        query: &BlockQuery,
        events: &mut S,
    ) -> Result<PathBuf, DeviceError> {
        let matcher = self.matcher(query)?;
        if let BlockQuery::Scsi { target, lun } = query {
            self.rescan_scsi(*target, *lun);
        }
        let deadline = Instant::now() + self.timeout;
        if let Some(name) = matcher.scan(&self.sysfs) {
            return self.node(query, &name);
        }
        loop {
            match tokio::time::timeout_at(deadline, events.next_event()).await {
                Ok(Ok(event)) => {
                    if let Some(name) = matcher.matches(&event) {
                        tracing::debug!(?query, %name, seqnum = event.seqnum, "device appeared");
                        return self.node(query, &name);
                    }
                }
                Ok(Err(UeventError::Overflow)) => {
                    tracing::warn!("uevents lost; looking in sysfs");
                    if let Some(name) = matcher.scan(&self.sysfs) {
                        return self.node(query, &name);
                    }
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_deadline) => {
                    return match matcher.scan(&self.sysfs) {
                        Some(name) => self.node(query, &name),
                        None => Err(DeviceError::Timeout {
                            what: query.describe(),
                            timeout: self.timeout,
                        }),
                    };
                }
            }
        }
    }

    fn matcher(&self, query: &BlockQuery) -> Result<Matcher, DeviceError> {
        Ok(match query {
            BlockQuery::Pci(path) => Matcher::PciPrefix(format!(
                "/devices/{}/{}/",
                pci::ROOT_BUS,
                path.sysfs_relative(&self.sysfs)?
            )),
            BlockQuery::Name(name) => {
                check_devname(name)?;
                Matcher::Name(name.clone())
            }
            BlockQuery::Scsi { target, lun } => Matcher::Scsi {
                target: *target,
                lun: *lun,
            },
        })
    }

    /// Asks every SCSI host to scan for the LUN (Kata's runtime hot-adds SCSI disks
    /// without the guest noticing otherwise). Failures only mean the wait will time out.
    fn rescan_scsi(&self, target: u32, lun: u32) {
        let hosts = self.sysfs.join("class/scsi_host");
        let Ok(entries) = std::fs::read_dir(&hosts) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let scan = entry.path().join("scan");
            if let Err(e) = std::fs::write(&scan, format!("0 {target} {lun}")) {
                tracing::debug!(path = %scan.display(), error = %e, "SCSI scan");
            }
        }
    }

    fn node(&self, query: &BlockQuery, name: &str) -> Result<PathBuf, DeviceError> {
        check_devname(name)?;
        let node = self.dev.join(name);
        let bad = |problem| DeviceError::BadNode {
            what: query.describe(),
            name: name.to_string(),
            node: node.clone(),
            problem,
        };
        match nix::sys::stat::stat(&node) {
            Ok(stat)
                if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFBLK =>
            {
                Ok(node)
            }
            Ok(_) => Err(bad("not a block device")),
            Err(nix::errno::Errno::ENOENT) => Err(bad("missing")),
            Err(errno) => Err(DeviceError::Io {
                path: node.clone(),
                source: errno.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    type Step = Box<dyn FnOnce() -> Result<Uevent, UeventError> + Send>;

    /// Scripted uevents (each step may also change the fake sysfs); after the script,
    /// waits forever, like a quiet kernel.
    struct Script(VecDeque<Step>);

    impl Script {
        fn quiet() -> Self {
            Self(VecDeque::new())
        }
        fn events(events: Vec<Result<Uevent, UeventError>>) -> Self {
            Self(
                events
                    .into_iter()
                    .map(|e| Box::new(move || e) as Step)
                    .collect(),
            )
        }
    }

    impl UeventSource for Script {
        async fn next_event(&mut self) -> Result<Uevent, UeventError> {
            match self.0.pop_front() {
                Some(step) => step(),
                None => std::future::pending().await,
            }
        }
    }

    fn block_add(devpath: &str, devname: &str) -> Uevent {
        Uevent {
            action: "add".into(),
            devpath: devpath.into(),
            subsystem: "block".into(),
            devname: devname.into(),
            devtype: "disk".into(),
            seqnum: 1,
        }
    }

    /// A fake sysfs and /dev; /dev/null stands in for device nodes where a block
    /// device is not needed, and a real block device node for where it is.
    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("sys/devices/pci0000:00")).unwrap();
            std::fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
            std::fs::create_dir_all(dir.path().join("dev")).unwrap();
            Self { dir }
        }
        fn sysfs(&self) -> PathBuf {
            self.dir.path().join("sys")
        }
        fn waiter(&self, timeout: Duration) -> DeviceWaiter {
            DeviceWaiter::new(self.sysfs(), self.dir.path().join("dev"), timeout)
        }
        fn mkdir(&self, rel: &str) {
            std::fs::create_dir_all(self.sysfs().join(rel)).unwrap();
        }
        /// Makes `dev/NAME` a block device node, if this process may (root); returns
        /// whether it did.
        fn block_node(&self, name: &str) -> bool {
            let node = self.dir.path().join("dev").join(name);
            nix::sys::stat::mknod(
                &node,
                SFlag::S_IFBLK,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                nix::sys::stat::makedev(7, 200),
            )
            .is_ok()
        }
    }

    const PCI_DISK: &str = "/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio4/block/vdb";

    #[test]
    fn pci_matcher_wants_the_exact_device_and_a_whole_disk() {
        let matcher = Matcher::PciPrefix("/devices/pci0000:00/0000:00:02.0/0000:01:01.0/".into());
        assert_eq!(
            matcher.matches(&block_add(PCI_DISK, "vdb")),
            Some("vdb".into())
        );
        // A sibling slot, a partition, a remove, another subsystem, a name mismatch.
        for (event, why) in [
            (
                block_add(
                    "/devices/pci0000:00/0000:00:02.0/0000:01:01.1/virtio4/block/vdb",
                    "vdb",
                ),
                "other function",
            ),
            (
                block_add(
                    "/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio4/block/vdb/vdb1",
                    "vdb1",
                ),
                "partition",
            ),
            (
                Uevent {
                    action: "remove".into(),
                    ..block_add(PCI_DISK, "vdb")
                },
                "remove",
            ),
            (
                Uevent {
                    subsystem: "bdi".into(),
                    ..block_add(PCI_DISK, "vdb")
                },
                "subsystem",
            ),
            (block_add(PCI_DISK, "vdc"), "name"),
            (
                block_add(
                    "/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtioX/block/vdb",
                    "vdb",
                ),
                "virtio index",
            ),
        ] {
            assert_eq!(matcher.matches(&event), None, "{why}");
        }
    }

    #[test]
    fn name_and_scsi_matchers() {
        let pmem = Matcher::Name("pmem0".into());
        assert_eq!(
            pmem.matches(&block_add(
                "/devices/LNXSYSTM:00/ndbus0/region0/namespace0.0/block/pmem0",
                "pmem0"
            )),
            Some("pmem0".into())
        );
        assert_eq!(
            pmem.matches(&block_add("/devices/x/block/pmem1", "pmem1")),
            None
        );
        let scsi = Matcher::Scsi { target: 1, lun: 2 };
        let devpath =
            "/devices/pci0000:00/0000:00:04.0/virtio1/host0/target0:0:1/0:0:1:2/block/sda";
        assert_eq!(scsi.matches(&block_add(devpath, "sda")), Some("sda".into()));
        let other = "/devices/pci0000:00/0000:00:04.0/virtio1/host0/target0:0:1/0:0:1:3/block/sdb";
        assert_eq!(scsi.matches(&block_add(other, "sdb")), None);
    }

    #[test]
    fn queries_from_kata_sources() {
        assert_eq!(
            BlockQuery::from_dev_path("/dev/vda").unwrap(),
            BlockQuery::Name("vda".into())
        );
        for bad in [
            "vda",
            "/dev/",
            "/dev/../etc/passwd",
            "/dev/mapper/x",
            "/dev/..",
        ] {
            assert!(BlockQuery::from_dev_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            BlockQuery::scsi("0:1").unwrap(),
            BlockQuery::Scsi { target: 0, lun: 1 }
        );
        let err = BlockQuery::scsi("0-1").unwrap_err();
        assert!(err.to_string().contains("TARGET:LUN"), "{err}");
    }

    #[tokio::test]
    async fn a_device_already_in_sysfs_is_found_without_waiting() {
        let fake = Fake::new();
        fake.mkdir("devices/pci0000:00/0000:00:02.0/pci_bus/0000:01");
        fake.mkdir("devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio4/block/vdb");
        assert!(
            fake.block_node("vdb"),
            "making a block device node needs root (mknod)"
        );
        let query = BlockQuery::Pci("02/01".parse().unwrap());
        let mut quiet = Script::quiet();
        let started = std::time::Instant::now();
        let node = fake
            .waiter(Duration::from_secs(30))
            .block_device_with(&query, &mut quiet)
            .await
            .unwrap();
        assert_eq!(node, fake.dir.path().join("dev/vdb"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_device_is_found_when_its_uevent_arrives() {
        let fake = Fake::new();
        fake.mkdir("devices/pci0000:00/0000:00:02.0/pci_bus/0000:01");
        assert!(
            fake.block_node("vdb"),
            "making a block device node needs root (mknod)"
        );
        let query = BlockQuery::Pci("02/01".parse().unwrap());
        let mut events = Script::events(vec![
            Ok(block_add(
                "/devices/pci0000:00/0000:00:03.0/virtio2/block/vda",
                "vda",
            )),
            Ok(block_add(PCI_DISK, "vdb")),
        ]);
        let node = fake
            .waiter(Duration::from_secs(30))
            .block_device_with(&query, &mut events)
            .await
            .unwrap();
        assert_eq!(node, fake.dir.path().join("dev/vdb"));
    }

    #[tokio::test]
    async fn lost_events_send_the_waiter_back_to_sysfs() {
        let fake = Fake::new();
        assert!(
            fake.block_node("pmem0"),
            "making a block device node needs root (mknod)"
        );
        // Not in sysfs at the first look; it appears while the events that would have
        // announced it are lost.
        let sysfs = fake.sysfs();
        let mut events = Script(VecDeque::from([Box::new(move || {
            std::fs::create_dir_all(sysfs.join("class/block/pmem0")).unwrap();
            Err(UeventError::Overflow)
        }) as Step]));
        let node = fake
            .waiter(Duration::from_secs(30))
            .block_device_with(&BlockQuery::Name("pmem0".into()), &mut events)
            .await
            .unwrap();
        assert_eq!(node, fake.dir.path().join("dev/pmem0"));
    }

    #[tokio::test]
    async fn a_device_that_never_comes_times_out_naming_it() {
        let fake = Fake::new();
        let query = BlockQuery::Name("vdz".into());
        let mut events = Script::events(vec![Ok(block_add("/devices/x/block/vdy", "vdy"))]);
        let err = fake
            .waiter(Duration::from_millis(200))
            .block_device_with(&query, &mut events)
            .await
            .unwrap_err();
        assert!(matches!(err, DeviceError::Timeout { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("vdz") && message.contains("200ms"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_node_that_is_not_a_block_device_is_refused() {
        let fake = Fake::new();
        fake.mkdir("class/block/vdc");
        std::fs::write(fake.dir.path().join("dev/vdc"), "").unwrap();
        let err = fake
            .waiter(Duration::from_secs(1))
            .block_device_with(&BlockQuery::Name("vdc".into()), &mut Script::quiet())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a block device"), "{err}");
        fake.mkdir("class/block/vdd");
        let err = fake
            .waiter(Duration::from_secs(1))
            .block_device_with(&BlockQuery::Name("vdd".into()), &mut Script::quiet())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[tokio::test]
    async fn scsi_disks_are_found_in_sysfs() {
        let fake = Fake::new();
        fake.mkdir("bus/scsi/devices/0:0:1:2/block/sda");
        fake.mkdir("bus/scsi/devices/0:0:1:3/block/sdb");
        assert!(
            fake.block_node("sda"),
            "making a block device node needs root (mknod)"
        );
        let node = fake
            .waiter(Duration::from_secs(1))
            .block_device_with(
                &BlockQuery::Scsi { target: 1, lun: 2 },
                &mut Script::quiet(),
            )
            .await
            .unwrap();
        assert_eq!(node, fake.dir.path().join("dev/sda"));
    }
}

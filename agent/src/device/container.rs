//! A container's devices: `CreateContainer`'s `devices`, handled as Kata's agent does.
//!
//! The host plugs a disk into the VM and lists it in the container's spec
//! (`linux.devices`) under the numbers it has on the host; in the guest the disk has
//! numbers of its own. For each device of the request the agent:
//!
//! 1. finds the disk by its Kata driver ([`BlockDriver`]): `blk` by the PCI path in `id`,
//!    `scsi` by the `TARGET:LUN` in `id`, `mmioblk` and `nvdimm` by the `/dev` name in
//!    `vm_path`, waiting for it up to `agent.hotplug_timeout` ([`DeviceWaiter`]);
//! 2. reads the guest node's type and numbers ([`GuestNumbers`]);
//! 3. rewrites the spec ([`rewrite_spec`]): the `linux.devices` entry whose path is the
//!    device's `container_path` takes the guest's type and numbers (so the container's
//!    node is the guest's disk), every `linux.resources.devices` rule naming the host's
//!    numbers takes the guest's, and a rule allowing the device (`rwm`) is added.
//!
//! VFIO passthrough (`vfio-pci`, `vfio-pci-gk`, `vfio-ap`, `vfio-ap-cold`) and s390x's
//! `blk-ccw` are refused by name: this guest has neither an IOMMU for VFIO nor CCW.

use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Spec};

use super::{BlockDriver, BlockQuery, DeviceError, DeviceWaiter};

/// One entry of `CreateContainer`'s `devices`, as the host sent it (Kata's `Device`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRequest {
    /// Where the device is in the VM: a PCI path (`blk`), a SCSI address (`scsi`).
    pub id: String,
    /// Kata's driver name (`Device.type`).
    pub driver: String,
    /// The device's node in the VM (`mmioblk`, `nvdimm`).
    pub vm_path: String,
    /// The path of the device's `linux.devices` entry in the spec.
    pub container_path: String,
    /// Driver-specific options; none of the block drivers takes any.
    pub options: Vec<String>,
}

/// Why a container's devices could not be given to it.
#[derive(Debug, thiserror::Error)]
pub enum ContainerDeviceError {
    /// A field every device needs is empty.
    #[error("devices[{index}]: {field} is empty")]
    Incomplete {
        /// The device's place in the request.
        index: usize,
        /// The empty field.
        field: &'static str,
    },
    /// A driver this guest has no means for.
    #[error("device {container_path}: type {driver:?} ({what}) is not supported by this guest")]
    Unsupported {
        /// The device's path in the container.
        container_path: String,
        /// The driver asked for.
        driver: String,
        /// What the driver is, in words.
        what: &'static str,
    },
    /// A driver name Kata does not have.
    #[error(
        "device {container_path}: unknown device type {driver:?} (this agent handles blk, mmioblk, scsi and nvdimm)"
    )]
    UnknownDriver {
        /// The device's path in the container.
        container_path: String,
        /// The driver asked for.
        driver: String,
    },
    /// Options were given to a driver that takes none.
    #[error("device {container_path}: type {driver} takes no options, got {options:?}")]
    Options {
        /// The device's path in the container.
        container_path: String,
        /// The driver.
        driver: &'static str,
        /// The options given.
        options: Vec<String>,
    },
    /// The device is named badly, or did not appear.
    #[error("device {container_path}: {source}")]
    Device {
        /// The device's path in the container.
        container_path: String,
        /// What went wrong finding it.
        #[source]
        source: DeviceError,
    },
    /// Two devices for one path in the container.
    #[error("two devices are given for {container_path}")]
    Duplicate {
        /// The path named twice.
        container_path: String,
    },
    /// The spec has no `linux.devices` entry for the device.
    #[error("device {container_path} is not in the spec's linux.devices")]
    NotInSpec {
        /// The device's path in the container.
        container_path: String,
    },
    /// Two devices' spec entries carry the same host numbers: their cgroup rules cannot
    /// be told apart.
    #[error("devices {first} and {second} have the same host numbers in the spec")]
    SameHostNumbers {
        /// The first device's path in the container.
        first: String,
        /// The second one's.
        second: String,
    },
    /// The guest node could not be examined.
    #[error("{path}: {source}")]
    Stat {
        /// The node.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The guest node is neither a block nor a character device.
    #[error("{path} is not a device node")]
    NotANode {
        /// The node.
        path: PathBuf,
    },
}

/// A device of the request, checked: which disk, and where it goes in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDevice {
    /// The path of its `linux.devices` entry.
    pub container_path: String,
    /// The driver it came by.
    pub driver: BlockDriver,
    /// The disk to wait for.
    pub query: BlockQuery,
}

/// Whether a node is a block or a character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `b`.
    Block,
    /// `c`.
    Char,
}

impl NodeKind {
    fn oci(self) -> LinuxDeviceType {
        match self {
            Self::Block => LinuxDeviceType::B,
            Self::Char => LinuxDeviceType::C,
        }
    }
}

/// A device node's type and numbers in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestNumbers {
    /// Block or character device.
    pub kind: NodeKind,
    /// The major number.
    pub major: i64,
    /// The minor number.
    pub minor: i64,
}

impl GuestNumbers {
    /// The type and numbers of the node at `path`.
    pub fn of_node(path: &Path) -> Result<Self, ContainerDeviceError> {
        let stat = nix::sys::stat::stat(path).map_err(|errno| ContainerDeviceError::Stat {
            path: path.to_path_buf(),
            source: errno.into(),
        })?;
        let kind = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFBLK => NodeKind::Block,
            SFlag::S_IFCHR => NodeKind::Char,
            _ => {
                return Err(ContainerDeviceError::NotANode {
                    path: path.to_path_buf(),
                });
            }
        };
        let number = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(Self {
            kind,
            major: number(nix::sys::stat::major(stat.st_rdev)),
            minor: number(nix::sys::stat::minor(stat.st_rdev)),
        })
    }
}

/// A device found in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDevice {
    /// The path of its `linux.devices` entry.
    pub container_path: String,
    /// Its node in the guest (`/dev/vdb`).
    pub node: PathBuf,
    /// The node's type and numbers.
    pub numbers: GuestNumbers,
}

impl ContainerDevice {
    /// Checks one device of the request (`index`: its place, for messages).
    pub fn parse(index: usize, request: &DeviceRequest) -> Result<Self, ContainerDeviceError> {
        let incomplete = |field| ContainerDeviceError::Incomplete { index, field };
        if request.driver.is_empty() {
            return Err(incomplete("type"));
        }
        if request.container_path.is_empty() {
            return Err(incomplete("container_path"));
        }
        let container_path = request.container_path.clone();
        let driver = match BlockDriver::from_name(&request.driver) {
            Some(driver) => driver,
            None => {
                return Err(match unsupported_driver(&request.driver) {
                    Some(what) => ContainerDeviceError::Unsupported {
                        container_path,
                        driver: request.driver.clone(),
                        what,
                    },
                    None => ContainerDeviceError::UnknownDriver {
                        container_path,
                        driver: request.driver.clone(),
                    },
                });
            }
        };
        if !request.options.is_empty() {
            return Err(ContainerDeviceError::Options {
                container_path,
                driver: driver.name(),
                options: request.options.clone(),
            });
        }
        // Where Kata's runtime puts the device's name for each driver: the PCI path or
        // SCSI address in `id`; the node for mmioblk and nvdimm in `vm_path` (for mmioblk
        // in `id` too).
        let (source, field) = match driver {
            BlockDriver::Blk | BlockDriver::Scsi => (&request.id, "id"),
            BlockDriver::MmioBlk | BlockDriver::Nvdimm if request.vm_path.is_empty() => {
                (&request.id, "vm_path")
            }
            BlockDriver::MmioBlk | BlockDriver::Nvdimm => (&request.vm_path, "vm_path"),
        };
        if source.is_empty() {
            return Err(incomplete(field));
        }
        let query = driver
            .query(source)
            .map_err(|source| ContainerDeviceError::Device {
                container_path: container_path.clone(),
                source,
            })?;
        Ok(Self {
            container_path,
            driver,
            query,
        })
    }

    /// Checks every device of the request; a path in the container may be given once.
    pub fn parse_all(requests: &[DeviceRequest]) -> Result<Vec<Self>, ContainerDeviceError> {
        let mut devices: Vec<Self> = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let device = Self::parse(index, request)?;
            if devices
                .iter()
                .any(|d| d.container_path == device.container_path)
            {
                return Err(ContainerDeviceError::Duplicate {
                    container_path: device.container_path,
                });
            }
            devices.push(device);
        }
        Ok(devices)
    }

    /// Waits for the device (up to the waiter's timeout) and reads its numbers.
    pub async fn resolve(
        &self,
        waiter: &DeviceWaiter,
    ) -> Result<ResolvedDevice, ContainerDeviceError> {
        let node = waiter.block_device(&self.query).await.map_err(|source| {
            ContainerDeviceError::Device {
                container_path: self.container_path.clone(),
                source,
            }
        })?;
        let numbers = GuestNumbers::of_node(&node)?;
        tracing::debug!(
            container_path = %self.container_path,
            driver = self.driver.name(),
            node = %node.display(),
            ?numbers,
            "container device found"
        );
        Ok(ResolvedDevice {
            container_path: self.container_path.clone(),
            node,
            numbers,
        })
    }
}

/// Kata's drivers this guest cannot serve, with what they are.
fn unsupported_driver(driver: &str) -> Option<&'static str> {
    match driver {
        "vfio" | "vfio-pci" => Some("VFIO PCI passthrough"),
        "vfio-pci-gk" => Some("a VFIO PCI device for the guest kernel"),
        "vfio-ap" | "vfio-ap-cold" => Some("VFIO AP, s390x crypto passthrough"),
        "blk-ccw" => Some("virtio-blk on s390x's CCW bus"),
        _ => None,
    }
}

/// Checks that every device has its `linux.devices` entry in `spec`, before waiting for
/// any of them.
pub fn check_in_spec(spec: &Spec, devices: &[ContainerDevice]) -> Result<(), ContainerDeviceError> {
    let entries = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.devices().as_ref());
    for device in devices {
        let path = Path::new(&device.container_path);
        if !entries.is_some_and(|e| e.iter().any(|entry| entry.path() == path)) {
            return Err(ContainerDeviceError::NotInSpec {
                container_path: device.container_path.clone(),
            });
        }
    }
    Ok(())
}

/// Puts the devices' guest numbers into `spec`, as Kata's agent does: see the module
/// documentation. Every device must have its `linux.devices` entry.
pub fn rewrite_spec(
    spec: &mut Spec,
    devices: &[ResolvedDevice],
) -> Result<(), ContainerDeviceError> {
    if devices.is_empty() {
        return Ok(());
    }
    let not_in_spec = |d: &ResolvedDevice| ContainerDeviceError::NotInSpec {
        container_path: d.container_path.clone(),
    };
    let Some(mut linux) = spec.linux().clone() else {
        return Err(not_in_spec(&devices[0]));
    };
    let mut entries = linux.devices().clone().unwrap_or_default();
    // (host type, host major, host minor) → the guest's numbers, per device.
    let mut host_to_guest: Vec<((LinuxDeviceType, i64, i64), &ResolvedDevice)> = Vec::new();
    for device in devices {
        let entry = entries
            .iter_mut()
            .find(|e| e.path() == Path::new(&device.container_path))
            .ok_or_else(|| not_in_spec(device))?;
        let host = (entry.typ(), entry.major(), entry.minor());
        if let Some((_, first)) = host_to_guest.iter().find(|(h, _)| *h == host) {
            return Err(ContainerDeviceError::SameHostNumbers {
                first: first.container_path.clone(),
                second: device.container_path.clone(),
            });
        }
        tracing::debug!(
            container_path = %device.container_path,
            host = ?host,
            guest = ?device.numbers,
            "device numbers rewritten"
        );
        entry.set_typ(device.numbers.kind.oci());
        entry.set_major(device.numbers.major);
        entry.set_minor(device.numbers.minor);
        host_to_guest.push((host, device));
    }
    linux.set_devices(Some(entries));

    let mut resources = linux.resources().clone().unwrap_or_default();
    let mut rules = resources.devices().clone().unwrap_or_default();
    for rule in &mut rules {
        let (Some(typ), Some(major), Some(minor)) = (rule.typ(), rule.major(), rule.minor()) else {
            continue;
        };
        if let Some((_, device)) = host_to_guest
            .iter()
            .find(|(host, _)| *host == (typ, major, minor))
        {
            rule.set_typ(Some(device.numbers.kind.oci()));
            rule.set_major(Some(device.numbers.major));
            rule.set_minor(Some(device.numbers.minor));
        }
    }
    for device in devices {
        let mut allow = LinuxDeviceCgroup::default();
        allow.set_allow(true);
        allow.set_typ(Some(device.numbers.kind.oci()));
        allow.set_major(Some(device.numbers.major));
        allow.set_minor(Some(device.numbers.minor));
        allow.set_access(Some("rwm".into()));
        rules.push(allow);
    }
    resources.set_devices(Some(rules));
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxResourcesBuilder,
        SpecBuilder,
    };

    fn request(driver: &str, id: &str, vm_path: &str, container_path: &str) -> DeviceRequest {
        DeviceRequest {
            id: id.into(),
            driver: driver.into(),
            vm_path: vm_path.into(),
            container_path: container_path.into(),
            options: Vec::new(),
        }
    }

    #[test]
    fn each_driver_reads_its_field() {
        let cases = [
            (
                request("blk", "02/01", "/dev/vdz", "/dev/a"),
                BlockQuery::Pci("02/01".parse().unwrap()),
            ),
            (
                request("scsi", "0:3", "", "/dev/b"),
                BlockQuery::Scsi { target: 0, lun: 3 },
            ),
            (
                request("mmioblk", "/dev/vdc", "/dev/vdc", "/dev/c"),
                BlockQuery::Name("vdc".into()),
            ),
            (
                request("mmioblk", "/dev/vdd", "", "/dev/d"),
                BlockQuery::Name("vdd".into()),
            ),
            (
                request("nvdimm", "", "/dev/pmem1", "/dev/e"),
                BlockQuery::Name("pmem1".into()),
            ),
        ];
        for (req, query) in cases {
            let device = ContainerDevice::parse(0, &req).unwrap();
            assert_eq!(device.query, query, "{req:?}");
            assert_eq!(device.container_path, req.container_path);
            assert_eq!(device.driver.name(), req.driver);
        }
    }

    #[test]
    fn bad_devices_say_what_is_wrong() {
        let with_options = DeviceRequest {
            options: vec!["x=1".into()],
            ..request("blk", "02", "", "/dev/a")
        };
        let cases = [
            (request("", "02", "", "/dev/a"), "devices[0]: type is empty"),
            (request("blk", "02", "", ""), "container_path is empty"),
            (request("blk", "", "/dev/vda", "/dev/a"), "id is empty"),
            (request("nvdimm", "", "", "/dev/a"), "vm_path is empty"),
            (
                request("blk", "zz", "", "/dev/a"),
                "invalid PCI path \"zz\"",
            ),
            (request("scsi", "0", "", "/dev/a"), "invalid SCSI address"),
            (request("scsi", "a:b", "", "/dev/a"), "TARGET:LUN"),
            (request("nvdimm", "", "/dev/vda", "/dev/a"), "/dev/pmemN"),
            (request("mmioblk", "vda", "vda", "/dev/a"), "/dev/NAME"),
            (request("mmioblk", "", "/dev/../x", "/dev/a"), "component"),
            (
                request("gpu", "0", "", "/dev/a"),
                "unknown device type \"gpu\"",
            ),
            (with_options, "takes no options"),
        ];
        for (req, needle) in cases {
            let err = ContainerDevice::parse(0, &req).unwrap_err();
            assert!(err.to_string().contains(needle), "{req:?}: {err}");
        }
    }

    #[test]
    fn vfio_and_ccw_are_refused_by_name() {
        for driver in [
            "vfio",
            "vfio-pci",
            "vfio-pci-gk",
            "vfio-ap",
            "vfio-ap-cold",
            "blk-ccw",
        ] {
            let req = request(driver, "0000:01:00.0=02", "", "/dev/vfio/12");
            let err = ContainerDevice::parse(3, &req).unwrap_err();
            assert!(
                matches!(err, ContainerDeviceError::Unsupported { .. }),
                "{err}"
            );
            let message = err.to_string();
            assert!(message.contains(&format!("{driver:?}")), "{message}");
            assert!(message.contains("/dev/vfio/12"), "{message}");
            assert!(message.contains("not supported by this guest"), "{message}");
        }
    }

    #[test]
    fn a_path_is_given_once() {
        let reqs = [
            request("blk", "02", "", "/dev/a"),
            request("scsi", "0:0", "", "/dev/a"),
        ];
        let err = ContainerDevice::parse_all(&reqs).unwrap_err();
        assert!(
            matches!(err, ContainerDeviceError::Duplicate { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("/dev/a"), "{err}");
        assert_eq!(ContainerDevice::parse_all(&reqs[..1]).unwrap().len(), 1);
    }

    fn entry(
        path: &str,
        typ: LinuxDeviceType,
        major: i64,
        minor: i64,
    ) -> oci_spec::runtime::LinuxDevice {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(major)
            .minor(minor)
            .file_mode(0o660u32)
            .build()
            .unwrap()
    }

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
    ) -> LinuxDeviceCgroup {
        let mut rule = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access("rwm")
            .build()
            .unwrap();
        rule.set_major(major);
        rule.set_minor(minor);
        rule
    }

    /// A spec with two host disks (8:0 and 8:16), a character device, and rules for them.
    fn spec() -> Spec {
        let linux = LinuxBuilder::default()
            .devices(vec![
                entry("/dev/xda", LinuxDeviceType::B, 8, 0),
                entry("/dev/xdb", LinuxDeviceType::B, 8, 16),
                entry("/dev/fuse", LinuxDeviceType::C, 10, 229),
            ])
            .resources(
                LinuxResourcesBuilder::default()
                    .devices(vec![
                        rule(false, LinuxDeviceType::A, None, None),
                        rule(true, LinuxDeviceType::B, Some(8), Some(0)),
                        rule(true, LinuxDeviceType::B, Some(8), Some(16)),
                        rule(true, LinuxDeviceType::C, Some(8), Some(0)),
                        rule(true, LinuxDeviceType::B, Some(8), None),
                    ])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        SpecBuilder::default().linux(linux).build().unwrap()
    }

    fn resolved(path: &str, major: i64, minor: i64) -> ResolvedDevice {
        ResolvedDevice {
            container_path: path.into(),
            node: PathBuf::from("/dev/vdx"),
            numbers: GuestNumbers {
                kind: NodeKind::Block,
                major,
                minor,
            },
        }
    }

    #[test]
    fn the_spec_takes_the_guests_numbers() {
        let mut spec = spec();
        rewrite_spec(
            &mut spec,
            &[resolved("/dev/xda", 253, 16), resolved("/dev/xdb", 8, 32)],
        )
        .unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let devices = linux.devices().as_ref().unwrap();
        let numbers: Vec<_> = devices
            .iter()
            .map(|d| {
                (
                    d.path().display().to_string(),
                    d.typ(),
                    d.major(),
                    d.minor(),
                )
            })
            .collect();
        assert_eq!(
            numbers,
            vec![
                ("/dev/xda".into(), LinuxDeviceType::B, 253, 16),
                ("/dev/xdb".into(), LinuxDeviceType::B, 8, 32),
                ("/dev/fuse".into(), LinuxDeviceType::C, 10, 229),
            ]
        );
        assert_eq!(devices[0].file_mode(), Some(0o660), "the rest is kept");
        let rules: Vec<_> = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| (r.allow(), r.typ(), r.major(), r.minor(), r.access().clone()))
            .collect();
        let rwm = Some("rwm".to_string());
        assert_eq!(
            rules,
            vec![
                (false, Some(LinuxDeviceType::A), None, None, rwm.clone()),
                // The host's 8:0 and 8:16 rules now name the guest's disks, once each:
                // 8:16 became 8:32, which no later rule rewrites again.
                (
                    true,
                    Some(LinuxDeviceType::B),
                    Some(253),
                    Some(16),
                    rwm.clone()
                ),
                (
                    true,
                    Some(LinuxDeviceType::B),
                    Some(8),
                    Some(32),
                    rwm.clone()
                ),
                // Another type, or a wildcard, is not the device.
                (
                    true,
                    Some(LinuxDeviceType::C),
                    Some(8),
                    Some(0),
                    rwm.clone()
                ),
                (true, Some(LinuxDeviceType::B), Some(8), None, rwm.clone()),
                // Kata adds an allow rule per device.
                (
                    true,
                    Some(LinuxDeviceType::B),
                    Some(253),
                    Some(16),
                    rwm.clone()
                ),
                (true, Some(LinuxDeviceType::B), Some(8), Some(32), rwm),
            ]
        );
    }

    #[test]
    fn a_char_node_makes_a_char_entry() {
        let mut spec = spec();
        let mut device = resolved("/dev/xda", 10, 200);
        device.numbers.kind = NodeKind::Char;
        rewrite_spec(&mut spec, &[device]).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let entry = &linux.devices().as_ref().unwrap()[0];
        assert_eq!(
            (entry.typ(), entry.major(), entry.minor()),
            (LinuxDeviceType::C, 10, 200)
        );
        let rule = &linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()[1];
        assert_eq!(
            (rule.typ(), rule.major(), rule.minor()),
            (Some(LinuxDeviceType::C), Some(10), Some(200))
        );
    }

    #[test]
    fn a_device_missing_from_the_spec_is_named() {
        let mut spec = spec();
        let before = spec.clone();
        let err = rewrite_spec(
            &mut spec,
            &[resolved("/dev/xda", 253, 0), resolved("/dev/nope", 253, 16)],
        )
        .unwrap_err();
        assert!(
            matches!(err, ContainerDeviceError::NotInSpec { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("/dev/nope"), "{err}");
        assert_eq!(spec, before, "nothing is changed on an error");

        let mut bare = SpecBuilder::default().build().unwrap();
        bare.set_linux(None);
        let err = rewrite_spec(&mut bare, &[resolved("/dev/xda", 253, 0)]).unwrap_err();
        assert!(err.to_string().contains("/dev/xda"), "{err}");
        rewrite_spec(&mut bare, &[]).unwrap();
    }

    #[test]
    fn devices_are_looked_for_in_the_spec_first() {
        let spec = spec();
        let device =
            |path: &str| ContainerDevice::parse(0, &request("blk", "02", "", path)).unwrap();
        check_in_spec(&spec, &[device("/dev/xda"), device("/dev/xdb")]).unwrap();
        let err = check_in_spec(&spec, &[device("/dev/xda"), device("/dev/zz")]).unwrap_err();
        assert!(err.to_string().contains("/dev/zz"), "{err}");
        let bare = SpecBuilder::default().build().unwrap();
        let err = check_in_spec(&bare, &[device("/dev/xda")]).unwrap_err();
        assert!(
            matches!(err, ContainerDeviceError::NotInSpec { .. }),
            "{err}"
        );
    }

    #[test]
    fn two_devices_with_one_host_number_are_refused() {
        let linux = LinuxBuilder::default()
            .devices(vec![
                entry("/dev/a", LinuxDeviceType::B, 8, 0),
                entry("/dev/b", LinuxDeviceType::B, 8, 0),
            ])
            .build()
            .unwrap();
        let mut spec = SpecBuilder::default().linux(linux).build().unwrap();
        let err = rewrite_spec(
            &mut spec,
            &[resolved("/dev/a", 253, 0), resolved("/dev/b", 253, 16)],
        )
        .unwrap_err();
        assert!(
            matches!(err, ContainerDeviceError::SameHostNumbers { .. }),
            "{err}"
        );
    }

    #[test]
    fn a_spec_without_resources_gets_the_allow_rules() {
        let linux = LinuxBuilder::default()
            .devices(vec![entry("/dev/a", LinuxDeviceType::B, 8, 0)])
            .build()
            .unwrap();
        let mut spec = SpecBuilder::default().linux(linux).build().unwrap();
        spec.linux_mut().as_mut().unwrap().set_resources(None);
        rewrite_spec(&mut spec, &[resolved("/dev/a", 253, 0)]).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!((rules[0].major(), rules[0].minor()), (Some(253), Some(0)));
    }

    #[test]
    fn a_nodes_numbers_are_read() {
        let numbers = GuestNumbers::of_node(Path::new("/dev/null")).unwrap();
        assert_eq!(
            numbers,
            GuestNumbers {
                kind: NodeKind::Char,
                major: 1,
                minor: 3
            }
        );
        let err = GuestNumbers::of_node(Path::new("/")).unwrap_err();
        assert!(
            matches!(err, ContainerDeviceError::NotANode { .. }),
            "{err}"
        );
        let err = GuestNumbers::of_node(Path::new("/nonexistent-device")).unwrap_err();
        assert!(matches!(err, ContainerDeviceError::Stat { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_device_that_never_appears_times_out_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/block")).unwrap();
        let waiter = DeviceWaiter::new(
            dir.path().join("sys"),
            dir.path().join("dev"),
            std::time::Duration::from_millis(50),
        );
        let device =
            ContainerDevice::parse(0, &request("nvdimm", "", "/dev/pmem7", "/dev/data")).unwrap();
        let err = device.resolve(&waiter).await.unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(
                err,
                ContainerDeviceError::Device {
                    source: DeviceError::Timeout { .. },
                    ..
                }
            ),
            "{message}"
        );
        assert!(
            message.contains("/dev/data") && message.contains("pmem7"),
            "{message}"
        );
    }
}

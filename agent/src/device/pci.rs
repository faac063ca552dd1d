//! Kata's PCI paths and how they map to sysfs.
//!
//! A PCI path names a device by the slots leading to it from the root bus, not by bus
//! numbers (which the guest kernel assigns): `02/01` is function 0 of slot 1 on the bus
//! behind the bridge at slot 2 of the root bus. Each element is `SS` or `SS.F` in hex
//! (slot 0 to 1f, function 0 to 7). In sysfs the same device is
//! `/sys/devices/pci0000:00/0000:00:02.0/0000:01:01.0`, where `01` is the bus the bridge
//! at `0000:00:02.0` exposes (its `pci_bus/` directory names it).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::DeviceError;

/// The root complex hull guests have (q35 and pc both have one).
pub const ROOT_BUS: &str = "pci0000:00";
/// More bridges than any guest nests.
const MAX_DEPTH: usize = 8;
const SLOT_MAX: u8 = 0x1f;
const FUNCTION_MAX: u8 = 7;

/// One element of a PCI path: a slot and a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotFunction {
    /// The slot (device number) on its bus, 0 to 0x1f.
    pub slot: u8,
    /// The function within the slot, 0 to 7.
    pub function: u8,
}

/// A Kata PCI path, e.g. `02/01`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciPath(Vec<SlotFunction>);

impl FromStr for SlotFunction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (slot, function) = match s.split_once('.') {
            Some((slot, function)) => (slot, Some(function)),
            None => (s, None),
        };
        let hex = |part: &str, max: u8, what: &str| {
            if part.is_empty() || part.len() > 2 {
                return Err(format!("{what} {part:?} is not 1 or 2 hex digits"));
            }
            match u8::from_str_radix(part, 16) {
                Ok(value) if value <= max => Ok(value),
                _ => Err(format!("{what} {part:?} is not a hex number up to {max:x}")),
            }
        };
        Ok(Self {
            slot: hex(slot, SLOT_MAX, "slot")?,
            function: function.map_or(Ok(0), |f| hex(f, FUNCTION_MAX, "function"))?,
        })
    }
}

impl fmt::Display for SlotFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{:x}", self.slot, self.function)
    }
}

impl FromStr for PciPath {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let invalid = |reason: String| DeviceError::InvalidPciPath {
            path: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("it is empty".into()));
        }
        let elements = s
            .split('/')
            .map(|e| e.parse::<SlotFunction>().map_err(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        if elements.len() > MAX_DEPTH {
            return Err(invalid(format!("more than {MAX_DEPTH} elements")));
        }
        Ok(Self(elements))
    }
}

impl fmt::Display for PciPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, element) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{:02x}", element.slot)?;
            if element.function != 0 {
                write!(f, ".{:x}", element.function)?;
            }
        }
        Ok(())
    }
}

impl PciPath {
    /// The device's directory relative to `/sys/devices/pci0000:00`, e.g.
    /// `0000:00:02.0/0000:01:01.0`. Reads the `pci_bus/` directory of every bridge on the
    /// way from `sysfs` (`/sys` in a guest); the bridges must exist already (only the
    /// last device may be hot-plugged).
    pub fn sysfs_relative(&self, sysfs: &Path) -> Result<String, DeviceError> {
        let root = sysfs.join("devices").join(ROOT_BUS);
        let mut bus = String::from("0000:00");
        let mut relative = String::new();
        for (i, element) in self.0.iter().enumerate() {
            if i > 0 {
                relative.push('/');
            }
            relative.push_str(&format!("{bus}:{element}"));
            if i + 1 == self.0.len() {
                break;
            }
            let bus_dir = root.join(&relative).join("pci_bus");
            let entries = std::fs::read_dir(&bus_dir).map_err(|e| DeviceError::PciBridge {
                path: self.to_string(),
                bridge: bus_dir.clone(),
                reason: e.to_string(),
            })?;
            let buses: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            match buses.as_slice() {
                [only] => bus = only.clone(),
                other => {
                    return Err(DeviceError::PciBridge {
                        path: self.to_string(),
                        bridge: bus_dir,
                        reason: format!("expected exactly one bus, found {}", other.len()),
                    });
                }
            }
        }
        Ok(relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kata_pci_paths() {
        let path: PciPath = "02/01".parse().unwrap();
        assert_eq!(
            path.0,
            vec![
                SlotFunction {
                    slot: 2,
                    function: 0
                },
                SlotFunction {
                    slot: 1,
                    function: 0
                }
            ]
        );
        assert_eq!(path.to_string(), "02/01");
        let path: PciPath = "1f.7".parse().unwrap();
        assert_eq!(path.to_string(), "1f.7");
        assert_eq!(path.0[0].to_string(), "1f.7");
    }

    #[test]
    fn bad_pci_paths_say_why() {
        for (input, needle) in [
            ("", "empty"),
            ("20", "slot"),
            ("02/", "slot"),
            ("02.8", "function"),
            ("xyz", "slot"),
            ("/dev/vda", "slot"),
            ("01/01/01/01/01/01/01/01/01", "more than"),
        ] {
            let err = input.parse::<PciPath>().unwrap_err();
            let message = err.to_string();
            assert!(message.contains(needle), "{input:?}: {message}");
            assert!(message.contains(input), "{input:?}: {message}");
        }
    }

    #[test]
    fn sysfs_path_goes_through_the_bridges_bus() {
        let sysfs = tempfile::tempdir().unwrap();
        let bridge = sysfs
            .path()
            .join("devices/pci0000:00/0000:00:02.0/pci_bus/0000:01");
        std::fs::create_dir_all(bridge).unwrap();
        let path: PciPath = "02/01".parse().unwrap();
        assert_eq!(
            path.sysfs_relative(sysfs.path()).unwrap(),
            "0000:00:02.0/0000:01:01.0"
        );
        let path: PciPath = "03.2".parse().unwrap();
        assert_eq!(path.sysfs_relative(sysfs.path()).unwrap(), "0000:00:03.2");
    }

    #[test]
    fn a_missing_bridge_is_named() {
        let sysfs = tempfile::tempdir().unwrap();
        let err = "05/01"
            .parse::<PciPath>()
            .unwrap()
            .sysfs_relative(sysfs.path())
            .unwrap_err();
        assert!(err.to_string().contains("0000:00:05.0"), "{err}");
    }
}

//! Finding a NIC by its PCI path, the way Kata's runtime names hot-plugged devices.
//!
//! A PCI path is the chain of `slot[.function]` (hex) from the root bus to the device,
//! one element per bridge crossed: `02` is the device in slot 2 of bus 0, `02/01` the
//! device in slot 1 behind the bridge in slot 2. Sysfs shows the chain as nested
//! directories under `/sys/devices/pci0000:00/`; each bridge's `pci_bus/` directory names
//! the bus behind it. The network interface appears as `<device>/net/<name>` or, for
//! virtio-net, `<device>/virtioN/net/<name>`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use super::error::NetworkError;

const SLOT_MAX: u8 = 0x1f;
const FUNCTION_MAX: u8 = 7;
/// How often sysfs is looked at while waiting for a hot-plugged NIC.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A device's slot and function on its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotFn {
    pub slot: u8,
    pub function: u8,
}

impl FromStr for SlotFn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (slot, function) = match s.split_once('.') {
            Some((slot, function)) => (slot, Some(function)),
            None => (s, None),
        };
        let hex = |part: &str, what: &str, max: u8| -> Result<u8, String> {
            let digits = !part.is_empty() && part.len() <= 2;
            match u8::from_str_radix(part, 16) {
                Ok(v) if v <= max && digits && part.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(v),
                _ => Err(format!(
                    "{what} {part:?} is not a hex number from 0 to {max:x}"
                )),
            }
        };
        Ok(Self {
            slot: hex(slot, "slot", SLOT_MAX)?,
            function: match function {
                Some(f) => hex(f, "function", FUNCTION_MAX)?,
                None => 0,
            },
        })
    }
}

impl fmt::Display for SlotFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}.{:x}", self.slot, self.function)
    }
}

/// A PCI path from root bus 0000:00, e.g. `02/00`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciPath(Vec<SlotFn>);

impl FromStr for PciPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the PCI path is empty".into());
        }
        s.split('/')
            .map(SlotFn::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
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
    /// The device's directory in sysfs, walking bridge by bridge. `None` while a bridge
    /// on the way is not there (yet).
    pub fn sysfs_device(&self, sysfs: &Path) -> Result<Option<PathBuf>, NetworkError> {
        let mut dir = sysfs.join("devices/pci0000:00");
        let mut bus = String::from("0000:00");
        for (i, element) in self.0.iter().enumerate() {
            dir.push(format!("{bus}:{element}"));
            if !dir.is_dir() {
                return Ok(None);
            }
            if i + 1 < self.0.len() {
                bus = match single_entry(&dir.join("pci_bus"))? {
                    Some(next) => next,
                    None => return Ok(None),
                };
            }
        }
        Ok(Some(dir))
    }

    /// The name of the network interface of the device, if it has one now.
    pub fn interface_name(&self, sysfs: &Path) -> Result<Option<String>, NetworkError> {
        let Some(device) = self.sysfs_device(sysfs)? else {
            return Ok(None);
        };
        if let Some(name) = single_entry(&device.join("net"))? {
            return Ok(Some(name));
        }
        // virtio devices put their function driver one level down: virtio0/net/eth0.
        for entry in read_dir(&device)? {
            if entry.starts_with("virtio")
                && let Some(name) = single_entry(&device.join(&entry).join("net"))?
            {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Waits up to `timeout` for the device's network interface to appear (hot plug) and
    /// returns its name.
    pub async fn wait_for_interface(
        &self,
        sysfs: &Path,
        timeout: Duration,
    ) -> Result<String, NetworkError> {
        let start = Instant::now();
        loop {
            if let Some(name) = self.interface_name(sysfs)? {
                return Ok(name);
            }
            if start.elapsed() >= timeout {
                return Err(NetworkError::NotFound(format!(
                    "no network interface at PCI path {self} after {timeout:?} (looked under {})",
                    sysfs.join("devices/pci0000:00").display()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// The sorted entry names of `dir`; empty when it does not exist.
fn read_dir(dir: &Path) -> Result<Vec<String>, NetworkError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(NetworkError::Sysfs {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetworkError::Sysfs {
            path: dir.to_path_buf(),
            source: e,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The first entry of `dir`, if it exists and has one.
fn single_entry(dir: &Path) -> Result<Option<String>, NetworkError> {
    Ok(read_dir(dir)?.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkdir(root: &Path, rel: &str) {
        std::fs::create_dir_all(root.join(rel)).unwrap();
    }

    #[test]
    fn paths_parse_and_print_like_kata() {
        let path: PciPath = "02/1f.3".parse().unwrap();
        assert_eq!(
            path,
            PciPath(vec![
                SlotFn {
                    slot: 2,
                    function: 0
                },
                SlotFn {
                    slot: 0x1f,
                    function: 3
                }
            ])
        );
        assert_eq!(path.to_string(), "02/1f.3");
        for bad in ["", "/", "02/", "20", "0g", "02.8", "002", "02.", "x/01"] {
            assert!(bad.parse::<PciPath>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_virtio_nic_on_the_root_bus_is_found() {
        let sysfs = tempfile::tempdir().unwrap();
        mkdir(
            sysfs.path(),
            "devices/pci0000:00/0000:00:05.0/virtio2/net/eth0",
        );
        mkdir(sysfs.path(), "devices/pci0000:00/0000:00:05.0/driver");
        let path: PciPath = "05".parse().unwrap();
        assert_eq!(
            path.interface_name(sysfs.path()).unwrap().as_deref(),
            Some("eth0")
        );
        let other: PciPath = "06".parse().unwrap();
        assert_eq!(other.interface_name(sysfs.path()).unwrap(), None);
    }

    #[test]
    fn a_nic_behind_a_bridge_is_found_through_pci_bus() {
        let sysfs = tempfile::tempdir().unwrap();
        mkdir(
            sysfs.path(),
            "devices/pci0000:00/0000:00:02.0/pci_bus/0000:01",
        );
        mkdir(
            sysfs.path(),
            "devices/pci0000:00/0000:00:02.0/0000:01:00.0/net/enp1s0",
        );
        let path: PciPath = "02/00".parse().unwrap();
        assert_eq!(
            path.interface_name(sysfs.path()).unwrap().as_deref(),
            Some("enp1s0")
        );
    }

    #[tokio::test]
    async fn waiting_gives_up_with_not_found_naming_the_path() {
        let sysfs = tempfile::tempdir().unwrap();
        let path: PciPath = "03".parse().unwrap();
        let err = path
            .wait_for_interface(sysfs.path(), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::NotFound(_)), "{err}");
        assert!(err.to_string().contains("PCI path 03"), "{err}");
    }

    #[tokio::test]
    async fn waiting_sees_a_hot_plugged_nic() {
        let sysfs = tempfile::tempdir().unwrap();
        let root = sysfs.path().to_path_buf();
        let plug = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            mkdir(&root, "devices/pci0000:00/0000:00:03.0/virtio1/net/eth1");
        });
        let path: PciPath = "03".parse().unwrap();
        let name = path
            .wait_for_interface(sysfs.path(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(name, "eth1");
        plug.await.unwrap();
    }
}

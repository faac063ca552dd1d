//! Finding a NIC by its PCI path, the way Kata's runtime names hot-plugged devices.
//!
//! The path itself ([`PciPath`]: parsing, and the walk through the bridges' buses in
//! sysfs) is the device layer's; this module adds what a NIC needs: its interface appears
//! as `<device>/net/<name>` or, for virtio-net, `<device>/virtioN/net/<name>`, and a
//! hot-plugged one is waited for.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::NetworkError;
use crate::device::pci::ROOT_BUS;
use crate::device::{DeviceError, PciPath};

/// How often sysfs is looked at while waiting for a hot-plugged NIC.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The device's directory in sysfs. `None` while it, or a bridge on the way, is not
/// there (yet).
pub fn sysfs_device(path: &PciPath, sysfs: &Path) -> Result<Option<PathBuf>, NetworkError> {
    match path.sysfs_relative(sysfs) {
        Ok(relative) => {
            let dir = sysfs.join("devices").join(ROOT_BUS).join(relative);
            Ok(dir.is_dir().then_some(dir))
        }
        Err(DeviceError::PciBridge { .. }) => Ok(None),
        Err(e) => Err(NetworkError::NotFound(e.to_string())),
    }
}

/// The name of the device's network interface, if it has one now.
pub fn interface_name(path: &PciPath, sysfs: &Path) -> Result<Option<String>, NetworkError> {
    let Some(device) = sysfs_device(path, sysfs)? else {
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
    path: &PciPath,
    sysfs: &Path,
    timeout: Duration,
) -> Result<String, NetworkError> {
    let start = Instant::now();
    loop {
        if let Some(name) = interface_name(path, sysfs)? {
            return Ok(name);
        }
        if start.elapsed() >= timeout {
            return Err(NetworkError::NotFound(format!(
                "no network interface at PCI path {path} after {timeout:?} (looked under {})",
                sysfs.join("devices").join(ROOT_BUS).display()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
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
    fn a_virtio_nic_on_the_root_bus_is_found() {
        let sysfs = tempfile::tempdir().unwrap();
        mkdir(
            sysfs.path(),
            "devices/pci0000:00/0000:00:05.0/virtio2/net/eth0",
        );
        mkdir(sysfs.path(), "devices/pci0000:00/0000:00:05.0/driver");
        let path: PciPath = "05".parse().unwrap();
        assert_eq!(
            interface_name(&path, sysfs.path()).unwrap().as_deref(),
            Some("eth0")
        );
        let other: PciPath = "06".parse().unwrap();
        assert_eq!(interface_name(&other, sysfs.path()).unwrap(), None);
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
            interface_name(&path, sysfs.path()).unwrap().as_deref(),
            Some("enp1s0")
        );
    }

    #[tokio::test]
    async fn waiting_gives_up_with_not_found_naming_the_path() {
        let sysfs = tempfile::tempdir().unwrap();
        let path: PciPath = "03".parse().unwrap();
        let err = wait_for_interface(&path, sysfs.path(), Duration::from_millis(50))
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
        let name = wait_for_interface(&path, sysfs.path(), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(name, "eth1");
        plug.await.unwrap();
    }
}

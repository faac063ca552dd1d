//! Swap the host gives the guest: `AddSwap` (a virtio-blk disk found by its Kata PCI
//! path) and `AddSwapPath` (a device node or a swap file by its guest path).
//!
//! The host prepares the swap area (Kata's runtime creates the file or disk and runs
//! `mkswap` on it); the agent only finds it and turns it on with `swapon(2)`, with the
//! kernel's default priority, as Kata's agent does. The kernel checks the area's header
//! and, for a file, that it has no holes. `/proc/swaps` lists what is on.
//!
//! `AddSwapPath` takes either `/dev/NAME`, a block device (Kata's runtime-rs passes a
//! disk's guest path when it has no PCI path, e.g. on virtio-mmio), or a regular file
//! beneath the agent's directory, e.g. on a volume the host attached; the file's path is
//! resolved with [`crate::fs::confine`], so no symlink carries it elsewhere, and the
//! kernel is handed exactly the file that was checked.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::SFlag;

use crate::device::{BlockQuery, DeviceError, DeviceWaiter, PciPath};
use crate::fs::{ConfineError, ConfinedRoot};

/// Why swap could not be added.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// The request names no device or file this agent accepts.
    #[error("swap {path:?}: {reason}")]
    Invalid {
        /// What the request named.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The disk at the PCI path could not be found.
    #[error("swap disk: {0}")]
    Device(#[from] DeviceError),
    /// The swap file's path escapes the agent's directory or does not exist.
    #[error("swap file: {0}")]
    Confine(#[from] ConfineError),
    /// `swapon(2)` refused it.
    #[error("swapon {path}: {errno}{hint}")]
    Swapon {
        /// The device or file.
        path: PathBuf,
        /// The error.
        errno: Errno,
        /// What the error usually means.
        hint: &'static str,
    },
    /// The blocking worker went away.
    #[error("swapon {path}: interrupted: {reason}")]
    Interrupted {
        /// The device or file.
        path: PathBuf,
        /// What became of the worker.
        reason: String,
    },
}

/// Kata's `AddSwapRequest.PCIPath`: the slot of each bridge on the way and of the disk
/// (function 0 each), as `02/01`.
pub fn pci_path(slots: &[u32]) -> Result<PciPath, SwapError> {
    if slots.is_empty() {
        return Err(SwapError::Invalid {
            path: String::new(),
            reason: "the PCI path is empty".into(),
        });
    }
    let text = slots
        .iter()
        .map(|slot| format!("{slot:02x}"))
        .collect::<Vec<_>>()
        .join("/");
    Ok(text.parse()?)
}

/// `AddSwap`: waits (up to the hot-plug timeout) for the virtio-blk disk at `slots` and
/// turns swap on there. Returns the device node.
pub async fn add_swap_disk(devices: &DeviceWaiter, slots: &[u32]) -> Result<PathBuf, SwapError> {
    let path = pci_path(slots)?;
    let device = devices.block_device(&BlockQuery::Pci(path)).await?;
    let node = device.clone();
    blocking(&device, move || swapon(&node)).await?;
    Ok(device)
}

/// `AddSwapPath`: `/dev/NAME` (a block device) or a regular file beneath `root`. Returns
/// what the kernel now swaps on.
pub async fn add_swap_path(root: &ConfinedRoot, path: &str) -> Result<PathBuf, SwapError> {
    let invalid = |reason: &str| SwapError::Invalid {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.as_bytes().contains(&0) {
        return Err(invalid("the path contains a NUL byte"));
    }
    if path.starts_with("/dev/") {
        let BlockQuery::Name(name) = BlockQuery::from_dev_path(path)? else {
            return Err(invalid("expected /dev/NAME"));
        };
        let node = Path::new("/dev").join(name);
        let stat = nix::sys::stat::stat(&node).map_err(|errno| match errno {
            Errno::ENOENT => SwapError::Confine(ConfineError::NotFound { path: node.clone() }),
            errno => SwapError::Swapon {
                path: node.clone(),
                errno,
                hint: "",
            },
        })?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFBLK {
            return Err(invalid("not a block device"));
        }
        let swap = node.clone();
        blocking(&node, move || swapon(&swap)).await?;
        return Ok(node);
    }
    root.relative_beneath(Path::new(path))
        .map_err(|e| match e {
            ConfineError::OutsideRoot { root, .. } => invalid(&format!(
                "a swap file must be beneath {}, or the path a /dev/NAME block device",
                root.display()
            )),
            other => SwapError::Confine(other),
        })?;
    let file = root.resolve(Path::new(path))?;
    let stat = file.stat()?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(invalid("not a regular file"));
    }
    let name = file.path().to_path_buf();
    // The kernel opens exactly the file checked, through its fd's /proc name.
    let proc_path = file.proc_path();
    blocking(&name, move || {
        // Keeps the fd (and so its /proc name) alive during the call.
        let _held = &file;
        swapon(&proc_path).map_err(|e| match e {
            SwapError::Swapon { errno, hint, .. } => SwapError::Swapon {
                path: file.path().to_path_buf(),
                errno,
                hint,
            },
            other => other,
        })
    })
    .await?;
    Ok(name)
}

fn swapon(path: &Path) -> Result<(), SwapError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| SwapError::Invalid {
        path: path.display().to_string(),
        reason: "the path contains a NUL byte".into(),
    })?;
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call; swapon(2)
    // only reads it. Flags 0: the kernel's default priority, no discard.
    let result = unsafe { libc::swapon(c_path.as_ptr(), 0) };
    if result != 0 {
        let errno = Errno::last();
        return Err(SwapError::Swapon {
            path: path.to_path_buf(),
            errno,
            hint: match errno {
                Errno::EINVAL => {
                    " (no swap signature: run mkswap on it; a swap file must have no holes \
                     and lie on a file system that supports swap files)"
                }
                Errno::EBUSY => " (already in use, as swap or mounted)",
                Errno::EPERM => " (the kernel's limit of swap areas is reached)",
                _ => "",
            },
        });
    }
    tracing::info!(path = %path.display(), "swap on");
    Ok(())
}

async fn blocking(
    path: &Path,
    work: impl FnOnce() -> Result<(), SwapError> + Send + 'static,
) -> Result<(), SwapError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SwapError::Interrupted {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Scope;

    #[test]
    fn pci_paths_are_slots_from_the_root_bus() {
        assert_eq!(pci_path(&[0x10]).unwrap().to_string(), "10");
        assert_eq!(pci_path(&[2, 1]).unwrap().to_string(), "02/01");
        for bad in [&[][..], &[0x20], &[300], &[1; 9]] {
            assert!(pci_path(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn hostile_swap_paths_are_refused_without_swapon() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("escape")).unwrap();
        std::fs::create_dir(dir.path().join("subdir")).unwrap();
        let root = ConfinedRoot::open(dir.path(), Scope::Beneath).unwrap();
        let base = dir.path().display().to_string();
        for (path, expect) in [
            ("/etc/passwd".to_string(), "must be beneath"),
            (format!("{base}/../x"), "'..'"),
            (format!("{base}/escape"), "resolves outside"),
            (format!("{base}/missing"), "no such file"),
            (format!("{base}/subdir"), "not a regular file"),
            ("/dev/../etc/passwd".to_string(), "invalid device name"),
            ("/dev/null".to_string(), "not a block device"),
            ("/dev/hull-no-such-disk".to_string(), "no such file"),
            ("a\0b".to_string(), "NUL"),
        ] {
            let err = add_swap_path(&root, &path).await.unwrap_err();
            assert!(err.to_string().contains(expect), "{path:?}: {err}");
        }
    }
}

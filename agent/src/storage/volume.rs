//! Volumes the host asks about by their guest path: `GetVolumeStats` (bytes and inodes
//! of the file system mounted there) and `ResizeVolume` (grow an ext4 volume online
//! after the host grew its disk).
//!
//! A volume path is the mount point of a volume beneath the agent's directory. It is
//! resolved with [`crate::fs::confine`] (`..`, absolute escapes and symlinks leading
//! outside are refused) and must be a mount point of the agent's namespace: the root
//! file system or a directory inside a volume is not a volume. Everything is then done
//! on the resolved fd.
//!
//! Growing is what `resize2fs` does on a mounted ext4: the `EXT4_IOC_RESIZE_FS` ioctl
//! with the new block count. The kernel grows the file system into the disk's new
//! space; shrinking a mounted ext4 is impossible and refused.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, Statvfs, fstatvfs};

use crate::fs::{ConfinedPath, ConfinedRoot};

/// ext2/3/4's magic number in `statfs.f_type`.
const EXT4_SUPER_MAGIC: i64 = 0xEF53;

nix::ioctl_write_ptr!(
    /// `EXT4_IOC_RESIZE_FS`, `_IOW('f', 16, __u64)`: grows a mounted ext4 to the given
    /// number of blocks.
    ext4_resize_fs,
    b'f',
    16,
    u64
);

/// Why a volume could not be examined or resized.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The path exists but nothing is mounted there.
    #[error("{path}: no volume is mounted there (not a mount point)")]
    NotMounted {
        /// The resolved path.
        path: PathBuf,
    },
    /// The request's size is not one a volume can have.
    #[error("{path}: cannot resize to {size} bytes: {reason}")]
    InvalidSize {
        /// The volume.
        path: PathBuf,
        /// The size asked for.
        size: u64,
        /// Why not.
        reason: &'static str,
    },
    /// The volume's file system cannot be grown online by this agent.
    #[error(
        "{path}: online resizing supports ext4 only; this volume is file system type {fs_type:#x}"
    )]
    UnsupportedFileSystem {
        /// The volume.
        path: PathBuf,
        /// `statfs.f_type`.
        fs_type: i64,
    },
    /// The volume is mounted read-only.
    #[error("{path}: the volume is mounted read-only; it cannot be resized")]
    ReadOnly {
        /// The volume.
        path: PathBuf,
    },
    /// The disk is smaller than the size asked for: the host has not grown it (yet).
    #[error(
        "{path}: cannot grow to {size} bytes: its disk {device} has {device_bytes} bytes \
         (grow the disk first)"
    )]
    DiskTooSmall {
        /// The volume.
        path: PathBuf,
        /// The size asked for.
        size: u64,
        /// The disk, as `MAJOR:MINOR`.
        device: String,
        /// The disk's size.
        device_bytes: u64,
    },
    /// The volume is not on a block device (e.g. tmpfs, virtio-fs).
    #[error("{path}: the volume is not on a block device ({device}); it cannot be resized")]
    NoDisk {
        /// The volume.
        path: PathBuf,
        /// The device number, as `MAJOR:MINOR`.
        device: String,
    },
    /// The kernel refused the resize.
    #[error("{path}: growing to {blocks} blocks: {errno}{hint}")]
    Resize {
        /// The volume.
        path: PathBuf,
        /// The new block count asked for.
        blocks: u64,
        /// The ioctl's error.
        errno: Errno,
        /// What the error usually means.
        hint: &'static str,
    },
    /// A system call or a file that should always work failed.
    #[error("{path}: {operation}: {errno}")]
    Os {
        /// The file worked on.
        path: PathBuf,
        /// The step, e.g. `statfs`.
        operation: &'static str,
        /// Its error.
        errno: Errno,
    },
}

/// Use of one resource of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// All there is.
    pub total: u64,
    /// In use.
    pub used: u64,
    /// What an unprivileged user can still take.
    pub available: u64,
}

/// A volume's figures, as `df` and `df -i` show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeStats {
    /// Bytes: total size, used (total − free), available to unprivileged users.
    pub bytes: Usage,
    /// Inodes: total, used (total − free), free.
    pub inodes: Usage,
}

impl VolumeStats {
    /// The figures of a `statvfs` answer. Bytes count in fragments (`f_frsize`), the
    /// unit of `f_blocks`; used is total minus free (reserved blocks count as used for
    /// nobody, as `df` does).
    pub fn from_statvfs(stat: &Statvfs) -> Self {
        Self::from_counts(
            stat.fragment_size(),
            stat.blocks(),
            stat.blocks_free(),
            stat.blocks_available(),
            stat.files(),
            stat.files_free(),
        )
    }

    fn from_counts(
        unit: u64,
        blocks: u64,
        blocks_free: u64,
        blocks_available: u64,
        files: u64,
        files_free: u64,
    ) -> Self {
        Self {
            bytes: Usage {
                total: blocks.saturating_mul(unit),
                used: blocks.saturating_sub(blocks_free).saturating_mul(unit),
                available: blocks_available.saturating_mul(unit),
            },
            inodes: Usage {
                total: files,
                used: files.saturating_sub(files_free),
                available: files_free,
            },
        }
    }
}

/// A volume after [`resize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resized {
    /// The file system's size before, bytes (`f_blocks` × `f_frsize`).
    pub before: u64,
    /// Its size after.
    pub after: u64,
}

/// The volume mounted at `path` beneath `root`, resolved.
pub fn open_volume(root: &ConfinedRoot, path: &Path) -> Result<ConfinedPath, super::StorageError> {
    root.relative_beneath(path)?;
    let volume = root.resolve(path)?;
    let mounted = crate::mount::is_mount_point(volume.path()).map_err(|e| VolumeError::Os {
        path: PathBuf::from(hull_common::mountinfo::PROC_SELF_MOUNTINFO),
        operation: "read",
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    if !mounted {
        return Err(VolumeError::NotMounted {
            path: volume.path().to_path_buf(),
        }
        .into());
    }
    Ok(volume)
}

/// `GetVolumeStats`: the figures of the volume mounted at `path` beneath `root`.
pub fn stats(root: &ConfinedRoot, path: &Path) -> Result<VolumeStats, super::StorageError> {
    let volume = open_volume(root, path)?;
    Ok(VolumeStats::from_statvfs(&statvfs(&volume)?))
}

fn statvfs(volume: &ConfinedPath) -> Result<Statvfs, VolumeError> {
    fstatvfs(volume.as_fd()).map_err(|errno| VolumeError::Os {
        path: volume.path().to_path_buf(),
        operation: "statvfs",
        errno,
    })
}

/// `ResizeVolume`: grows the ext4 volume mounted at `path` beneath `root` to `size`
/// bytes (rounded down to whole blocks), which its disk must already have.
pub fn resize(root: &ConfinedRoot, path: &Path, size: u64) -> Result<Resized, super::StorageError> {
    let volume = open_volume(root, path)?;
    let name = volume.path().to_path_buf();
    let os = |operation, errno| VolumeError::Os {
        path: name.clone(),
        operation,
        errno,
    };
    if size == 0 {
        return Err(VolumeError::InvalidSize {
            path: name,
            size,
            reason: "the size must be the volume's new size in bytes, not 0",
        }
        .into());
    }
    let fs = nix::sys::statfs::fstatfs(volume.as_fd()).map_err(|e| os("statfs", e))?;
    let fs_type = fs.filesystem_type().0 as i64;
    if fs_type != EXT4_SUPER_MAGIC {
        return Err(VolumeError::UnsupportedFileSystem {
            path: name,
            fs_type,
        }
        .into());
    }
    let before = statvfs(&volume)?;
    if before.flags().contains(FsFlags::ST_RDONLY) {
        return Err(VolumeError::ReadOnly { path: name }.into());
    }
    let block_size = before.fragment_size();
    let blocks = size / block_size.max(1);
    if blocks == 0 {
        return Err(VolumeError::InvalidSize {
            path: name,
            size,
            reason: "smaller than one block",
        }
        .into());
    }
    let stat = volume.stat()?;
    let device = format!(
        "{}:{}",
        nix::sys::stat::major(stat.st_dev),
        nix::sys::stat::minor(stat.st_dev)
    );
    let device_bytes =
        disk_bytes(Path::new("/sys"), &device).ok_or_else(|| VolumeError::NoDisk {
            path: name.clone(),
            device: device.clone(),
        })?;
    if device_bytes < blocks.saturating_mul(block_size) {
        return Err(VolumeError::DiskTooSmall {
            path: name,
            size,
            device,
            device_bytes,
        }
        .into());
    }
    // The ioctl wants a file opened on the file system, not an O_PATH fd.
    let dir: OwnedFd = open(
        &volume.proc_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| os("open", e))?;
    // SAFETY: `dir` is an open fd for the duration of the call and `blocks` a live u64
    // the kernel only reads.
    unsafe { ext4_resize_fs(dir.as_raw_fd(), &blocks) }.map_err(|errno| VolumeError::Resize {
        path: name.clone(),
        blocks,
        errno,
        hint: match errno {
            Errno::EINVAL => {
                " (a mounted ext4 cannot shrink; the size must not be below the current one)"
            }
            Errno::EROFS => " (the volume is read-only)",
            Errno::EOPNOTSUPP => " (this ext4 cannot be resized online)",
            _ => "",
        },
    })?;
    let after = statvfs(&volume)?;
    let resized = Resized {
        before: before.blocks().saturating_mul(block_size),
        after: after.blocks().saturating_mul(after.fragment_size()),
    };
    tracing::info!(volume = %name.display(), blocks, before = resized.before, after = resized.after, "volume resized");
    Ok(resized)
}

/// The size in bytes of the block device `MAJOR:MINOR`, from `sysfs`; `None` when it is
/// not a block device.
fn disk_bytes(sysfs: &Path, device: &str) -> Option<u64> {
    let sectors =
        std::fs::read_to_string(sysfs.join("dev/block").join(device).join("size")).ok()?;
    sectors.trim().parse::<u64>().ok()?.checked_mul(512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Scope;
    use crate::storage::StorageError;

    #[test]
    fn figures_follow_df() {
        // 4 KiB fragments, 1000 blocks, 300 free of which 250 available to users.
        let stats = VolumeStats::from_counts(4096, 1000, 300, 250, 64, 60);
        assert_eq!(
            stats.bytes,
            Usage {
                total: 4_096_000,
                used: 700 * 4096,
                available: 250 * 4096,
            }
        );
        assert_eq!(
            stats.inodes,
            Usage {
                total: 64,
                used: 4,
                available: 60,
            }
        );
        // Nonsense from a file system never underflows.
        let odd = VolumeStats::from_counts(4096, 10, 20, 30, 1, 2);
        assert_eq!(odd.bytes.used, 0);
        assert_eq!(odd.inodes.used, 0);
    }

    #[test]
    fn disk_sizes_come_from_sysfs_sectors() {
        let sysfs = tempfile::tempdir().unwrap();
        let dev = sysfs.path().join("dev/block/254:16");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("size"), "2048\n").unwrap();
        assert_eq!(disk_bytes(sysfs.path(), "254:16"), Some(1024 * 1024));
        assert_eq!(disk_bytes(sysfs.path(), "0:42"), None);
    }

    fn root() -> (tempfile::TempDir, ConfinedRoot) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plain")).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("escape")).unwrap();
        let root = ConfinedRoot::open(dir.path(), Scope::Beneath).unwrap();
        (dir, root)
    }

    #[test]
    fn hostile_and_missing_paths_are_refused_before_anything_is_read() {
        let (dir, root) = root();
        let base = dir.path().display().to_string();
        for (path, expect) in [
            ("/etc".to_string(), "must be under"),
            (format!("{base}/../etc"), "'..'"),
            (format!("{base}/escape/etc"), "resolves outside"),
            (base.clone(), "not the directory itself"),
            (format!("{base}/missing"), "no such file"),
        ] {
            let err = stats(&root, Path::new(&path)).unwrap_err();
            assert!(err.to_string().contains(expect), "{path}: {err}");
            let err = resize(&root, Path::new(&path), 1 << 30).unwrap_err();
            assert!(err.to_string().contains(expect), "{path}: {err}");
        }
    }

    #[test]
    fn a_directory_that_is_no_mount_point_is_no_volume() {
        let (dir, root) = root();
        let plain = dir.path().join("plain");
        let err = stats(&root, &plain).unwrap_err();
        assert!(
            matches!(err, StorageError::Volume(VolumeError::NotMounted { .. })),
            "{err}"
        );
        let err = resize(&root, &plain, 1 << 30).unwrap_err();
        assert!(
            matches!(err, StorageError::Volume(VolumeError::NotMounted { .. })),
            "{err}"
        );
    }
}

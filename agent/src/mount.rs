//! `mount(2)` and `umount2(2)` on confined paths. Mount options are parsed by
//! [`hull_container::mount_options`], the one parser for storages and spec mounts alike.
//!
//! Targets are given as a [`ConfinedRoot`] and a path beneath it, never as a bare string:
//! the target is resolved with [`ConfinedRoot::resolve`] and mounted on through its
//! `/proc/self/fd/N` name, so the directory that was checked is the one mounted on.
//! An fd taken before a mount keeps naming the directory underneath it; whatever must
//! act on the new mount (a read-only remount, a propagation change, ownership) uses the
//! fresh [`ConfinedPath`] that [`mount_at`] returns.
//!
//! Unmounting is lazy (`MNT_DETACH`) on a freshly resolved fd: the mount leaves the
//! namespace at once, race-free; a process still using it keeps it alive until it lets go.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::fs::responsive::{ChildOutcome, in_child_within};
use crate::fs::{ConfineError, ConfinedPath, ConfinedRoot};
use hull_container::process::ExitStatus;
// The one parser of mount options, shared with the container layer's spec mounts;
// [`mount_at`] takes what it returns.
pub use hull_container::mount_options::{MountOptionError, MountOptions};

/// Why a mount or unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A mount option the agent refuses.
    #[error("mount option {option:?}: {reason}")]
    InvalidOption {
        /// The option as given.
        option: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The target could not be resolved inside its root.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// `mount(2)` failed.
    #[error("mounting {what} ({fstype}) on {target}: {errno}")]
    Mount {
        /// The source: a device, a tag, or the bind source's path.
        what: String,
        /// The file system type; empty for a bind mount.
        fstype: String,
        /// The mount point, as resolved beneath its root.
        target: PathBuf,
        /// `mount(2)`'s error.
        errno: Errno,
    },
    /// `umount2(2)` failed.
    #[error("unmounting {target}: {errno}")]
    Unmount {
        /// The mount point, as resolved beneath its root.
        target: PathBuf,
        /// `umount2(2)`'s error.
        errno: Errno,
    },
    /// `umount2(2)`, made by a child process, had not returned when its time was up (a
    /// virtio-fs share whose virtiofsd is gone, or one that stopped answering).
    #[error("unmounting {target}: no answer within {timeout:?} (left to a child process)")]
    UnmountUnanswered {
        /// The mount point, as resolved beneath its root.
        target: PathBuf,
        /// How long the unmount was given.
        timeout: Duration,
    },
    /// Nothing is mounted there.
    #[error("{target}: not a mount point")]
    NotMounted {
        /// The path, as resolved beneath its root.
        target: PathBuf,
    },
}

impl From<MountOptionError> for MountError {
    fn from(error: MountOptionError) -> Self {
        Self::InvalidOption {
            option: error.option,
            reason: error.reason,
        }
    }
}

/// Flags a bind mount ignores on creation and takes only on a remount.
const BIND_REMOUNT_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// What to mount: a source string (a device, a tag, `tmpfs`) or a confined path (bind
/// sources, which are then given to the kernel by fd).
#[derive(Debug, Clone, Copy)]
pub enum MountSource<'a> {
    /// A source the kernel interprets for the file system: a device node, a virtio-fs
    /// tag, `tmpfs`.
    Name(&'a str),
    /// A file or directory already resolved inside its root, given to the kernel by fd
    /// (bind mounts).
    Path(&'a ConfinedPath),
}

impl MountSource<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Name(name) => (*name).to_string(),
            Self::Path(path) => path.path().display().to_string(),
        }
    }
}

/// Mounts `source` on the existing `target` beneath `root`, and returns the new mount's
/// root. Bind mounts get their flags (`ro`, `nosuid`, ...) through the remount the
/// kernel requires for them; propagation options are applied last, in order.
pub fn mount_at(
    root: &ConfinedRoot,
    target: &Path,
    source: MountSource<'_>,
    fstype: &str,
    options: &MountOptions,
) -> Result<ConfinedPath, MountError> {
    let before = root.resolve(target)?;
    let target_name = before.path().to_path_buf();
    let mount_error = |errno| MountError::Mount {
        what: source.describe(),
        fstype: fstype.to_string(),
        target: target_name.clone(),
        errno,
    };
    let data = options.data_string();
    let source_path = match source {
        MountSource::Name(name) => PathBuf::from(name),
        MountSource::Path(path) => path.proc_path(),
    };
    let bind = options.flags.contains(MsFlags::MS_BIND);
    let fstype = (!fstype.is_empty() && !bind).then_some(fstype);
    nix::mount::mount(
        Some(&source_path),
        &before.proc_path(),
        fstype,
        options.flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
    .map_err(mount_error)?;
    // The fd taken before still names the directory underneath; resolve the new mount.
    let mounted = root.resolve(target)?;
    let remount_flags = options.flags & BIND_REMOUNT_FLAGS;
    if bind && !remount_flags.is_empty() {
        nix::mount::mount(
            None::<&str>,
            &mounted.proc_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | remount_flags,
            None::<&str>,
        )
        .map_err(mount_error)?;
    }
    for &propagation in &options.propagation {
        nix::mount::mount(
            None::<&str>,
            &mounted.proc_path(),
            None::<&str>,
            propagation,
            None::<&str>,
        )
        .map_err(mount_error)?;
    }
    Ok(mounted)
}

/// Bind-mounts `source` on `target` beneath `root` (recursively with `recursive`),
/// read-only with `read_only`.
pub fn bind_mount(
    root: &ConfinedRoot,
    target: &Path,
    source: &ConfinedPath,
    recursive: bool,
    read_only: bool,
) -> Result<ConfinedPath, MountError> {
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    let options = MountOptions {
        flags,
        ..Default::default()
    };
    mount_at(root, target, MountSource::Path(source), "", &options)
}

/// Unmounts whatever is mounted on `target` beneath `root` (the top mount if several
/// are stacked), lazily. [`MountError::NotMounted`] when `target` is not a mount point.
pub fn unmount(root: &ConfinedRoot, target: &Path) -> Result<(), MountError> {
    let mounted = root.resolve(target)?;
    unmounted(&mounted, detach(&mounted))
}

/// `umount2(MNT_DETACH)` of the mount on `mounted`, here.
fn detach(mounted: &ConfinedPath) -> Result<(), Errno> {
    nix::mount::umount2(&mounted.proc_path(), MntFlags::MNT_DETACH)
}

/// What `umount2(2)` on `mounted` answered, as an unmount's result.
fn unmounted(mounted: &ConfinedPath, answer: Result<(), Errno>) -> Result<(), MountError> {
    match answer {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(MountError::NotMounted {
            target: mounted.path().to_path_buf(),
        }),
        Err(errno) => Err(MountError::Unmount {
            target: mounted.path().to_path_buf(),
            errno,
        }),
    }
}

/// [`unmount`], made by a child process that is given `timeout`: for mounts whose file
/// system may not answer (virtio-fs). Tearing down a FUSE mount waits for its server
/// (virtio-fs drains its queues and sends `FUSE_DESTROY`); a thread waiting for a server
/// that never answers cannot be interrupted, and a process with such a thread can never
/// exit. A child that does not finish is left behind with
/// [`MountError::UnmountUnanswered`]. Where no child can be started, the unmount is made
/// here.
pub async fn unmount_within(
    root: &ConfinedRoot,
    target: &Path,
    timeout: Duration,
) -> Result<(), MountError> {
    let mounted = root.resolve(target)?;
    let Ok(proc_path) = CString::new(mounted.proc_path().as_os_str().as_bytes()) else {
        // A /proc/self/fd/N name holds no NUL byte.
        return unmounted(&mounted, detach(&mounted));
    };
    let detach_in_child = || {
        // SAFETY: `proc_path` is NUL-terminated.
        if unsafe { libc::umount2(proc_path.as_ptr(), libc::MNT_DETACH) } == 0 {
            0
        } else {
            Errno::last_raw()
        }
    };
    // SAFETY: the child calls only umount2(2) on `proc_path`, prepared before the fork,
    // and reads errno; it allocates nothing and takes no lock. The child inherits the fd
    // behind `proc_path`, so /proc/self/fd/N names the same directory in it.
    let outcome = unsafe { in_child_within(timeout, detach_in_child) }.await;
    match outcome {
        ChildOutcome::Ended(ExitStatus::Exited(0)) => Ok(()),
        ChildOutcome::Ended(ExitStatus::Exited(code)) => {
            unmounted(&mounted, Err(Errno::from_raw(code)))
        }
        // Nothing but the reaper's own signal can end it: reported as interrupted.
        ChildOutcome::Ended(ExitStatus::Signaled(_)) => unmounted(&mounted, Err(Errno::EINTR)),
        ChildOutcome::Silent => Err(MountError::UnmountUnanswered {
            target: mounted.path().to_path_buf(),
            timeout,
        }),
        ChildOutcome::NotStarted => unmounted(&mounted, detach(&mounted)),
    }
}

/// Remounts the mount on `target` beneath `root` with `flags` and the file-system
/// options `data` (`MS_REMOUNT`): e.g. a tmpfs given a new `size=`. The flags replace
/// the mount's own, so callers pass the ones to keep too.
pub fn remount(
    root: &ConfinedRoot,
    target: &Path,
    flags: MsFlags,
    data: &str,
) -> Result<(), MountError> {
    let mounted = root.resolve(target)?;
    nix::mount::mount(
        None::<&str>,
        &mounted.proc_path(),
        None::<&str>,
        flags | MsFlags::MS_REMOUNT,
        (!data.is_empty()).then_some(data),
    )
    .map_err(|errno| MountError::Mount {
        what: if data.is_empty() {
            "a remount".into()
        } else {
            format!("a remount with {data}")
        },
        fstype: "remount".into(),
        target: mounted.path().to_path_buf(),
        errno,
    })
}

/// The mount points listed in a `mountinfo` file (`/proc/self/mountinfo`,
/// `/proc/PID/mountinfo`), in mount order; lines that do not parse are skipped.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    hull_common::mountinfo::parse_lenient(mountinfo.as_bytes())
        .iter()
        .map(hull_common::mountinfo::MountInfoEntry::mount_point_path)
        .collect()
}

/// Whether `path` (as the kernel names it) is a mount point of this process's namespace.
pub fn is_mount_point(path: &Path) -> std::io::Result<bool> {
    let mountinfo = std::fs::read_to_string(hull_common::mountinfo::PROC_SELF_MOUNTINFO)?;
    Ok(mount_points(&mountinfo).iter().any(|p| p == path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let mountinfo = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                         63 43 0:39 / /run/a\\040b rw - tmpfs tmpfs rw\n\
                         64 43 0:40 / /run/back\\134slash rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_points(mountinfo),
            vec![
                PathBuf::from("/proc"),
                PathBuf::from("/run/a b"),
                PathBuf::from("/run/back\\slash"),
            ]
        );
    }
}

//! `mount(2)` and `umount2(2)` on confined paths, and mount option parsing.
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

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::fs::{ConfineError, ConfinedPath, ConfinedRoot};

/// Why a mount or unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A mount option the agent refuses.
    #[error("mount option {option:?}: {reason}")]
    InvalidOption {
        option: String,
        reason: &'static str,
    },
    /// The target could not be resolved inside its root.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// `mount(2)` failed.
    #[error("mounting {what} ({fstype}) on {target}: {errno}")]
    Mount {
        what: String,
        fstype: String,
        target: PathBuf,
        errno: Errno,
    },
    /// `umount2(2)` failed.
    #[error("unmounting {target}: {errno}")]
    Unmount { target: PathBuf, errno: Errno },
    /// Nothing is mounted there.
    #[error("{target}: not a mount point")]
    NotMounted { target: PathBuf },
}

/// Parsed `mount(8)`-style options: flags for `mount(2)`, the propagation to apply after
/// it, and the file-system-specific rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            propagation: MsFlags::empty(),
            data: Vec::new(),
        }
    }
}

impl MountOptions {
    /// Parses options as `mount(8)` does; each item may itself be a comma-separated
    /// list. Unknown options go to the file system (`data`). `remount` is refused: a
    /// storage is mounted, never remounted.
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<Self, MountError> {
        let mut parsed = Self::default();
        for item in options {
            for option in item.as_ref().split(',').map(str::trim) {
                if option.is_empty() || option == "defaults" {
                    continue;
                }
                if option.contains('\0') {
                    return Err(MountError::InvalidOption {
                        option: option.to_string(),
                        reason: "contains a NUL byte",
                    });
                }
                if option == "remount" {
                    return Err(MountError::InvalidOption {
                        option: option.to_string(),
                        reason: "a storage is mounted, not remounted",
                    });
                }
                if let Some(propagation) = propagation_flag(option) {
                    parsed.propagation = propagation;
                } else if let Some((set, flag)) = flag(option) {
                    if set {
                        parsed.flags.insert(flag);
                    } else {
                        parsed.flags.remove(flag);
                    }
                } else {
                    parsed.data.push(option.to_string());
                }
            }
        }
        Ok(parsed)
    }

    /// Whether `ro` was asked for.
    pub fn read_only(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }

    /// The file-system-specific options, comma-separated, as `mount(2)` takes them.
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }
}

/// `(set, flag)` for the options that are `mount(2)` flags.
fn flag(option: &str) -> Option<(bool, MsFlags)> {
    Some(match option {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "suid" => (false, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "dev" => (false, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "async" => (false, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (true, MsFlags::MS_DIRSYNC),
        "mand" => (true, MsFlags::MS_MANDLOCK),
        "nomand" => (false, MsFlags::MS_MANDLOCK),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "atime" => (false, MsFlags::MS_NOATIME),
        "nodiratime" => (true, MsFlags::MS_NODIRATIME),
        "diratime" => (false, MsFlags::MS_NODIRATIME),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "norelatime" => (false, MsFlags::MS_RELATIME),
        "strictatime" => (true, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
        "lazytime" => (true, MsFlags::MS_LAZYTIME),
        "nolazytime" => (false, MsFlags::MS_LAZYTIME),
        "silent" => (true, MsFlags::MS_SILENT),
        "loud" => (false, MsFlags::MS_SILENT),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        _ => return None,
    })
}

fn propagation_flag(option: &str) -> Option<MsFlags> {
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
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
    Name(&'a str),
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
/// kernel requires for them; a propagation option is applied last.
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
    if !options.propagation.is_empty() {
        nix::mount::mount(
            None::<&str>,
            &mounted.proc_path(),
            None::<&str>,
            options.propagation,
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
    let name = mounted.path().to_path_buf();
    match nix::mount::umount2(&mounted.proc_path(), MntFlags::MNT_DETACH) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => Err(MountError::NotMounted { target: name }),
        Err(errno) => Err(MountError::Unmount {
            target: name,
            errno,
        }),
    }
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
    fn flags_and_data_are_split_like_mount8() {
        let options =
            MountOptions::parse(&["ro,nosuid", "nodev", "size=64m", "mode=1777", ""]).unwrap();
        assert_eq!(
            options.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert_eq!(options.data_string(), "size=64m,mode=1777");
        assert!(options.read_only());
        let options = MountOptions::parse(&["ro", "rw", "defaults"]).unwrap();
        assert!(!options.read_only());
        assert!(options.data.is_empty());
    }

    #[test]
    fn bind_and_propagation_options() {
        let options = MountOptions::parse(&["rbind", "ro", "rslave"]).unwrap();
        assert_eq!(
            options.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(options.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
    }

    #[test]
    fn remount_and_nul_are_refused() {
        let err = MountOptions::parse(&["remount"]).unwrap_err();
        assert!(err.to_string().contains("remount"), "{err}");
        let err = MountOptions::parse(&["size=1\0"]).unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

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

//! Group ownership of volumes: Kubernetes' `fsGroup` (the `fs_group` field) and Kata's
//! `fsgid=` option.
//!
//! With `fs_group`, every file of the volume gets the group and group read (and write,
//! unless read-only) permission; directories also get the execute bits and set-gid, so new
//! files inherit the group. Symlinks are skipped. The walk goes through directory fds
//! opened with `O_NOFOLLOW`, so a symlink planted in the volume cannot send it elsewhere.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};
use nix::unistd::{Gid, fchown, fchownat};

use super::StorageError;
use super::spec::{FsGroup, FsGroupPolicy};
use crate::fs::ConfinedPath;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;
/// Deeper trees are refused rather than exhausting fds.
const MAX_DEPTH: usize = 128;

/// A failed step of an ownership change.
#[derive(Debug)]
pub struct OwnershipError {
    operation: &'static str,
    path: PathBuf,
    errno: Errno,
}

impl OwnershipError {
    pub fn into_storage_error(self, mount_point: &Path) -> StorageError {
        StorageError::Ownership {
            mount_point: mount_point.to_path_buf(),
            operation: self.operation,
            path: self.path,
            errno: self.errno,
        }
    }
}

fn fail(operation: &'static str, path: &Path) -> impl FnOnce(Errno) -> OwnershipError + use<> {
    let path = path.to_path_buf();
    move |errno| OwnershipError {
        operation,
        path,
        errno,
    }
}

/// Applies `group` to the volume whose root is `top`.
pub fn apply_fs_group(
    top: &ConfinedPath,
    group: FsGroup,
    read_only: bool,
) -> Result<(), OwnershipError> {
    let mask = if read_only { RO_MASK } else { RW_MASK };
    let root_path = top.path().to_path_buf();
    let stat = fstat(top).map_err(fail("stat", &root_path))?;
    if group.policy == FsGroupPolicy::OnRootMismatch && stat.st_gid == group.gid {
        let wanted = mask | EXEC_MASK | SETGID;
        if stat.st_mode & wanted == wanted {
            tracing::debug!(path = %root_path.display(), gid = group.gid, "fs_group already applied");
            return Ok(());
        }
    }
    let dir = Dir::open(
        &top.proc_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("open", &root_path))?;
    change_dir(dir, &root_path, Gid::from_raw(group.gid), mask, 0)
}

/// Sets the group of the directory `dir` and adds set-gid, optionally setting its mode
/// first (Kata's `fsgid=` and `mode=` options of `local` and `ephemeral` storages).
pub fn set_dir_group(
    dir: &ConfinedPath,
    gid: Option<u32>,
    mode: Option<u32>,
) -> Result<(), OwnershipError> {
    let path = dir.path().to_path_buf();
    let fd = nix::fcntl::open(
        &dir.proc_path(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail("open", &path))?;
    if let Some(gid) = gid {
        fchown(&fd, None, Some(Gid::from_raw(gid))).map_err(fail("chown", &path))?;
    }
    let current = fstat(&fd).map_err(fail("stat", &path))?.st_mode & 0o7777;
    let mut wanted = mode.unwrap_or(current);
    if gid.is_some() {
        wanted |= SETGID;
    }
    if wanted != current || mode.is_some() {
        fchmod(&fd, Mode::from_bits_truncate(wanted)).map_err(fail("chmod", &path))?;
    }
    Ok(())
}

fn change_dir(
    mut dir: Dir,
    path: &Path,
    gid: Gid,
    mask: u32,
    depth: usize,
) -> Result<(), OwnershipError> {
    if depth > MAX_DEPTH {
        return Err(OwnershipError {
            operation: "walk (too deep)",
            path: path.to_path_buf(),
            errno: Errno::ELOOP,
        });
    }
    let names: Vec<CString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_owned())
        .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
        .collect();
    for name in &names {
        change_entry(&dir, name, path, gid, mask, depth)?;
    }
    fchown(dir.as_fd(), None, Some(gid)).map_err(fail("chown", path))?;
    let stat = fstat(dir.as_fd()).map_err(fail("stat", path))?;
    fchmod(
        dir.as_fd(),
        Mode::from_bits_truncate((stat.st_mode & 0o7777) | mask | EXEC_MASK | SETGID),
    )
    .map_err(fail("chmod", path))
}

fn change_entry(
    parent: &Dir,
    name: &CStr,
    parent_path: &Path,
    gid: Gid,
    mask: u32,
    depth: usize,
) -> Result<(), OwnershipError> {
    let path = parent_path.join(OsStr::from_bytes(name.to_bytes()));
    let stat =
        fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(fail("stat", &path))?;
    match kind(&stat) {
        SFlag::S_IFLNK => Ok(()),
        SFlag::S_IFDIR => {
            let dir = Dir::openat(
                parent.as_fd(),
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail("open", &path))?;
            change_dir(dir, &path, gid, mask, depth + 1)
        }
        _ => {
            // O_PATH: never opens a device or FIFO for real. The fd pins the file the
            // checks were made on; its /proc name reaches the inode for chmod.
            let fd: OwnedFd = openat(
                parent.as_fd(),
                name,
                OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail("open", &path))?;
            let stat = fstat(&fd).map_err(fail("stat", &path))?;
            if kind(&stat) == SFlag::S_IFLNK {
                return Ok(());
            }
            fchownat(&fd, "", None, Some(gid), AtFlags::AT_EMPTY_PATH)
                .map_err(fail("chown", &path))?;
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            nix::sys::stat::fchmodat(
                nix::fcntl::AT_FDCWD,
                proc_path.as_str(),
                Mode::from_bits_truncate((stat.st_mode & 0o7777) | mask),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(fail("chmod", &path))
        }
    }
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{ConfinedRoot, Scope};
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    /// A group the test process may give files: its own (any group works for root).
    fn my_gid() -> u32 {
        nix::unistd::getegid().as_raw()
    }

    #[test]
    fn fs_group_reaches_every_file_but_not_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("target"), "x").unwrap();
        std::fs::set_permissions(
            outside.path().join("target"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let volume = dir.path().join("vol");
        std::fs::create_dir_all(volume.join("a/b")).unwrap();
        std::fs::write(volume.join("a/b/file"), "x").unwrap();
        std::fs::set_permissions(
            volume.join("a/b/file"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        symlink(outside.path().join("target"), volume.join("a/link")).unwrap();

        let root = ConfinedRoot::open(dir.path(), Scope::Beneath).unwrap();
        let top = root.resolve(&volume).unwrap();
        let group = FsGroup {
            gid: my_gid(),
            policy: FsGroupPolicy::Always,
        };
        apply_fs_group(&top, group, false).unwrap();

        let file = std::fs::metadata(volume.join("a/b/file")).unwrap();
        assert_eq!(file.mode() & 0o7777, 0o660);
        assert_eq!(file.gid(), my_gid());
        let sub = std::fs::metadata(volume.join("a/b")).unwrap();
        assert_eq!(sub.mode() & SETGID, SETGID);
        assert_eq!(sub.mode() & 0o770, 0o770);
        let target = std::fs::metadata(outside.path().join("target")).unwrap();
        assert_eq!(
            target.mode() & 0o7777,
            0o600,
            "the symlink target is untouched"
        );
    }

    #[test]
    fn read_only_volumes_get_read_bits_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vol")).unwrap();
        std::fs::write(dir.path().join("vol/f"), "x").unwrap();
        std::fs::set_permissions(
            dir.path().join("vol/f"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let root = ConfinedRoot::open(dir.path(), Scope::Beneath).unwrap();
        let top = root.resolve(&dir.path().join("vol")).unwrap();
        let group = FsGroup {
            gid: my_gid(),
            policy: FsGroupPolicy::OnRootMismatch,
        };
        apply_fs_group(&top, group, true).unwrap();
        let mode = std::fs::metadata(dir.path().join("vol/f")).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn set_dir_group_sets_mode_and_setgid() {
        let dir = tempfile::tempdir().unwrap();
        let root = ConfinedRoot::open(dir.path(), Scope::Beneath).unwrap();
        let local = root
            .create_dir_all(&dir.path().join("local"), 0o700)
            .unwrap();
        set_dir_group(&local, Some(my_gid()), Some(0o770)).unwrap();
        let meta = std::fs::metadata(dir.path().join("local")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o2770);
        set_dir_group(&local, None, Some(0o755)).unwrap();
        let meta = std::fs::metadata(dir.path().join("local")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o755);
    }
}

//! Mounting one entry of the plan inside the rootfs, safely.
//!
//! A spec's mount destination is a path *inside* the container, and the rootfs belongs to
//! whoever built the image: any component may be a symlink meant to lead a mount out
//! of it (onto the guest's `/etc`, say). So a destination is never given to `mount(2)`
//! as a string. It is resolved with `pathrs` (`openat2(RESOLVE_IN_ROOT)`: `..` and
//! symlinks cannot climb above the rootfs), created on the way if missing, and the
//! mount goes on `/proc/self/fd/N` of the resolved handle: exactly the inode that was
//! checked, whatever a race does to the path afterwards.
//!
//! Bind mounts take their flags (`ro`, `nosuid`, ...) only through a second, remount
//! call ([`remount_bind`]); in a user namespace the kernel locks the flags a bind
//! inherits from its source, so the remount keeps them.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};

use super::{HelperResult, Part};
use crate::plan::MountPlan;

const PART: Part = Part::Rootfs;

/// `/proc/self/fd/N` of a handle: mounting there mounts on exactly the inode resolved
/// inside the rootfs, whatever a symlink race does to the path afterwards.
pub(super) fn fd_path(fd: &impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

fn resolve_target(root: &pathrs::Root, m: &MountPlan) -> HelperResult<pathrs::Handle> {
    let dest = &m.destination;
    let perm = std::fs::Permissions::from_mode(0o755);
    let source_is_file = m.is_bind()
        && m.source
            .as_ref()
            .and_then(|s| std::fs::metadata(s).ok())
            .is_some_and(|md| !md.is_dir());
    if source_is_file {
        if let Some(parent) = dest.parent() {
            root.mkdir_all(parent, &perm)
                .map_err(PART.failed(format!("creating {}", parent.display())))?;
        }
        if root.resolve(dest).is_err() {
            root.create_file(
                dest,
                pathrs::flags::OpenFlags::O_WRONLY | pathrs::flags::OpenFlags::O_CLOEXEC,
                &std::fs::Permissions::from_mode(0o644),
            )
            .map_err(PART.failed(format!("creating {}", dest.display())))?;
        }
        root.resolve(dest)
            .map_err(PART.failed(format!("resolving {}", dest.display())))
    } else {
        root.mkdir_all(dest, &perm)
            .map_err(PART.failed(format!("creating {}", dest.display())))
    }
}

/// Mounts `m` at its destination resolved inside `root`, then applies its propagation.
pub(super) fn mount_entry(
    root: &pathrs::Root,
    m: &MountPlan,
    in_user_ns: bool,
) -> HelperResult<()> {
    let flags = MsFlags::from_bits_retain(m.flags);
    let what = format!("mounting {}", m.destination.display());
    let target = resolve_target(root, m)?;
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    if m.is_bind() {
        let source = m
            .source
            .as_ref()
            .ok_or_else(|| PART.error(&what, "no source"))?;
        mount(
            Some(source),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
            None::<&str>,
        )
        .map_err(PART.failed(format!("{what} from {}", source.display())))?;
        let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            // The remount applies to the new mount: resolve the destination again.
            let top = root.resolve(&m.destination).map_err(PART.failed(&what))?;
            remount_bind(&fd_path(&top), extra)
                .map_err(PART.failed(format!("{what}: remounting with {extra:?}")))?;
        }
    } else {
        let source = m
            .source
            .as_ref()
            .map(|s| s.as_os_str().to_owned())
            .unwrap_or_else(|| m.fstype.clone().into());
        let result = mount(
            Some(source.as_os_str()),
            &fd_path(&target),
            Some(m.fstype.as_str()),
            flags,
            data,
        );
        match result {
            Ok(()) => {}
            // sysfs cannot be mounted in a user namespace that does not own the network
            // namespace: give a read-only view of the agent's, as runc does.
            Err(Errno::EPERM) if m.fstype == "sysfs" && in_user_ns => {
                mount(
                    Some("/sys"),
                    &fd_path(&target),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(PART.failed(format!("{what} (bind of /sys)")))?;
                let top = root.resolve(&m.destination).map_err(PART.failed(&what))?;
                remount_bind(&fd_path(&top), flags | MsFlags::MS_RDONLY)
                    .map_err(PART.failed(&what))?;
            }
            Err(errno) => return Err(PART.error(format!("{what} ({})", m.fstype), errno)),
        }
    }
    if !m.propagation.is_empty() {
        let top = root.resolve(&m.destination).map_err(PART.failed(&what))?;
        for p in &m.propagation {
            mount(
                None::<&str>,
                &fd_path(&top),
                None::<&str>,
                MsFlags::from_bits_retain(*p),
                None::<&str>,
            )
            .map_err(PART.failed(format!("{what}: propagation")))?;
        }
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locks on it (in a
/// user namespace, nosuid/nodev/noexec/rdonly inherited from the source cannot be lifted).
pub(crate) fn remount_bind(target: &Path, flags: MsFlags) -> Result<(), Errno> {
    let want = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | (flags & !MsFlags::MS_REC);
    match mount(None::<&str>, target, None::<&str>, want, None::<&str>) {
        Err(Errno::EPERM) => {
            let st = nix::sys::statvfs::statvfs(target)?;
            let mut locked = MsFlags::empty();
            let f = st.flags();
            use nix::sys::statvfs::FsFlags;
            for (fs, ms) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(fs) {
                    locked |= ms;
                }
            }
            mount(
                None::<&str>,
                target,
                None::<&str>,
                want | locked,
                None::<&str>,
            )
        }
        other => other,
    }
}

//! Device nodes in the container's `/dev`.
//!
//! When the spec mounts a fresh tmpfs on `/dev`, [`populate_dev`] gives it what every
//! program expects (`null`, `zero`, `full`, `random`, `urandom`, `tty`, bind-mounted
//! from the agent's `/dev`, and the `fd`, `stdin`, `stdout`, `stderr`, `ptmx` links).
//! Then each device of `linux.devices` is created with `mknod` at its path resolved inside
//! the rootfs and given its owner ([`create_device`]). In a user namespace `mknod` is not
//! allowed: the agent's node of the same path is bind-mounted instead, as runc does.
//!
//! Device *access* is not enforced here: cgroup v2 needs BPF for device rules, and in a
//! guest the VM is the device boundary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::unistd::{Gid, Uid};

use super::mounts::{fd_path, mount_entry};
use super::{HelperResult, Part};
use crate::plan::{ContainerPlan, DevicePlan, MountPlan};

const PART: Part = Part::Rootfs;

/// The standard devices of a container whose `/dev` is a fresh tmpfs, bind-mounted from
/// the agent's `/dev` (works in a user namespace too), and the usual links.
pub(super) fn populate_dev(root: &pathrs::Root, plan: &ContainerPlan) -> HelperResult<()> {
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let dest = PathBuf::from("/dev").join(name);
        if plan.devices.iter().any(|d| d.path == dest) {
            continue;
        }
        let host = PathBuf::from("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let m = MountPlan {
            destination: dest,
            source: Some(host),
            fstype: "bind".into(),
            flags: MsFlags::MS_BIND.bits(),
            propagation: Vec::new(),
            data: String::new(),
        };
        mount_entry(root, &m, false)?;
    }
    let links: [(&str, &str); 5] = [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ];
    for (link, target) in links {
        if link == "/dev/ptmx"
            && !plan
                .mounts
                .iter()
                .any(|m| m.destination == Path::new("/dev/pts"))
        {
            continue;
        }
        match root.create(link, &pathrs::InodeType::Symlink(PathBuf::from(target))) {
            Ok(()) => {}
            Err(e) if root.resolve_nofollow(link).is_ok() => {
                tracing::debug!(%e, link, "already present");
            }
            Err(e) => return Err(PART.error(format!("creating {link}"), e)),
        }
    }
    Ok(())
}

/// Creates one device node of the spec (or binds the agent's, without `mknod`).
pub(super) fn create_device(
    root: &pathrs::Root,
    d: &DevicePlan,
    in_user_ns: bool,
) -> HelperResult<()> {
    let perm = std::fs::Permissions::from_mode(d.mode & 0o7777);
    let dev = nix::sys::stat::makedev(d.major, d.minor);
    if let Some(parent) = d.path.parent() {
        root.mkdir_all(parent, &std::fs::Permissions::from_mode(0o755))
            .map_err(PART.failed(format!("creating {}", parent.display())))?;
    }
    let inode = match d.kind {
        'c' => pathrs::InodeType::CharacterDevice(perm, dev),
        'b' => pathrs::InodeType::BlockDevice(perm, dev),
        _ => pathrs::InodeType::Fifo(perm),
    };
    let created = if in_user_ns {
        Err("mknod is not allowed in a user namespace".to_string())
    } else {
        root.create(&d.path, &inode).map_err(|e| e.to_string())
    };
    match created {
        Ok(()) => {
            let handle = root
                .resolve_nofollow(&d.path)
                .map_err(PART.failed(d.path.display()))?;
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &fd_path(&handle),
                Some(Uid::from_raw(d.uid)),
                Some(Gid::from_raw(d.gid)),
                nix::fcntl::AtFlags::empty(),
            )
            .map_err(PART.failed(format!("chown {}", d.path.display())))?;
            Ok(())
        }
        // Without mknod (user namespace), bind the agent's node of the same path.
        Err(reason) if Path::new(&d.path).exists() => {
            let m = MountPlan {
                destination: d.path.clone(),
                source: Some(d.path.clone()),
                fstype: "bind".into(),
                flags: MsFlags::MS_BIND.bits(),
                propagation: Vec::new(),
                data: String::new(),
            };
            tracing::debug!(%reason, "binding the device instead");
            mount_entry(root, &m, in_user_ns)
        }
        Err(reason) => Err(PART.error(format!("creating device {}", d.path.display()), reason)),
    }
}

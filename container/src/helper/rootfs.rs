//! The container's filesystem, built in its new mount namespace, in three steps.
//!
//! 1. [`build`]: `/` becomes rslave (nothing the container mounts propagates back to the
//!    agent, while the agent's later mounts still reach the container), the rootfs is
//!    bind-mounted on itself (so it is a mount point `pivot_root` can use), each spec
//!    mount is placed inside it ([`super::mounts`]), `/dev` is populated and the devices
//!    created ([`super::devices`]), and the working directory made.
//! 2. [`enter`]: `pivot_root` into the rootfs and detach the old root, so nothing of the
//!    agent's filesystem stays reachable. On an initramfs `/` (which `pivot_root` cannot
//!    leave) or with `--no-pivot`: `MS_MOVE` the rootfs onto `/` and `chroot`.
//! 3. [`finish`]: now inside, with container paths: masked paths (a read-only tmpfs on a
//!    directory, `/dev/null` on a file), read-only paths, a read-only `/` if asked, and
//!    the rootfs propagation the spec wants.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::devices::{create_device, populate_dev};
use super::mounts::{mount_entry, remount_bind};
use super::{HelperResult, Part};
use crate::SetupError;
use crate::plan::ContainerPlan;

const PART: Part = Part::Rootfs;

/// Step 1: the rootfs with every mount and device, still seen from the agent's `/`.
pub(super) fn build(plan: &ContainerPlan, in_user_ns: bool) -> HelperResult<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(PART.failed("making / rslave"))?;
    let rootfs = &plan.rootfs;
    if !rootfs.is_dir() {
        return Err(PART.error(format!("rootfs {}", rootfs.display()), "not a directory"));
    }
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(PART.failed(format!("bind-mounting the rootfs {}", rootfs.display())))?;
    let root = pathrs::Root::open(rootfs).map_err(PART.failed("opening the rootfs"))?;
    let mut dev_is_tmpfs = false;
    for m in &plan.mounts {
        mount_entry(&root, m, in_user_ns)?;
        if m.destination == Path::new("/dev") && !m.is_bind() {
            dev_is_tmpfs = true;
        }
    }
    if dev_is_tmpfs {
        populate_dev(&root, plan)?;
    }
    for device in &plan.devices {
        create_device(&root, device, in_user_ns)?;
    }
    // The working directory exists when the process starts (as in runc).
    let perm = std::fs::Permissions::from_mode(0o755);
    if let Err(e) = root.mkdir_all(&plan.process.cwd, &perm) {
        return Err(SetupError::InvalidCwd {
            cwd: plan.process.cwd.clone(),
            reason: format!("cannot be created: {e}"),
        });
    }
    Ok(())
}

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Whether `/` is the initial ramfs/tmpfs root, which `pivot_root` cannot leave.
fn root_is_initramfs() -> bool {
    match nix::sys::statfs::statfs("/") {
        Ok(st) => {
            #[allow(clippy::unnecessary_cast)]
            let magic = st.filesystem_type().0 as i64;
            magic == RAMFS_MAGIC || magic == TMPFS_MAGIC
        }
        Err(_) => false,
    }
}

/// Step 2: makes the rootfs this process's `/`.
pub(super) fn enter(rootfs: &Path, no_pivot: bool) -> HelperResult<()> {
    let open_dir = |p: &Path| {
        nix::fcntl::open(
            p,
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(PART.failed(format!("opening {}", p.display())))
    };
    let new_root = open_dir(rootfs)?;
    nix::unistd::fchdir(&new_root).map_err(PART.failed("entering the rootfs"))?;
    if !no_pivot {
        let old_root = open_dir(Path::new("/"))?;
        match nix::unistd::pivot_root(".", ".") {
            Ok(()) => {
                // The old root is stacked under the new one at "/": detach it.
                nix::unistd::fchdir(&old_root).map_err(PART.failed("fchdir(old root)"))?;
                mount(
                    None::<&str>,
                    ".",
                    None::<&str>,
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(PART.failed("making the old root rslave"))?;
                umount2(".", MntFlags::MNT_DETACH)
                    .map_err(PART.failed("detaching the old root"))?;
                nix::unistd::chdir("/").map_err(PART.failed("chdir(/)"))?;
                return Ok(());
            }
            Err(Errno::EINVAL) if root_is_initramfs() => {
                tracing::debug!("pivot_root refused on an initramfs; moving the rootfs instead");
            }
            Err(errno) => return Err(PART.error("pivot_root", errno)),
        }
    }
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(PART.failed("moving the rootfs onto /"))?;
    nix::unistd::chroot(".").map_err(PART.failed("chroot"))?;
    nix::unistd::chdir("/").map_err(PART.failed("chdir(/)"))?;
    Ok(())
}

/// Step 3: what is done from inside: masked and read-only paths, propagation.
pub(super) fn finish(plan: &ContainerPlan, _in_user_ns: bool) -> HelperResult<()> {
    for path in &plan.masked_paths {
        mask_path(path)?;
    }
    for path in &plan.readonly_paths {
        readonly_path(path)?;
    }
    if plan.readonly_rootfs {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY)
            .map_err(PART.failed("remounting / read-only"))?;
    }
    let propagation = MsFlags::from_bits_retain(plan.rootfs_propagation);
    if propagation != MsFlags::MS_REC | MsFlags::MS_SLAVE {
        mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
            .map_err(PART.failed("setting the rootfs propagation"))?;
    }
    Ok(())
}

fn mask_path(path: &Path) -> HelperResult<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(PART.error(format!("masking {}", path.display()), e)),
    };
    let result = if md.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    match result {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(PART.error(format!("masking {}", path.display()), errno)),
    }
}

fn readonly_path(path: &Path) -> HelperResult<()> {
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => {
            return Err(PART.error(format!("read-only path {}", path.display()), errno));
        }
    }
    remount_bind(path, MsFlags::MS_RDONLY | MsFlags::MS_REC)
        .map_err(PART.failed(format!("read-only path {}", path.display())))
}

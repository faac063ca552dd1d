//! The early mounts and /dev symlinks every guest needs.

use alloc::borrow::ToOwned as _;
use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::CStr;

use hull_common::mountinfo::{self, MountInfoEntry};
use rustix::io::Errno;
use rustix::mount::{MountFlags, mount};
use tracing::{debug, info, warn};

use crate::fs;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create mount point {target}: {errno}")]
    MountPoint { target: &'static str, errno: Errno },
    #[error("cannot mount {fstype} on {target}: {errno}")]
    Mount {
        target: &'static str,
        fstype: &'static str,
        errno: Errno,
    },
    #[error("cannot read {path}: {errno}", path = mountinfo::PROC_SELF_MOUNTINFO)]
    MountInfo { errno: Errno },
}

/// One filesystem to mount at boot.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MountFlags,
    pub data: Option<&'static CStr>,
    /// Retried with this data when `data` is rejected with EINVAL (an option
    /// the running kernel does not know).
    pub fallback_data: Option<Option<&'static CStr>>,
    /// Init powers off when a required mount fails.
    pub required: bool,
}

const NOSUID: MountFlags = MountFlags::NOSUID;
const NOSUID_NODEV: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);
const NOSUID_NODEV_NOEXEC: MountFlags = NOSUID_NODEV.union(MountFlags::NOEXEC);

/// Mounted in this order; parents before children.
pub const SPECS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        fallback_data: None,
        required: true,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        fallback_data: None,
        required: true,
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: NOSUID,
        data: Some(c"mode=0755"),
        fallback_data: None,
        required: true,
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: NOSUID.union(MountFlags::NOEXEC),
        data: Some(c"newinstance,ptmxmode=0666,mode=0620"),
        fallback_data: None,
        required: false,
    },
    MountSpec {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some(c"mode=1777"),
        fallback_data: None,
        required: false,
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some(c"mode=0755"),
        fallback_data: None,
        required: true,
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some(c"nsdelegate"),
        fallback_data: Some(None),
        required: false,
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some(c"mode=1777"),
        fallback_data: None,
        required: false,
    },
];

/// Symlinks created in /dev when missing: (link, target).
pub const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
    ("/dev/ptmx", "pts/ptmx"),
];

/// Mounts every entry of [`SPECS`] that is not mounted yet, then creates the
/// /dev symlinks. Optional mounts that fail are logged; the first failing
/// required mount is returned.
pub fn mount_all() -> Result<(), MountError> {
    let Some((proc_spec, rest)) = SPECS.split_first() else {
        return Ok(());
    };
    // Before /proc is up, mountinfo cannot tell; its presence is the test.
    if fs::exists(mountinfo::PROC_SELF_MOUNTINFO) {
        debug!(target = proc_spec.target, "already mounted");
    } else {
        mount_one(proc_spec)?;
    }
    let mut mounted: Vec<MountInfoEntry> = fs::read(mountinfo::PROC_SELF_MOUNTINFO)
        .map(|data| mountinfo::parse_lenient(&data))
        .map_err(|errno| MountError::MountInfo { errno })?;
    for spec in rest {
        if is_mount_point(&mounted, spec.target) {
            debug!(target = spec.target, "already mounted");
            continue;
        }
        match mount_one(spec) {
            Ok(()) => mounted.push(MountInfoEntry {
                id: 0,
                parent: 0,
                major: 0,
                minor: 0,
                root: b"/".to_vec(),
                mount_point: spec.target.as_bytes().to_vec(),
                options: String::new(),
                optional_fields: Vec::new(),
                fstype: spec.fstype.to_owned(),
                source: spec.source.to_owned(),
                super_options: String::new(),
            }),
            Err(e) if spec.required => return Err(e),
            Err(e) => warn!(error = %e, "optional mount failed, continuing"),
        }
    }
    for (link, target) in DEV_SYMLINKS {
        ensure_symlink(link, target);
    }
    Ok(())
}

/// True when `path` is a mount point in `entries`.
pub fn is_mount_point(entries: &[MountInfoEntry], path: &str) -> bool {
    entries.iter().any(|e| e.mount_point == path.as_bytes())
}

fn mount_one(spec: &MountSpec) -> Result<(), MountError> {
    fs::create_dir_all(spec.target).map_err(|errno| MountError::MountPoint {
        target: spec.target,
        errno,
    })?;
    let mut result = do_mount(spec, spec.data);
    if let (Err(Errno::INVAL), Some(fallback)) = (result, spec.fallback_data) {
        debug!(
            target = spec.target,
            data = spec.data.and_then(|d| d.to_str().ok()).unwrap_or(""),
            "mount options rejected, retrying without them"
        );
        result = do_mount(spec, fallback);
    }
    result.map_err(|errno| MountError::Mount {
        target: spec.target,
        fstype: spec.fstype,
        errno,
    })?;
    info!(target = spec.target, fstype = spec.fstype, "mounted");
    Ok(())
}

fn do_mount(spec: &MountSpec, data: Option<&'static CStr>) -> Result<(), Errno> {
    mount(spec.source, spec.target, spec.fstype, spec.flags, data)
}

fn ensure_symlink(link: &str, target: &str) {
    // A dangling link counts as present.
    if fs::exists_no_follow(link) {
        return;
    }
    match rustix::fs::symlink(target, link) {
        Ok(()) => debug!(link, target, "symlink created"),
        Err(e) => warn!(link, target, error = %e, "cannot create symlink"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use std::path::Path;

    #[test]
    fn specs_are_ordered_parents_first() {
        for (i, spec) in SPECS.iter().enumerate() {
            for later in &SPECS[i + 1..] {
                assert!(
                    !Path::new(spec.target).starts_with(later.target),
                    "{} must come after {}",
                    spec.target,
                    later.target
                );
            }
        }
        assert_eq!(SPECS.first().map(|s| s.target), Some("/proc"));
    }

    #[test]
    fn required_set() {
        let required: Vec<_> = SPECS
            .iter()
            .filter(|s| s.required)
            .map(|s| s.target)
            .collect();
        assert_eq!(required, vec!["/proc", "/sys", "/dev", "/run"]);
    }

    #[test]
    fn security_flags() {
        for spec in SPECS {
            assert!(spec.flags.contains(MountFlags::NOSUID), "{}", spec.target);
        }
        let by_target = |t: &str| SPECS.iter().find(|s| s.target == t);
        for t in ["/proc", "/sys", "/sys/fs/cgroup"] {
            assert!(by_target(t).is_some_and(|s| s.flags.contains(NOSUID_NODEV_NOEXEC)));
        }
        assert!(by_target("/dev/pts").is_some_and(|s| !s.flags.contains(MountFlags::NODEV)));
    }
}

//! The early mounts and /dev symlinks every guest needs.

use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use tracing::{debug, info, warn};

use crate::mountinfo::{self, MountEntry};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create mount point {target}: {source}")]
    MountPoint {
        target: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot mount {fstype} on {target}: {source}")]
    Mount {
        target: &'static str,
        fstype: &'static str,
        #[source]
        source: Errno,
    },
    #[error("cannot read {path}: {source}", path = mountinfo::PROC_SELF_MOUNTINFO)]
    MountInfo {
        #[source]
        source: io::Error,
    },
}

/// One filesystem to mount at boot.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    pub source: &'static str,
    pub target: &'static str,
    pub fstype: &'static str,
    pub flags: MsFlags,
    pub data: Option<&'static str>,
    /// Retried with this data when `data` is rejected with EINVAL (an option
    /// the running kernel does not know).
    pub fallback_data: Option<Option<&'static str>>,
    /// Init powers off when a required mount fails.
    pub required: bool,
}

const NOSUID: MsFlags = MsFlags::MS_NOSUID;
const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

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
        data: Some("mode=0755"),
        fallback_data: None,
        required: true,
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("newinstance,ptmxmode=0666,mode=0620"),
        fallback_data: None,
        required: false,
    },
    MountSpec {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
        fallback_data: None,
        required: false,
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=0755"),
        fallback_data: None,
        required: true,
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate"),
        fallback_data: Some(None),
        required: false,
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: Some("mode=1777"),
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
    if Path::new(mountinfo::PROC_SELF_MOUNTINFO).exists() {
        debug!(target = proc_spec.target, "already mounted");
    } else {
        mount_one(proc_spec)?;
    }
    let mut mounted: Vec<MountEntry> =
        mountinfo::read().map_err(|source| MountError::MountInfo { source })?;
    for spec in rest {
        if mountinfo::is_mount_point(&mounted, Path::new(spec.target)) {
            debug!(target = spec.target, "already mounted");
            continue;
        }
        match mount_one(spec) {
            Ok(()) => mounted.push(MountEntry {
                id: 0,
                parent: 0,
                mount_point: spec.target.into(),
                options: String::new(),
                fstype: spec.fstype.to_owned(),
                source: spec.source.to_owned(),
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

fn mount_one(spec: &MountSpec) -> Result<(), MountError> {
    std::fs::create_dir_all(spec.target).map_err(|source| MountError::MountPoint {
        target: spec.target,
        source,
    })?;
    let mut result = do_mount(spec, spec.data);
    if let (Err(Errno::EINVAL), Some(fallback)) = (result, spec.fallback_data) {
        debug!(
            target = spec.target,
            data = spec.data.unwrap_or(""),
            "mount options rejected, retrying without them"
        );
        result = do_mount(spec, fallback);
    }
    result.map_err(|source| MountError::Mount {
        target: spec.target,
        fstype: spec.fstype,
        source,
    })?;
    info!(target = spec.target, fstype = spec.fstype, "mounted");
    Ok(())
}

fn do_mount(spec: &MountSpec, data: Option<&'static str>) -> Result<(), Errno> {
    mount(
        Some(spec.source),
        spec.target,
        Some(spec.fstype),
        spec.flags,
        data,
    )
}

fn ensure_symlink(link: &str, target: &str) {
    // symlink_metadata does not follow: a dangling link counts as present.
    if Path::new(link).symlink_metadata().is_ok() {
        return;
    }
    match symlink(target, link) {
        Ok(()) => debug!(link, target, "symlink created"),
        Err(e) => warn!(link, target, error = %e, "cannot create symlink"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(spec.flags.contains(MsFlags::MS_NOSUID), "{}", spec.target);
        }
        let by_target = |t: &str| SPECS.iter().find(|s| s.target == t);
        for t in ["/proc", "/sys", "/sys/fs/cgroup"] {
            assert!(by_target(t).is_some_and(|s| s.flags.contains(NOSUID_NODEV_NOEXEC)));
        }
        assert!(by_target("/dev/pts").is_some_and(|s| !s.flags.contains(MsFlags::MS_NODEV)));
    }
}

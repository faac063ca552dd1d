//! `virtio-fs`: a share exported by the host's virtiofsd, mounted by tag.
//!
//! A share may be hot-plugged just before the request. The kernel has no tag list to
//! wait on (Linux 6.1 has no `/sys/fs/virtiofs`), and mounting an unknown tag fails with
//! `EINVAL`; so a failed mount is retried each time a virtio device appears (a uevent),
//! until `agent.hotplug_timeout`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use nix::errno::Errno;
use tokio::time::Instant;

use super::{MountedStorage, StorageContext, StorageError, StorageHandler, StorageSpec};
use crate::device::{UeventError, UeventSocket, UeventSource};
use crate::fs::{ConfinedRoot, Scope};
use crate::mount::{MountError, MountOptions};

/// The file system type virtio-fs mounts have.
pub const FSTYPE: &str = "virtiofs";
/// The longest tag a virtio-fs device can have (`virtio_fs_config.tag`).
const TAG_MAX: usize = 36;

pub struct VirtioFs;

#[async_trait]
impl StorageHandler for VirtioFs {
    fn driver(&self) -> &'static str {
        "virtio-fs"
    }

    fn validate(&self, spec: &StorageSpec, _run_dir: &Path) -> Result<(), String> {
        if spec.source.is_empty() {
            return Err("the source (the share's tag) is empty".into());
        }
        if spec.source.len() > TAG_MAX {
            return Err(format!(
                "the tag {:?} is longer than {TAG_MAX} bytes",
                spec.source
            ));
        }
        if !spec.fstype.is_empty() && spec.fstype != FSTYPE {
            return Err(format!(
                "fstype must be {FSTYPE} (or empty), not {:?}",
                spec.fstype
            ));
        }
        MountOptions::parse(&spec.mount_options()).map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn mount(
        &self,
        spec: &StorageSpec,
        ctx: &StorageContext<'_>,
    ) -> Result<MountedStorage, StorageError> {
        let options = MountOptions::parse(&spec.mount_options())?;
        // Subscribe before the first attempt so a share that appears in between wakes us.
        let mut events = match UeventSocket::open() {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!(error = %e, "no uevents: mounting virtio-fs once, without waiting");
                None
            }
        };
        let timeout = ctx.devices.timeout();
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = super::mount_storage(
                spec,
                ctx,
                spec.source.clone(),
                FSTYPE.to_string(),
                options.clone(),
                None,
            )
            .await;
            let reason = match attempt {
                Err(StorageError::Mount(
                    reason @ MountError::Mount {
                        errno: Errno::EINVAL | Errno::ENOENT | Errno::ENODEV,
                        ..
                    },
                )) => reason,
                other => return other,
            };
            let Some(events) = events.as_mut() else {
                return Err(tag_error(spec, reason, timeout));
            };
            if !wait_for_virtio_device(events, deadline).await {
                return Err(tag_error(spec, reason, timeout));
            }
            tracing::debug!(tag = %spec.source, "a virtio device appeared; retrying the mount");
        }
    }
}

fn tag_error(spec: &StorageSpec, reason: MountError, timeout: std::time::Duration) -> StorageError {
    StorageError::VirtioFsTag {
        mount_point: spec.mount_point.clone(),
        tag: spec.source.clone(),
        reason: Box::new(reason),
        timeout,
    }
}

/// Waits for a virtio device to be added; `false` at the deadline.
async fn wait_for_virtio_device(events: &mut UeventSocket, deadline: Instant) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, events.next_event()).await {
            Ok(Ok(event)) if event.action == "add" && event.subsystem == "virtio" => return true,
            Ok(Ok(_)) => {}
            // Lost events may have been the one: try again.
            Ok(Err(UeventError::Overflow)) => return true,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "uevent socket failed");
                return false;
            }
            Err(_deadline) => return false,
        }
    }
}

/// What [`remove_stale_share_mounts`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaleMounts {
    /// The mounts beneath the share that were looked at.
    pub checked: usize,
    /// Those that are gone afterwards (the kernel dropped them when the look-up found
    /// their host side gone).
    pub removed: Vec<PathBuf>,
    /// Stale ones still listed (their path no longer resolves, so they cannot be
    /// unmounted by it); the kernel drops them once nothing uses them.
    pub remaining: Vec<PathBuf>,
}

/// `RemoveStaleVirtiofsShareMounts`: every mount strictly beneath `share` (the
/// sandbox's virtio-fs share, where the host's own mounts of container root file
/// systems and volumes appear as virtio-fs submounts) is looked up again, confined
/// beneath `share`. A mount whose host side was unmounted or removed fails the look-up:
/// the guest kernel then invalidates its directory and detaches the mounts on it, and
/// virtiofsd closes what it held for them (Kata's reason for this call). A stale mount
/// that still resolves, e.g. one whose root the host deleted, is unmounted here.
pub fn remove_stale_share_mounts(share: &Path) -> Result<StaleMounts, super::StorageError> {
    let beneath_share = || -> Result<Vec<PathBuf>, super::VolumeError> {
        let mountinfo = std::fs::read_to_string(hull_common::mountinfo::PROC_SELF_MOUNTINFO)
            .map_err(|e| super::VolumeError::Os {
                path: PathBuf::from(hull_common::mountinfo::PROC_SELF_MOUNTINFO),
                operation: "read",
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        let mut mounts: Vec<PathBuf> = crate::mount::mount_points(&mountinfo)
            .into_iter()
            .filter(|p| p.starts_with(share) && p != share)
            .collect();
        // Deepest first: a submount goes before the mount it sits on.
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        mounts.dedup();
        Ok(mounts)
    };
    let before = beneath_share()?;
    if before.is_empty() {
        return Ok(StaleMounts::default());
    }
    let root = ConfinedRoot::open(share, Scope::Beneath)?;
    for mount in &before {
        match root.resolve(mount).and_then(|m| m.stat().map(|s| (m, s))) {
            Ok((resolved, stat)) if stat.st_nlink == 0 => {
                // Still reachable, but its root was deleted on the host.
                tracing::info!(mount = %resolved.path().display(), "share mount's root is gone; unmounting it");
                if let Err(e) = crate::mount::unmount(&root, mount) {
                    tracing::warn!(mount = %mount.display(), error = %e, "unmounting a stale share mount");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::info!(mount = %mount.display(), error = %e, "share mount is stale"),
        }
    }
    let after = beneath_share()?;
    let (remaining, removed): (Vec<PathBuf>, Vec<PathBuf>) =
        before.iter().cloned().partition(|m| after.contains(m));
    let remaining = remaining
        .into_iter()
        .filter(|m| root.resolve(m).is_err())
        .collect();
    let report = StaleMounts {
        checked: before.len(),
        removed,
        remaining,
    };
    tracing::info!(
        checked = report.checked,
        removed = report.removed.len(),
        remaining = report.remaining.len(),
        "stale virtio-fs share mounts"
    );
    Ok(report)
}

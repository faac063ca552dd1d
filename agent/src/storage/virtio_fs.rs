//! `virtio-fs`: a share exported by the host's virtiofsd, mounted by tag.
//!
//! A share may be hot-plugged just before the request. The kernel has no tag list to
//! wait on (Linux 6.1 has no `/sys/fs/virtiofs`), and mounting an unknown tag fails with
//! `EINVAL`; so a failed mount is retried each time a virtio device appears (a uevent),
//! until `agent.hotplug_timeout`.

use std::path::Path;

use async_trait::async_trait;
use nix::errno::Errno;
use tokio::time::Instant;

use super::{MountedStorage, StorageContext, StorageError, StorageHandler, StorageSpec};
use crate::device::{UeventError, UeventSocket, UeventSource};
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

//! `ephemeral`: a tmpfs in guest memory (Kubernetes `emptyDir` with `medium: Memory`).
//! Mount options (`size=`, `mode=`, `nr_inodes=`, ...) go to tmpfs; `fsgid=GID` gives the
//! directory that group and set-gid. Huge-page (`hugetlbfs`) volumes are not supported:
//! the guest kernel has no hugetlbfs.

use std::path::Path;

use async_trait::async_trait;

use super::ownership::set_dir_group;
use super::{MountedStorage, StorageContext, StorageError, StorageHandler, StorageSpec};
use crate::mount::MountOptions;

pub struct Ephemeral;

const TMPFS: &str = "tmpfs";

#[async_trait]
impl StorageHandler for Ephemeral {
    fn driver(&self) -> &'static str {
        "ephemeral"
    }

    fn validate(&self, spec: &StorageSpec, _run_dir: &Path) -> Result<(), String> {
        match spec.fstype.as_str() {
            "" | TMPFS => {}
            "hugetlbfs" => {
                return Err("hugetlbfs ephemeral storage is not supported by this guest".into());
            }
            other => return Err(format!("fstype must be tmpfs (or empty), not {other:?}")),
        }
        spec.fs_gid_option()?;
        MountOptions::parse(&spec.mount_options()).map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn mount(
        &self,
        spec: &StorageSpec,
        ctx: &StorageContext<'_>,
    ) -> Result<MountedStorage, StorageError> {
        let options = MountOptions::parse(&spec.mount_options())?;
        let gid = spec
            .fs_gid_option()
            .map_err(|reason| StorageError::Invalid {
                mount_point: spec.mount_point.display().to_string(),
                driver: spec.driver.to_string(),
                reason,
            })?;
        let source = if spec.source.is_empty() {
            TMPFS.to_string()
        } else {
            spec.source.clone()
        };
        let mounted =
            super::mount_storage(spec, ctx, source, TMPFS.to_string(), options, None).await?;
        if let Some(gid) = gid {
            let dir = ctx.root.resolve(&spec.mount_point)?;
            if let Err(e) = set_dir_group(&dir, Some(gid), None) {
                let _ = crate::mount::unmount(ctx.root, &spec.mount_point);
                return Err(e.into_storage_error(&spec.mount_point));
            }
        }
        Ok(mounted)
    }
}

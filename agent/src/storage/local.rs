//! `local`: a directory in the guest, shared by the containers of the sandbox
//! (Kubernetes `emptyDir` on the default medium). Options: `mode=OCTAL` and `fsgid=GID`.
//! Nothing is mounted; the directory and its contents are kept when the last user
//! releases it (the sandbox's end removes them with the VM).

use std::path::Path;

use async_trait::async_trait;

use super::ownership::set_dir_group;
use super::{MountedStorage, StorageContext, StorageError, StorageHandler, StorageSpec};

pub struct Local;

/// The `mode=` option as permission bits.
fn mode(spec: &StorageSpec) -> Result<Option<u32>, String> {
    spec.option("mode")
        .map(|m| match u32::from_str_radix(m, 8) {
            Ok(mode) if mode <= 0o7777 => Ok(mode),
            _ => Err(format!("mode={m}: expected octal permission bits")),
        })
        .transpose()
}

#[async_trait]
impl StorageHandler for Local {
    fn driver(&self) -> &'static str {
        "local"
    }

    fn validate(&self, spec: &StorageSpec, _run_dir: &Path) -> Result<(), String> {
        mode(spec)?;
        spec.fs_gid_option()?;
        Ok(())
    }

    async fn mount(
        &self,
        spec: &StorageSpec,
        ctx: &StorageContext<'_>,
    ) -> Result<MountedStorage, StorageError> {
        let invalid = |reason| StorageError::Invalid {
            mount_point: spec.mount_point.display().to_string(),
            driver: spec.driver.to_string(),
            reason,
        };
        let mode = mode(spec).map_err(invalid)?;
        let gid = spec.fs_gid_option().map_err(invalid)?;
        let dir = ctx.root.create_dir_all(&spec.mount_point, 0o755)?;
        set_dir_group(&dir, gid, mode).map_err(|e| e.into_storage_error(&spec.mount_point))?;
        Ok(MountedStorage {
            path: dir.path().to_path_buf(),
            mounted: false,
            device: None,
        })
    }
}

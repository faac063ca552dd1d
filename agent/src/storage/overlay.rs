//! `overlayfs`: an overlay mount whose layers are directories beneath the agent's
//! directory (layers other storages mounted). Options: `lowerdir=A:B` (required),
//! `upperdir=` and `workdir=` (together), or Kata's `io.katacontainers.fs-opt.overlay-rw`
//! to get a writable layer in `<run dir>/<container id>/{upper,work}`.
//!
//! Every layer is resolved with [`crate::fs::confine`] and handed to the kernel by fd
//! (`/proc/self/fd/N`), like the mount point.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{MountedStorage, StorageContext, StorageError, StorageHandler, StorageSpec};
use crate::fs::{ConfinedPath, Scope, relative_to};
use crate::mount::MountOptions;

pub struct Overlay;

const FSTYPE: &str = "overlay";
/// Kata's option asking for a writable layer for the container.
pub const OVERLAY_RW: &str = "io.katacontainers.fs-opt.overlay-rw";

/// The layer options, split out of the mount options.
#[derive(Debug, Default)]
struct Layers {
    lower: Vec<PathBuf>,
    upper: Option<PathBuf>,
    work: Option<PathBuf>,
    /// The other options, for the kernel.
    rest: Vec<String>,
}

fn layers(spec: &StorageSpec, run_dir: &Path) -> Result<Layers, String> {
    let mut layers = Layers::default();
    for option in spec.mount_options() {
        let confined = |value: &str| -> Result<PathBuf, String> {
            if value.is_empty() {
                return Err(format!("{option}: empty path"));
            }
            let relative = relative_to(run_dir, Scope::Beneath, Path::new(value))
                .map_err(|e| e.to_string())?;
            Ok(run_dir.join(relative))
        };
        match option.split_once('=') {
            Some(("lowerdir", value)) => {
                for layer in value.split(':') {
                    layers.lower.push(confined(layer)?);
                }
            }
            Some(("upperdir", value)) => layers.upper = Some(confined(value)?),
            Some(("workdir", value)) => layers.work = Some(confined(value)?),
            _ => layers.rest.push(option),
        }
    }
    if layers.lower.is_empty() {
        return Err("lowerdir= is required".into());
    }
    if layers.upper.is_some() != layers.work.is_some() {
        return Err("upperdir= and workdir= go together".into());
    }
    if layers.upper.is_some() && spec.has_option(OVERLAY_RW) {
        return Err(format!("{OVERLAY_RW} and upperdir= exclude each other"));
    }
    Ok(layers)
}

/// A container id usable as one path component.
fn container_dir(container_id: Option<&str>) -> Result<&str, String> {
    match container_id {
        None => Err(format!(
            "{OVERLAY_RW} needs a container (not a sandbox storage)"
        )),
        Some(id) if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0']) => {
            Err(format!("container id {id:?} cannot name a directory"))
        }
        Some(id) => Ok(id),
    }
}

#[async_trait]
impl StorageHandler for Overlay {
    fn driver(&self) -> &'static str {
        "overlayfs"
    }

    fn validate(&self, spec: &StorageSpec, run_dir: &Path) -> Result<(), String> {
        if !spec.fstype.is_empty() && spec.fstype != FSTYPE {
            return Err(format!(
                "fstype must be {FSTYPE} (or empty), not {:?}",
                spec.fstype
            ));
        }
        let layers = layers(spec, run_dir)?;
        MountOptions::parse(&layers.rest).map_err(|e| e.to_string())?;
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
        let layers = layers(spec, ctx.root.path()).map_err(invalid)?;
        let mut options = MountOptions::parse(&layers.rest)?;
        // The fds must stay open until the mount is done: the kernel resolves the
        // /proc/self/fd names then.
        let mut held: Vec<ConfinedPath> = Vec::new();
        let mut lower = Vec::new();
        for layer in &layers.lower {
            let dir = ctx.root.resolve(layer)?;
            lower.push(dir.proc_path().display().to_string());
            held.push(dir);
        }
        options.data.push(format!("lowerdir={}", lower.join(":")));
        let writable = match (&layers.upper, &layers.work) {
            (Some(upper), Some(work)) => Some((upper.clone(), work.clone())),
            _ if spec.has_option(OVERLAY_RW) => {
                let id = container_dir(ctx.container_id).map_err(invalid)?;
                let base = ctx.root.path().join(id);
                Some((base.join("upper"), base.join("work")))
            }
            _ => None,
        };
        if let Some((upper, work)) = writable {
            for (key, dir) in [("upperdir", upper), ("workdir", work)] {
                let dir = ctx.root.create_dir_all(&dir, 0o755)?;
                options
                    .data
                    .push(format!("{key}={}", dir.proc_path().display()));
                held.push(dir);
            }
        }
        let mounted =
            super::mount_storage(spec, ctx, FSTYPE.into(), FSTYPE.into(), options, None).await;
        drop(held);
        mounted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_must_be_one_component() {
        assert_eq!(container_dir(Some("c1")), Ok("c1"));
        for bad in ["", ".", "..", "a/b"] {
            assert!(container_dir(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(container_dir(None).unwrap_err().contains("sandbox"));
    }
}

//! The table of storages in use, reference-counted by mount point.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use super::{
    MountedStorage, StorageContext, StorageError, StorageRegistry, StorageRequest, StorageSpec,
};
use crate::device::DeviceWaiter;
use crate::fs::responsive::{STORAGE_ANSWER_TIMEOUT, answers_within};
use crate::fs::{ConfinedRoot, Scope};
use crate::mount::MountError;

/// One user's hold on a storage; give it back with [`Storages::release`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a storage stays mounted until its reference is released"]
pub struct StorageRef {
    mount_point: PathBuf,
    path: PathBuf,
    device: Option<PathBuf>,
}

impl StorageRef {
    /// The mount point as requested (normalized): the storage's key.
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// Where the storage is, symlinks inside the agent's directory resolved: the path
    /// to build container mounts from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device node behind a block storage.
    pub fn device(&self) -> Option<&Path> {
        self.device.as_deref()
    }
}

struct Entry {
    spec: StorageSpec,
    refs: usize,
    mounted: MountedStorage,
}

#[derive(Default)]
struct Table {
    root: Option<Arc<ConfinedRoot>>,
    /// In the order they were mounted.
    entries: Vec<Entry>,
}

/// Every storage in use in the sandbox.
pub struct Storages {
    registry: StorageRegistry,
    run_dir: PathBuf,
    devices: DeviceWaiter,
    // Held across a mount: storage changes happen one at a time (a device wait is
    // bounded by the hot-plug timeout).
    table: Mutex<Table>,
}

impl Storages {
    /// Storages beneath `run_dir` (created on first use), with devices found by
    /// `devices`.
    pub fn new(run_dir: impl Into<PathBuf>, devices: DeviceWaiter) -> Self {
        Self {
            registry: StorageRegistry::new(),
            run_dir: run_dir.into(),
            devices,
            table: Mutex::new(Table::default()),
        }
    }

    /// The agent's directory every mount point is beneath.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The drivers this agent supports.
    pub fn drivers(&self) -> Vec<&'static str> {
        self.registry.drivers()
    }

    /// Checks a storage request.
    pub fn parse(&self, storage: &StorageRequest) -> Result<StorageSpec, StorageError> {
        StorageSpec::check(storage, &self.registry, &self.run_dir)
    }

    /// The agent's directory, opened as a confinement root (created if missing).
    pub async fn root(&self) -> Result<Arc<ConfinedRoot>, StorageError> {
        let mut table = self.table.lock().await;
        self.open_root(&mut table)
    }

    fn open_root(&self, table: &mut Table) -> Result<Arc<ConfinedRoot>, StorageError> {
        if let Some(root) = &table.root {
            return Ok(Arc::clone(root));
        }
        let root = Arc::new(ConfinedRoot::create(&self.run_dir, Scope::Beneath)?);
        table.root = Some(Arc::clone(&root));
        Ok(root)
    }

    /// Makes every storage available, for `container_id` (`None`: the sandbox). All or
    /// nothing: on an error, the ones this call took are released again.
    pub async fn acquire(
        &self,
        specs: &[StorageSpec],
        container_id: Option<&str>,
    ) -> Result<Vec<StorageRef>, StorageError> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let mut table = self.table.lock().await;
        let root = self.open_root(&mut table)?;
        let mut taken = Vec::with_capacity(specs.len());
        for spec in specs {
            match self
                .acquire_one(&mut table, &root, spec, container_id)
                .await
            {
                Ok(taken_ref) => taken.push(taken_ref),
                Err(error) => {
                    for taken_ref in taken.iter().rev() {
                        if let Err(e) = release_one(&mut table, &root, taken_ref) {
                            tracing::warn!(error = %e, "rolling back a storage");
                        }
                    }
                    return Err(error);
                }
            }
        }
        Ok(taken)
    }

    async fn acquire_one(
        &self,
        table: &mut Table,
        root: &Arc<ConfinedRoot>,
        spec: &StorageSpec,
        container_id: Option<&str>,
    ) -> Result<StorageRef, StorageError> {
        if let Some(entry) = table
            .entries
            .iter_mut()
            .find(|e| e.spec.mount_point == spec.mount_point)
        {
            if entry.spec.driver != spec.driver || entry.spec.source != spec.source {
                return Err(StorageError::Conflict {
                    mount_point: spec.mount_point.clone(),
                    existing_driver: entry.spec.driver,
                    existing_source: entry.spec.source.clone(),
                    driver: spec.driver,
                    requested_source: spec.source.clone(),
                });
            }
            entry.refs += 1;
            tracing::debug!(mount_point = %spec.mount_point.display(), refs = entry.refs, "storage shared");
            return Ok(reference(entry));
        }
        let handler = self.registry.handler(spec.driver)?;
        let ctx = StorageContext {
            root,
            devices: &self.devices,
            container_id,
        };
        let mounted = handler.mount(spec, &ctx).await?;
        table.entries.push(Entry {
            spec: spec.clone(),
            refs: 1,
            mounted,
        });
        let entry = table.entries.last().ok_or_else(|| StorageError::NotHeld {
            mount_point: spec.mount_point.clone(),
        })?;
        Ok(reference(entry))
    }

    /// Gives references back; a storage whose last reference goes is unmounted. Every
    /// reference is released even if one fails; the first error is returned.
    pub async fn release(&self, refs: &[StorageRef]) -> Result<(), StorageError> {
        if refs.is_empty() {
            return Ok(());
        }
        let mut table = self.table.lock().await;
        let root = self.open_root(&mut table)?;
        let mut first_error = None;
        for storage in refs.iter().rev() {
            if let Err(e) = release_one(&mut table, &root, storage) {
                tracing::warn!(error = %e, "releasing a storage");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Unmounts every storage, newest first, whoever holds it (the sandbox's end).
    /// Returns what failed. A storage whose filesystem does not answer (a virtio-fs share
    /// whose virtiofsd is gone) is left mounted: unmounting it would block the agent for
    /// ever, and with it the guest's power-off.
    pub async fn release_all(&self) -> Vec<StorageError> {
        let mut table = self.table.lock().await;
        let Some(root) = table.root.clone() else {
            return Vec::new();
        };
        let mut errors = Vec::new();
        while let Some(entry) = table.entries.pop() {
            if entry.mounted.mounted
                && !answers_within(entry.mounted.path.clone(), STORAGE_ANSWER_TIMEOUT).await
            {
                tracing::warn!(
                    mount_point = %entry.spec.mount_point.display(),
                    timeout = ?STORAGE_ANSWER_TIMEOUT,
                    "storage does not answer: left mounted (unmounting it would block for ever)"
                );
                continue;
            }
            if let Err(e) = take_down(&root, &entry) {
                tracing::warn!(error = %e, "unmounting a storage at the sandbox's end");
                errors.push(e);
            }
        }
        errors
    }

    /// Mount points in use with their reference counts, oldest first.
    pub async fn held(&self) -> Vec<(PathBuf, usize)> {
        let table = self.table.lock().await;
        table
            .entries
            .iter()
            .map(|e| (e.spec.mount_point.clone(), e.refs))
            .collect()
    }
}

fn reference(entry: &Entry) -> StorageRef {
    StorageRef {
        mount_point: entry.spec.mount_point.clone(),
        path: entry.mounted.path.clone(),
        device: entry.mounted.device.clone(),
    }
}

fn release_one(
    table: &mut Table,
    root: &ConfinedRoot,
    storage: &StorageRef,
) -> Result<(), StorageError> {
    let index = table
        .entries
        .iter()
        .position(|e| e.spec.mount_point == storage.mount_point && e.refs > 0)
        .ok_or_else(|| StorageError::NotHeld {
            mount_point: storage.mount_point.clone(),
        })?;
    let entry = &mut table.entries[index];
    entry.refs -= 1;
    if entry.refs > 0 {
        tracing::debug!(mount_point = %storage.mount_point.display(), refs = entry.refs, "storage still in use");
        return Ok(());
    }
    // On failure the entry stays (with no reference) for the sandbox's end to retry.
    take_down(root, entry)?;
    table.entries.remove(index);
    Ok(())
}

fn take_down(root: &ConfinedRoot, entry: &Entry) -> Result<(), StorageError> {
    if !entry.mounted.mounted {
        return Ok(());
    }
    match crate::mount::unmount(root, &entry.spec.mount_point) {
        Ok(()) => {
            tracing::info!(mount_point = %entry.spec.mount_point.display(), "storage unmounted");
            Ok(())
        }
        Err(MountError::NotMounted { target })
        | Err(MountError::Confine(crate::fs::ConfineError::NotFound { path: target })) => {
            tracing::warn!(mount_point = %target.display(), "storage was already unmounted");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

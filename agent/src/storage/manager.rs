//! The table of storages in use, reference-counted by mount point.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use super::{
    MountedStorage, Resized, StaleMounts, StorageContext, StorageError, StorageRegistry,
    StorageRequest, StorageSpec, VolumeStats, volume,
};
use crate::device::DeviceWaiter;
use crate::fs::responsive::{STORAGE_ANSWER_TIMEOUT, STORAGE_UNMOUNT_TIMEOUT, answers_within};
use crate::fs::{ConfinedRoot, Scope};
use crate::mount::{MountError, MountOptions};

/// Where Kata's runtime mounts the sandbox's virtio-fs share, beneath the agent's
/// directory.
pub const SHARED_CONTAINERS_DIR: &str = "shared/containers";

/// Kata's driver name of tmpfs storages, the only ones `UpdateEphemeralMounts` changes.
const EPHEMERAL: &str = "ephemeral";

/// One request of `UpdateEphemeralMounts`, checked: its spec and the options to remount
/// with; `None` when it asks for nothing.
fn ephemeral_update(
    request: &StorageRequest,
    parse: impl Fn(&StorageRequest) -> Result<StorageSpec, StorageError>,
) -> Result<Option<(StorageSpec, MountOptions)>, StorageError> {
    if request.driver != EPHEMERAL {
        return Err(StorageError::Invalid {
            mount_point: request.mount_point.clone(),
            driver: request.driver.clone(),
            reason: "only ephemeral storages can be updated".into(),
        });
    }
    // Every update is a remount; Kata's runtime says so in the options.
    let options: Vec<String> = request
        .options
        .iter()
        .map(|item| {
            item.split(',')
                .filter(|o| o.trim() != "remount")
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|item| !item.trim().is_empty())
        .collect();
    let spec = parse(&StorageRequest {
        options,
        ..request.clone()
    })?;
    let options = MountOptions::parse(&spec.mount_options())?;
    if options.is_bind() || !options.propagation.is_empty() {
        return Err(StorageError::Invalid {
            mount_point: request.mount_point.clone(),
            driver: request.driver.clone(),
            reason: "bind and propagation options cannot be changed by an update".into(),
        });
    }
    if options.flags.is_empty() && options.data.is_empty() {
        return Ok(None);
    }
    Ok(Some((spec, options)))
}

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
            if let Err(e) = take_down_within(&root, &entry, STORAGE_UNMOUNT_TIMEOUT).await {
                tracing::warn!(error = %e, "unmounting a storage at the sandbox's end");
                errors.push(e);
            }
        }
        errors
    }

    /// Finds block devices (by PCI path, name, SCSI address) for storages and swap.
    pub fn devices(&self) -> &DeviceWaiter {
        &self.devices
    }

    /// `UpdateEphemeralMounts`: remounts each held `ephemeral` storage with its request's
    /// options (`size=` resizes the tmpfs). Kata's `remount` option may be given (every
    /// update is a remount); `fsgid=` is not applied again. The mount's own flags
    /// (`nosuid`, `ro`, ...) are kept and the request's added. Every request is checked
    /// before anything is remounted; a request without options changes nothing. Returns
    /// the mount points remounted.
    pub async fn update_ephemeral(
        &self,
        requests: &[StorageRequest],
    ) -> Result<Vec<PathBuf>, StorageError> {
        let mut updates = Vec::with_capacity(requests.len());
        for request in requests {
            let update = ephemeral_update(request, |r| self.parse(r))?;
            updates.extend(update);
        }
        let mut table = self.table.lock().await;
        let root = self.open_root(&mut table)?;
        let mut plans = Vec::with_capacity(updates.len());
        for (spec, options) in updates {
            let entry = &table.entries[held(&table, &spec.mount_point)?];
            if entry.spec.driver != spec.driver {
                return Err(StorageError::Conflict {
                    mount_point: spec.mount_point.clone(),
                    existing_driver: entry.spec.driver,
                    existing_source: entry.spec.source.clone(),
                    driver: spec.driver,
                    requested_source: spec.source.clone(),
                });
            }
            let kept = MountOptions::parse(&entry.spec.mount_options())?.flags;
            plans.push((
                spec.mount_point,
                kept | options.flags,
                options.data_string(),
            ));
        }
        let mut done = Vec::with_capacity(plans.len());
        for (mount_point, flags, data) in plans {
            let remount_root = Arc::clone(&root);
            let target = mount_point.clone();
            let remount_data = data.clone();
            super::blocking(&mount_point, move || {
                crate::mount::remount(&remount_root, &target, flags, &remount_data)
                    .map_err(StorageError::from)
            })
            .await?;
            tracing::info!(mount_point = %mount_point.display(), options = %data, "ephemeral storage remounted");
            done.push(mount_point);
        }
        Ok(done)
    }

    /// `GetVolumeStats` of the volume mounted at `path` (beneath the agent's directory).
    pub async fn volume_stats(&self, path: &str) -> Result<VolumeStats, StorageError> {
        let root = self.root().await?;
        let path = PathBuf::from(path);
        super::blocking(&path.clone(), move || volume::stats(&root, &path)).await
    }

    /// `ResizeVolume`: grows the ext4 volume mounted at `path` to `size` bytes.
    pub async fn resize_volume(&self, path: &str, size: u64) -> Result<Resized, StorageError> {
        let root = self.root().await?;
        let path = PathBuf::from(path);
        super::blocking(&path.clone(), move || volume::resize(&root, &path, size)).await
    }

    /// `RemoveStaleVirtiofsShareMounts`: see
    /// [`virtio_fs::remove_stale_share_mounts`](super::virtio_fs::remove_stale_share_mounts);
    /// the share is Kata's `shared/containers` beneath the agent's directory.
    pub async fn remove_stale_share_mounts(&self) -> Result<StaleMounts, StorageError> {
        // Storage changes need not wait: a look-up on a share whose daemon died can
        // block, and only mounts whose root is gone are unmounted here.
        let share = self.run_dir.join(SHARED_CONTAINERS_DIR);
        super::blocking(&share.clone(), move || {
            super::virtio_fs::remove_stale_share_mounts(&share)
        })
        .await
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

/// The index of the held (referenced) storage mounted at `mount_point`.
fn held(table: &Table, mount_point: &Path) -> Result<usize, StorageError> {
    table
        .entries
        .iter()
        .position(|e| e.spec.mount_point == mount_point && e.refs > 0)
        .ok_or_else(|| StorageError::NotHeld {
            mount_point: mount_point.to_path_buf(),
        })
}

fn release_one(
    table: &mut Table,
    root: &ConfinedRoot,
    storage: &StorageRef,
) -> Result<(), StorageError> {
    let index = held(table, &storage.mount_point)?;
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
    unmounted(entry, crate::mount::unmount(root, &entry.spec.mount_point))
}

/// [`take_down`] with the unmount made by a child given `timeout` (the sandbox's end, when
/// the agent must not be held by a file system that stopped answering).
async fn take_down_within(
    root: &ConfinedRoot,
    entry: &Entry,
    timeout: Duration,
) -> Result<(), StorageError> {
    if !entry.mounted.mounted {
        return Ok(());
    }
    let result = crate::mount::unmount_within(root, &entry.spec.mount_point, timeout).await;
    unmounted(entry, result)
}

/// What an unmount of `entry`'s storage came to, logged.
fn unmounted(entry: &Entry, result: Result<(), MountError>) -> Result<(), StorageError> {
    match result {
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

//! Storages: what the host asks the agent to mount, by Kata's driver names.
//!
//! | driver | source | what the agent does |
//! |---|---|---|
//! | `virtio-fs` | the share's tag | `mount -t virtiofs TAG`, waiting (event-driven) for a hot-plugged share |
//! | `local` | unused | creates a directory (`mode=`, `fsgid=` options) |
//! | `ephemeral` | unused | mounts a tmpfs (`size=`, `mode=`, `fsgid=` options) |
//! | `blk` | a PCI path (`02/01`) or `/dev/NAME` | waits for the virtio-blk disk, mounts it |
//! | `mmioblk` | `/dev/NAME` | waits for the virtio-mmio disk, mounts it |
//! | `scsi` | `TARGET:LUN` | scans the SCSI hosts, waits for the disk, mounts it |
//! | `nvdimm` | `/dev/pmemN` | waits for the pmem device, mounts it (`dax` where asked) |
//! | `overlayfs` | unused | mounts an overlay of confined layer directories |
//!
//! Every mount point lies beneath the agent's directory (`/run/kata-containers`) and is
//! resolved there with [`crate::fs::confine`]. Storages are reference-counted by mount
//! point in [`Storages`]: the second user of a mount point shares the mount, the last
//! release unmounts it.
//!
//! A driver is one [`StorageHandler`]; the [`StorageRegistry`] lists them (and feeds
//! `GetGuestDetails`' `storage_handlers`).
//!
//! Storages in use can change after they are mounted: `UpdateEphemeralMounts` remounts
//! held `ephemeral` storages with new options ([`Storages::update_ephemeral`]: a tmpfs
//! resized), and the [`volume`] module answers `GetVolumeStats` and `ResizeVolume` for
//! the volume mounted at a path. `RemoveStaleVirtiofsShareMounts` looks at every mount
//! beneath the virtio-fs share, so the kernel drops those whose host side is gone
//! ([`Storages::remove_stale_share_mounts`]).

mod block;
mod ephemeral;
mod local;
mod manager;
mod overlay;
mod ownership;
pub mod spec;
mod virtio_fs;
pub mod volume;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

pub use manager::{StorageRef, Storages};
pub use spec::{FsGroup, FsGroupPolicy, StorageRequest, StorageSpec};
pub use virtio_fs::StaleMounts;
pub use volume::{Resized, Usage, VolumeError, VolumeStats};

use crate::device::{DeviceError, DeviceWaiter};
use crate::fs::{ConfineError, ConfinedRoot};
use crate::mount::{MountError, MountOptions, MountSource};

/// Why a storage could not be set up or taken down.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The driver is not one this agent has.
    #[error("unsupported storage driver {driver:?}; supported: {supported}")]
    UnsupportedDriver {
        /// The driver asked for.
        driver: String,
        /// The drivers this agent has, comma-separated.
        supported: String,
    },
    /// A field of the storage is invalid for its driver.
    #[error("storage {mount_point:?} (driver {driver}): {reason}")]
    Invalid {
        /// The storage's mount point, as given.
        mount_point: String,
        /// The storage's driver.
        driver: String,
        /// What is wrong.
        reason: String,
    },
    /// The mount point (or a layer) escapes the agent's directory, or cannot be made.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// A mount option was refused, or mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The device behind the storage did not show up.
    #[error("storage {mount_point}: {source}")]
    Device {
        /// The storage's mount point.
        mount_point: PathBuf,
        /// Why the device was not found.
        #[source]
        source: DeviceError,
    },
    /// The virtio-fs share could not be mounted within the hot-plug timeout.
    #[error(
        "storage {mount_point}: cannot mount virtio-fs tag {tag:?}: {reason} \
         (no share with this tag appeared within {timeout:?}, agent.hotplug_timeout)"
    )]
    VirtioFsTag {
        /// The storage's mount point.
        mount_point: PathBuf,
        /// The share's tag (the storage's source).
        tag: String,
        /// The last mount attempt's failure.
        reason: Box<MountError>,
        /// How long the agent waited for the share (`agent.hotplug_timeout`).
        timeout: std::time::Duration,
    },
    /// Another storage already occupies the mount point.
    #[error(
        "mount point {mount_point} already holds {existing_driver} storage from {existing_source:?}; \
         refusing {driver} storage from {requested_source:?}"
    )]
    Conflict {
        /// The contested mount point.
        mount_point: PathBuf,
        /// The driver of the storage already there.
        existing_driver: &'static str,
        /// The source of the storage already there.
        existing_source: String,
        /// The driver of the storage refused.
        driver: &'static str,
        /// The source of the storage refused.
        requested_source: String,
    },
    /// A release for a mount point nobody holds.
    #[error("no storage is held at {mount_point}")]
    NotHeld {
        /// The mount point.
        mount_point: PathBuf,
    },
    /// Changing ownership or permissions of the storage failed.
    #[error("storage {mount_point}: {operation} {path}: {errno}")]
    Ownership {
        /// The storage's mount point.
        mount_point: PathBuf,
        /// The step that failed, e.g. `chown`, `chmod`.
        operation: &'static str,
        /// The file it failed on.
        path: PathBuf,
        /// Its error.
        errno: nix::errno::Errno,
    },
    /// A volume could not be examined, resized, or its share mounts checked.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The worker thread doing the mount went away.
    #[error("storage {mount_point}: the mount was interrupted: {reason}")]
    Interrupted {
        /// The storage's mount point.
        mount_point: PathBuf,
        /// What became of the thread (it panicked or was cancelled).
        reason: String,
    },
}

/// A storage's options are parsed where a `StorageError` is the answer.
impl From<hull_container::mount_options::MountOptionError> for StorageError {
    fn from(error: hull_container::mount_options::MountOptionError) -> Self {
        Self::Mount(error.into())
    }
}

/// What a handler may use.
pub struct StorageContext<'a> {
    /// The agent's directory; every mount point is beneath it.
    pub root: &'a Arc<ConfinedRoot>,
    /// Waits for the block devices behind `blk`, `mmioblk`, `scsi` and `nvdimm`
    /// storages.
    pub devices: &'a DeviceWaiter,
    /// The container the storage is for; `None` for sandbox storages.
    pub container_id: Option<&'a str>,
}

/// A storage made available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedStorage {
    /// Where it is, as the kernel names it (symlinks inside the agent's directory
    /// resolved).
    pub path: PathBuf,
    /// Whether something was mounted there (to unmount on the last release); `false`
    /// for `local` directories.
    pub mounted: bool,
    /// The device node behind it, for block storages.
    pub device: Option<PathBuf>,
}

/// One storage driver.
#[async_trait]
pub trait StorageHandler: Send + Sync {
    /// Kata's name of the driver.
    fn driver(&self) -> &'static str;

    /// Checks the driver-specific fields before anything is mounted; the error is the
    /// reason, for [`StorageError::Invalid`]. `run_dir` is the agent's directory.
    fn validate(&self, spec: &StorageSpec, run_dir: &std::path::Path) -> Result<(), String>;

    /// Makes the storage available at `spec.mount_point`.
    async fn mount(
        &self,
        spec: &StorageSpec,
        ctx: &StorageContext<'_>,
    ) -> Result<MountedStorage, StorageError>;
}

/// The drivers this agent has.
pub struct StorageRegistry {
    handlers: Vec<Box<dyn StorageHandler>>,
}

impl Default for StorageRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl StorageRegistry {
    /// Every driver hull implements.
    pub fn new() -> Self {
        Self {
            handlers: vec![
                Box::new(virtio_fs::VirtioFs),
                Box::new(local::Local),
                Box::new(ephemeral::Ephemeral),
                Box::new(block::Block::Blk),
                Box::new(block::Block::MmioBlk),
                Box::new(block::Block::Scsi),
                Box::new(block::Block::Nvdimm),
                Box::new(overlay::Overlay),
            ],
        }
    }

    /// The driver names, in registry order.
    pub fn drivers(&self) -> Vec<&'static str> {
        self.handlers.iter().map(|h| h.driver()).collect()
    }

    /// The handler of `driver`.
    pub fn handler(&self, driver: &str) -> Result<&dyn StorageHandler, StorageError> {
        self.handlers
            .iter()
            .find(|h| h.driver() == driver)
            .map(|h| h.as_ref())
            .ok_or_else(|| StorageError::UnsupportedDriver {
                driver: driver.to_string(),
                supported: self.drivers().join(", "),
            })
    }
}

/// The common last step: create the mount point, mount `source` there (on a blocking
/// thread: a mount can wait on a device or a host daemon), apply the `fs_group`.
async fn mount_storage(
    spec: &StorageSpec,
    ctx: &StorageContext<'_>,
    source: String,
    fstype: String,
    options: MountOptions,
    device: Option<PathBuf>,
) -> Result<MountedStorage, StorageError> {
    let root = Arc::clone(ctx.root);
    let spec = spec.clone();
    let mount_point = spec.mount_point.clone();
    blocking(&mount_point, move || {
        root.create_dir_all(&spec.mount_point, 0o755)?;
        let mounted = crate::mount::mount_at(
            &root,
            &spec.mount_point,
            MountSource::Name(&source),
            &fstype,
            &options,
        )?;
        if let Some(group) = spec.fs_group {
            let applied = ownership::apply_fs_group(&mounted, group, options.read_only());
            if let Err(e) = applied {
                // Do not leave a half-set-up mount behind.
                let _ = crate::mount::unmount(&root, &spec.mount_point);
                return Err(e.into_storage_error(&spec.mount_point));
            }
        }
        tracing::info!(
            driver = spec.driver,
            source = %source,
            mount_point = %mounted.path().display(),
            "storage mounted"
        );
        Ok(MountedStorage {
            path: mounted.path().to_path_buf(),
            mounted: true,
            device,
        })
    })
    .await
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    mount_point: &std::path::Path,
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StorageError::Interrupted {
            mount_point: mount_point.to_path_buf(),
            reason: e.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use spec::StorageRequest as Storage;
    use std::path::Path;

    const RUN: &str = "/run/kata-containers";

    fn storage(driver: &str, mount_point: &str) -> Storage {
        Storage {
            driver: driver.into(),
            mount_point: mount_point.into(),
            ..Default::default()
        }
    }

    fn parse(storage: &Storage) -> Result<StorageSpec, StorageError> {
        StorageSpec::check(storage, &StorageRegistry::new(), Path::new(RUN))
    }

    #[test]
    fn the_registry_lists_katas_driver_names() {
        assert_eq!(
            StorageRegistry::new().drivers(),
            vec![
                "virtio-fs",
                "local",
                "ephemeral",
                "blk",
                "mmioblk",
                "scsi",
                "nvdimm",
                "overlayfs"
            ]
        );
    }

    #[test]
    fn an_unknown_driver_is_named_with_the_supported_ones() {
        let err = parse(&storage("watchable-bind", "/run/kata-containers/x")).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StorageError::UnsupportedDriver { .. }));
        assert!(message.contains("\"watchable-bind\""), "{message}");
        assert!(message.contains("virtio-fs, local, ephemeral"), "{message}");
        let err = parse(&storage("", "/run/kata-containers/x")).unwrap_err();
        assert!(err.to_string().contains("\"\""), "{err}");
    }

    #[test]
    fn mount_points_must_stay_beneath_the_run_dir() {
        for (mount_point, needle) in [
            ("/etc", "must be under"),
            ("/run/kata-containers-evil/x", "must be under"),
            ("/run/kata-containers/../../etc", "'..'"),
            ("/run/kata-containers/sandbox/../x", "'..'"),
            ("/run/kata-containers", "not the directory itself"),
            ("/run/kata-containers/./", "not the directory itself"),
            ("", "empty"),
        ] {
            let err = parse(&storage("local", mount_point)).unwrap_err();
            assert!(err.to_string().contains(needle), "{mount_point:?}: {err}");
        }
        let spec = parse(&storage(
            "local",
            "/run/kata-containers/sandbox//local/./x/",
        ))
        .unwrap();
        assert_eq!(
            spec.mount_point,
            Path::new("/run/kata-containers/sandbox/local/x")
        );
    }

    #[test]
    fn driver_fields_are_checked_before_mounting() {
        let cases = [
            (
                Storage {
                    source: String::new(),
                    fstype: "virtiofs".into(),
                    ..storage("virtio-fs", "/run/kata-containers/shared/containers")
                },
                "tag",
            ),
            (
                Storage {
                    source: "kataShared".into(),
                    fstype: "ext4".into(),
                    ..storage("virtio-fs", "/run/kata-containers/shared/containers")
                },
                "virtiofs",
            ),
            (
                Storage {
                    source: "tmpfs".into(),
                    fstype: "hugetlbfs".into(),
                    ..storage("ephemeral", "/run/kata-containers/sandbox/ephemeral/x")
                },
                "hugetlbfs",
            ),
            (
                Storage {
                    source: "0x2".into(),
                    fstype: "ext4".into(),
                    ..storage("blk", "/run/kata-containers/c1/rootfs")
                },
                "PCI path",
            ),
            (
                Storage {
                    source: "02/01".into(),
                    ..storage("blk", "/run/kata-containers/c1/rootfs")
                },
                "fstype",
            ),
            (
                Storage {
                    source: "vda".into(),
                    fstype: "ext4".into(),
                    ..storage("mmioblk", "/run/kata-containers/c1/rootfs")
                },
                "/dev/NAME",
            ),
            (
                Storage {
                    source: "1".into(),
                    fstype: "ext4".into(),
                    ..storage("scsi", "/run/kata-containers/c1/rootfs")
                },
                "TARGET:LUN",
            ),
            (
                Storage {
                    source: "/dev/vda".into(),
                    fstype: "ext4".into(),
                    ..storage("nvdimm", "/run/kata-containers/c1/rootfs")
                },
                "pmem",
            ),
            (
                Storage {
                    options: vec!["mode=999".into()],
                    ..storage("local", "/run/kata-containers/sandbox/local/x")
                },
                "mode",
            ),
            (
                Storage {
                    options: vec!["fsgid=root".into()],
                    ..storage("local", "/run/kata-containers/sandbox/local/x")
                },
                "fsgid",
            ),
            (
                Storage {
                    fstype: "overlay".into(),
                    options: vec!["lowerdir=/etc".into()],
                    ..storage("overlayfs", "/run/kata-containers/c1/rootfs")
                },
                "must be under",
            ),
            (
                Storage {
                    fstype: "overlay".into(),
                    ..storage("overlayfs", "/run/kata-containers/c1/rootfs")
                },
                "lowerdir",
            ),
        ];
        for (storage, needle) in cases {
            let err = parse(&storage).unwrap_err();
            assert!(
                matches!(err, StorageError::Invalid { .. }),
                "{storage:?}: {err}"
            );
            assert!(err.to_string().contains(needle), "{storage:?}: {err}");
        }
    }

    #[test]
    fn valid_storages_parse() {
        let virtio_fs = Storage {
            source: "kataShared".into(),
            fstype: "virtiofs".into(),
            options: vec!["nodev".into()],
            ..storage("virtio-fs", "/run/kata-containers/shared/containers/")
        };
        let spec = parse(&virtio_fs).unwrap();
        assert_eq!(spec.driver, "virtio-fs");
        assert_eq!(
            spec.mount_point,
            Path::new("/run/kata-containers/shared/containers")
        );
        for storage in [
            Storage {
                source: "02/01".into(),
                fstype: "ext4".into(),
                ..storage("blk", "/run/kata-containers/c1/rootfs")
            },
            Storage {
                source: "/dev/vdb".into(),
                fstype: "ext4".into(),
                ..storage("blk", "/run/kata-containers/c1/rootfs")
            },
            Storage {
                source: "0:1".into(),
                fstype: "xfs".into(),
                ..storage("scsi", "/run/kata-containers/c1/rootfs")
            },
            Storage {
                source: "/dev/pmem0".into(),
                fstype: "ext4".into(),
                options: vec!["dax".into(), "ro".into()],
                ..storage("nvdimm", "/run/kata-containers/image")
            },
            Storage {
                source: "tmpfs".into(),
                fstype: "tmpfs".into(),
                options: vec!["size=64m".into(), "fsgid=3000".into()],
                ..storage("ephemeral", "/run/kata-containers/sandbox/ephemeral/v")
            },
            Storage {
                options: vec!["mode=0777".into(), "fsgid=3000".into()],
                ..storage("local", "/run/kata-containers/sandbox/local/v")
            },
            Storage {
                fstype: "overlay".into(),
                options: vec![
                    "lowerdir=/run/kata-containers/l1:/run/kata-containers/l2".into(),
                    "io.katacontainers.fs-opt.overlay-rw".into(),
                ],
                ..storage("overlayfs", "/run/kata-containers/c1/rootfs")
            },
        ] {
            parse(&storage).unwrap_or_else(|e| panic!("{storage:?}: {e}"));
        }
    }

    #[test]
    fn fs_group_and_kata_options_are_kept_from_the_kernel() {
        let spec = parse(&Storage {
            source: "tmpfs".into(),
            fstype: "tmpfs".into(),
            options: vec!["size=64m,fsgid=3000".into(), "io.katacontainers.x".into()],
            fs_group: Some(FsGroup {
                gid: 2000,
                policy: FsGroupPolicy::OnRootMismatch,
            }),
            ..storage("ephemeral", "/run/kata-containers/sandbox/ephemeral/v")
        })
        .unwrap();
        assert_eq!(spec.mount_options(), vec!["size=64m".to_string()]);
        assert_eq!(spec.fs_gid_option(), Ok(Some(3000)));
        assert_eq!(
            spec.fs_group,
            Some(FsGroup {
                gid: 2000,
                policy: FsGroupPolicy::OnRootMismatch
            })
        );
    }

    #[test]
    fn nul_bytes_are_refused_everywhere() {
        for storage in [
            Storage {
                source: "a\0b".into(),
                ..storage("local", "/run/kata-containers/x")
            },
            Storage {
                options: vec!["a\0".into()],
                ..storage("local", "/run/kata-containers/x")
            },
            storage("local", "/run/kata-containers/x\0y"),
        ] {
            let err = parse(&storage).unwrap_err();
            assert!(err.to_string().contains("NUL"), "{err}");
        }
    }
}

//! A storage as the host asked for it ([`StorageRequest`], the RPC layer's translation of
//! Kata's `Storage` message) and its checked form ([`StorageSpec`]).

use std::path::{Path, PathBuf};

use super::{StorageError, StorageRegistry};
use crate::fs::{Scope, relative_to};

/// Kata's mount option that sets a volume's group (`fsgid=GID`); never given to the
/// kernel.
pub const FS_GID_OPTION: &str = "fsgid";
/// Kata's prefix for options addressed to the agent, never given to the kernel.
pub const KATA_OPTION_PREFIX: &str = "io.katacontainers.";

/// A storage as the host asked for it, unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageRequest {
    /// Kata's driver name (`virtio-fs`, `blk`, ...).
    pub driver: String,
    /// Driver-specific options; no driver here uses them, they are only checked for
    /// NUL bytes.
    pub driver_options: Vec<String>,
    /// Driver-specific source: a share tag, a PCI path, a device path, ... (see the
    /// module's table); unused by some drivers.
    pub source: String,
    /// The file system type, e.g. `ext4` for a block storage; each driver checks what
    /// it accepts.
    pub fstype: String,
    /// `mount(8)` options, each possibly comma-separated, Kata's `fsgid=` and
    /// `io.katacontainers.*` options included.
    pub options: Vec<String>,
    /// Where to mount, as the host wrote it.
    pub mount_point: String,
    /// Group ownership to apply once mounted.
    pub fs_group: Option<FsGroup>,
    /// Kata's flag that several containers may use the storage; carried along, not
    /// acted on: any storage is shared by mount point.
    pub shared: bool,
}

/// A storage the host asked for, checked: a known driver, a mount point beneath the
/// agent's directory, fields without NUL bytes, driver-specific fields valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSpec {
    /// Kata's driver name, from the registry.
    pub driver: &'static str,
    /// As requested ([`StorageRequest::driver_options`]).
    pub driver_options: Vec<String>,
    /// As requested, without NUL bytes; valid for the driver.
    pub source: String,
    /// As requested, without NUL bytes.
    pub fstype: String,
    /// As requested, without NUL bytes; [`StorageSpec::mount_options`] are those meant
    /// for the kernel.
    pub options: Vec<String>,
    /// Absolute, lexically normal (no `.`, `..` or trailing `/`), beneath the agent's
    /// directory. Symlinks are resolved only when mounting.
    pub mount_point: PathBuf,
    /// Group ownership to apply once mounted.
    pub fs_group: Option<FsGroup>,
    /// As requested ([`StorageRequest::shared`]).
    pub shared: bool,
}

/// Group ownership to give a volume (Kubernetes `fsGroup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGroup {
    /// The group every file of the volume is given.
    pub gid: u32,
    /// Whether to walk the tree every time or only when its root is not right yet.
    pub policy: FsGroupPolicy,
}

/// When to apply an [`FsGroup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsGroupPolicy {
    /// Change the whole tree every time.
    Always,
    /// Skip the change when the volume's root already has the group and permissions.
    OnRootMismatch,
}

impl StorageSpec {
    /// Checks a request against the registry and the agent's directory `run_dir`.
    pub fn check(
        storage: &StorageRequest,
        registry: &StorageRegistry,
        run_dir: &Path,
    ) -> Result<Self, StorageError> {
        let handler = registry.handler(&storage.driver)?;
        let invalid = |reason: String| StorageError::Invalid {
            mount_point: storage.mount_point.clone(),
            driver: storage.driver.clone(),
            reason,
        };
        if storage.mount_point.is_empty() {
            return Err(invalid("the mount point is empty".into()));
        }
        let relative = relative_to(run_dir, Scope::Beneath, Path::new(&storage.mount_point))?;
        if relative.as_os_str().is_empty() {
            return Err(invalid(format!(
                "the mount point must be beneath {}, not the directory itself",
                run_dir.display()
            )));
        }
        for (field, value) in [("source", &storage.source), ("fstype", &storage.fstype)] {
            if value.contains('\0') {
                return Err(invalid(format!("{field} contains a NUL byte")));
            }
        }
        for option in storage.options.iter().chain(&storage.driver_options) {
            if option.contains('\0') {
                return Err(invalid(format!("option {option:?} contains a NUL byte")));
            }
        }
        let spec = Self {
            driver: handler.driver(),
            driver_options: storage.driver_options.clone(),
            source: storage.source.clone(),
            fstype: storage.fstype.clone(),
            options: storage.options.clone(),
            mount_point: run_dir.join(relative),
            fs_group: storage.fs_group,
            shared: storage.shared,
        };
        handler.validate(&spec, run_dir).map_err(invalid)?;
        Ok(spec)
    }

    /// The value of a `key=value` option (`options`), if present.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .flat_map(|o| o.split(','))
            .find_map(|o| o.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
    }

    /// Whether the bare option `name` is present.
    pub fn has_option(&self, name: &str) -> bool {
        self.options
            .iter()
            .flat_map(|o| o.split(','))
            .any(|o| o == name)
    }

    /// The options meant for the kernel: without Kata's `fsgid=` and
    /// `io.katacontainers.*` options.
    pub fn mount_options(&self) -> Vec<String> {
        self.options
            .iter()
            .flat_map(|o| o.split(','))
            .filter(|o| {
                !o.is_empty()
                    && !o.starts_with(KATA_OPTION_PREFIX)
                    && o.split_once('=').is_none_or(|(k, _)| k != FS_GID_OPTION)
            })
            .map(str::to_string)
            .collect()
    }

    /// The `fsgid=` option as a number.
    pub fn fs_gid_option(&self) -> Result<Option<u32>, String> {
        self.option(FS_GID_OPTION)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("{FS_GID_OPTION}={v}: expected a group id"))
            })
            .transpose()
    }
}

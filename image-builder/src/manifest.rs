//! The JSON manifest every build writes beside its output.
//!
//! Paths in a manifest are relative to the manifest's own directory, and nothing in it
//! depends on when, where or by whom it was built: two builds of the same inputs write
//! the same bytes (the reproducibility test compares them).

use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::sha256_file;
use crate::disk::Layout;
use crate::fsutil::{self, IoError, io_err};

/// What can go wrong reading or writing a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Io(#[from] IoError),

    /// A manifest cannot be read.
    #[error("cannot read the manifest {}: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
}

type Result<T, E = ManifestError> = std::result::Result<T, E>;
use crate::mkfs::FsType;
use crate::rootfs::TreeEntry;
use crate::vm_args::Attachment;

/// The manifest format written.
pub const FORMAT: &str = "hull-image-manifest/1";

/// One built file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `image`, `initrd`, `vmlinux`, `bzImage`, `kernel-config`...
    pub role: String,
    /// Relative to the manifest's directory.
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The kernel an image is meant for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// SHA-256 of the kernel's `.config`.
    pub config_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub release: Option<String>,
    /// hull-image's cache key of the build (inputs: source, fragments, arch, debug).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache_key: Option<String>,
}

/// The root tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsInfo {
    pub entries: usize,
    pub file_bytes: u64,
    /// SHA-256 of the canonical JSON of `tree`.
    pub tree_sha256: String,
    pub debug_tools: bool,
    pub tree: Vec<TreeEntry>,
}

/// dm-verity parameters (no superblock: the hash tree follows the filesystem in
/// partition 1, at `hash_start_block`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerityInfo {
    pub root_hash: String,
    pub salt: String,
    pub algorithm: String,
    pub format_version: u32,
    pub data_block_size: u64,
    pub hash_block_size: u64,
    pub data_blocks: u64,
    pub hash_start_block: u64,
    /// The dm table, `{dev}` standing for the partition.
    pub table: String,
}

/// The disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub filesystem: FsType,
    pub fs_uuid: String,
    pub disk_signature: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pfn_uuid: Option<String>,
    pub layout: Layout,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verity: Option<VerityInfo>,
}

/// The kernel command line for one way of attaching the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachInfo {
    pub attachment: Attachment,
    pub root_device: String,
    pub dax: bool,
    /// What to add to the kernel command line (besides the console).
    pub cmdline: String,
    pub vmms: Vec<String>,
}

/// A build's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// `image`, `rootfs`, `initrd` or `kernel`.
    pub kind: String,
    pub arch: String,
    pub source_date_epoch: u32,
    pub artifacts: Vec<Artifact>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kernel: Option<KernelInfo>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rootfs: Option<RootfsInfo>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image: Option<ImageInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub attach: Vec<AttachInfo>,
}

impl Manifest {
    pub fn new(kind: &str, arch: &str, source_date_epoch: u32) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            kind: kind.into(),
            arch: arch.into(),
            source_date_epoch,
            artifacts: Vec::new(),
            kernel: None,
            rootfs: None,
            image: None,
            attach: Vec::new(),
        }
    }

    /// The artifact of `role`.
    pub fn artifact(&self, role: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.role == role)
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes the manifest atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        Ok(fsutil::write_atomic(path, self.to_json().as_bytes())?)
    }

    /// Reads a manifest.
    pub fn read(path: &Path) -> Result<Manifest> {
        let text = fs::read_to_string(path).map_err(io_err("read", path))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| ManifestError::BadManifest {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(ManifestError::BadManifest {
                path: path.to_path_buf(),
                reason: format!("format `{}`, expected `{FORMAT}`", m.format),
            });
        }
        Ok(m)
    }
}

/// The default manifest path of an output: `<output>.manifest.json`.
pub fn default_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".manifest.json");
    output.with_file_name(name)
}

/// `path` relative to the directory `base` (both made absolute first; `..` where needed).
pub fn relative_path(path: &Path, base: &Path) -> Result<String> {
    let abs = |p: &Path| -> Result<PathBuf> {
        let a = std::path::absolute(p).map_err(io_err("resolve", p))?;
        // Resolve symlinks where the path exists, so both sides compare alike.
        Ok(fs::canonicalize(&a).unwrap_or(a))
    };
    let path = abs(path)?;
    let base = abs(base)?;
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c.as_os_str());
    }
    Ok(out.to_string_lossy().into_owned())
}

/// Describes a file for the manifest.
pub fn artifact(role: &str, path: &Path, manifest_dir: &Path) -> Result<Artifact> {
    Ok(Artifact {
        role: role.into(),
        path: relative_path(path, manifest_dir)?,
        bytes: fsutil::file_size(path)?,
        sha256: sha256_file(path)?,
    })
}

/// The directory a manifest at `path` lives in.
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("build/kernel")).unwrap();
        fs::write(d.join("build/kernel/vmlinux"), b"").unwrap();
        fs::write(d.join("build/img"), b"").unwrap();
        assert_eq!(
            relative_path(&d.join("build/img"), &d.join("build")).unwrap(),
            "img"
        );
        assert_eq!(
            relative_path(&d.join("build/kernel/vmlinux"), &d.join("build")).unwrap(),
            "kernel/vmlinux"
        );
        fs::create_dir_all(d.join("other")).unwrap();
        assert_eq!(
            relative_path(&d.join("build/kernel/vmlinux"), &d.join("other")).unwrap(),
            "../build/kernel/vmlinux"
        );
    }

    #[test]
    fn default_manifest_path_sits_beside_the_output() {
        assert_eq!(
            default_path(Path::new("build/rootfs.ext4.img")),
            Path::new("build/rootfs.ext4.img.manifest.json")
        );
    }

    #[test]
    fn round_trip_and_format_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::new("image", "x86_64", 0);
        m.attach.push(AttachInfo {
            attachment: Attachment::VirtioPmem,
            root_device: "/dev/pmem0p1".into(),
            dax: true,
            cmdline: "root=/dev/pmem0p1".into(),
            vmms: vec!["qemu".into()],
        });
        let p = dir.path().join("m.json");
        m.write(&p).unwrap();
        let text = fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"attachment\": \"virtio-pmem\""), "{text}");
        assert!(
            !text.contains("\"kernel\""),
            "absent parts are left out: {text}"
        );
        assert_eq!(Manifest::read(&p).unwrap(), m);
        fs::write(&p, text.replace(FORMAT, "other/9")).unwrap();
        assert!(matches!(
            Manifest::read(&p),
            Err(ManifestError::BadManifest { .. })
        ));
    }
}

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
    /// The manifest could not be written, or an artifact read to hash it.
    #[error(transparent)]
    Io(#[from] IoError),

    /// A manifest cannot be read.
    #[error("cannot read the manifest {}: {reason}", path.display())]
    BadManifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it (unparsable JSON, another format, a missing section).
        reason: String,
    },
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
    /// Size of the file in bytes.
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
}

/// The kernel an image is meant for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// SHA-256 of the kernel's `.config`.
    pub config_sha256: String,
    /// The kernel's release string (`include/config/kernel.release`), when the build record
    /// (for an image, the kernel directory's manifest) gives it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub release: Option<String>,
    /// hull-image's cache key of the build (inputs: source, fragments, arch, debug).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cache_key: Option<String>,
}

/// The root tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsInfo {
    /// Number of entries in the tree, directories and symlinks included.
    pub entries: usize,
    /// Sum of the sizes of the tree's regular files, in bytes.
    pub file_bytes: u64,
    /// SHA-256 of the canonical JSON of `tree`.
    pub tree_sha256: String,
    /// Whether busybox and its applets are in the tree (`--debug-tools`).
    pub debug_tools: bool,
    /// Every entry of the tree, in archive order (parents first).
    pub tree: Vec<TreeEntry>,
}

/// dm-verity parameters (no superblock: the hash tree follows the filesystem in
/// partition 1, at `hash_start_block`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerityInfo {
    /// The root hash, lowercase hex (what the kernel command line's dm table carries).
    pub root_hash: String,
    /// The salt, lowercase hex.
    pub salt: String,
    /// The digest algorithm (`sha256`).
    pub algorithm: String,
    /// The dm-verity hash format version (1: the salt goes before the data).
    pub format_version: u32,
    /// Size of a data block, in bytes.
    pub data_block_size: u64,
    /// Size of a hash block, in bytes.
    pub hash_block_size: u64,
    /// Number of data blocks the tree covers (the whole filesystem).
    pub data_blocks: u64,
    /// Where the hash tree starts, in hash blocks from the start of partition 1.
    pub hash_start_block: u64,
    /// The dm table, `{dev}` standing for the partition.
    pub table: String,
}

/// The disk image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The root filesystem, `ext4` or `erofs`.
    pub filesystem: FsType,
    /// The filesystem's UUID (derived from the inputs), in the usual 8-4-4-4-12 form.
    pub fs_uuid: String,
    /// The MBR disk signature, 8 hex digits.
    pub disk_signature: String,
    /// The pfn block's UUID; absent without the DAX header.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pfn_uuid: Option<String>,
    /// Where the headers, the filesystem and the hash tree are in the file.
    pub layout: Layout,
    /// The dm-verity parameters; absent without `--verity`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub verity: Option<VerityInfo>,
}

/// The kernel command line for one way of attaching the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachInfo {
    /// The attachment this entry is for.
    pub attachment: Attachment,
    /// The partition the guest mounts as `/` (`/dev/pmem0p1`, `/dev/vda1`).
    pub root_device: String,
    /// Whether the root is mapped with DAX this way.
    pub dax: bool,
    /// What to add to the kernel command line (besides the console).
    pub cmdline: String,
    /// The VMMs that can attach the image this way (`qemu`, `cloud-hypervisor`...).
    pub vmms: Vec<String>,
}

/// A build's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format, [`FORMAT`].
    pub format: String,
    /// `image`, `rootfs`, `initrd` or `kernel`.
    pub kind: String,
    /// The guest architecture's name (`x86_64`).
    pub arch: String,
    /// The `SOURCE_DATE_EPOCH` the build gave every entry it wrote, in seconds (0 when
    /// unset; always 0 for a kernel).
    pub source_date_epoch: u32,
    /// The files built.
    pub artifacts: Vec<Artifact>,
    /// The kernel (a `kernel` build, or an image given `--kernel`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kernel: Option<KernelInfo>,
    /// The root tree (`rootfs` and `image` builds).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rootfs: Option<RootfsInfo>,
    /// The disk image (`image` builds).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub image: Option<ImageInfo>,
    /// The root command line for each attachment (`image` builds).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub attach: Vec<AttachInfo>,
}

impl Manifest {
    /// An empty manifest of `kind` for `arch`, in the current [`FORMAT`].
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

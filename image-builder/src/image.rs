//! `hull-image image` and `hull-image rootfs`: the pipeline from guest binaries to a
//! bootable raw image and its manifest.
//!
//! 1. Check the host tools (`mkfs.*`) and the output directory, before any work.
//! 2. Assemble the root tree ([`crate::rootfs`]) and write it into a scratch directory
//!    next to the output (removed whatever happens).
//! 3. Build the filesystem into its own file ([`crate::mkfs`]). ext4 is sized in two
//!    passes: a roomy build measures the blocks the tree uses, the real one gets that plus
//!    a small margin, grown to the 2 MiB boundary the image needs anyway. erofs is as big as
//!    mkfs.erofs makes it.
//! 4. Optionally compute the dm-verity hash tree over the filesystem.
//! 5. Write the image (headers, filesystem, hash tree) under a temporary name and rename it
//!    into place; then the manifest.
//!
//! Every identifier (filesystem UUID, ext4 hash seed, pfn UUID, disk signature, verity salt)
//! is derived from the inputs, so the same inputs give the same bytes.

use std::fs;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::disk::{self, DiskError, Ids, Layout, verity};
use crate::fsutil::{IoError, io_err};
use crate::guide::GuideInput;
use crate::manifest::{
    self, AttachInfo, ImageInfo, KernelInfo, Manifest, ManifestError, RootfsInfo, VerityInfo,
};
use crate::mkfs::{self, BLOCK, FsParams, FsType, MkfsError};
use crate::progress::{Progress, fmt_size};
use crate::rootfs::{self, RootfsError, RootfsRequest, Tree};
use crate::vm_args::{self, Attachment, VerityRoot, Vmm};

/// What can go wrong building a disk image or a root tree.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file or directory could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),

    /// The root tree could not be assembled or written out.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),

    /// The filesystem could not be made.
    #[error(transparent)]
    Mkfs(#[from] MkfsError),

    /// The image could not be laid out or written.
    #[error(transparent)]
    Disk(#[from] DiskError),

    /// The manifest could not be read or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    /// An input of the image (a kernel artifact) is missing.
    #[error("{what} {} not found: {hint}", path.display())]
    MissingInput {
        /// What the input is, for the message (`kernel artifact`).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to produce it.
        hint: String,
    },

    /// The output cannot be created in its directory.
    #[error("cannot write into the output directory {} (does it exist, is it writable?)", dir.display())]
    OutputNotWritable {
        /// The output's directory.
        dir: PathBuf,
        /// Why a scratch directory could not be created in it.
        #[source]
        source: IoError,
    },

    /// The output path exists and may not be replaced.
    #[error("{} already exists and is not empty: remove it, choose another path, or pass --force", path.display())]
    OutputExists {
        /// The output path (`-o`).
        path: PathBuf,
    },

    /// The image layout cannot be made (a bug or an impossible request).
    #[error("image layout: {0}")]
    Layout(String),
}

type Result<T, E = ImageError> = std::result::Result<T, E>;

/// What to build.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// The root tree to put in the image.
    pub rootfs: RootfsRequest,
    /// The root filesystem (`--fs`).
    pub fs: FsType,
    /// Whether to write the NVDIMM pfn block and second MBR, for pmem with DAX (not
    /// `--no-dax-header`).
    pub dax_header: bool,
    /// Whether to append a dm-verity hash tree (`--verity`).
    pub verity: bool,
    /// A fixed image size (a multiple of 2 MiB); `None`: content plus a small margin.
    pub size: Option<u64>,
    /// A `hull-image kernel` output directory, recorded in the manifest.
    pub kernel_dir: Option<PathBuf>,
    /// Timestamp of every file and of the filesystem, in seconds since the Unix epoch
    /// (`SOURCE_DATE_EPOCH`, or 0); also part of the identifier seed.
    pub epoch: u32,
    /// Where to write the manifest.
    pub manifest: PathBuf,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The image written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Where the manifest was written.
    pub manifest_path: PathBuf,
    /// The manifest written.
    pub manifest: Manifest,
}

/// The directory an output file goes into.
pub fn output_dir(output: &Path) -> PathBuf {
    manifest::dir_of(output)
}

/// A scratch directory beside `output`, so it is on the same filesystem and the user's
/// disk, not a small /tmp. Fails with [`ImageError::OutputNotWritable`].
fn scratch_dir(output: &Path) -> Result<tempfile::TempDir> {
    let dir = output_dir(output);
    tempfile::Builder::new()
        .prefix(".hull-image-work-")
        .tempdir_in(&dir)
        .map_err(|source| ImageError::OutputNotWritable {
            dir: dir.clone(),
            source: IoError {
                action: "create a scratch directory in",
                path: dir,
                source,
            },
        })
}

/// The seed every identifier of an image is derived from.
fn id_seed(tree: &Tree, req: &ImageRequest) -> String {
    format!(
        "tree={} fs={} dax={} verity={} size={:?} epoch={}",
        tree.digest, req.fs, req.dax_header, req.verity, req.size, req.epoch
    )
}

fn derive_bytes(label: &str, seed: &str, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(&mkfs::derive_id(&format!("{label}/{i}"), seed));
        i += 1;
    }
    out.truncate(n);
    out
}

/// The largest filesystem size (whole blocks) that fits `avail` bytes together with its
/// hash tree (if `verity`).
pub fn max_fs_bytes(avail: u64, verity: bool) -> u64 {
    let mut fs = avail / BLOCK * BLOCK;
    if verity {
        // The tree is about 1/127 of the data: step down from the whole space (a few
        // thousand steps per GiB at most).
        while fs > 0 && fs + verity::tree_bytes(fs / BLOCK) > avail {
            fs -= BLOCK;
        }
    }
    fs
}

/// Builds the ext4 filesystem into `out`, choosing its size; returns it.
fn build_ext4(
    tree_dir: &Path,
    tree: &Tree,
    req: &ImageRequest,
    params: &FsParams,
    work: &Path,
    out: &Path,
    progress: &Progress,
) -> Result<u64> {
    let paths: Vec<String> = tree.entries.iter().map(|e| e.path.clone()).collect();
    let fs_offset = if req.dax_header {
        disk::FS_OFFSET_DAX
    } else {
        disk::FS_OFFSET_PLAIN
    };
    // Pass 1: a roomy filesystem to measure what the tree takes.
    let roomy = disk::align_up(
        tree.file_bytes
            + tree.file_bytes / 4
            + tree.entries.len() as u64 * 2 * BLOCK
            + 16 * disk::MIB,
        disk::MIB,
    );
    let probe = work.join("probe.ext4");
    mkfs::ext4(tree_dir, &paths, &probe, roomy, params, work)?;
    let used = mkfs::ext4_used_bytes(&probe)?;
    fs::remove_file(&probe).map_err(io_err("remove", &probe))?;
    // A small margin: metadata shrinks with the filesystem, but leave room for rounding.
    let wanted = disk::align_up(used + used / 64 + disk::MIB, BLOCK);
    tracing::debug!("ext4: tree uses {used} bytes, wanted {wanted}");
    let mut total = match req.size {
        Some(size) => {
            disk::check_size(size)?;
            size
        }
        None => {
            let hash = if req.verity {
                verity::tree_bytes(wanted / BLOCK)
            } else {
                0
            };
            disk::align_up(fs_offset + wanted + hash, disk::ALIGN)
        }
    };
    for _attempt in 0..4 {
        let fs_bytes = max_fs_bytes(total - fs_offset, req.verity);
        if fs_bytes >= wanted.min(used) && fs_bytes > 0 {
            match mkfs::ext4(tree_dir, &paths, out, fs_bytes, params, work) {
                Ok(()) => {
                    progress.line(format!(
                        "    ext4: {} used of {}",
                        fmt_size(used),
                        fmt_size(fs_bytes)
                    ));
                    return Ok(fs_bytes);
                }
                Err(MkfsError::FsFull { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(size) = req.size {
            let hash = if req.verity {
                verity::tree_bytes(wanted / BLOCK)
            } else {
                0
            };
            return Err(DiskError::DoesNotFit {
                needed: disk::align_up(fs_offset + wanted + hash, disk::ALIGN)
                    .max(size + disk::ALIGN),
                size,
            }
            .into());
        }
        total += disk::ALIGN;
    }
    Err(ImageError::Layout(format!(
        "ext4 did not fit the tree even at {} bytes",
        total
    )))
}

/// Writes the tree into a fresh directory and returns it.
fn tree_into(work: &Path, tree: &Tree, epoch: u32) -> Result<PathBuf> {
    let dir = work.join("tree");
    fs::create_dir(&dir).map_err(io_err("create directory", &dir))?;
    rootfs::materialize(&tree.archive, &dir, epoch)?;
    Ok(dir)
}

/// Kernel facts for the manifest, from a `hull-image kernel -o DIR` directory.
fn kernel_part(dir: &Path, manifest_dir: &Path, m: &mut Manifest) -> Result<(PathBuf, PathBuf)> {
    let vmlinux = dir.join(crate::kernel::VMLINUX);
    let bzimage = dir.join(crate::kernel::BZIMAGE);
    let config = dir.join(crate::kernel::CONFIG);
    for p in [&vmlinux, &bzimage, &config] {
        if !p.is_file() {
            return Err(ImageError::MissingInput {
                what: "kernel artifact",
                path: p.clone(),
                hint: "build the kernel with `hull-image kernel -o DIR` (or `just kernel`) \
                       and pass --kernel DIR"
                    .into(),
            });
        }
    }
    m.artifacts
        .push(manifest::artifact("vmlinux", &vmlinux, manifest_dir)?);
    m.artifacts
        .push(manifest::artifact("bzImage", &bzimage, manifest_dir)?);
    let cfg = manifest::artifact("kernel-config", &config, manifest_dir)?;
    let kernel_manifest = Manifest::read(&dir.join(crate::kernel::MANIFEST)).ok();
    let (release, cache_key) = kernel_manifest
        .and_then(|k| k.kernel)
        .map_or((None, None), |k| (k.release, k.cache_key));
    m.kernel = Some(KernelInfo {
        config_sha256: cfg.sha256.clone(),
        release,
        cache_key,
    });
    m.artifacts.push(cfg);
    Ok((vmlinux, bzimage))
}

/// Builds the image and its manifest.
pub fn build(req: &ImageRequest, output: &Path, progress: &Progress) -> Result<ImageSummary> {
    mkfs::check_tools(req.fs)?;
    if let Some(size) = req.size {
        disk::check_size(size)?;
    }
    let work = scratch_dir(output)?;

    let phase = progress.phase("rootfs", "assembling the tree");
    let tree = rootfs::assemble(&req.rootfs)?;
    let tree_dir = tree_into(work.path(), &tree, req.epoch)?;
    phase.done(format!(
        "{} entries, {}",
        tree.entries.len(),
        fmt_size(tree.file_bytes)
    ));

    let seed = id_seed(&tree, req);
    let params = FsParams {
        uuid: mkfs::derive_id("fs-uuid", &seed),
        hash_seed: mkfs::derive_id("hash-seed", &seed),
        epoch: req.epoch,
    };
    let fs_file = work.path().join(format!("fs.{}", req.fs));
    let phase = progress.phase(req.fs.name(), format!("mkfs.{}", req.fs));
    let fs_bytes = match req.fs {
        FsType::Ext4 => build_ext4(
            &tree_dir,
            &tree,
            req,
            &params,
            work.path(),
            &fs_file,
            progress,
        )?,
        FsType::Erofs => {
            let n = mkfs::erofs(&tree_dir, &fs_file, &params)?;
            let padded = disk::align_up(n, BLOCK);
            if padded != n {
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&fs_file)
                    .map_err(io_err("open", &fs_file))?;
                f.set_len(padded).map_err(io_err("pad", &fs_file))?;
            }
            padded
        }
    };
    phase.done(fmt_size(fs_bytes));

    let tree_hash = if req.verity {
        let phase = progress.phase("verity", "sha256 hash tree");
        let f = fs::File::open(&fs_file).map_err(io_err("open", &fs_file))?;
        let salt = derive_bytes("verity-salt", &seed, verity::SALT_LEN);
        let t = verity::build(std::io::BufReader::new(f), fs_bytes / BLOCK, &salt)
            .map_err(io_err("hash", &fs_file))?;
        phase.done(format!("root hash {}", t.root_hash_hex()));
        Some(t)
    } else {
        None
    };
    let hash_bytes = tree_hash.as_ref().map_or(0, |t| t.hash_blocks.len() as u64);
    let layout = Layout::plan(req.dax_header, fs_bytes, hash_bytes, req.size)?;
    let sig = mkfs::derive_id("disk-signature", &seed);
    let ids = Ids {
        disk_signature: u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]),
        pfn_uuid: mkfs::derive_id("pfn-uuid", &seed),
    };

    let phase = progress.phase("image", output.display().to_string());
    disk::write_image(
        output,
        &layout,
        &ids,
        &fs_file,
        tree_hash.as_ref().map(|t| t.hash_blocks.as_slice()),
    )?;
    phase.done(fmt_size(layout.total_bytes));
    drop(work);

    // The manifest.
    let manifest_dir = manifest::dir_of(&req.manifest);
    let mut m = Manifest::new("image", req.rootfs.arch.name(), req.epoch);
    let image_artifact = manifest::artifact("image", output, &manifest_dir)?;
    let (bytes, sha256) = (image_artifact.bytes, image_artifact.sha256.clone());
    m.artifacts.push(image_artifact);
    if let Some(dir) = &req.kernel_dir {
        kernel_part(dir, &manifest_dir, &mut m)?;
    }
    m.rootfs = Some(rootfs_info(&tree, req.rootfs.busybox.is_some()));
    let verity_info = tree_hash.as_ref().map(|t| VerityInfo {
        root_hash: t.root_hash_hex(),
        salt: t.salt_hex(),
        algorithm: verity::ALGORITHM.into(),
        format_version: 1,
        data_block_size: BLOCK,
        hash_block_size: BLOCK,
        data_blocks: t.data_blocks,
        hash_start_block: layout.hash_start_block(),
        table: t.dm_table("{dev}", "{dev}", layout.hash_start_block()),
    });
    let verity_root = verity_info.as_ref().map(|v| VerityRoot {
        table_template: v.table.clone(),
    });
    m.attach = Attachment::ALL
        .iter()
        .map(|a| AttachInfo {
            attachment: *a,
            root_device: a.root_device().into(),
            dax: a.dax(req.dax_header, req.verity),
            cmdline: vm_args::root_cmdline(*a, req.fs, req.dax_header, verity_root.as_ref()),
            vmms: Vmm::offering(*a).iter().map(Vmm::to_string).collect(),
        })
        .collect();
    m.image = Some(ImageInfo {
        filesystem: req.fs,
        fs_uuid: mkfs::fmt_uuid(&params.uuid),
        disk_signature: format!("{:08x}", ids.disk_signature),
        pfn_uuid: req.dax_header.then(|| mkfs::fmt_uuid(&ids.pfn_uuid)),
        layout,
        verity: verity_info,
    });
    m.write(&req.manifest)?;
    Ok(ImageSummary {
        path: output.to_path_buf(),
        bytes,
        sha256,
        manifest_path: req.manifest.clone(),
        manifest: m,
    })
}

fn rootfs_info(tree: &Tree, debug_tools: bool) -> RootfsInfo {
    RootfsInfo {
        entries: tree.entries.len(),
        file_bytes: tree.file_bytes,
        tree_sha256: tree.digest.clone(),
        debug_tools,
        tree: tree.entries.clone(),
    }
}

/// Input of the attach guide, from a manifest at `manifest_path`.
pub fn guide_input(m: &Manifest, manifest_path: &Path) -> Result<GuideInput> {
    let dir = manifest::dir_of(manifest_path);
    let abs = |rel: &str| -> String {
        let p = dir.join(rel);
        std::path::absolute(&p)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let bad = |reason: &str| ManifestError::BadManifest {
        path: manifest_path.to_path_buf(),
        reason: reason.into(),
    };
    let image = m
        .artifact("image")
        .ok_or_else(|| bad("no image artifact"))?;
    let info = m.image.as_ref().ok_or_else(|| bad("no image section"))?;
    Ok(GuideInput {
        image: abs(&image.path),
        image_bytes: image.bytes,
        fs: info.filesystem,
        dax_header: info.layout.dax_header,
        vmlinux: m.artifact("vmlinux").map(|a| abs(&a.path)),
        bzimage: m.artifact("bzImage").map(|a| abs(&a.path)),
        cmdlines: m
            .attach
            .iter()
            .map(|a| (a.attachment, a.cmdline.clone()))
            .collect(),
        verity_root_hash: info.verity.as_ref().map(|v| v.root_hash.clone()),
    })
}

/// `hull-image rootfs`: writes the tree into `output` (a new or empty directory; with
/// `force`, an existing one is replaced) and its manifest.
pub fn build_rootfs(
    req: &RootfsRequest,
    output: &Path,
    manifest_path: &Path,
    epoch: u32,
    force: bool,
) -> Result<Tree> {
    if output.exists() {
        let empty = fs::read_dir(output).is_ok_and(|mut d| d.next().is_none());
        if !empty && !force {
            return Err(ImageError::OutputExists {
                path: output.to_path_buf(),
            });
        }
    }
    let tree = rootfs::assemble(req)?;
    let work = scratch_dir(output)?;
    let staged = tree_into(work.path(), &tree, epoch)?;
    if output.exists() {
        // Make the old tree removable (read-only directories), then remove it.
        remove_tree(output)?;
    }
    fs::rename(&staged, output).map_err(io_err("rename into place", output))?;
    drop(work);
    let mut m = Manifest::new("rootfs", req.arch.name(), epoch);
    m.rootfs = Some(rootfs_info(&tree, req.busybox.is_some()));
    m.write(manifest_path)?;
    Ok(tree)
}

/// Removes a directory tree, restoring write permission on directories first.
fn remove_tree(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(p: &Path) -> std::io::Result<()> {
        let meta = fs::symlink_metadata(p)?;
        if meta.is_dir() {
            fs::set_permissions(p, fs::Permissions::from_mode(0o700))?;
            for entry in fs::read_dir(p)? {
                walk(&entry?.path())?;
            }
        }
        Ok(())
    }
    walk(path).map_err(io_err("make removable", path))?;
    Ok(fs::remove_dir_all(path).map_err(io_err("remove", path))?)
}

/// The default arch-specific rootfs request from paths.
pub fn rootfs_request(
    init: PathBuf,
    agent: PathBuf,
    busybox: Option<PathBuf>,
    extras: Vec<crate::initrd::Extra>,
    arch: Arch,
) -> RootfsRequest {
    RootfsRequest {
        init,
        agent,
        busybox,
        extras,
        with_iptables: false,
        arch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_fs_leaves_room_for_the_hash_tree() {
        assert_eq!(max_fs_bytes(10 << 20, false), 10 << 20);
        for avail in [1u64 << 20, 7 << 20, 100 << 20, (1 << 30) + 12345] {
            let fs = max_fs_bytes(avail, true);
            assert_eq!(fs % BLOCK, 0);
            assert!(fs + verity::tree_bytes(fs / BLOCK) <= avail, "{avail}");
            // And not much smaller than it could be.
            let more = fs + BLOCK;
            assert!(more + verity::tree_bytes(more / BLOCK) > avail, "{avail}");
        }
    }

    #[test]
    fn derived_bytes_have_the_asked_length() {
        let a = derive_bytes("salt", "seed", 32);
        assert_eq!(a.len(), 32);
        assert_eq!(a, derive_bytes("salt", "seed", 32));
        assert_ne!(a, derive_bytes("salt", "seed2", 32));
    }
}

//! Building the root filesystem into a plain file, rootless and reproducibly.
//!
//! **ext4** (`mkfs.ext4 -d TREE`): 4 KiB blocks, no journal (the root is attached
//! read-only), no resize inode; the features come from a `mke2fs.conf` written here
//! (`MKE2FS_CONFIG`), not from the host's `/etc/mke2fs.conf`. Fixed UUID (`-U`), directory
//! hash seed (`-E hash_seed=`), `E2FSPROGS_FAKE_TIME` for the superblock times. `-d` copies
//! owners and times from the tree, and a tree written without root is owned by the
//! builder, and its ctimes cannot be set at all; so a `debugfs -w` pass then sets, on
//! every inode, uid/gid 0 and every timestamp to the epoch. (mke2fs reads a fake time of 0
//! as "now", so the superblock times are at least 1.)
//!
//! **erofs** (`mkfs.erofs`): `-T` epoch for every inode, `-U` UUID, `--all-root`, `-x -1`
//! (no xattrs from the host), `-E noinline_data` (every regular file in whole blocks, so
//! that DAX can map all of it), uncompressed (DAX maps only uncompressed data).
//!
//! Both tools sort directory entries, so the host filesystem's readdir order does not
//! matter.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::command::{CommandError, display_command};
use crate::fsutil::{IoError, io_err};

/// What can go wrong building a filesystem.
#[derive(Debug, thiserror::Error)]
pub enum MkfsError {
    /// A file of the build could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),

    /// `mkfs.*` or `debugfs` could not be started, or failed.
    #[error(transparent)]
    Command(#[from] CommandError),

    /// A host tool the build needs is not installed.
    #[error(
        "`{tool}` not found on PATH, /usr/sbin or /sbin: install it with `apt-get install {package}` (or `just setup`)"
    )]
    ToolMissing {
        /// The program.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },

    /// A tree path the filesystem tools cannot be given.
    #[error("invalid initrd path `{path}`: {reason}")]
    InvalidEntryPath {
        /// The path, relative to the root of the tree.
        path: String,
        /// Why the tool cannot take it.
        reason: String,
    },

    /// A tool's output is not what the build expects.
    #[error("image layout: {0}")]
    Layout(String),

    /// mkfs ran out of space (internal: the builder grows the filesystem and retries).
    #[error("the {fs} filesystem of {bytes} bytes is too small for the tree: {detail}")]
    FsFull {
        /// The filesystem type (`ext4`).
        fs: &'static str,
        /// The size it was given, in bytes.
        bytes: u64,
        /// The tool's failure, with its last output lines.
        detail: String,
    },
}

type Result<T, E = MkfsError> = std::result::Result<T, E>;

/// The filesystem block size (DAX needs the page size).
pub const BLOCK: u64 = 4096;

/// Root filesystem types.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    /// ext4 without a journal (the default).
    #[default]
    Ext4,
    /// erofs, uncompressed, for DAX.
    Erofs,
}

impl FsType {
    /// The name used on the command line and in the manifest (`ext4`, `erofs`).
    pub fn name(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Erofs => "erofs",
        }
    }

    /// The type named `name` (`ext4`, `erofs`).
    pub fn from_name(name: &str) -> Option<FsType> {
        [FsType::Ext4, FsType::Erofs]
            .into_iter()
            .find(|fs| fs.name() == name)
    }

    /// Host tools the type needs, with the Debian package that has them.
    pub fn tools(self) -> &'static [(&'static str, &'static str)] {
        match self {
            FsType::Ext4 => &[
                ("mkfs.ext4", "e2fsprogs"),
                ("debugfs", "e2fsprogs"),
                ("dumpe2fs", "e2fsprogs"),
            ],
            FsType::Erofs => &[("mkfs.erofs", "erofs-utils")],
        }
    }
}

impl std::fmt::Display for FsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Finds a host tool on `PATH`, then in `/usr/sbin` and `/sbin` (where e2fsprogs lives,
/// often not on a user's `PATH`).
pub fn find_tool(name: &'static str, package: &'static str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or(MkfsError::ToolMissing {
            tool: name,
            package,
        })
}

/// Checks every tool of `fs` is installed, before any work.
pub fn check_tools(fs: FsType) -> Result<()> {
    for (tool, package) in fs.tools() {
        find_tool(tool, package)?;
    }
    Ok(())
}

/// A 16-byte identifier derived from `label` and `seed` (an RFC 9562 version 8 UUID): the
/// same inputs always give the same filesystem UUID, hash seed, pfn UUID...
pub fn derive_id(label: &str, seed: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"hull-image\0");
    h.update(label.as_bytes());
    h.update([0]);
    h.update(seed.as_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id[6] = (id[6] & 0x0f) | 0x80; // version 8
    id[8] = (id[8] & 0x3f) | 0x80; // RFC variant
    id
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn fmt_uuid(id: &[u8; 16]) -> String {
    let h = hex::encode(id);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Identifiers and times of one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsParams {
    /// The filesystem UUID.
    pub uuid: [u8; 16],
    /// ext4's directory hash seed.
    pub hash_seed: [u8; 16],
    /// Every timestamp.
    pub epoch: u32,
}

/// Output lines kept for an error message.
const TAIL: usize = 20;

/// Runs a command to completion, capturing its output; fails with its last lines.
fn run(cmd: &mut Command) -> Result<String> {
    let command = display_command(cmd);
    tracing::debug!("running {command}");
    let out = cmd.output().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let tail = lines[lines.len().saturating_sub(TAIL)..].to_vec();
        return Err(CommandError::Failed {
            command,
            status: out.status,
            log: None,
            tail,
        }
        .into());
    }
    Ok(text)
}

/// The mke2fs configuration: the features are ours, whatever the host's defaults are.
pub const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 0

[fs_types]
\text4 = {
\t\tfeatures = extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// Whether mke2fs's output says the content did not fit.
fn ext4_out_of_space(err: &MkfsError) -> bool {
    match err {
        MkfsError::Command(CommandError::Failed { tail, .. }) => tail.iter().any(|l| {
            l.contains("Could not allocate")
                || l.contains("No space left")
                || l.contains("too small")
                || l.contains("Not enough space")
        }),
        _ => false,
    }
}

/// Builds an ext4 filesystem of exactly `bytes` (a multiple of 4 KiB) holding `tree`,
/// into `out`; `paths` are the tree's entries (absolute guest paths) for the ownership
/// and time pass. `work` is a scratch directory. Fails with [`MkfsError::FsFull`] when the
/// tree does not fit.
pub fn ext4(
    tree: &Path,
    paths: &[String],
    out: &Path,
    bytes: u64,
    p: &FsParams,
    work: &Path,
) -> Result<()> {
    let mkfs = find_tool("mkfs.ext4", "e2fsprogs")?;
    let debugfs = find_tool("debugfs", "e2fsprogs")?;
    let conf = work.join("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF).map_err(io_err("write", &conf))?;
    let file = fs::File::create(out).map_err(io_err("create", out))?;
    file.set_len(bytes).map_err(io_err("size", out))?;
    drop(file);
    let fake_time = p.epoch.max(1).to_string();
    let uuid = fmt_uuid(&p.uuid);
    let result = run(Command::new(&mkfs)
        .env("MKE2FS_CONFIG", &conf)
        .env("E2FSPROGS_FAKE_TIME", &fake_time)
        .env("SOURCE_DATE_EPOCH", p.epoch.to_string())
        .env_remove("MKE2FS_SYNC")
        .env_remove("MKE2FS_DEVICE_SECTSIZE")
        .env_remove("MKE2FS_DEVICE_PHYS_SECTSIZE")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-b",
            "4096",
            "-O",
            "^has_journal",
            "-m",
            "0",
        ])
        .args(["-L", "hull-root", "-U", &uuid])
        .arg("-E")
        .arg(format!(
            "hash_seed={},root_owner=0:0,nodiscard,lazy_itable_init=0",
            fmt_uuid(&p.hash_seed)
        ))
        .arg("-d")
        .arg(tree)
        .arg(out)
        .arg((bytes / BLOCK).to_string()));
    match result {
        Ok(_) => {}
        Err(e) if ext4_out_of_space(&e) => {
            return Err(MkfsError::FsFull {
                fs: "ext4",
                bytes,
                detail: e.to_string(),
            });
        }
        Err(e) => return Err(e),
    }
    // Owners and every timestamp, inode by inode.
    let mut script = String::new();
    let mut all: Vec<&str> = vec!["/", "/lost+found"];
    all.extend(paths.iter().map(String::as_str));
    for path in all {
        if path.contains(['"', '\n', '\\']) {
            return Err(MkfsError::InvalidEntryPath {
                path: path.to_string(),
                reason: "ext4 images cannot hold `\"`, `\\` or a newline in a path".into(),
            });
        }
        for (field, value) in [
            ("uid", 0),
            ("gid", 0),
            ("atime", p.epoch),
            ("mtime", p.epoch),
            ("ctime", p.epoch),
            ("crtime", p.epoch),
            ("atime_extra", 0),
            ("mtime_extra", 0),
            ("ctime_extra", 0),
            ("crtime_extra", 0),
        ] {
            script.push_str(&format!("sif \"{path}\" {field} {value}\n"));
        }
    }
    let script_path = work.join("debugfs.cmds");
    fs::write(&script_path, script).map_err(io_err("write", &script_path))?;
    let out_text = run(Command::new(&debugfs)
        .env("E2FSPROGS_FAKE_TIME", &fake_time)
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(out))?;
    // debugfs exits 0 even when a command fails; its errors are lines that are neither
    // the banner nor the echo of a command.
    let errors: Vec<String> = out_text
        .lines()
        .filter(|l| !l.starts_with("debugfs") && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(MkfsError::Layout(format!(
            "debugfs could not normalise {}: {}",
            out.display(),
            errors.join("; ")
        )));
    }
    Ok(())
}

/// Bytes in use in an ext4 filesystem (block count minus free blocks, from `dumpe2fs -h`).
pub fn ext4_used_bytes(img: &Path) -> Result<u64> {
    let dumpe2fs = find_tool("dumpe2fs", "e2fsprogs")?;
    let text = run(Command::new(dumpe2fs).arg("-h").arg(img))?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim_start_matches(':').trim().parse().ok())
    };
    match (field("Block count"), field("Free blocks")) {
        (Some(total), Some(free)) if free <= total => Ok((total - free) * BLOCK),
        _ => Err(MkfsError::Layout(format!(
            "cannot read the block counts of {} from dumpe2fs",
            img.display()
        ))),
    }
}

/// Builds an erofs image of `tree` into `out`; returns its size.
pub fn erofs(tree: &Path, out: &Path, p: &FsParams) -> Result<u64> {
    let mkfs = find_tool("mkfs.erofs", "erofs-utils")?;
    run(Command::new(mkfs)
        .env("SOURCE_DATE_EPOCH", p.epoch.to_string())
        .arg(format!("-T{}", p.epoch))
        .arg(format!("-U{}", fmt_uuid(&p.uuid)))
        .args(["--all-root", "-x-1", "-Enoinline_data", "--quiet"])
        .arg(out)
        .arg(tree))?;
    Ok(crate::fsutil::file_size(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_rfc_uuids() {
        let a = derive_id("fs-uuid", "abc");
        assert_eq!(a, derive_id("fs-uuid", "abc"));
        assert_ne!(a, derive_id("fs-uuid", "abd"));
        assert_ne!(a, derive_id("hash-seed", "abc"));
        assert_eq!(a[6] >> 4, 8);
        assert_eq!(a[8] >> 6, 0b10);
        let s = fmt_uuid(&a);
        assert_eq!(s.len(), 36);
        assert_eq!(s.matches('-').count(), 4);
        assert_eq!(
            fmt_uuid(&[0x11; 16]),
            "11111111-1111-1111-1111-111111111111"
        );
    }

    #[test]
    fn missing_tool_names_the_package() {
        let err = find_tool("mkfs.hull-no-such-fs", "hull-fs-utils").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("mkfs.hull-no-such-fs") && msg.contains("apt-get install hull-fs-utils"),
            "{msg}"
        );
    }
}

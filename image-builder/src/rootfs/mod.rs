//! `hull-image rootfs`: the guest's root tree for a disk image.
//!
//! The same content as the initrd, laid out for a root filesystem that is mounted
//! read-only: `/sbin/init` = hull-init, `/usr/bin/hull-agent`, the mount points init needs
//! (`/proc /sys /dev /run /tmp`...; init cannot create them on a read-only root) and the
//! `/etc` files. No device nodes: creating them needs root, and init mounts devtmpfs on
//! `/dev` first thing (the kernel then starts init without a console; init reopens its
//! standard streams on `/dev/console` once devtmpfs is up).
//!
//! `--debug-tools` adds Debian's static busybox as `/bin/busybox` with a symlink per
//! applet (`/bin/sh`, `/bin/ls`...) and the debug-console marker
//! ([`hull_common::DEBUG_CONSOLE_MARKER`]) that lets the agent serve a shell when the
//! kernel command line asks (`agent.debug_console`); `--extra SRC:DST` adds files;
//! `--with-iptables` the host's iptables tools ([`initrd::iptables`]).
//!
//! The tree is first an in-memory [`Archive`] (sorted, checked paths), so its description
//! ([`describe`]) and digest do not depend on the host filesystem; [`materialize`] then
//! writes it to a directory with fixed modes and timestamps.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use hull_common::DEBUG_CONSOLE_MARKER;

use crate::arch::Arch;
use crate::command::CommandError;
use crate::fsutil::{IoError, io_err};
use crate::initrd::cpio::{Archive, CpioError, Entry, Kind};
use crate::initrd::{self, AGENT_PATH, Extra, InitrdError};

/// What can go wrong assembling or writing the root tree.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A file of the tree could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),

    /// `busybox --list` could not be run, or failed.
    #[error(transparent)]
    Command(#[from] CommandError),

    /// A guest binary or extra file is missing or unusable (checked as for the initrd).
    #[error(transparent)]
    Input(#[from] InitrdError),

    /// Two entries want one path, or a path is invalid.
    #[error(transparent)]
    Cpio(#[from] CpioError),

    /// The tree cannot be written (a bug or an impossible request).
    #[error("image layout: {0}")]
    Layout(String),
}

type Result<T, E = RootfsError> = std::result::Result<T, E>;

/// Where init lives on a root image (the kernel's first choice without `init=`).
pub const INIT_PATH: &str = "sbin/init";
/// Where busybox goes with `--debug-tools`.
pub const BUSYBOX_PATH: &str = "bin/busybox";
/// Debian's `busybox-static` installs here.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";
/// Applets never linked: busybox is the binary itself, init is hull-init, and linuxrc is
/// an initrd convention.
const SKIPPED_APPLETS: &[&str] = &["busybox", "init", "linuxrc"];
/// The content of the debug-console marker (only its presence matters to the agent).
const DEBUG_CONSOLE_NOTE: &[u8] = b"built with --debug-tools: agent.debug_console is honoured\n";

/// What goes into the tree.
#[derive(Debug, Clone)]
pub struct RootfsRequest {
    /// hull-init, put at `/sbin/init` (`--init`).
    pub init: PathBuf,
    /// hull-agent, put at `/usr/bin/hull-agent` (`--agent`).
    pub agent: PathBuf,
    /// `Some(path)` adds busybox and its applet links (`--debug-tools`).
    pub busybox: Option<PathBuf>,
    /// Host files to add (`--extra SRC:DST`).
    pub extras: Vec<Extra>,
    /// Add the build host's iptables tools (`--with-iptables`, [`initrd::iptables`]).
    pub with_iptables: bool,
    /// The guest architecture the binaries must be built for.
    pub arch: Arch,
}

/// One entry of the tree, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Absolute path in the guest.
    pub path: String,
    /// `dir`, `file` or `symlink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Permission bits in octal, e.g. `0755`.
    pub mode: String,
    /// Size in bytes, for files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bytes: Option<u64>,
    /// SHA-256 of the contents, lowercase hex, for files.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sha256: Option<String>,
    /// The link target, for symlinks (`major:minor` for a device node, which a root tree
    /// never holds).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
}

/// The tree's description and what the image builder needs to know about it.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The tree's entries, in memory, as they will be written.
    pub archive: Archive,
    /// What the manifest lists: one [`TreeEntry`] per archive entry, in archive order.
    pub entries: Vec<TreeEntry>,
    /// SHA-256 over the canonical JSON of `entries`: the tree's identity.
    pub digest: String,
    /// Sum of file sizes.
    pub file_bytes: u64,
}

/// Lays out the tree from already-read contents. Pure.
pub fn layout(
    init: Vec<u8>,
    agent: Vec<u8>,
    busybox: Option<(Vec<u8>, Vec<String>)>,
    extras: Vec<(String, u32, Vec<u8>)>,
) -> Result<Archive> {
    let mut a = Archive::new();
    for (path, entry) in initrd::base_entries() {
        if matches!(entry.kind, Kind::CharDev { .. } | Kind::BlockDev { .. }) {
            continue;
        }
        a.add(path, entry)?;
    }
    a.add(
        INIT_PATH,
        Entry {
            perm: 0o755,
            kind: Kind::File(init),
        },
    )?;
    a.add(
        AGENT_PATH,
        Entry {
            perm: 0o755,
            kind: Kind::File(agent),
        },
    )?;
    if let Some((bytes, applets)) = busybox {
        a.add(
            BUSYBOX_PATH,
            Entry {
                perm: 0o755,
                kind: Kind::File(bytes),
            },
        )?;
        for applet in applets {
            a.add(
                &format!("bin/{applet}"),
                Entry {
                    perm: 0o777,
                    kind: Kind::Symlink("busybox".into()),
                },
            )?;
        }
        // With a shell in the image, the agent may serve its debug console when the
        // kernel command line also asks for it (agent.debug_console).
        a.add(
            DEBUG_CONSOLE_MARKER.trim_start_matches('/'),
            Entry {
                perm: 0o644,
                kind: Kind::File(DEBUG_CONSOLE_NOTE.to_vec()),
            },
        )?;
    }
    for (path, perm, data) in extras {
        a.add(
            &path,
            Entry {
                perm,
                kind: Kind::File(data),
            },
        )?;
    }
    Ok(a)
}

/// The applet names a busybox binary reports (`busybox --list`), minus those that must not
/// be linked, sorted.
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|source| CommandError::Spawn {
            command: format!("{} --list", busybox.display()),
            source,
        })?;
    if !out.status.success() {
        return Err(CommandError::Failed {
            command: format!("{} --list", busybox.display()),
            status: out.status,
            log: None,
            tail: String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_string)
                .collect(),
        }
        .into());
    }
    let mut applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| {
            !a.is_empty()
                && !SKIPPED_APPLETS.contains(a)
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.[".contains(&b))
        })
        .map(str::to_string)
        .collect();
    applets.sort();
    applets.dedup();
    Ok(applets)
}

/// Reads every input and lays out the tree.
pub fn assemble(req: &RootfsRequest) -> Result<Tree> {
    let init = initrd::read_static_executable("init binary", &req.init, req.arch)?;
    let agent = initrd::read_static_executable("agent binary", &req.agent, req.arch)?;
    let busybox = match &req.busybox {
        None => None,
        Some(path) => {
            let bytes = match initrd::read_static_executable("busybox", path, req.arch) {
                Err(InitrdError::MissingInput { what, path, .. }) => {
                    return Err(InitrdError::MissingInput {
                        what,
                        path,
                        hint: "--debug-tools needs Debian's static busybox: \
                               `apt-get install busybox-static` (or pass --busybox PATH)"
                            .into(),
                    }
                    .into());
                }
                other => other?,
            };
            Some((bytes, busybox_applets(path)?))
        }
    };
    let extras = initrd::read_extras(&req.extras)?;
    let mut archive = layout(init, agent, busybox, extras)?;
    if req.with_iptables {
        for (path, entry) in initrd::iptables::entries(Path::new("/"))? {
            archive.add(&path, entry)?;
        }
    }
    Ok(describe(archive))
}

/// Describes an archive's entries for the manifest and computes its digest.
pub fn describe(archive: Archive) -> Tree {
    let mut file_bytes = 0;
    let entries: Vec<TreeEntry> = archive
        .iter()
        .map(|(path, entry)| {
            let mode = format!("{:04o}", entry.perm & 0o7777);
            let path = format!("/{path}");
            match &entry.kind {
                Kind::File(data) => {
                    file_bytes += data.len() as u64;
                    TreeEntry {
                        path,
                        kind: "file".into(),
                        mode,
                        bytes: Some(data.len() as u64),
                        sha256: Some(hex::encode(Sha256::digest(data))),
                        target: None,
                    }
                }
                Kind::Symlink(target) => TreeEntry {
                    path,
                    kind: "symlink".into(),
                    mode,
                    bytes: None,
                    sha256: None,
                    target: Some(target.clone()),
                },
                Kind::Dir => TreeEntry {
                    path,
                    kind: "dir".into(),
                    mode,
                    bytes: None,
                    sha256: None,
                    target: None,
                },
                Kind::CharDev { major, minor } | Kind::BlockDev { major, minor } => TreeEntry {
                    path,
                    kind: "device".into(),
                    mode,
                    bytes: None,
                    sha256: None,
                    target: Some(format!("{major}:{minor}")),
                },
            }
        })
        .collect();
    let canonical = serde_json::to_vec(&entries).unwrap_or_default();
    let digest = hex::encode(Sha256::digest(&canonical));
    Tree {
        archive,
        entries,
        digest,
        file_bytes,
    }
}

/// Sets atime and mtime of `path` itself (not a symlink's target) to `secs`.
fn set_times(path: &Path, secs: u32) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| IoError {
        action: "set the times of",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"),
    })?;
    let t = libc::timespec {
        tv_sec: libc::time_t::from(secs),
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: `c` is a NUL-terminated path that outlives the call, `times` points to two
    // initialised timespecs as utimensat requires; the call only reads them.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io_err("set the times of", path)(std::io::Error::last_os_error()).into());
    }
    Ok(())
}

/// Writes the tree into `dir` (which must exist and be empty): every entry with its mode,
/// every timestamp (the root's too) set to `mtime`. Modes and times are set children
/// first, so creating an entry never bumps its parent's time afterwards.
pub fn materialize(archive: &Archive, dir: &Path, mtime: u32) -> Result<()> {
    let mut written: Vec<(PathBuf, Option<u32>)> = Vec::new();
    for (path, entry) in archive.iter() {
        let dest = dir.join(&path);
        match &entry.kind {
            Kind::Dir => {
                fs::create_dir(&dest).map_err(io_err("create directory", &dest))?;
                written.push((dest, Some(entry.perm)));
            }
            Kind::File(data) => {
                fs::write(&dest, data).map_err(io_err("write", &dest))?;
                written.push((dest, Some(entry.perm)));
            }
            Kind::Symlink(target) => {
                symlink(target, &dest).map_err(io_err("create symlink", &dest))?;
                written.push((dest, None));
            }
            Kind::CharDev { .. } | Kind::BlockDev { .. } => {
                return Err(RootfsError::Layout(format!(
                    "/{path} is a device node, which a rootless build cannot create"
                )));
            }
        }
    }
    written.push((dir.to_path_buf(), Some(0o755)));
    for (path, perm) in written.iter().rev() {
        if let Some(perm) = perm {
            fs::set_permissions(path, fs::Permissions::from_mode(*perm))
                .map_err(io_err("set permissions of", path))?;
        }
        set_times(path, mtime)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tree() -> Tree {
        describe(
            layout(
                b"init".to_vec(),
                b"agent".to_vec(),
                Some((b"bb".to_vec(), vec!["sh".into(), "ls".into()])),
                vec![("etc/extra.conf".into(), 0o644, b"x=1\n".to_vec())],
            )
            .unwrap(),
        )
    }

    #[test]
    fn without_debug_tools_there_is_no_shell_and_no_debug_console() {
        let t = describe(layout(b"init".to_vec(), b"agent".to_vec(), None, Vec::new()).unwrap());
        let paths: Vec<&str> = t.entries.iter().map(|e| e.path.as_str()).collect();
        assert!(!paths.contains(&"/bin/sh"), "{paths:?}");
        assert!(!paths.contains(&DEBUG_CONSOLE_MARKER), "{paths:?}");
    }

    #[test]
    fn tree_has_init_agent_mount_points_and_no_devices() {
        let t = tree();
        let paths: Vec<&str> = t.entries.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "/sbin/init",
            "/usr/bin/hull-agent",
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/tmp",
            "/etc/passwd",
            "/etc/hostname",
            "/bin/busybox",
            "/bin/sh",
            "/etc/extra.conf",
            DEBUG_CONSOLE_MARKER,
        ] {
            assert!(paths.contains(&want), "{want} not in {paths:?}");
        }
        assert!(!paths.iter().any(|p| p.starts_with("/dev/")), "{paths:?}");
        assert!(!paths.contains(&"/init"));
        let sh = t.entries.iter().find(|e| e.path == "/bin/sh").unwrap();
        assert_eq!(
            (sh.kind.as_str(), sh.target.as_deref()),
            ("symlink", Some("busybox"))
        );
        let init = t.entries.iter().find(|e| e.path == "/sbin/init").unwrap();
        assert_eq!(init.mode, "0755");
        assert_eq!(init.bytes, Some(4));
        assert_eq!(
            t.file_bytes,
            4 + 5 + 2 + 4 + DEBUG_CONSOLE_NOTE.len() as u64 + base_file_bytes()
        );
        let tmp = t.entries.iter().find(|e| e.path == "/tmp").unwrap();
        assert_eq!(tmp.mode, "1777");
    }

    fn base_file_bytes() -> u64 {
        initrd::base_entries()
            .iter()
            .map(|(_, e)| match &e.kind {
                Kind::File(d) => d.len() as u64,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn digest_changes_with_content_only() {
        let a = tree();
        assert_eq!(a.digest, tree().digest);
        let b = describe(layout(b"init2".to_vec(), b"agent".to_vec(), None, vec![]).unwrap());
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn materialized_tree_has_fixed_modes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        let t = tree();
        materialize(&t.archive, &root, 1_700_000_000).unwrap();
        for e in &t.entries {
            let p = root.join(e.path.trim_start_matches('/'));
            let meta = fs::symlink_metadata(&p).unwrap();
            assert_eq!(meta.mtime(), 1_700_000_000, "{}", e.path);
            match e.kind.as_str() {
                "symlink" => assert_eq!(fs::read_link(&p).unwrap().to_str(), e.target.as_deref()),
                kind => {
                    assert_eq!(
                        format!("{:04o}", meta.mode() & 0o7777),
                        e.mode,
                        "{}",
                        e.path
                    );
                    assert_eq!(kind == "dir", meta.is_dir());
                }
            }
        }
        assert_eq!(fs::read(root.join("sbin/init")).unwrap(), b"init");
        let root_meta = fs::metadata(&root).unwrap();
        assert_eq!(root_meta.mtime(), 1_700_000_000);
        assert_eq!(root_meta.mode() & 0o7777, 0o755);
    }

    #[test]
    fn extras_cannot_replace_init() {
        let err = layout(
            b"i".to_vec(),
            b"a".to_vec(),
            None,
            vec![("sbin/init".into(), 0o755, b"x".to_vec())],
        )
        .unwrap_err();
        assert!(
            matches!(err, RootfsError::Cpio(CpioError::DuplicateEntry { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn busybox_applets_from_the_real_binary() {
        let bb = Path::new(DEFAULT_BUSYBOX);
        assert!(
            bb.is_file(),
            "{DEFAULT_BUSYBOX} is missing (`just setup` installs busybox-static)"
        );
        let applets = busybox_applets(bb).unwrap();
        assert!(applets.iter().any(|a| a == "sh"), "{applets:?}");
        assert!(!applets.iter().any(|a| a == "init"));
        let mut sorted = applets.clone();
        sorted.sort();
        assert_eq!(applets, sorted);
    }
}

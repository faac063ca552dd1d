//! Mounts shared between containers (`CreateContainer`'s `shared_mounts`), as Kata's agent
//! does them.
//!
//! A mount made inside one container (the source, found by its Kubernetes container name)
//! is given to the container being created: once the mount point `src_path` shows in the
//! source's init's `/proc/PID/mounts` (waited for up to [`SOURCE_WAIT`]), its mount tree
//! is cloned in the source's mount namespace (`open_tree(OPEN_TREE_CLONE |
//! AT_RECURSIVE)`) and attached at `dst_path` (created if missing) in the new
//! container's mount namespace (`move_mount`). Both containers then see one file system.
//!
//! As in Kata, a source container that does not exist (yet), or a mount point that never
//! appears, is skipped with a warning: the runtime sends shared mounts before it knows
//! the source is ready. The namespace switching happens on a thread of its own, which
//! ends afterwards, so no thread of the agent stays in a container's mount namespace.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;

/// Kata's annotations naming a Kubernetes container (CRI containerd's, then CRI-O's).
pub const CONTAINER_NAME_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.container-name",
    "io.kubernetes.cri-o.ContainerName",
];
/// How long the source's mount point is waited for, as in Kata.
pub const SOURCE_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// One of `CreateContainer`'s `shared_mounts`, as the host sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedMount {
    /// Names the pair of mount points.
    pub name: String,
    /// The source container's Kubernetes name.
    pub src_ctr: String,
    /// The mount point in the source container.
    pub src_path: String,
    /// The destination container's name (the container being created).
    pub dst_ctr: String,
    /// Where the mount goes in the new container.
    pub dst_path: String,
}

/// Why a shared mount could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SharedMountError {
    /// A field is unusable.
    #[error("shared_mounts[{index}] ({name:?}): {reason}")]
    Invalid {
        /// The mount's place in the request.
        index: usize,
        /// Its name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A step of the sharing failed.
    #[error("shared mount {name:?}: {step}: {source}")]
    Failed {
        /// The mount's name.
        name: String,
        /// The step, in words.
        step: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Checks every shared mount before anything is done.
pub fn check(mounts: &[SharedMount]) -> Result<(), SharedMountError> {
    for (index, m) in mounts.iter().enumerate() {
        let invalid = |reason| SharedMountError::Invalid {
            index,
            name: m.name.clone(),
            reason,
        };
        if m.src_ctr.is_empty() {
            return Err(invalid("src_ctr is empty"));
        }
        for (path, what) in [(&m.src_path, "src_path"), (&m.dst_path, "dst_path")] {
            if !path.starts_with('/') {
                return Err(invalid(match what {
                    "src_path" => "src_path must be absolute",
                    _ => "dst_path must be absolute",
                }));
            }
            if path.contains('\0') {
                return Err(invalid("a path contains a NUL byte"));
            }
        }
    }
    Ok(())
}

/// The Kubernetes container name in a spec's annotations; empty when none.
pub fn container_name(spec: &oci_spec::runtime::Spec) -> String {
    let annotations = spec.annotations().as_ref();
    CONTAINER_NAME_ANNOTATIONS
        .iter()
        .find_map(|key| annotations.and_then(|a| a.get(*key)).cloned())
        .unwrap_or_default()
}

/// A shared mount with its source container's init pid.
#[derive(Debug, Clone)]
pub struct Sharing {
    /// The mount asked for.
    pub mount: SharedMount,
    /// The source container's init.
    pub source_pid: i32,
}

/// Gives the container whose init is `dst_pid` the mounts; see the module documentation.
pub async fn share(
    mounts: Vec<Sharing>,
    dst_pid: i32,
    wait: Duration,
) -> Result<(), SharedMountError> {
    if mounts.is_empty() {
        return Ok(());
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("shared-mounts".into())
        .spawn(move || {
            let _ = tx.send(share_blocking(&mounts, dst_pid, wait));
        });
    if let Err(source) = spawned {
        return Err(SharedMountError::Failed {
            name: String::new(),
            step: "starting a thread".into(),
            source,
        });
    }
    rx.await.unwrap_or_else(|_| {
        Err(SharedMountError::Failed {
            name: String::new(),
            step: "the sharing thread ended without an answer".into(),
            source: std::io::Error::other("thread panicked"),
        })
    })
}

/// Whether `path` is a mount point in `/proc/PID/mounts` (paths as the process sees them).
fn is_mounted(pid: i32, path: &str) -> bool {
    let Ok(mounts) = std::fs::read_to_string(format!("/proc/{pid}/mounts")) else {
        return false;
    };
    let wanted = Path::new(path);
    mounts.lines().any(|line| {
        line.split_whitespace()
            .nth(1)
            .is_some_and(|point| Path::new(&unescape_mount_point(point)) == wanted)
    })
}

/// `/proc/PID/mounts` writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_point(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn share_blocking(
    mounts: &[Sharing],
    dst_pid: i32,
    wait: Duration,
) -> Result<(), SharedMountError> {
    let failed = |name: &str, step: String| {
        let name = name.to_string();
        move |source: std::io::Error| SharedMountError::Failed { name, step, source }
    };
    // Everything under /proc is opened here, in the agent's own mount namespace.
    let dst_ns = File::open(format!("/proc/{dst_pid}/ns/mnt")).map_err(failed(
        "",
        format!("opening container {dst_pid}'s mount namespace"),
    ))?;
    let deadline = Instant::now() + wait;
    let mut ready = Vec::new();
    for sharing in mounts {
        let m = &sharing.mount;
        while !is_mounted(sharing.source_pid, &m.src_path) && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if !is_mounted(sharing.source_pid, &m.src_path) {
            tracing::warn!(name = %m.name, src_ctr = %m.src_ctr, src_path = %m.src_path,
                "shared mount skipped: the source's mount point did not appear");
            continue;
        }
        let src_ns = File::open(format!("/proc/{}/ns/mnt", sharing.source_pid)).map_err(failed(
            &m.name,
            format!("opening {}'s mount namespace", m.src_ctr),
        ))?;
        ready.push((m, src_ns));
    }
    if ready.is_empty() {
        return Ok(());
    }
    // This thread alone moves between namespaces: it must not share its file-system
    // attributes (root, cwd) with the agent's other threads to join one.
    nix::sched::unshare(CloneFlags::CLONE_FS)
        .map_err(|e| failed("", "unsharing the thread's root".into())(e.into()))?;
    for (m, src_ns) in ready {
        nix::sched::setns(&src_ns, CloneFlags::CLONE_NEWNS).map_err(|e| {
            failed(&m.name, format!("entering {}'s mount namespace", m.src_ctr))(e.into())
        })?;
        let tree = open_tree_clone(&m.src_path).map_err(failed(
            &m.name,
            format!("cloning the mount at {}", m.src_path),
        ))?;
        nix::sched::setns(&dst_ns, CloneFlags::CLONE_NEWNS).map_err(|e| {
            failed(
                &m.name,
                "entering the new container's mount namespace".into(),
            )(e.into())
        })?;
        std::fs::create_dir_all(&m.dst_path)
            .map_err(failed(&m.name, format!("creating {}", m.dst_path)))?;
        move_mount_to(&tree, &m.dst_path)
            .map_err(failed(&m.name, format!("attaching it at {}", m.dst_path)))?;
        tracing::info!(name = %m.name, src_ctr = %m.src_ctr, src_path = %m.src_path,
            dst_path = %m.dst_path, "shared mount made");
    }
    Ok(())
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

/// A detached copy of the mount tree at `path` (`open_tree(2)`), in this thread's mount
/// namespace.
fn open_tree_clone(path: &str) -> std::io::Result<OwnedFd> {
    let path = CString::new(path).map_err(std::io::Error::other)?;
    let flags = OPEN_TREE_CLONE | AT_RECURSIVE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree reads the NUL-terminated path, which outlives the call; it
    // returns a new descriptor or -1, and touches no memory of ours otherwise.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(std::io::Error::other)?;
    // SAFETY: `fd` was just returned by open_tree, is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches the detached tree `tree` at `path` in this thread's mount namespace.
fn move_mount_to(tree: &OwnedFd, path: &str) -> std::io::Result<()> {
    let path = CString::new(path).map_err(std::io::Error::other)?;
    let empty = c"";
    // SAFETY: both strings are NUL-terminated and outlive the call; `tree` is an open
    // descriptor we own; move_mount writes no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(name: &str, src_ctr: &str, src: &str, dst: &str) -> SharedMount {
        SharedMount {
            name: name.into(),
            src_ctr: src_ctr.into(),
            src_path: src.into(),
            dst_ctr: "b".into(),
            dst_path: dst.into(),
        }
    }

    #[test]
    fn bad_shared_mounts_are_named() {
        check(&[mount("m", "a", "/x", "/y")]).unwrap();
        for (m, needle) in [
            (mount("m1", "", "/x", "/y"), "src_ctr is empty"),
            (mount("m2", "a", "x", "/y"), "src_path must be absolute"),
            (mount("m3", "a", "/x", ""), "dst_path must be absolute"),
            (mount("m4", "a", "/x\0", "/y"), "NUL"),
        ] {
            let err = check(&[mount("ok", "a", "/x", "/y"), m.clone()]).unwrap_err();
            let message = err.to_string();
            assert!(message.contains(needle), "{m:?}: {message}");
            assert!(message.contains("shared_mounts[1]"), "{message}");
            assert!(message.contains(&m.name), "{message}");
        }
    }

    #[test]
    fn the_container_name_comes_from_kata_annotations() {
        let mut spec = oci_spec::runtime::Spec::default();
        assert_eq!(container_name(&spec), "");
        let mut annotations = std::collections::HashMap::new();
        annotations.insert(
            "io.kubernetes.cri-o.ContainerName".to_string(),
            "app".to_string(),
        );
        spec.set_annotations(Some(annotations.clone()));
        assert_eq!(container_name(&spec), "app");
        annotations.insert(
            "io.kubernetes.cri.container-name".to_string(),
            "sidecar".to_string(),
        );
        spec.set_annotations(Some(annotations));
        assert_eq!(container_name(&spec), "sidecar", "containerd's first");
    }

    #[test]
    fn mount_points_are_read_unescaped() {
        assert_eq!(unescape_mount_point(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount_point(r"/a\134b\011"), "/a\\b\t");
        assert_eq!(unescape_mount_point(r"/a\04"), r"/a\04");
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(is_mounted(pid, "/proc"), "/proc is a mount point here");
        assert!(!is_mounted(pid, "/proc/self"));
        assert!(!is_mounted(-1, "/"));
    }

    #[tokio::test]
    async fn a_source_mount_that_never_appears_is_skipped() {
        let pid = i32::try_from(std::process::id()).unwrap();
        let sharing = Sharing {
            mount: mount("m", "a", "/no/such/mount/point", "/y"),
            source_pid: pid,
        };
        let started = Instant::now();
        share(vec![sharing], pid, Duration::from_millis(300))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        share(Vec::new(), -1, Duration::ZERO).await.unwrap();
    }
}

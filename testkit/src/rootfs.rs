//! A busybox root filesystem in a temporary directory, for containers run on the host,
//! and the host's cgroup2 root they are placed under.
//!
//! The busybox is the e2e harness's ([`hull_e2e::bundle::busybox`]: Debian's static
//! `busybox-static`, or `HULL_BUSYBOX`); a test without one fails saying so.

use std::path::{Path, PathBuf};

use hull_e2e::bundle::{BusyboxCopy, busybox, install_busybox};

/// The directories every busybox root has (mount points of the standard mounts).
pub const ROOT_DIRS: &[&str] = &["bin", "proc", "sys", "dev", "tmp", "etc"];

/// Lays out a busybox root at `root`: [`ROOT_DIRS`], a copy of busybox in `/bin` and
/// a symlink per applet.
pub fn lay_out_busybox_root(root: &Path) {
    let busybox = busybox().unwrap_or_else(|e| panic!("this test needs a static busybox: {e:#}"));
    for dir in ROOT_DIRS {
        std::fs::create_dir_all(root.join(dir))
            .unwrap_or_else(|e| panic!("creating {}: {e}", root.join(dir).display()));
    }
    install_busybox(&busybox, root, BusyboxCopy::Copy)
        .unwrap_or_else(|e| panic!("laying out busybox in {}: {e:#}", root.display()));
}

/// A busybox root in a temporary directory, removed on drop.
#[derive(Debug)]
pub struct BusyboxRootfs {
    dir: tempfile::TempDir,
}

impl BusyboxRootfs {
    /// A fresh busybox root (see [`lay_out_busybox_root`]).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        lay_out_busybox_root(dir.path());
        Self { dir }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates `relative` (a directory) in it; answers its path.
    pub fn dir(&self, relative: &str) -> PathBuf {
        let path = self.path().join(relative);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        path
    }

    /// Writes `relative` in it.
    pub fn file(&self, relative: &str, contents: &str) {
        let path = self.path().join(relative);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

impl Default for BusyboxRootfs {
    fn default() -> Self {
        Self::new()
    }
}

/// Fails the test unless containers can run on this host: root, and a cgroup2
/// hierarchy at [`cgroup_root`].
pub fn require_containers() {
    crate::require::root("running containers on the host");
    crate::require::file(
        &cgroup_root().join("cgroup.procs"),
        "a cgroup2 hierarchy (set HULL_TEST_CGROUP_ROOT to one)",
    );
}

/// The cgroup2 hierarchy containers on this host go under: `HULL_TEST_CGROUP_ROOT`, or
/// `/sys/fs/cgroup/unified` (hybrid hosts), or `/sys/fs/cgroup`.
pub fn cgroup_root() -> PathBuf {
    if let Some(root) = std::env::var_os("HULL_TEST_CGROUP_ROOT") {
        return PathBuf::from(root);
    }
    let unified = Path::new("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busybox_root_has_its_applets_and_goes_away() {
        let rootfs = BusyboxRootfs::new();
        let root = rootfs.path().to_path_buf();
        for dir in ROOT_DIRS {
            assert!(root.join(dir).is_dir(), "{dir}");
        }
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).expect("sh"),
            Path::new("busybox")
        );
        // A copy, not the host's file.
        let meta = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
        assert_ne!(meta(&root.join("bin/busybox")), meta(&busybox().unwrap()));
        rootfs.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        assert!(rootfs.dir("data/x").is_dir());
        drop(rootfs);
        assert!(!root.exists(), "removed on drop");
    }
}

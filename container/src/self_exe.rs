//! The binary helpers are executed from (CVE-2019-5736).
//!
//! The helper is this very binary, re-executed. A container process that reaches a helper
//! through `/proc/<pid>/exe` (while an exec'd helper joins its namespaces, say) must not
//! be able to write to it, or it could overwrite the agent as in runc's CVE-2019-5736. So
//! helpers are never executed from a writable view of the binary. [`SelfExe::sealed`]
//! picks, in this order, the first that works:
//!
//! 1. [`Sealing::ReadOnlyMount`]: the binary already lies on a read-only mount (a guest
//!    whose root is an erofs or read-only ext4 image): it is used as it is.
//! 2. [`Sealing::ReadOnlyBind`]: the binary is bind-mounted read-only onto a private
//!    scratch file, opened `O_PATH` through that mount, and the mount is then detached
//!    (`MNT_DETACH`), so nothing in any mount namespace sees it while the descriptor keeps
//!    it alive. Opening the helper's `/proc/<pid>/exe` for writing fails with `EROFS`.
//!    This costs no memory (runc 1.1.12 and 1.2 do the same where they may mount).
//! 3. [`Sealing::SealedMemfd`]: a copy in a sealed memfd (`F_SEAL_WRITE`, `F_SEAL_GROW`,
//!    `F_SEAL_SHRINK`, `F_SEAL_SEAL`): writing fails with `EPERM`. Where mounting is not
//!    allowed (an unprivileged runtime CLI); it costs the binary's size in memory once per
//!    process.
//!
//! The helper also makes itself non-dumpable (`PR_SET_DUMPABLE 0`) until `execve`, so
//! processes in the container cannot open its `/proc/<pid>` entries at all.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, fstatvfs};

use super::ContainerError;
use crate::helper::mounts::remount_bind;

/// How the helpers' binary is kept from being written: see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sealing {
    /// The binary's own mount is read-only.
    ReadOnlyMount,
    /// A detached read-only bind mount of the binary.
    ReadOnlyBind,
    /// A copy in a sealed memfd.
    SealedMemfd,
}

/// A view of this binary that cannot be written, for executing helpers from.
pub struct SelfExe {
    fd: OwnedFd,
    sealing: Sealing,
}

/// Where the read-only bind mount is made before it is detached: a private directory of
/// its own under `/run` (tmpfs in a guest) or the temporary directory, named for this
/// process and call (two creates may ask at once).
fn scratch_dir() -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let base = Path::new("/run");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    base.join(format!(".hull-exe-{}-{call}", std::process::id()))
}

impl SelfExe {
    /// A view of `/proc/self/exe` that cannot be written, by the first way that works.
    pub fn sealed() -> Result<Self, ContainerError> {
        if let Some(exe) = Self::on_read_only_mount()? {
            return Ok(exe);
        }
        match Self::read_only_bind(&scratch_dir()) {
            Ok(exe) => return Ok(exe),
            Err(e) => tracing::debug!(error = %e, "no read-only bind of the binary; copying it"),
        }
        Self::sealed_copy()
    }

    /// How this view is kept from being written.
    pub fn sealing(&self) -> Sealing {
        self.sealing
    }

    /// The binary itself, if its mount is read-only.
    fn on_read_only_mount() -> Result<Option<Self>, ContainerError> {
        let fd = open(
            "/proc/self/exe",
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err("/proc/self/exe", e.into()))?;
        if !read_only(&fd)? {
            return Ok(None);
        }
        Ok(Some(Self {
            fd: away_from_stdio(fd)?,
            sealing: Sealing::ReadOnlyMount,
        }))
    }

    /// The binary through a read-only bind mount made in `dir` (created, then removed)
    /// and detached at once.
    fn read_only_bind(dir: &Path) -> Result<Self, ContainerError> {
        let path_err = |what: &str, e: io::Error| err(&format!("{what} {}", dir.display()), e);
        std::fs::create_dir(dir).map_err(|e| path_err("creating", e))?;
        let target = dir.join("exe");
        let result = (|| {
            File::create(&target).map_err(|e| path_err("creating a file in", e))?;
            bind_read_only(&target)?;
            let opened = open(&target, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| err("opening the read-only bind", e.into()));
            // Detached whatever happened: only the descriptor keeps the mount alive.
            let detached = umount2(&target, MntFlags::MNT_DETACH)
                .map_err(|e| err("detaching the read-only bind", e.into()));
            let fd = opened?;
            detached?;
            if !read_only(&fd)? {
                return Err(err(
                    "the bind mount",
                    io::Error::other("did not become read-only"),
                ));
            }
            away_from_stdio(fd)
        })();
        let _ = std::fs::remove_file(&target);
        let _ = std::fs::remove_dir(dir);
        Ok(Self {
            fd: result?,
            sealing: Sealing::ReadOnlyBind,
        })
    }

    /// Copies `/proc/self/exe` into a sealed memfd.
    pub fn sealed_copy() -> Result<Self, ContainerError> {
        let name = CString::new("hull-agent").map_err(|e| err("name", io::Error::other(e)))?;
        const MFD_EXEC: libc::c_uint = 0x10;
        let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: memfd_create with a valid C string; MFD_EXEC is refused (EINVAL) by
        // kernels before 6.3, which then get the plain call.
        let mut raw = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
        if raw < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // SAFETY: as above.
            raw = unsafe { libc::memfd_create(name.as_ptr(), base) };
        }
        if raw < 0 {
            return Err(err("memfd_create", io::Error::last_os_error()));
        }
        // SAFETY: memfd_create returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut source = File::open("/proc/self/exe").map_err(|e| err("/proc/self/exe", e))?;
        let mut copy = File::from(fd);
        io::copy(&mut source, &mut copy).map_err(|e| err("copying the binary", e))?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on our own memfd.
        if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(err("sealing the copy", io::Error::last_os_error()));
        }
        Ok(Self {
            fd: away_from_stdio(copy.into())?,
            sealing: Sealing::SealedMemfd,
        })
    }

    /// The path to execute it by (valid in this process).
    pub fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

fn err(what: &str, e: io::Error) -> ContainerError {
    ContainerError::SelfExe(format!("{what}: {e}"))
}

/// Whether `fd`'s mount (or file system) is read-only.
fn read_only(fd: &OwnedFd) -> Result<bool, ContainerError> {
    let stat = fstatvfs(fd).map_err(|e| err("statvfs of the binary", e.into()))?;
    Ok(stat.flags().contains(FsFlags::ST_RDONLY))
}

/// Bind-mounts this binary onto `target` and makes that mount read-only (a bind mount
/// takes its flags only on the remount; the helper's `remount_bind` keeps flags a user
/// namespace locks on it).
fn bind_read_only(target: &Path) -> Result<(), ContainerError> {
    mount(
        Some("/proc/self/exe"),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| err("bind-mounting the binary", e.into()))?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    remount_bind(target, flags).map_err(|e| {
        let _ = umount2(target, MntFlags::MNT_DETACH);
        err("making the bind mount read-only", e.into())
    })
}

/// Moves `fd` to 10 or above: the helper's stdio and socket are placed at 0-3 in the
/// child before it executes the binary by its fd number.
fn away_from_stdio(fd: OwnedFd) -> Result<OwnedFd, ContainerError> {
    // SAFETY: F_DUPFD_CLOEXEC on our own fd returns a new fd we then own.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if high < 0 {
        return Err(err("moving the binary's fd", io::Error::last_os_error()));
    }
    // SAFETY: fcntl returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn can_mount() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Writing through the view fails, each way it is made: a mount is read-only (opening
    /// fails with `EROFS`, or `ETXTBSY` while the binary runs); a sealed memfd opens but
    /// refuses the write (`EPERM`).
    fn assert_not_writable(exe: &SelfExe) {
        let write = std::fs::OpenOptions::new()
            .write(true)
            .open(exe.path())
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"\x7fELF-overwritten"));
        let e = write.expect_err("the helpers' binary was writable");
        let expected: &[i32] = match exe.sealing() {
            Sealing::SealedMemfd => &[libc::EPERM],
            Sealing::ReadOnlyMount | Sealing::ReadOnlyBind => {
                assert!(
                    read_only(&exe.fd).expect("statvfs"),
                    "not a read-only mount"
                );
                &[libc::EROFS, libc::ETXTBSY]
            }
        };
        assert!(
            e.raw_os_error()
                .is_some_and(|code| expected.contains(&code)),
            "{e}"
        );
    }

    #[test]
    fn the_sealed_copy_cannot_be_written() {
        let exe = SelfExe::sealed_copy().expect("a sealed copy");
        assert_eq!(exe.sealing(), Sealing::SealedMemfd);
        assert_not_writable(&exe);
        assert!(exe.fd.as_raw_fd() >= 10);
    }

    #[test]
    fn the_read_only_bind_cannot_be_written_and_leaves_no_mount_or_file() {
        assert!(
            can_mount(),
            "needs root to bind-mount the binary (./run test runs as root)"
        );
        let dir = tempfile::tempdir().expect("a temp dir");
        let scratch = dir.path().join("scratch");
        let exe = SelfExe::read_only_bind(&scratch).expect("a read-only bind");
        assert_eq!(exe.sealing(), Sealing::ReadOnlyBind);
        assert_not_writable(&exe);
        assert!(!scratch.exists(), "the scratch directory is left");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(
            !mounts.contains(&scratch.display().to_string()),
            "the bind mount is left attached: {mounts}"
        );
        // The same bytes as the binary.
        let bytes = std::fs::read(exe.path()).expect("reading through the bind");
        assert_eq!(bytes, std::fs::read("/proc/self/exe").expect("the binary"));
    }

    #[test]
    fn sealed_picks_a_view_that_cannot_be_written() {
        let exe = SelfExe::sealed().expect("a sealed view");
        if can_mount() {
            assert_ne!(exe.sealing(), Sealing::SealedMemfd);
        }
        assert_not_writable(&exe);
    }

    #[test]
    fn a_failing_bind_leaves_its_scratch_directory_behind_nowhere() {
        // A scratch directory whose parent does not exist: refused, nothing made.
        let dir = tempfile::tempdir().expect("a temp dir");
        let scratch = dir.path().join("missing").join("scratch");
        let e = SelfExe::read_only_bind(&scratch).err().expect("refused");
        assert!(e.to_string().contains("creating"), "{e}");
        assert!(!scratch.exists());
    }
}

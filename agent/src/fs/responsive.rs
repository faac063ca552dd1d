//! Whether a path's filesystem still answers. A FUSE filesystem whose server is gone (a
//! virtio-fs share whose virtiofsd died on the host) never answers, and a request once
//! sent to it cannot be interrupted, not even by SIGKILL: a thread that stats a path
//! below it is lost for good, and a process with such a thread can never exit. So the
//! `lstat` is made by a forked child process: when it does not end within the timeout
//! the caller gets its answer and the child is left behind (it cannot hold the agent's
//! exit; hull-init's shutdown does not wait for it either).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use hull_container::process::{ExitStatus, Reaper};

/// How long a container's rootfs may take to answer `stat` at CreateContainer.
pub const ROOTFS_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a storage may take to answer `stat` before it is unmounted at the sandbox's
/// end.
pub const STORAGE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a storage that answered may take to be unmounted at the sandbox's end
/// (virtio-fs waits for virtiofsd to drain its queues and answer `FUSE_DESTROY`).
pub const STORAGE_UNMOUNT_TIMEOUT: Duration = Duration::from_secs(4);

/// Whether `lstat(path)` returns (successfully or not: only silence means the filesystem
/// is gone) within `timeout`. A probe that cannot be started counts as an answer: the
/// caller goes on as it would have without the probe.
pub async fn answers_within(path: PathBuf, timeout: Duration) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    let probe = || {
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `path` is NUL-terminated and `stat` is a valid buffer.
        unsafe { libc::lstat(path.as_ptr(), stat.as_mut_ptr()) };
        0
    };
    // SAFETY: the child only calls lstat(2) on memory prepared before the fork (`path`, a
    // stack buffer); it allocates nothing and takes no lock.
    let outcome = unsafe { in_child_within(timeout, probe) }.await;
    !matches!(outcome, ChildOutcome::Silent)
}

/// What became of a call made by [`in_child_within`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildOutcome {
    /// The child ended with this exit status (the call's answer) within the timeout.
    Ended(ExitStatus),
    /// The child did not end within the timeout: it is left behind (it cannot hold the
    /// agent's exit, and hull-init's shutdown does not wait for it).
    Silent,
    /// No child could be started; the call was not made.
    NotStarted,
}

/// Makes `call` in a forked child process and waits at most `timeout` for it: for the
/// system calls that a dead FUSE server (a virtio-fs share whose virtiofsd is gone) would
/// block for ever, unkillable, in the thread that makes them. The child exits with what
/// `call` returns (an `errno`, 0 for success, by convention).
///
/// # Safety
///
/// `call` runs in the child of a multi-threaded process: it may only use async-signal-safe
/// functions on memory prepared before the fork, and must not allocate or take a lock
/// (another thread of the parent may have held it at the fork).
pub async unsafe fn in_child_within(
    timeout: Duration,
    call: impl FnOnce() -> libc::c_int,
) -> ChildOutcome {
    let reaper = match Reaper::global() {
        Ok(reaper) => reaper,
        Err(e) => {
            tracing::warn!(error = %e, "no reaper for a bounded child");
            return ChildOutcome::NotStarted;
        }
    };
    let spawned = reaper.spawn_registered(|| {
        // SAFETY: the child runs only `call`, which the caller promises is
        // async-signal-safe, then _exit(2), which is too; it returns to no Rust code of
        // the parent's that could allocate or lock.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let code = call();
                // SAFETY: _exit(2) ends the child at once, running no destructor or atexit
                // handler of the parent's copy.
                unsafe { libc::_exit(code) }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok((child.as_raw(), ())),
            Err(e) => Err(std::io::Error::from(e)),
        }
    });
    match spawned {
        Ok(((), mut exited)) => match tokio::time::timeout(timeout, exited.wait()).await {
            Ok(status) => ChildOutcome::Ended(status),
            Err(_) => ChildOutcome::Silent,
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot fork a bounded child");
            ChildOutcome::NotStarted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_path_that_exists_and_one_that_does_not_both_answer() {
        let dir = tempfile::tempdir().unwrap();
        assert!(answers_within(dir.path().to_path_buf(), Duration::from_secs(5)).await);
        assert!(answers_within(dir.path().join("missing"), Duration::from_secs(5)).await);
    }
    // Silence (a dead FUSE server) is what the fault test in tests/tests/faults.rs makes.

    #[tokio::test]
    async fn a_child_s_answer_arrives_as_its_exit_status() {
        // SAFETY: the call touches nothing but its return value.
        let outcome = unsafe { in_child_within(Duration::from_secs(5), || 7) }.await;
        assert_eq!(outcome, ChildOutcome::Ended(ExitStatus::Exited(7)));
    }

    #[tokio::test]
    async fn a_child_that_does_not_end_in_time_is_silent() {
        let started = std::time::Instant::now();
        // SAFETY: sleep(3) only waits.
        let nap = || unsafe { libc::sleep(2) as libc::c_int };
        // SAFETY: sleep(3) is async-signal-safe (POSIX); the child ends by itself later.
        let outcome = unsafe { in_child_within(Duration::from_millis(200), nap) }.await;
        assert_eq!(outcome, ChildOutcome::Silent);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

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

use hull_container::process::Reaper;

/// How long a container's rootfs may take to answer `stat` at CreateContainer.
pub const ROOTFS_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a storage may take to answer `stat` before it is unmounted at the sandbox's
/// end.
pub const STORAGE_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `lstat(path)` returns (successfully or not: only silence means the filesystem
/// is gone) within `timeout`. A probe that cannot be started counts as an answer: the
/// caller goes on as it would have without the probe.
pub async fn answers_within(path: PathBuf, timeout: Duration) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    let reaper = match Reaper::global() {
        Ok(reaper) => reaper,
        Err(e) => {
            tracing::warn!(error = %e, "no reaper for a filesystem probe");
            return true;
        }
    };
    let spawned = reaper.spawn_registered(|| {
        // SAFETY: the child only calls lstat(2) and _exit(2), both async-signal-safe, on
        // memory prepared before the fork (`path`, a stack buffer); it allocates nothing
        // and takes no lock, so the parent's other threads cannot deadlock it.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
                // SAFETY: `path` is NUL-terminated and `stat` is a valid buffer.
                unsafe {
                    libc::lstat(path.as_ptr(), stat.as_mut_ptr());
                    libc::_exit(0)
                }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok((child.as_raw(), ())),
            Err(e) => Err(std::io::Error::from(e)),
        }
    });
    match spawned {
        Ok(((), mut exited)) => tokio::time::timeout(timeout, exited.wait()).await.is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot fork a filesystem probe");
            true
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
}

//! Reaping every child of PID 1 (orphans are reparented to it).
//!
//! Uses `libc::waitpid` directly: nix's `waitpid` turns a child killed by a
//! real-time signal into an error *after* the kernel has already reaped it,
//! which would lose the pid (and the agent's exit).

use std::borrow::Cow;
use std::fmt;

use nix::errno::Errno;
use nix::sys::signal::Signal;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Exited(i32),
    Signaled { signal: i32, core_dumped: bool },
}

impl ChildExit {
    /// Decodes a `waitpid` status; `None` for stop/continue reports.
    pub fn from_wait_status(status: libc::c_int) -> Option<Self> {
        if libc::WIFEXITED(status) {
            Some(Self::Exited(libc::WEXITSTATUS(status)))
        } else if libc::WIFSIGNALED(status) {
            Some(Self::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            })
        } else {
            None
        }
    }
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "status={code}"),
            Self::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "signal={}", signal_name(*signal))?;
                if *core_dumped {
                    f.write_str(" core_dumped=true")?;
                }
                Ok(())
            }
        }
    }
}

/// `SIGKILL`, or `SIG42` for signals without a name (real-time ones).
pub fn signal_name(signal: i32) -> Cow<'static, str> {
    match Signal::try_from(signal) {
        Ok(sig) => Cow::Borrowed(sig.as_str()),
        Err(_) => Cow::Owned(format!("SIG{signal}")),
    }
}

/// Debug line for a reaped process other than the agent.
pub fn log_reaped(pid: i32, exit: ChildExit) {
    match exit {
        ChildExit::Exited(status) => tracing::debug!(pid, status, "reaped"),
        ChildExit::Signaled {
            signal,
            core_dumped,
        } => tracing::debug!(pid, signal = %signal_name(signal), core_dumped, "reaped"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReapOutcome {
    /// Some children are still running.
    ChildrenRemain,
    /// `ECHILD`: init has no children left.
    NoChildren,
}

/// Reaps every exited child without blocking, calling `on_exit(pid, exit)`
/// for each.
pub fn reap_all(mut on_exit: impl FnMut(i32, ChildExit)) -> ReapOutcome {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid out-pointer; WNOHANG makes this non-blocking.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        if pid > 0 {
            if let Some(exit) = ChildExit::from_wait_status(status) {
                on_exit(pid, exit);
            }
            continue;
        }
        if pid == 0 {
            return ReapOutcome::ChildrenRemain;
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::ECHILD => return ReapOutcome::NoChildren,
            _ => return ReapOutcome::ChildrenRemain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Linux wait-status encoding: exit code in bits 8..15; signal in bits 0..6;
    // core dump flag 0x80.
    fn exited(code: i32) -> libc::c_int {
        (code & 0xff) << 8
    }
    fn signaled(sig: i32, core: bool) -> libc::c_int {
        sig | if core { 0x80 } else { 0 }
    }

    #[test]
    fn decodes_status() {
        assert_eq!(
            ChildExit::from_wait_status(exited(0)),
            Some(ChildExit::Exited(0))
        );
        assert_eq!(
            ChildExit::from_wait_status(exited(3)),
            Some(ChildExit::Exited(3))
        );
        assert_eq!(
            ChildExit::from_wait_status(signaled(9, false)),
            Some(ChildExit::Signaled {
                signal: 9,
                core_dumped: false
            })
        );
        assert_eq!(
            ChildExit::from_wait_status(signaled(11, true)),
            Some(ChildExit::Signaled {
                signal: 11,
                core_dumped: true
            })
        );
        // Stopped by SIGSTOP (0x7f marker) and continued (0xffff).
        assert_eq!(ChildExit::from_wait_status((19 << 8) | 0x7f), None);
        assert_eq!(ChildExit::from_wait_status(0xffff), None);
    }

    #[test]
    fn display() {
        assert_eq!(ChildExit::Exited(2).to_string(), "status=2");
        assert_eq!(
            ChildExit::Signaled {
                signal: 9,
                core_dumped: false
            }
            .to_string(),
            "signal=SIGKILL"
        );
        assert_eq!(
            ChildExit::Signaled {
                signal: 6,
                core_dumped: true
            }
            .to_string(),
            "signal=SIGABRT core_dumped=true"
        );
        assert_eq!(signal_name(40), "SIG40");
    }

    #[test]
    fn reaps_real_children() {
        // waitpid(-1) could steal other tests' children: serialize.
        let _guard = crate::test_support::CHILDREN.lock();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 7"])
            .spawn();
        let Ok(child) = child else {
            return; // no /bin/sh: nothing to test here
        };
        let pid = i32::try_from(child.id()).unwrap_or(-1);
        let mut seen = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.is_none() && std::time::Instant::now() < deadline {
            reap_all(|p, exit| {
                if p == pid {
                    seen = Some(exit);
                }
            });
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(seen, Some(ChildExit::Exited(7)));
    }
}

//! Reaping every child of PID 1 (orphans are reparented to it).
//!
//! `waitpid(-1, WNOHANG | __WALL)`: every child, also those that report
//! their end with a signal other than SIGCHLD.

use alloc::borrow::Cow;
use alloc::format;
use core::fmt;

use rustix::io::Errno;
use rustix::process::WaitOptions;

/// Linux's `__WALL`: wait for every kind of child.
pub(crate) const WALL: u32 = 0x4000_0000;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Exited(i32),
    Signaled { signal: i32, core_dumped: bool },
}

impl ChildExit {
    /// Decodes a `waitpid` status; `None` for stop/continue reports.
    ///
    /// Linux's encoding: the low 7 bits are 0 for an exit (code in bits
    /// 8..15), `0x7f` for a stop, else the terminating signal (bit 7: core
    /// dumped); `0xffff` is "continued".
    pub fn from_wait_status(status: i32) -> Option<Self> {
        let low = status & 0x7f;
        if low == 0 {
            Some(Self::Exited((status >> 8) & 0xff))
        } else if low != 0x7f && status != 0xffff {
            Some(Self::Signaled {
                signal: low,
                core_dumped: status & 0x80 != 0,
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

/// Names of Linux's signals 1..=31 on x86-64.
const SIGNAL_NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// `SIGKILL`, or `SIG42` for signals without a name (real-time ones).
pub fn signal_name(signal: i32) -> Cow<'static, str> {
    usize::try_from(signal)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| SIGNAL_NAMES.get(i))
        .map_or_else(
            || Cow::Owned(format!("SIG{signal}")),
            |name| Cow::Borrowed(*name),
        )
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
    let options = WaitOptions::NOHANG | WaitOptions::from_bits_retain(WALL);
    loop {
        match rustix::process::wait(options) {
            Ok(Some((pid, status))) => {
                if let Some(exit) = ChildExit::from_wait_status(status.as_raw()) {
                    on_exit(pid.as_raw_nonzero().get(), exit);
                }
            }
            Ok(None) => return ReapOutcome::ChildrenRemain,
            Err(Errno::INTR) => {}
            Err(Errno::CHILD) => return ReapOutcome::NoChildren,
            Err(_) => return ReapOutcome::ChildrenRemain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString as _;

    // Linux wait-status encoding: exit code in bits 8..15; signal in bits 0..6;
    // core dump flag 0x80.
    fn exited(code: i32) -> i32 {
        (code & 0xff) << 8
    }
    fn signaled(sig: i32, core: bool) -> i32 {
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
        let child = match child {
            Ok(child) => child,
            Err(e) => panic!("this test needs /bin/sh to start a child that exits 7: {e}"),
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

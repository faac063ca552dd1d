//! Signal intake for PID 1: the handled signals are blocked and read from a
//! `signalfd`, so nothing runs in signal-handler context.
//!
//! The kernel drops signals sent to PID 1 whose disposition is SIG_DFL, but not
//! blocked ones: blocked signals stay pending and the signalfd reports them.

use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsFd;

/// SIGCHLD: reap. SIGTERM, SIGPWR: orderly power-off. SIGINT: the kernel's
/// Ctrl-Alt-Del (after `reboot(RB_DISABLE_CAD)`), also a power-off.
pub const HANDLED: [Signal; 4] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
];

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot block signals: {0}")]
    Block(#[source] Errno),
    #[error("cannot create signalfd: {0}")]
    Create(#[source] Errno),
    #[error("waiting for signals failed: {0}")]
    Wait(#[source] Errno),
}

fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in HANDLED {
        set.add(sig);
    }
    set
}

/// Blocks the handled signals for the calling thread (init is single-threaded).
/// Children get an empty mask back from `std::process::Command`.
pub fn block() -> Result<(), SignalError> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_set()), None).map_err(SignalError::Block)
}

/// What arrived since the last wait.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// At least one SIGCHLD (they coalesce: always reap until none is left).
    pub child: bool,
    /// The first shutdown request, with the sender's pid (0 = the kernel).
    pub shutdown: Option<(Signal, u32)>,
}

pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Creates a non-blocking, close-on-exec signalfd for the handled signals.
    /// Call [`block`] first.
    pub fn new() -> Result<Self, SignalError> {
        let fd = SignalFd::with_flags(
            &handled_set(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(SignalError::Create)?;
        Ok(Self { fd })
    }

    /// Waits until a signal arrives or `timeout` passes (`None`: no limit),
    /// then drains everything pending.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Pending, SignalError> {
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, poll_timeout(timeout)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(SignalError::Wait(e)),
        }
        self.drain()
    }

    fn drain(&self) -> Result<Pending, SignalError> {
        let mut pending = Pending::default();
        loop {
            match self.fd.read_signal() {
                Ok(Some(info)) => {
                    let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    if signal == Signal::SIGCHLD {
                        pending.child = true;
                    } else if pending.shutdown.is_none() {
                        pending.shutdown = Some((signal, info.ssi_pid));
                    }
                }
                Ok(None) => return Ok(pending),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(SignalError::Wait(e)),
            }
        }
    }
}

/// Rounds up to whole milliseconds so a short remaining delay never spins.
fn poll_timeout(timeout: Option<Duration>) -> PollTimeout {
    match timeout {
        None => PollTimeout::NONE,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_rounding() {
        assert_eq!(poll_timeout(None), PollTimeout::NONE);
        assert_eq!(poll_timeout(Some(Duration::ZERO)), PollTimeout::ZERO);
        assert_eq!(
            poll_timeout(Some(Duration::from_micros(1))),
            PollTimeout::from(1u16)
        );
        assert_eq!(
            poll_timeout(Some(Duration::from_millis(1500))),
            PollTimeout::from(1500u16)
        );
        assert_eq!(
            poll_timeout(Some(Duration::from_secs(u64::MAX))),
            PollTimeout::MAX
        );
    }

    #[test]
    fn handled_set_contents() {
        let set = handled_set();
        for sig in HANDLED {
            assert!(set.contains(sig));
        }
        assert!(!set.contains(Signal::SIGKILL));
        assert!(!set.contains(Signal::SIGHUP));
    }
}

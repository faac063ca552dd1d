//! Signal intake for PID 1: the handled signals are blocked and taken with
//! `sigtimedwait(2)`, so nothing runs in signal-handler context.
//!
//! The kernel drops signals sent to PID 1 whose disposition is SIG_DFL, but not
//! blocked ones: blocked signals stay pending until `sigtimedwait` takes them.

use core::time::Duration;

use rustix::io::Errno;
use rustix::process::Signal;
use rustix::time::Timespec;

use crate::clock::timespec_ms_ceil;
use crate::sys::{self, How, SigInfo, SigSet};

/// SIGCHLD: reap. SIGTERM, SIGPWR: orderly power-off. SIGINT: the kernel's
/// Ctrl-Alt-Del (after `reboot(RB_DISABLE_CAD)`), also a power-off.
pub const HANDLED: [Signal; 4] = [Signal::CHILD, Signal::TERM, Signal::INT, Signal::POWER];

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("cannot block signals: {0}")]
    Block(Errno),
    #[error("waiting for signals failed: {0}")]
    Wait(Errno),
}

fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for sig in HANDLED {
        set.insert(sig);
    }
    set
}

/// Blocks the handled signals for the calling thread (init is single-threaded).
/// The agent gets an empty mask back when it is started.
pub fn block() -> Result<(), SignalError> {
    sys::sigprocmask(How::Block, &handled_set())
        .map(|_| ())
        .map_err(SignalError::Block)
}

/// What arrived since the last wait.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// At least one SIGCHLD (they coalesce: always reap until none is left).
    pub child: bool,
    /// The first shutdown request, with the sender's pid (0 = the kernel).
    pub shutdown: Option<(Signal, u32)>,
}

impl Pending {
    fn add(&mut self, info: &SigInfo) {
        let signo = info.signo;
        if signo == Signal::CHILD.as_raw() {
            self.child = true;
            return;
        }
        let Some(signal) = HANDLED.into_iter().find(|s| s.as_raw() == signo) else {
            return;
        };
        if self.shutdown.is_none() {
            self.shutdown = Some((signal, u32::try_from(info.pid).unwrap_or(0)));
        }
    }
}

/// Waits for the handled signals (which [`block`] must have blocked).
pub struct Signals {
    set: SigSet,
}

impl Signals {
    pub fn new() -> Self {
        Self { set: handled_set() }
    }

    /// Waits until a signal arrives or `timeout` passes (`None`: no limit),
    /// then drains everything pending.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Pending, SignalError> {
        let mut pending = Pending::default();
        let timeout = timeout.map(timespec_ms_ceil);
        match self.take(timeout.as_ref()) {
            Ok(info) => pending.add(&info),
            Err(Errno::AGAIN | Errno::INTR) => {}
            Err(e) => return Err(SignalError::Wait(e)),
        }
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            match self.take(Some(&zero)) {
                Ok(info) => pending.add(&info),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return Ok(pending),
                Err(e) => return Err(SignalError::Wait(e)),
            }
        }
    }

    fn take(&self, timeout: Option<&Timespec>) -> Result<SigInfo, Errno> {
        sys::sigtimedwait(&self.set, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handled_set_contents() {
        let set = handled_set();
        for sig in HANDLED {
            assert!(set.contains(sig));
        }
        assert!(!set.contains(Signal::KILL));
        assert!(!set.contains(Signal::HUP));
    }

    #[test]
    fn a_zero_timeout_returns_at_once() {
        // Nothing pending for this thread (the handled signals are not blocked
        // here, so none can be pending): an empty report, no error.
        let start = crate::clock::Instant::now();
        let pending = Signals::new().wait(Some(Duration::ZERO));
        assert_eq!(pending.ok(), Some(Pending::default()));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}

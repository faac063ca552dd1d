//! Processes the agent started: a container's init process and the processes exec'd into
//! it.
//!
//! - [`reaper`]: the one owner of `waitpid(-1)`; exit statuses by pid.
//! - [`stdio`]: pipes or a pseudo-terminal, read and written without a buffer of ours.
//! - [`streams`]: stdio carried on connected sockets instead (Kata's vsock stdio ports).
//!
//! A [`Process`] ties them together: its pid, its stdio, and its exit status once the
//! reaper has it.

pub mod reaper;
pub mod stdio;
pub mod streams;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;

pub use reaper::{ExitStatus, ExitWatch, Reaper};
pub use stdio::{ChildStdio, ProcessIo};
pub use streams::StdioStreams;

/// What can go wrong with a process or its stdio.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A system call failed (making pipes or a terminal, signalling, becoming the
    /// subreaper).
    #[error("{what}: {errno}")]
    Sys {
        /// The call, or what it was for.
        what: &'static str,
        /// The error it returned.
        errno: Errno,
    },
    /// Reading or writing the stdio failed, or the reaper thread could not be started.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// Stdin was closed (by `CloseStdin`), or the process closed its end.
    #[error("stdin is closed")]
    StdinClosed,
    /// A terminal request (resizing) for a process on pipes.
    #[error("the process has no terminal")]
    NoTerminal,
    /// The stream does not exist (stderr of a process on a terminal); says why.
    #[error("{0}")]
    NoSuchStream(&'static str),
    /// The stream is carried on its own connection (a vsock stdio port), not the RPCs.
    #[error("{0} is carried on its vsock stream, not through the agent's stdio requests")]
    CarriedOnStream(&'static str),
    /// A signal number from the wire that is no signal of this system.
    #[error("invalid signal number {0}")]
    InvalidSignal(u32),
}

/// A process the agent started and reaps.
pub struct Process {
    /// The id the runtime knows it by (for a container's init process, the exec id of
    /// `CreateContainer`).
    pub exec_id: String,
    /// Its pid in the agent's pid namespace.
    pub pid: i32,
    /// Its stdio.
    pub io: ProcessIo,
    exit: ExitWatch,
    reaper: Reaper,
    waited_at: Mutex<Option<Instant>>,
}

impl Process {
    /// A process just started: `exit` is the reaper's watch on `pid`, `io` the agent's
    /// side of its stdio.
    pub fn new(exec_id: String, pid: i32, io: ProcessIo, exit: ExitWatch, reaper: Reaper) -> Self {
        Self {
            exec_id,
            pid,
            io,
            exit,
            reaper,
            waited_at: Mutex::new(None),
        }
    }

    /// Records that the runtime collected the exit status (`WaitProcess`).
    pub fn mark_waited(&self) {
        let mut waited = self.waited_at.lock().unwrap_or_else(|e| e.into_inner());
        waited.get_or_insert_with(Instant::now);
    }

    /// How long ago the exit status was collected, if it was.
    pub fn waited_for(&self) -> Option<Duration> {
        self.waited_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|at| at.elapsed())
    }

    /// Waits until the process has exited and been reaped.
    pub async fn wait(&self) -> ExitStatus {
        self.exit.clone().wait().await
    }

    /// Moves stdio streams onto connected sockets ([`ProcessIo::carry`]).
    pub async fn carry_stdio(&self, streams: StdioStreams) -> Result<(), ProcessError> {
        self.io.carry(streams, self.exit.clone()).await
    }

    /// The exit status, once reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit.status()
    }

    /// Sends a signal, unless the process has already been reaped (then nothing is
    /// sent and the call succeeds: the process is gone).
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessError> {
        self.reaper.signal(self.pid, signal).map(|_| ())
    }
}

/// A signal number from the wire.
pub fn signal_from_number(number: u32) -> Result<Signal, ProcessError> {
    i32::try_from(number)
        .ok()
        .and_then(|n| Signal::try_from(n).ok())
        .ok_or(ProcessError::InvalidSignal(number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_numbers_are_checked() {
        assert_eq!(signal_from_number(9).unwrap(), Signal::SIGKILL);
        assert!(signal_from_number(0).is_err());
        assert!(signal_from_number(1000).is_err());
        assert!(signal_from_number(u32::MAX).is_err());
    }
}

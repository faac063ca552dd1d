//! The one owner of `waitpid(-1)` in the agent.
//!
//! The agent is a child subreaper (`PR_SET_CHILD_SUBREAPER`): container processes whose
//! helper parent exits are re-parented to it, and it must reap every child, or zombies
//! pile up. One task waits for SIGCHLD and reaps every exited child with
//! `waitpid(-1, WNOHANG)`; the exit status goes to whoever registered the pid.
//!
//! A fast process is never missed: the table lock is held from before a child is spawned
//! until its pid is registered ([`Reaper::spawn_registered`]), so the reaper cannot take
//! the status first. A grandchild (the container process forked by the helper) is
//! registered while its parent, the helper, still lives, so it cannot have been reaped
//! by the agent either. Children nobody registered (orphans re-parented to the agent) are
//! reaped and forgotten.
//!
//! Consequence for the rest of the agent: nothing else may wait for its children
//! (`std::process::Child::wait`, `Command::output`, `Command::status`), as the reaper may
//! take their status first. Spawn through [`Reaper::spawn_registered`] and wait on the
//! returned [`ExitWatch`] instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::ProcessError;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention Kata's `WaitProcess` answers with: the exit code, or
    /// 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => 128 + signal,
        }
    }

    /// Converts a raw `waitpid` status word.
    pub fn from_wait_status(status: WaitStatus) -> Option<(i32, Self)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid.as_raw(), Self::Exited(code))),
            WaitStatus::Signaled(pid, signal, _) => {
                Some((pid.as_raw(), Self::Signaled(signal as i32)))
            }
            _ => None,
        }
    }
}

/// Resolves once the process has been reaped.
#[derive(Clone)]
pub struct ExitWatch(watch::Receiver<Option<ExitStatus>>);

impl ExitWatch {
    /// Waits for the exit status.
    pub async fn wait(&mut self) -> ExitStatus {
        loop {
            if let Some(status) = *self.0.borrow_and_update() {
                return status;
            }
            if self.0.changed().await.is_err() {
                // The reaper never drops a registered sender before sending, but if the
                // table is torn down, report the process as killed.
                return (*self.0.borrow()).unwrap_or(ExitStatus::Signaled(libc::SIGKILL));
            }
        }
    }

    /// The exit status, if the process has been reaped.
    pub fn status(&self) -> Option<ExitStatus> {
        *self.0.borrow()
    }

    /// A watch a test sets itself.
    #[cfg(test)]
    pub(crate) fn manual() -> (watch::Sender<Option<ExitStatus>>, Self) {
        let (tx, rx) = watch::channel(None);
        (tx, Self(rx))
    }
}

#[derive(Default)]
struct Table {
    /// Registered, not yet reaped.
    watchers: HashMap<i32, watch::Sender<Option<ExitStatus>>>,
}

/// The process-wide reaper. Cheap to clone.
#[derive(Clone)]
pub struct Reaper {
    table: Arc<Mutex<Table>>,
}

static GLOBAL: OnceLock<Reaper> = OnceLock::new();
/// Serializes the first start, so only one reaping thread ever runs.
static START: Mutex<()> = Mutex::new(());

impl Reaper {
    /// The reaper of this process, started on first use; makes the process a child
    /// subreaper. Reaping runs on a thread of its own (with its own small runtime for
    /// SIGCHLD), so it does not depend on the runtime of whoever called first outliving
    /// everyone else: the agent has one runtime, but tests have one per test.
    pub fn global() -> Result<Reaper, ProcessError> {
        Self::global_inner()
    }

    /// The reaper of this process if something started it already; `None` otherwise
    /// (then `waitpid` on one's own children still works).
    pub fn started() -> Option<Reaper> {
        GLOBAL.get().cloned()
    }

    fn global_inner() -> Result<Reaper, ProcessError> {
        if let Some(reaper) = GLOBAL.get() {
            return Ok(reaper.clone());
        }
        let _init = START.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reaper) = GLOBAL.get() {
            return Ok(reaper.clone());
        }
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| ProcessError::Sys {
            what: "PR_SET_CHILD_SUBREAPER",
            errno: e,
        })?;
        let reaper = Reaper {
            table: Arc::new(Mutex::new(Table::default())),
        };
        let thread_reaper = reaper.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name("hull-reaper".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let signal =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child());
                    let mut sigchld = match signal {
                        Ok(sigchld) => sigchld,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    // Registered first, then a sweep: a child that ended before the
                    // registration is reaped by the first pass.
                    loop {
                        thread_reaper.reap_all();
                        if sigchld.recv().await.is_none() {
                            return;
                        }
                    }
                });
            })
            .map_err(ProcessError::Io)?;
        ready_rx
            .recv()
            .map_err(|_| ProcessError::Io(std::io::Error::other("the reaper thread ended")))?
            .map_err(ProcessError::Io)?;
        let _ = GLOBAL.set(reaper.clone());
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reap_all(&self) {
        let mut table = self.lock();
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    let Some((pid, exit)) = ExitStatus::from_wait_status(status) else {
                        continue;
                    };
                    match table.watchers.remove(&pid) {
                        Some(sender) => {
                            tracing::debug!(pid, ?exit, "process exited");
                            sender.send_replace(Some(exit));
                        }
                        None => tracing::debug!(pid, ?exit, "reaped an orphan"),
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid");
                    return;
                }
            }
        }
    }

    /// Runs `spawn` (which starts a child and returns its pid) with the table locked,
    /// then registers the pid: the reaper cannot reap it in between.
    pub fn spawn_registered<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<(i32, T)>,
    ) -> std::io::Result<(T, ExitWatch)> {
        let mut table = self.lock();
        let (pid, value) = spawn()?;
        Ok((value, Self::register(&mut table, pid)))
    }

    /// Registers a pid that cannot have been reaped yet (e.g. a grandchild whose parent
    /// still lives).
    pub fn watch(&self, pid: i32) -> ExitWatch {
        Self::register(&mut self.lock(), pid)
    }

    fn register(table: &mut Table, pid: i32) -> ExitWatch {
        let sender = table
            .watchers
            .entry(pid)
            .or_insert_with(|| watch::Sender::new(None));
        ExitWatch(sender.subscribe())
    }

    /// Sends `signal` to `pid` unless it has been reaped already (then its pid may
    /// belong to another process: nothing is sent). Answers whether it was sent.
    pub fn signal(&self, pid: i32, signal: Signal) -> Result<bool, ProcessError> {
        let table = self.lock();
        if !table.watchers.contains_key(&pid) {
            return Ok(false);
        }
        match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
            Ok(()) => Ok(true),
            Err(Errno::ESRCH) => Ok(false),
            Err(errno) => Err(ProcessError::Sys {
                what: "kill",
                errno,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        assert_eq!(
            ExitStatus::from_wait_status(WaitStatus::Signaled(
                Pid::from_raw(7),
                Signal::SIGTERM,
                false
            )),
            Some((7, ExitStatus::Signaled(15)))
        );
        assert_eq!(ExitStatus::from_wait_status(WaitStatus::StillAlive), None);
    }
}

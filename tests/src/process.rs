//! Child processes the harness owns: each runs in its own process group and is killed
//! (group and all) when its guard is dropped, whether the test passed, failed or panicked.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

/// A spawned program that is killed when dropped.
#[derive(Debug)]
pub struct OwnedChild {
    name: String,
    child: Child,
    exited: Option<ExitStatus>,
}

impl OwnedChild {
    /// Spawns `cmd` in a new process group, with stdin closed.
    pub fn spawn(name: impl Into<String>, mut cmd: Command) -> std::io::Result<Self> {
        cmd.process_group(0).stdin(Stdio::null());
        let child = cmd.spawn()?;
        Ok(Self {
            name: name.into(),
            child,
            exited: None,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended, without waiting.
    pub fn try_status(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Waits up to `timeout` for the process to end on its own.
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(Some(status));
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the whole process group and reaps the process.
    pub fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // The group may already be gone: nothing to do then.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        match self.child.wait() {
            Ok(status) => self.exited = Some(status),
            Err(e) => tracing::warn!(name = %self.name, error = %e, "could not reap child"),
        }
    }
}

impl Drop for OwnedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

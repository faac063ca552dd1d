//! Orderly power-off: stop every process, unmount, remount `/` read-only,
//! sync, power off (reboot if power-off fails; the VMM runs with -no-reboot).

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, sync};
use tracing::{debug, error, info, warn};

use crate::config::ShutdownAction;
use crate::mountinfo::{self, MountEntry};
use crate::reaper::{self, ReapOutcome};
use crate::signals::Signals;
use crate::uptime_ms;

/// How long processes get to exit after SIGTERM.
pub const TERM_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for zombies after SIGKILL.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound on waiting for the console to transmit the last lines.
const CONSOLE_DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// Why init shuts down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The agent exited with status 0 (after DestroySandbox).
    AgentExited,
    /// SIGTERM, SIGPWR or SIGINT (Ctrl-Alt-Del).
    Signal(Signal),
    /// The agent kept crashing past `hull.agent_restarts`.
    AgentGaveUp,
    /// /usr/bin/hull-agent does not exist.
    AgentMissing,
    /// A required mount or signal setup failed.
    BootFailure,
}

impl Reason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AgentExited => "agent-exit",
            Self::Signal(_) => "signal",
            Self::AgentGaveUp => "agent-failed",
            Self::AgentMissing => "agent-missing",
            Self::BootFailure => "boot-failure",
        }
    }
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Shuts the machine down, ending with `action`. Never returns.
pub fn run(reason: Reason, signals: Option<&Signals>, action: ShutdownAction) -> ! {
    let start = Instant::now();
    match reason {
        Reason::Signal(signal) => info!(
            reason = reason.as_str(),
            signal = signal.as_str(),
            uptime_ms = uptime_ms(),
            "shutting down"
        ),
        _ => info!(
            reason = reason.as_str(),
            uptime_ms = uptime_ms(),
            "shutting down"
        ),
    }

    terminate_all(signals, start);
    sync();
    info!(elapsed_ms = ms(start), "synced");

    let entries = mountinfo::read().unwrap_or_else(|e| {
        warn!(error = %e, "cannot read mount table, skipping unmount");
        Vec::new()
    });
    unmount_all(&entries, start);
    remount_root_read_only(mountinfo::root(&entries), start);
    sync();

    power_off(start, action)
}

/// SIGTERM to all, wait, SIGKILL to what is left, wait again.
fn terminate_all(signals: Option<&Signals>, start: Instant) {
    match kill(Pid::from_raw(-1), Signal::SIGTERM) {
        Ok(()) => info!(elapsed_ms = ms(start), "sent SIGTERM to all processes"),
        Err(Errno::ESRCH) => debug!("no processes to signal"),
        Err(e) => warn!(error = %e, "kill(-1, SIGTERM) failed"),
    }
    if wait_for_children(signals, TERM_TIMEOUT) {
        info!(elapsed_ms = ms(start), "all processes exited");
        return;
    }
    warn!(
        elapsed_ms = ms(start),
        "processes still running, sending SIGKILL"
    );
    if let Err(e) = kill(Pid::from_raw(-1), Signal::SIGKILL)
        && e != Errno::ESRCH
    {
        warn!(error = %e, "kill(-1, SIGKILL) failed");
    }
    if wait_for_children(signals, KILL_TIMEOUT) {
        info!(elapsed_ms = ms(start), "all processes exited");
    } else {
        warn!(
            elapsed_ms = ms(start),
            "processes remain after SIGKILL, continuing"
        );
    }
}

/// Reaps until init has no children left (true) or `timeout` passes (false).
fn wait_for_children(signals: Option<&Signals>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let outcome = reaper::reap_all(reaper::log_reaped);
        if outcome == ReapOutcome::NoChildren {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let slice = (deadline - now).min(Duration::from_millis(100));
        match signals {
            // Further shutdown requests are drained and ignored.
            Some(signals) => {
                if signals.wait(Some(slice)).is_err() {
                    std::thread::sleep(slice.min(Duration::from_millis(10)));
                }
            }
            None => std::thread::sleep(slice.min(Duration::from_millis(10))),
        }
    }
}

/// Unmounts in reverse mountinfo order, lazily when busy; logs and continues.
fn unmount_all(entries: &[MountEntry], start: Instant) {
    let (mut unmounted, mut detached, mut failed) = (0u32, 0u32, 0u32);
    for entry in mountinfo::unmount_order(entries) {
        let target = entry.mount_point.as_path();
        match umount2(target, MntFlags::empty()) {
            Ok(()) => {
                unmounted += 1;
                debug!(target = %target.display(), "unmounted");
            }
            // No longer a mount point (went with a detached parent) or gone.
            Err(Errno::EINVAL | Errno::ENOENT) => {
                debug!(target = %target.display(), "already gone");
            }
            Err(first) => match umount2(target, MntFlags::MNT_DETACH) {
                Ok(()) => {
                    detached += 1;
                    debug!(target = %target.display(), error = %first, "busy, detached");
                }
                Err(e) => {
                    failed += 1;
                    warn!(
                        target = %target.display(),
                        fstype = entry.fstype.as_str(),
                        error = %e,
                        "unmount failed"
                    );
                }
            },
        }
    }
    info!(
        unmounted,
        detached,
        failed,
        elapsed_ms = ms(start),
        "filesystems unmounted"
    );
}

fn remount_root_read_only(root: Option<&MountEntry>, start: Instant) {
    let Some(root) = root else {
        return;
    };
    if !mountinfo::root_needs_ro_remount(root) {
        debug!(fstype = root.fstype.as_str(), "root left as is");
        return;
    }
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    match mount(
        None::<&str>,
        Path::new("/"),
        None::<&str>,
        flags,
        None::<&str>,
    ) {
        Ok(()) => info!(
            fstype = root.fstype.as_str(),
            elapsed_ms = ms(start),
            "root remounted read-only"
        ),
        Err(e) => warn!(
            fstype = root.fstype.as_str(),
            error = %e,
            "cannot remount root read-only"
        ),
    }
}

/// Waits (bounded) until the console's output queue is empty, so the last
/// lines are not cut off by the power-off. Polls TIOCOUTQ instead of calling
/// tcdrain(3), which could block forever on a stuck line.
fn drain_console() {
    let deadline = Instant::now() + CONSOLE_DRAIN_TIMEOUT;
    loop {
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one c_int through the valid pointer; on a
        // non-tty fd 2 it fails with ENOTTY and writes nothing.
        let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCOUTQ, &mut queued) };
        if rc != 0 || queued <= 0 || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn power_off(start: Instant, action: ShutdownAction) -> ! {
    if action == ShutdownAction::PowerOff {
        info!(
            elapsed_ms = ms(start),
            uptime_ms = uptime_ms(),
            "powering off"
        );
        drain_console();
        let Err(e) = reboot(RebootMode::RB_POWER_OFF);
        error!(error = %e, "power-off failed, rebooting instead");
    } else {
        info!(
            elapsed_ms = ms(start),
            uptime_ms = uptime_ms(),
            "rebooting (hull.shutdown=reboot)"
        );
    }
    drain_console();
    let Err(e) = reboot(RebootMode::RB_AUTOBOOT);
    error!(error = %e, "reboot failed too, halting here");
    drain_console();
    // PID 1 must not exit (that is a kernel panic): idle, still reaping.
    loop {
        reaper::reap_all(|_, _| {});
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names() {
        assert_eq!(Reason::AgentExited.as_str(), "agent-exit");
        assert_eq!(Reason::Signal(Signal::SIGTERM).as_str(), "signal");
        assert_eq!(Reason::AgentGaveUp.as_str(), "agent-failed");
        assert_eq!(Reason::AgentMissing.as_str(), "agent-missing");
        assert_eq!(Reason::BootFailure.as_str(), "boot-failure");
    }
}

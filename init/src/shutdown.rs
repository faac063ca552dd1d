//! Orderly power-off: stop every process, unmount, remount `/` read-only,
//! sync, power off (reboot if power-off fails; the VMM runs with -no-reboot).

use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use hull_common::mountinfo::{self, MountInfoEntry};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags, mount_remount, unmount};
use rustix::process::{Pid, Signal, WaitOptions, kill_process_group};
use rustix::system::{RebootCommand, reboot};
use tracing::{debug, error, info, warn};

use crate::clock::{self, Instant, millis};
use crate::config::ShutdownAction;
use crate::reaper::{self, ReapOutcome, signal_name};
use crate::signals::Signals;
use crate::{console, fs, uptime_ms};

/// How long processes get to exit after SIGTERM.
pub const TERM_TIMEOUT: Duration = Duration::from_secs(3);
/// How long to wait for zombies after SIGKILL.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long sync, unmount and the read-only remount may take before init powers off
/// without them.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
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
    millis(since.elapsed())
}

/// `kill(-1, signal)`: every process but init itself.
fn kill_all(signal: Signal) -> Result<(), Errno> {
    kill_process_group(Pid::INIT, signal)
}

/// The mount table now; empty (with a warning) when it cannot be read.
fn read_mount_table() -> Vec<MountInfoEntry> {
    match fs::read(mountinfo::PROC_SELF_MOUNTINFO) {
        Ok(data) => mountinfo::parse_lenient(&data),
        Err(e) => {
            warn!(error = %e, "cannot read mount table, skipping unmount");
            Vec::new()
        }
    }
}

/// The mount currently visible at `/` (the last one stacked there).
pub fn root(entries: &[MountInfoEntry]) -> Option<&MountInfoEntry> {
    entries.iter().rev().find(|e| e.mount_point == b"/")
}

/// Whether shutdown should remount `/` read-only: not for the initramfs
/// (`rootfs`, which has no backing store) and not when it already is.
pub fn root_needs_ro_remount(root: &MountInfoEntry) -> bool {
    root.fstype != "rootfs" && !root.is_read_only()
}

/// The order to unmount in: the reverse of mountinfo's order (children are
/// listed after their parents, later mounts after the ones they cover), with
/// every mount on `/` left out.
pub fn unmount_order(entries: &[MountInfoEntry]) -> Vec<&MountInfoEntry> {
    entries
        .iter()
        .rev()
        .filter(|e| e.mount_point != b"/")
        .collect()
}

/// Shuts the machine down, ending with `action`. Never returns.
pub fn run(reason: Reason, signals: Option<&Signals>, action: ShutdownAction) -> ! {
    let start = Instant::now();
    match reason {
        Reason::Signal(signal) => info!(
            reason = reason.as_str(),
            signal = %signal_name(signal.as_raw()),
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
    settle_filesystems_bounded(start);
    power_off(start, action)
}

/// Syncs, unmounts, remounts `/` read-only and syncs again.
fn settle_filesystems(start: Instant) {
    rustix::fs::sync();
    info!(elapsed_ms = ms(start), "synced");

    let entries = read_mount_table();
    unmount_all(&entries, start);
    remount_root_read_only(root(&entries), start);
    rustix::fs::sync();
}

/// [`settle_filesystems`] in a child process, waited for at most [`SETTLE_TIMEOUT`]: a
/// filesystem whose server is gone (a virtio-fs share whose virtiofsd died) blocks
/// `sync` and `umount` for ever, and PID 1 must still power the machine off. Done in
/// init itself when the child cannot be forked.
fn settle_filesystems_bounded(start: Instant) {
    // SAFETY: init is single-threaded, so the child may allocate and log: no lock can
    // be held by another thread at the fork. The child ends with exit_group.
    match unsafe { crate::sys::fork() } {
        Ok(None) => {
            settle_filesystems(start);
            crate::sys::exit_group(0)
        }
        Ok(Some(pid)) => {
            let Some(pid) = Pid::from_raw(pid) else {
                return;
            };
            let deadline = Instant::now() + SETTLE_TIMEOUT;
            let options = WaitOptions::NOHANG | WaitOptions::from_bits_retain(reaper::WALL);
            loop {
                match rustix::process::waitpid(Some(pid), options) {
                    Ok(Some(_)) | Err(Errno::CHILD) => return,
                    Ok(None) | Err(Errno::INTR) => {}
                    Err(e) => {
                        warn!(error = %e, "waiting for the filesystems' child failed");
                        return;
                    }
                }
                if Instant::now() >= deadline {
                    error!(
                        timeout_ms = millis(SETTLE_TIMEOUT),
                        elapsed_ms = ms(start),
                        "sync and unmount did not finish (a filesystem does not answer: \
                         a shared filesystem whose server is gone?); powering off anyway"
                    );
                    return;
                }
                clock::sleep(Duration::from_millis(10));
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot fork for sync and unmount, doing them in init");
            settle_filesystems(start);
        }
    }
}

/// SIGTERM to all, wait, SIGKILL to what is left, wait again.
fn terminate_all(signals: Option<&Signals>, start: Instant) {
    match kill_all(Signal::TERM) {
        Ok(()) => info!(elapsed_ms = ms(start), "sent SIGTERM to all processes"),
        Err(Errno::SRCH) => debug!("no processes to signal"),
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
    if let Err(e) = kill_all(Signal::KILL)
        && e != Errno::SRCH
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
        let slice = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(100));
        match signals {
            // Further shutdown requests are drained and ignored.
            Some(signals) => {
                if signals.wait(Some(slice)).is_err() {
                    clock::sleep(slice.min(Duration::from_millis(10)));
                }
            }
            None => clock::sleep(slice.min(Duration::from_millis(10))),
        }
    }
}

/// Unmounts in reverse mountinfo order, lazily when busy; logs and continues.
fn unmount_all(entries: &[MountInfoEntry], start: Instant) {
    let (mut unmounted, mut detached, mut failed) = (0u32, 0u32, 0u32);
    for entry in unmount_order(entries) {
        let target = entry.mount_point.as_slice();
        let shown = String::from_utf8_lossy(target);
        match unmount(target, UnmountFlags::empty()) {
            Ok(()) => {
                unmounted += 1;
                debug!(target = %shown, "unmounted");
            }
            // No longer a mount point (went with a detached parent) or gone.
            Err(Errno::INVAL | Errno::NOENT) => {
                debug!(target = %shown, "already gone");
            }
            Err(first) => match unmount(target, UnmountFlags::DETACH) {
                Ok(()) => {
                    detached += 1;
                    debug!(target = %shown, error = %first, "busy, detached");
                }
                Err(e) => {
                    failed += 1;
                    warn!(
                        target = %shown,
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

fn remount_root_read_only(root: Option<&MountInfoEntry>, start: Instant) {
    let Some(root) = root else {
        return;
    };
    if !root_needs_ro_remount(root) {
        debug!(fstype = root.fstype.as_str(), "root left as is");
        return;
    }
    match mount_remount("/", MountFlags::RDONLY, "") {
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

/// Linux's `TIOCOUTQ` ioctl: bytes still in a tty's output queue.
const TIOCOUTQ: rustix::ioctl::Opcode = 0x5411;

/// Waits (bounded) until the console's output queue is empty, so the last
/// lines are not cut off by the power-off. Polls TIOCOUTQ instead of calling
/// tcdrain(3), which could block forever on a stuck line.
fn drain_console() {
    let deadline = Instant::now() + CONSOLE_DRAIN_TIMEOUT;
    loop {
        // SAFETY: TIOCOUTQ writes one c_int, which `Getter` provides; on a
        // non-tty fd 2 it fails with ENOTTY and writes nothing.
        let queued = unsafe {
            rustix::ioctl::ioctl(
                console::stderr(),
                rustix::ioctl::Getter::<TIOCOUTQ, core::ffi::c_int>::new(),
            )
        };
        if !queued.is_ok_and(|n| n > 0) || Instant::now() >= deadline {
            return;
        }
        clock::sleep(Duration::from_millis(5));
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
        if let Err(e) = reboot(RebootCommand::PowerOff) {
            error!(error = %e, "power-off failed, rebooting instead");
        }
    } else {
        info!(
            elapsed_ms = ms(start),
            uptime_ms = uptime_ms(),
            "rebooting (hull.shutdown=reboot)"
        );
    }
    drain_console();
    if let Err(e) = reboot(RebootCommand::Restart) {
        error!(error = %e, "reboot failed too, halting here");
    }
    drain_console();
    // PID 1 must not exit (that is a kernel panic): idle, still reaping.
    loop {
        reaper::reap_all(|_, _| {});
        clock::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn reason_names() {
        assert_eq!(Reason::AgentExited.as_str(), "agent-exit");
        assert_eq!(Reason::Signal(Signal::TERM).as_str(), "signal");
        assert_eq!(Reason::AgentGaveUp.as_str(), "agent-failed");
        assert_eq!(Reason::AgentMissing.as_str(), "agent-missing");
        assert_eq!(Reason::BootFailure.as_str(), "boot-failure");
    }

    const TABLE: &str = "\
1 1 0:2 / / rw - rootfs rootfs rw,size=117820k,nr_inodes=29455
14 1 0:19 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
15 1 0:20 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
16 1 0:5 / /dev rw,nosuid,relatime - devtmpfs devtmpfs rw,size=116972k,nr_inodes=29243,mode=755
17 16 0:21 / /dev/pts rw,nosuid,noexec,relatime shared:2 - devpts devpts rw,mode=620,ptmxmode=666
18 16 0:22 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw
19 1 0:23 / /run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
20 15 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
21 19 0:25 / /run/kata\\040containers/shared rw,relatime master:7 master:9 - virtiofs kataShared rw
";

    fn parse(data: &[u8]) -> Vec<MountInfoEntry> {
        mountinfo::parse_lenient(data)
    }

    fn points(entries: &[&MountInfoEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.mount_point).into_owned())
            .collect()
    }

    #[test]
    fn unmount_order_is_reverse_without_root() {
        let entries = parse(TABLE.as_bytes());
        assert_eq!(
            points(&unmount_order(&entries)),
            vec![
                "/run/kata containers/shared",
                "/sys/fs/cgroup",
                "/run",
                "/dev/shm",
                "/dev/pts",
                "/dev",
                "/sys",
                "/proc",
            ]
        );
    }

    #[test]
    fn children_come_before_parents() {
        let entries = parse(TABLE.as_bytes());
        let order = unmount_order(&entries);
        for (i, child) in order.iter().enumerate() {
            if let Some(j) = order.iter().position(|e| e.id == child.parent) {
                assert!(i < j, "{:?} after its parent", child.mount_point);
            }
        }
    }

    #[test]
    fn stacked_mounts_top_first() {
        let data = b"1 0 8:1 / / rw - ext4 /dev/vda1 rw\n\
                     2 1 0:30 / /mnt rw - tmpfs a rw\n\
                     3 2 0:31 / /mnt rw - tmpfs b rw\n";
        let entries = parse(data);
        let order = unmount_order(&entries);
        assert_eq!(
            order.iter().map(|e| e.source.as_str()).collect::<Vec<_>>(),
            vec!["b", "a"]
        );
        assert!(crate::mounts::is_mount_point(&entries, "/mnt"));
        assert!(!crate::mounts::is_mount_point(&entries, "/mn"));
    }

    #[test]
    fn root_remount_decision() {
        let initramfs = parse(TABLE.as_bytes());
        let root_entry = root(&initramfs);
        assert_eq!(root_entry.map(|e| e.fstype.as_str()), Some("rootfs"));
        assert!(!root_entry.is_some_and(root_needs_ro_remount));

        let ext4 = parse(b"22 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw\n");
        assert!(root(&ext4).is_some_and(root_needs_ro_remount));

        let erofs = parse(b"22 1 254:1 / / ro,relatime - erofs /dev/pmem0p1 ro,dax=always\n");
        assert!(!root(&erofs).is_some_and(root_needs_ro_remount));

        // The topmost of several mounts on / decides.
        let stacked =
            parse(b"1 1 0:2 / / rw - rootfs rootfs rw\n2 1 8:1 / / rw - ext4 /dev/vda1 rw\n");
        assert_eq!(root(&stacked).map(|e| e.id), Some(2));
        assert!(unmount_order(&stacked).is_empty());

        assert!(root(&[]).is_none());
    }
}

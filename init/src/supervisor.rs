//! Starting and supervising the agent.
//!
//! Exit status 0 means the agent asked for an orderly shutdown (after the
//! DestroySandbox RPC). Anything else is a crash: restart with exponential
//! backoff, at most `hull.agent_restarts` times, then give up and power off.
//! An agent that stayed up for [`STABLE_RUN`] before crashing counts as a
//! fresh start: the restart count and the backoff begin again from zero, so
//! a guest that runs for days is not powered off by its sixth crash.

use core::ffi::CStr;
use core::time::Duration;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, Signal, WaitOptions};
use tracing::{error, info, warn};

use crate::clock::{self, Instant, millis};
use crate::console;
use crate::reaper::{self, ChildExit, signal_name};
use crate::shutdown::Reason;
use crate::signals::{Pending, Signals};
use crate::sys::{self, How, SigSet};

/// What runs as the agent. A constant on purpose: nothing the host controls
/// (command line, environment) can choose it.
pub const AGENT_PATH: &str = "/usr/bin/hull-agent";
const AGENT_PATH_C: &CStr = c"/usr/bin/hull-agent";
/// The agent's whole environment.
pub const AGENT_ENV: [&CStr; 2] = [c"HULL_INIT=1", c"PATH=/usr/sbin:/usr/bin:/sbin:/bin"];
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Where a process sets its own OOM-killer adjustment.
const OOM_SCORE_ADJ: &CStr = c"/proc/self/oom_score_adj";
/// Init's own `oom_score_adj`: the OOM killer never picks PID 1 (its death panics the
/// kernel), whatever a container does with memory.
pub const INIT_OOM_SCORE_ADJ: &[u8] = b"-1000";
/// The agent's `oom_score_adj`, written in the child before exec: strongly negative but
/// not -1000, so the agent is the OOM killer's last choice yet remains killable should
/// nothing else be left (init restarts it then). Containers do not
/// inherit it: the container helper writes the spec's value, or 0.
pub const AGENT_OOM_SCORE_ADJ: &[u8] = b"-997";
/// An agent that ran this long before it crashed resets the restart count.
pub const STABLE_RUN: Duration = Duration::from_secs(60);

/// What an agent exit means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOutcome {
    /// Exit status 0: the agent asked for shutdown.
    Orderly,
    /// Non-zero status or killed by a signal.
    Crashed,
}

pub fn classify(exit: ChildExit) -> AgentOutcome {
    match exit {
        ChildExit::Exited(0) => AgentOutcome::Orderly,
        ChildExit::Exited(_) | ChildExit::Signaled { .. } => AgentOutcome::Crashed,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Shutdown,
    /// Start the agent again after `delay`; this is restart number `attempt`.
    Restart {
        delay: Duration,
        attempt: u32,
    },
    GiveUp,
}

/// Restart bookkeeping; pure, so it is tested without processes.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    max_restarts: u32,
    restarts: u32,
}

impl RestartPolicy {
    pub fn new(max_restarts: u32) -> Self {
        Self {
            max_restarts,
            restarts: 0,
        }
    }

    pub fn max_restarts(&self) -> u32 {
        self.max_restarts
    }

    /// Decides what follows an agent exit.
    pub fn on_exit(&mut self, exit: ChildExit) -> Decision {
        match classify(exit) {
            AgentOutcome::Orderly => Decision::Shutdown,
            AgentOutcome::Crashed => self.on_failure(),
        }
    }

    /// Decides what follows the exit of an agent that had been up for `ran`:
    /// after a stable run ([`STABLE_RUN`] or longer) the crash is counted as
    /// the first one.
    pub fn on_exit_after(&mut self, exit: ChildExit, ran: Duration) -> Decision {
        if ran >= STABLE_RUN {
            self.restarts = 0;
        }
        self.on_exit(exit)
    }

    /// A crash or a failed start (other than a missing binary).
    pub fn on_failure(&mut self) -> Decision {
        if self.restarts >= self.max_restarts {
            return Decision::GiveUp;
        }
        let delay = backoff(self.restarts);
        self.restarts += 1;
        Decision::Restart {
            delay,
            attempt: self.restarts,
        }
    }
}

/// Delay before restart number `n + 1`: 100 ms doubling, capped at 5 s.
pub fn backoff(n: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1u32 << n.min(16))
        .min(MAX_BACKOFF)
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{path} not found (or its ELF interpreter is missing): {errno}")]
    Missing { path: &'static str, errno: Errno },
    #[error("cannot start {path}: {errno}")]
    Spawn { path: &'static str, errno: Errno },
}

/// Starts `argv[0]` the way the agent is started, and returns its pid:
/// environment [`AGENT_ENV`] only, cwd `/`, a new session, an empty signal
/// mask, every signal SIG_DFL, and fds 0, 1 and 2 on `stdio` (inherited when
/// `None`).
///
/// fork(2) + execve(2); a close-on-exec pipe carries the child's errno back
/// when the exec fails, so a missing binary is reported as such (ENOENT) and
/// the failed child is reaped here. The child writes [`AGENT_OOM_SCORE_ADJ`] to
/// `oom_file` (`/proc/self/oom_score_adj` but in tests).
fn spawn(argv: &[&CStr], stdio: Option<BorrowedFd<'_>>, oom_file: &CStr) -> Result<i32, Errno> {
    const MAX_ARGS: usize = 8;
    let Some(path) = argv.first() else {
        return Err(Errno::INVAL);
    };
    if argv.len() >= MAX_ARGS {
        return Err(Errno::TOOBIG);
    }
    // Everything the child needs is prepared here: it must not allocate.
    let mut arg_ptrs = [core::ptr::null::<u8>(); MAX_ARGS];
    for (slot, arg) in arg_ptrs.iter_mut().zip(argv) {
        *slot = arg.as_ptr().cast();
    }
    let mut env_ptrs = [core::ptr::null::<u8>(); AGENT_ENV.len() + 1];
    for (slot, var) in env_ptrs.iter_mut().zip(AGENT_ENV) {
        *slot = var.as_ptr().cast();
    }
    let (report_read, report_write) = pipe_with(PipeFlags::CLOEXEC)?;
    // SAFETY: the child runs only `exec_child`, which makes raw system calls
    // on data prepared above and never returns, allocates or takes a lock, so
    // no state shared with other threads (a test harness has some) is touched.
    match unsafe { sys::fork() }? {
        None => exec_child(
            path,
            &arg_ptrs,
            &env_ptrs,
            stdio,
            oom_file,
            report_write.as_fd(),
        ),
        Some(pid) => {
            let pid = Pid::from_raw(pid).ok_or(Errno::SRCH)?;
            drop(report_write);
            let mut errno = [0u8; 4];
            let read = loop {
                match rustix::io::read(&report_read, &mut errno) {
                    Err(Errno::INTR) => {}
                    other => break other,
                }
            };
            if read == Ok(errno.len()) {
                // The exec failed and the child exits at once: collect it.
                let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                return Err(Errno::from_raw_os_error(i32::from_ne_bytes(errno)));
            }
            Ok(pid.as_raw_nonzero().get())
        }
    }
}

/// Writes `value` (ASCII decimal) to `path`, an `oom_score_adj` file. Makes raw system
/// calls only and does not allocate, so the forked child may call it.
fn write_oom_score_adj(path: &CStr, value: &[u8]) -> Result<(), Errno> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let written = rustix::io::write(&fd, value)?;
    if written == value.len() {
        Ok(())
    } else {
        Err(Errno::IO)
    }
}

/// Shields init from the OOM killer ([`INIT_OOM_SCORE_ADJ`]). A failure is logged: init
/// goes on, only less protected.
pub fn protect_init_from_oom() {
    if let Err(errno) = write_oom_score_adj(OOM_SCORE_ADJ, INIT_OOM_SCORE_ADJ) {
        warn!(%errno, "cannot set init's oom_score_adj");
    }
}

/// The child's side of [`spawn`]: set up, exec, or report the errno and exit.
fn exec_child(
    path: &CStr,
    argv: &[*const u8],
    envp: &[*const u8],
    stdio: Option<BorrowedFd<'_>>,
    oom_file: &CStr,
    report: BorrowedFd<'_>,
) -> ! {
    let result = (|| {
        for raw in 1..=64 {
            if raw == Signal::KILL.as_raw() || raw == Signal::STOP.as_raw() {
                continue;
            }
            // Failures (none expected) are ignored: SIG_DFL is also what
            // exec leaves for every signal that had a handler.
            let _ = sys::reset_signal_action(raw);
        }
        sys::sigprocmask(How::SetMask, &SigSet::empty())?;
        rustix::process::setsid()?;
        rustix::process::chdir(c"/")?;
        // Raising the value inherited from init (-1000) is always allowed; a failure
        // (no procfs) leaves the agent as protected as init, which is no worse.
        let _ = write_oom_score_adj(oom_file, AGENT_OOM_SCORE_ADJ);
        if let Some(fd) = stdio {
            rustix::stdio::dup2_stdin(fd)?;
            rustix::stdio::dup2_stdout(fd)?;
            rustix::stdio::dup2_stderr(fd)?;
        }
        // SAFETY: `argv` and `envp` are null-terminated arrays of pointers
        // to NUL-terminated strings that outlive this call (the parent's
        // stack, copied by fork).
        Err(unsafe { sys::execve(path, argv.as_ptr(), envp.as_ptr()) })
    })();
    let errno = match result {
        Ok(()) => Errno::INVAL,
        Err(e) => e,
    };
    let _ = rustix::io::write(report, &errno.raw_os_error().to_ne_bytes());
    sys::exit_group(127)
}

/// Starts the agent and returns its pid.
pub fn spawn_agent() -> Result<i32, SpawnError> {
    let console = console::open_console();
    if console.is_none() {
        warn!(
            path = console::CONSOLE,
            "cannot open console for the agent, inheriting init's stdio"
        );
    }
    let stdio = console.as_ref().map(OwnedFd::as_fd);
    spawn(&[AGENT_PATH_C], stdio, OOM_SCORE_ADJ).map_err(|errno| {
        if errno == Errno::NOENT {
            SpawnError::Missing {
                path: AGENT_PATH,
                errno,
            }
        } else {
            SpawnError::Spawn {
                path: AGENT_PATH,
                errno,
            }
        }
    })
}

fn log_agent_exit(pid: i32, exit: ChildExit) {
    match exit {
        ChildExit::Exited(0) => info!(pid, status = 0, "agent exited"),
        ChildExit::Exited(status) => warn!(pid, status, "agent crashed"),
        ChildExit::Signaled {
            signal,
            core_dumped,
        } => warn!(
            pid,
            signal = %signal_name(signal),
            core_dumped,
            "agent crashed"
        ),
    }
}

/// Turns a restart decision into the next start time, or the reason to stop.
fn schedule(policy: &RestartPolicy, decision: Decision) -> Result<Instant, Reason> {
    match decision {
        Decision::Shutdown => Err(Reason::AgentExited),
        Decision::Restart { delay, attempt } => {
            warn!(
                attempt,
                max = policy.max_restarts(),
                delay_ms = millis(delay),
                "restarting agent"
            );
            Ok(Instant::now() + delay)
        }
        Decision::GiveUp => {
            error!(
                restarts = policy.max_restarts(),
                "agent restart limit reached, giving up"
            );
            Err(Reason::AgentGaveUp)
        }
    }
}

/// Runs the agent until init must shut down, and says why.
pub fn run(signals: &Signals, max_restarts: u32) -> Reason {
    protect_init_from_oom();
    let mut policy = RestartPolicy::new(max_restarts);
    // The running agent: pid and start time.
    let mut agent: Option<(i32, Instant)> = None;
    let mut start_at: Option<Instant> = Some(Instant::now());
    loop {
        if let Some(at) = start_at
            && Instant::now() >= at
        {
            start_at = None;
            match spawn_agent() {
                Ok(pid) => {
                    info!(
                        pid,
                        path = AGENT_PATH,
                        uptime_ms = crate::uptime_ms(),
                        "agent started"
                    );
                    agent = Some((pid, Instant::now()));
                }
                Err(e @ SpawnError::Missing { .. }) => {
                    error!(path = AGENT_PATH, error = %e, "agent binary missing");
                    return Reason::AgentMissing;
                }
                Err(e) => {
                    error!(path = AGENT_PATH, error = %e, "cannot start agent");
                    let decision = policy.on_failure();
                    match schedule(&policy, decision) {
                        Ok(at) => start_at = Some(at),
                        Err(reason) => return reason,
                    }
                }
            }
        }

        let timeout = start_at.map(|at| at.saturating_duration_since(Instant::now()));
        let pending = signals.wait(timeout).unwrap_or_else(|e| {
            error!(error = %e, "signal wait failed");
            clock::sleep(Duration::from_millis(100));
            Pending::default()
        });

        // Reap on every wake-up: SIGCHLDs coalesce.
        let mut agent_exit = None;
        reaper::reap_all(|pid, exit| match agent {
            Some((agent_pid, started)) if agent_pid == pid => {
                agent_exit = Some((pid, exit, started.elapsed()));
            }
            _ => reaper::log_reaped(pid, exit),
        });
        if let Some((pid, exit, ran)) = agent_exit {
            agent = None;
            log_agent_exit(pid, exit);
            let decision = policy.on_exit_after(exit, ran);
            match schedule(&policy, decision) {
                Ok(at) => start_at = Some(at),
                Err(reason) => return reason,
            }
        }

        if let Some((signal, sender)) = pending.shutdown {
            info!(
                signal = %signal_name(signal.as_raw()),
                sender_pid = sender,
                "shutdown requested"
            );
            return Reason::Signal(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;

    fn signaled(signal: i32) -> ChildExit {
        ChildExit::Signaled {
            signal,
            core_dumped: false,
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(ChildExit::Exited(0)), AgentOutcome::Orderly);
        assert_eq!(classify(ChildExit::Exited(1)), AgentOutcome::Crashed);
        assert_eq!(classify(ChildExit::Exited(255)), AgentOutcome::Crashed);
        assert_eq!(classify(signaled(9)), AgentOutcome::Crashed);
        assert_eq!(classify(signaled(15)), AgentOutcome::Crashed);
        assert_eq!(
            classify(ChildExit::Signaled {
                signal: 11,
                core_dumped: true
            }),
            AgentOutcome::Crashed
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let ms: Vec<u128> = (0..9).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn orderly_exit_shuts_down() {
        let mut p = RestartPolicy::new(5);
        assert_eq!(p.on_exit(ChildExit::Exited(0)), Decision::Shutdown);
        // Even after crashes.
        let mut p2 = RestartPolicy::new(1);
        assert!(matches!(p2.on_exit(signaled(9)), Decision::Restart { .. }));
        assert_eq!(p2.on_exit(ChildExit::Exited(0)), Decision::Shutdown);
    }

    #[test]
    fn restarts_until_limit_then_gives_up() {
        let mut p = RestartPolicy::new(3);
        assert_eq!(
            p.on_exit(ChildExit::Exited(1)),
            Decision::Restart {
                delay: Duration::from_millis(100),
                attempt: 1
            }
        );
        assert_eq!(
            p.on_exit(signaled(9)),
            Decision::Restart {
                delay: Duration::from_millis(200),
                attempt: 2
            }
        );
        assert_eq!(
            p.on_failure(),
            Decision::Restart {
                delay: Duration::from_millis(400),
                attempt: 3
            }
        );
        assert_eq!(p.on_exit(ChildExit::Exited(2)), Decision::GiveUp);
        assert_eq!(p.on_exit(ChildExit::Exited(2)), Decision::GiveUp);
    }

    #[test]
    fn zero_restarts_gives_up_at_once() {
        let mut p = RestartPolicy::new(0);
        assert_eq!(p.on_exit(ChildExit::Exited(1)), Decision::GiveUp);
        assert_eq!(p.on_exit(ChildExit::Exited(0)), Decision::Shutdown);
    }

    #[test]
    fn default_policy_total_delay() {
        let mut p = RestartPolicy::new(crate::config::DEFAULT_AGENT_RESTARTS);
        let mut total = Duration::ZERO;
        while let Decision::Restart { delay, .. } = p.on_failure() {
            total += delay;
        }
        assert_eq!(total, Duration::from_millis(100 + 200 + 400 + 800 + 1600));
    }

    #[test]
    fn a_stable_run_resets_the_restart_count() {
        let mut p = RestartPolicy::new(2);
        let short = STABLE_RUN - Duration::from_millis(1);
        assert!(matches!(
            p.on_exit_after(ChildExit::Exited(1), short),
            Decision::Restart { attempt: 1, .. }
        ));
        assert!(matches!(
            p.on_exit_after(signaled(11), Duration::ZERO),
            Decision::Restart { attempt: 2, .. }
        ));
        // Up for a minute, then crashed: a first crash again, shortest delay.
        assert_eq!(
            p.on_exit_after(ChildExit::Exited(1), STABLE_RUN),
            Decision::Restart {
                delay: INITIAL_BACKOFF,
                attempt: 1
            }
        );
        assert!(matches!(
            p.on_exit_after(ChildExit::Exited(1), short),
            Decision::Restart { attempt: 2, .. }
        ));
        // Short runs keep counting to the limit.
        assert_eq!(
            p.on_exit_after(ChildExit::Exited(1), short),
            Decision::GiveUp
        );
        // An orderly exit still shuts down, whatever the run time.
        assert_eq!(
            p.on_exit_after(ChildExit::Exited(0), Duration::from_secs(3600)),
            Decision::Shutdown
        );
        assert_eq!(STABLE_RUN, Duration::from_secs(60));
    }

    /// Runs `argv` as the agent is run (with init's signals and SIGUSR1
    /// blocked in this thread, and stdio on a pipe) and returns its output.
    /// Panics naming the program when it is missing here.
    fn run_like_agent(argv: &[&CStr]) -> String {
        run_like_agent_with(argv, OOM_SCORE_ADJ)
    }

    /// [`run_like_agent`] with the child's `oom_score_adj` written to `oom_file`.
    fn run_like_agent_with(argv: &[&CStr], oom_file: &CStr) -> String {
        let mut block = SigSet::empty();
        for sig in crate::signals::HANDLED {
            block.insert(sig);
        }
        block.insert(Signal::USR1);
        // Blocked in this test thread only; the old mask is restored below.
        let old = sys::sigprocmask(How::Block, &block)
            .unwrap_or_else(|e| panic!("cannot block signals: {e}"));
        let (read_end, write_end) =
            pipe_with(PipeFlags::CLOEXEC).unwrap_or_else(|e| panic!("cannot make a pipe: {e}"));
        let _guard = crate::test_support::CHILDREN.lock();
        let spawned = spawn(argv, Some(write_end.as_fd()), oom_file);
        let _ = sys::sigprocmask(How::SetMask, &old);
        drop(write_end);
        let pid = match spawned {
            Ok(pid) => pid,
            Err(e) => panic!("this test needs {:?} to run: {e}", argv[0]),
        };
        let mut output = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match rustix::io::read(&read_end, &mut chunk) {
                Ok(0) => break,
                Ok(n) => output.extend_from_slice(&chunk[..n]),
                Err(Errno::INTR) => {}
                Err(e) => panic!("reading the child's output: {e}"),
            }
        }
        let pid = Pid::from_raw(pid).unwrap_or_else(|| panic!("bad pid {pid}"));
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
        String::from_utf8_lossy(&output).into_owned()
    }

    fn sig_ign(status: &str) -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
    }

    /// The agent must start with an empty signal mask, nothing ignored and its
    /// own session, although init blocks signals. `cat` itself touches none of
    /// these (a shell would: dash clears the mask at start-up).
    #[test]
    fn child_gets_clean_signal_state_and_session() {
        let text = run_like_agent(&[c"/bin/cat", c"/proc/self/status", c"/proc/self/stat"]);
        assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
        // The test harness ignores SIGPIPE; the child must not. Exception:
        // glibc-internal signals 32/33 that this test process inherited as
        // ignored (cargo starts it through posix_spawn) and glibc refuses to
        // reset. PID 1 ignores none, so the agent inherits none.
        let inherited_internal = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| sig_ign(&s))
            .unwrap_or(0)
            & 0x1_8000_0000;
        assert_eq!(
            sig_ign(&text).map(|m| m & !inherited_internal),
            Some(0),
            "{text}"
        );
        // /proc/self/stat: "pid (comm) state ppid pgrp session ..."; setsid
        // makes the child the leader of a new session (session == pid).
        let stat = text.lines().last().unwrap_or("");
        let pid = stat.split(' ').next();
        let session = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3));
        assert!(pid.is_some() && pid == session, "{stat}");
    }

    /// The agent's child writes [`AGENT_OOM_SCORE_ADJ`] before exec. Written to a
    /// file here: lowering the real value needs CAP_SYS_RESOURCE, which tests may lack.
    #[test]
    fn child_writes_the_agent_oom_score_adj() {
        let dir = std::env::temp_dir().join(std::format!("hull-oom-child-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("oom_score_adj");
        std::fs::write(&file, b"").unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = run_like_agent_with(&[c"/bin/true"], &path);
        let text = std::fs::read(&file);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(text.ok().as_deref(), Some(AGENT_OOM_SCORE_ADJ));
    }

    #[test]
    fn oom_score_adj_is_written_whole() {
        let dir = std::env::temp_dir().join(std::format!("hull-oom-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join("oom_score_adj");
        std::fs::write(&file, b"").unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let path = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let written = write_oom_score_adj(&path, INIT_OOM_SCORE_ADJ);
        let text = std::fs::read(&file);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(written, Ok(()));
        assert_eq!(text.ok().as_deref(), Some(INIT_OOM_SCORE_ADJ));
        assert_eq!(
            write_oom_score_adj(c"/nonexistent/oom_score_adj", INIT_OOM_SCORE_ADJ),
            Err(Errno::NOENT)
        );
    }

    #[test]
    fn a_missing_program_is_reported_as_enoent() {
        let _guard = crate::test_support::CHILDREN.lock();
        assert_eq!(
            spawn(&[c"/nonexistent/hull-agent"], None, OOM_SCORE_ADJ),
            Err(Errno::NOENT)
        );
        assert_eq!(spawn(&[], None, OOM_SCORE_ADJ), Err(Errno::INVAL));
    }

    #[test]
    fn child_gets_only_agent_env() {
        let text = run_like_agent(&[c"/usr/bin/env"]);
        let mut vars: Vec<&str> = text.lines().collect();
        vars.sort_unstable();
        assert_eq!(
            vars,
            vec!["HULL_INIT=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        );
    }
}

//! Starting and supervising the agent.
//!
//! Exit status 0 means the agent asked for an orderly shutdown (after the
//! DestroySandbox RPC). Anything else is a crash: restart with exponential
//! backoff, at most `hull.agent_restarts` times, then give up and power off.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::reaper::{self, ChildExit, signal_name};
use crate::shutdown::Reason;
use crate::signals::{Pending, Signals};

/// What runs as the agent. A constant on purpose: nothing the host controls
/// (command line, environment) can choose it.
pub const AGENT_PATH: &str = "/usr/bin/hull-agent";
/// The agent's whole environment.
pub const AGENT_ENV: [(&str, &str); 2] = [
    ("HULL_INIT", "1"),
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
];
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
const CONSOLE_PATH: &str = "/dev/console";

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
    #[error("{path} not found (or its ELF interpreter is missing): {source}")]
    Missing {
        path: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {path}: {source}")]
    Spawn {
        path: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The agent's command: empty environment but [`AGENT_ENV`], cwd `/`, a new
/// session, stdio on `console` (inherited when `None`).
///
/// Signal state: `Command` does *not* reset the signal mask (current std
/// keeps the parent's; the tests below check), so the `pre_exec` hook empties
/// it; otherwise the agent and everything it starts would have SIGTERM,
/// SIGINT, SIGCHLD and SIGPWR blocked. Dispositions: init ignores no signal and installs no
/// handler, and `Command` resets SIGPIPE, so after exec all are SIG_DFL. The
/// hook also keeps std off glibc's `posix_spawn`, which would leave glibc's
/// internal signals 32 and 33 set to SIG_IGN in the new program.
fn agent_command(path: &str, console: Option<&File>) -> io::Result<Command> {
    let mut cmd = Command::new(path);
    cmd.env_clear().envs(AGENT_ENV).current_dir("/");
    // SAFETY: the hook runs in the forked child before exec and only calls
    // sigemptyset(3), sigprocmask(2) and setsid(2): async-signal-safe, working
    // on a local set and the child's own state, no allocation, no locks.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            if libc::sigemptyset(empty.as_mut_ptr()) == -1
                || libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut()) == -1
                || libc::setsid() == -1
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Some(console) = console {
        cmd.stdin(Stdio::from(console.try_clone()?))
            .stdout(Stdio::from(console.try_clone()?))
            .stderr(Stdio::from(console.try_clone()?));
    }
    Ok(cmd)
}

fn open_console() -> Option<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(CONSOLE_PATH)
        .ok()
}

/// Starts the agent and returns its pid.
pub fn spawn_agent() -> Result<i32, SpawnError> {
    let console = open_console();
    if console.is_none() {
        warn!(
            path = CONSOLE_PATH,
            "cannot open console for the agent, inheriting init's stdio"
        );
    }
    let spawn_error = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            SpawnError::Missing {
                path: AGENT_PATH,
                source,
            }
        } else {
            SpawnError::Spawn {
                path: AGENT_PATH,
                source,
            }
        }
    };
    let child = agent_command(AGENT_PATH, console.as_ref())
        .and_then(|mut cmd| cmd.spawn())
        .map_err(spawn_error)?;
    // Dropping `Child` neither waits nor kills; the reaper collects it.
    i32::try_from(child.id()).map_err(|_| SpawnError::Spawn {
        path: AGENT_PATH,
        source: io::Error::other("pid out of range"),
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
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
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
    let mut policy = RestartPolicy::new(max_restarts);
    let mut agent: Option<i32> = None;
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
                    agent = Some(pid);
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
            std::thread::sleep(Duration::from_millis(100));
            Pending::default()
        });

        // Reap on every wake-up: SIGCHLDs coalesce.
        let mut agent_exit = None;
        reaper::reap_all(|pid, exit| {
            if Some(pid) == agent {
                agent_exit = Some((pid, exit));
            } else {
                reaper::log_reaped(pid, exit);
            }
        });
        if let Some((pid, exit)) = agent_exit {
            agent = None;
            log_agent_exit(pid, exit);
            let decision = policy.on_exit(exit);
            match schedule(&policy, decision) {
                Ok(at) => start_at = Some(at),
                Err(reason) => return reason,
            }
        }

        if let Some((signal, sender)) = pending.shutdown {
            info!(
                signal = signal.as_str(),
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

    /// Runs `argv` as the agent would be run (with init's signals blocked in
    /// this thread) and returns its stdout.
    fn run_like_agent(argv: &[&str]) -> Option<String> {
        use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
        let mut block = SigSet::empty();
        for sig in crate::signals::HANDLED {
            block.add(sig);
        }
        block.add(Signal::SIGUSR1);
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old)).ok()?;
        let (program, args) = argv.split_first()?;
        let output = agent_command(program, None).and_then(|mut cmd| {
            cmd.args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .output()
        });
        pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None).ok()?;
        Some(String::from_utf8_lossy(&output.ok()?.stdout).into_owned())
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
        let _guard = crate::test_support::CHILDREN.lock();
        let Some(text) = run_like_agent(&["/bin/cat", "/proc/self/status", "/proc/self/stat"])
        else {
            return; // no /bin/cat here
        };
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

    #[test]
    fn child_gets_only_agent_env() {
        let _guard = crate::test_support::CHILDREN.lock();
        let Some(text) = run_like_agent(&["/usr/bin/env"]) else {
            return; // no env(1) here
        };
        let mut vars: Vec<&str> = text.lines().collect();
        vars.sort_unstable();
        assert_eq!(
            vars,
            vec!["HULL_INIT=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
        );
    }
}

//! The launcher's side of the helper: start the helper binary, talk it through the
//! protocol in [`super::protocol`], and hand back the container process.
//!
//! The helper is this very binary, re-executed with a hidden first argument
//! ([`super::helper::HELPER_ARG`]) from a view of it that cannot be written
//! ([`crate::self_exe`]).
//!
//! # Blocking
//!
//! Everything here blocks (the socket has timeouts); the agent calls it from
//! `spawn_blocking`, the runtime CLI directly.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::ContainerError;
use super::helper::HELPER_ARG;
use super::plan::IdMapping;
use super::protocol::{self, Gate, Report, Request};
use crate::process::ChildStdio;
use crate::self_exe::SelfExe;

/// How long a helper may take for one step of its setup before it is killed.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the helper's (and so the container process's) stdio goes.
pub enum HelperStdio {
    /// Pipes or a terminal made by the agent.
    Fds(ChildStdio),
    /// The launcher's own stdio (the runtime CLI).
    Inherit,
}

/// What the launcher does at the two moments only it can act.
pub trait LaunchHooks {
    /// The helper has been spawned (stage 1): place it in the container's cgroup before
    /// it forks the container process.
    fn spawned(&mut self, helper_pid: i32) -> Result<(), ContainerError>;
    /// The container process exists (stage 2) and cannot have been reaped yet.
    fn child(&mut self, pid: i32);
}

/// A helper that has set up a container process.
pub struct Launched {
    /// The container process, in the launcher's pid namespace.
    pub pid: i32,
    /// The helper (stage 1), exited or exiting; the caller reaps it.
    pub helper_pid: i32,
    /// For an init process behind [`Gate::Socket`]: where `Start` goes.
    pub channel: Option<UnixStream>,
}

/// Starts a helper from `exe` and carries `request` out up to the start gate (init) or
/// up to `execve` (exec). `spawn` starts the command and returns its pid (the agent
/// registers it with its reaper there).
pub fn launch(
    exe: &SelfExe,
    request: &Request,
    stdio: HelperStdio,
    spawn: &mut dyn FnMut(&mut Command) -> io::Result<i32>,
    hooks: &mut dyn LaunchHooks,
) -> Result<Launched, ContainerError> {
    let helper_err = |e: io::Error| ContainerError::Helper(format!("talking to the helper: {e}"));
    let (mut ours, theirs) = UnixStream::pair().map_err(helper_err)?;
    let mut command = Command::new(exe.path());
    command.arg0("hull-agent").arg(HELPER_ARG).env_clear();
    match stdio {
        HelperStdio::Fds(fds) => {
            command
                .stdin(Stdio::from(fds.stdin))
                .stdout(Stdio::from(fds.stdout))
                .stderr(Stdio::from(fds.stderr));
        }
        HelperStdio::Inherit => {}
    }
    let theirs_fd = theirs.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and only calls dup2/fcntl, which
    // are async-signal-safe; it places the helper's end of the socket at fd 3.
    unsafe {
        command.pre_exec(move || {
            if theirs_fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(theirs_fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let helper_pid = spawn(&mut command)
        .map_err(|e| ContainerError::Helper(format!("starting the helper: {e}")))?;
    // Close our copies of the child's ends: EOF must mean the helper is gone.
    drop(command);
    drop(theirs);

    let mut container_pid = None;
    let result = converse(&mut ours, request, helper_pid, hooks, &mut container_pid);
    match result {
        Ok(()) => {
            let pid = container_pid.ok_or_else(|| {
                ContainerError::Helper("the helper never reported the container process".into())
            })?;
            let keep_channel = matches!(
                request,
                Request::Init {
                    gate: Gate::Socket,
                    ..
                }
            );
            Ok(Launched {
                pid,
                helper_pid,
                channel: keep_channel.then_some(ours),
            })
        }
        Err(e) => {
            for pid in [Some(helper_pid), container_pid].into_iter().flatten() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Err(e)
        }
    }
}

fn converse(
    chan: &mut UnixStream,
    request: &Request,
    helper_pid: i32,
    hooks: &mut dyn LaunchHooks,
    container_pid: &mut Option<i32>,
) -> Result<(), ContainerError> {
    let io_err = |e: io::Error| {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            ContainerError::Helper(format!(
                "the helper did not answer within {SETUP_TIMEOUT:?}"
            ))
        } else {
            ContainerError::Helper(format!("talking to the helper: {e}"))
        }
    };
    chan.set_read_timeout(Some(SETUP_TIMEOUT)).map_err(io_err)?;
    hooks.spawned(helper_pid)?;
    protocol::send(chan, request).map_err(io_err)?;
    let is_init = matches!(request, Request::Init { .. });
    loop {
        match protocol::receive::<Report>(chan).map_err(io_err)? {
            Some(Report::NeedIdMaps) => {
                let Request::Init { plan, .. } = request else {
                    return Err(ContainerError::Helper("unexpected id map request".into()));
                };
                write_id_maps(helper_pid, &plan.uid_mappings, &plan.gid_mappings)?;
                protocol::send(chan, &protocol::Command::IdMapsWritten).map_err(io_err)?;
            }
            Some(Report::ChildPid(pid)) => {
                hooks.child(pid);
                *container_pid = Some(pid);
                protocol::send(chan, &protocol::Command::Ack).map_err(io_err)?;
            }
            Some(Report::Ready) if is_init && container_pid.is_some() => return Ok(()),
            Some(Report::Error(error)) => return Err(ContainerError::Setup(error)),
            Some(other) => {
                return Err(ContainerError::Helper(format!(
                    "unexpected message from the helper: {other:?}"
                )));
            }
            // An exec'd process: the socket closes when `execve` succeeds.
            None if !is_init && container_pid.is_some() => return Ok(()),
            None => {
                return Err(ContainerError::Helper(
                    "the helper exited before the container process was ready".into(),
                ));
            }
        }
    }
}

fn write_id_maps(
    pid: i32,
    uid_mappings: &[IdMapping],
    gid_mappings: &[IdMapping],
) -> Result<(), ContainerError> {
    for (file, mappings) in [("uid_map", uid_mappings), ("gid_map", gid_mappings)] {
        let text: String = mappings
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text)
            .map_err(|e| ContainerError::Helper(format!("writing {path}: {e}")))?;
    }
    Ok(())
}

/// Lets an init process run its workload: sends `Start` and waits for the outcome
/// (`execve` done, or the helper's error).
pub fn start_through(channel: &mut UnixStream) -> Result<(), ContainerError> {
    let io_err = |e: io::Error| ContainerError::Helper(format!("starting the container: {e}"));
    channel
        .set_read_timeout(Some(SETUP_TIMEOUT))
        .map_err(io_err)?;
    protocol::send(channel, &protocol::Command::Start).map_err(io_err)?;
    match protocol::receive::<Report>(channel).map_err(io_err)? {
        None => Ok(()),
        Some(Report::Error(error)) => Err(ContainerError::Setup(error)),
        Some(other) => Err(ContainerError::Helper(format!(
            "unexpected message from the helper: {other:?}"
        ))),
    }
}

//! The launcher's side of the helper: start the helper binary, talk it through the
//! protocol in [`super::protocol`], and hand back the container process.
//!
//! # The binary the helper runs from (CVE-2019-5736)
//!
//! The helper is this very binary, re-executed with a hidden first argument
//! ([`super::helper::HELPER_ARG`]). It is *not* executed from its file: at first use the
//! agent copies itself into a sealed memfd ([`SelfExe`]: `F_SEAL_WRITE`, `F_SEAL_GROW`,
//! `F_SEAL_SHRINK`, `F_SEAL_SEAL`) and every helper is executed from that copy. A
//! container process that reaches a helper through `/proc/<pid>/exe` (for example while
//! an exec'd helper joins its namespaces) finds a sealed, anonymous file that cannot be
//! written, so it cannot overwrite the agent binary as in runc's CVE-2019-5736. The
//! helper also makes itself non-dumpable (`PR_SET_DUMPABLE 0`) until `execve`, so
//! processes in the container cannot open its `/proc/<pid>` entries at all. The copy costs
//! the binary's size in memory once per agent, not per container.
//!
//! # Blocking
//!
//! Everything here blocks (the socket has timeouts); the agent calls it from
//! `spawn_blocking`, the runtime CLI directly.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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

/// How long a helper may take for one step of its setup before it is killed.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A sealed, in-memory copy of this binary, for executing helpers from.
pub struct SelfExe {
    fd: OwnedFd,
}

impl SelfExe {
    /// Copies `/proc/self/exe` into a sealed memfd.
    pub fn sealed_copy() -> Result<Self, ContainerError> {
        let err = |what: &str, e: io::Error| ContainerError::SelfExe(format!("{what}: {e}"));
        let name = CString::new("hull-agent").map_err(|e| err("name", io::Error::other(e)))?;
        const MFD_EXEC: libc::c_uint = 0x10;
        let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: memfd_create with a valid C string; MFD_EXEC is refused (EINVAL) by
        // kernels before 6.3, which then get the plain call.
        let mut raw = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
        if raw < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // SAFETY: as above.
            raw = unsafe { libc::memfd_create(name.as_ptr(), base) };
        }
        if raw < 0 {
            return Err(err("memfd_create", io::Error::last_os_error()));
        }
        // SAFETY: memfd_create returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut source = File::open("/proc/self/exe").map_err(|e| err("/proc/self/exe", e))?;
        let mut copy = File::from(fd);
        io::copy(&mut source, &mut copy).map_err(|e| err("copying the binary", e))?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: fcntl on our own memfd.
        if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(err("sealing the copy", io::Error::last_os_error()));
        }
        // Keep the copy away from the low fds the helper's stdio and socket are placed
        // at (0-3) in the child before it executes the copy by its fd number.
        // SAFETY: F_DUPFD_CLOEXEC on our own fd returns a new fd we then own.
        let high = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if high < 0 {
            return Err(err("moving the copy's fd", io::Error::last_os_error()));
        }
        drop(copy);
        Ok(Self {
            // SAFETY: fcntl returned a new fd that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(high) },
        })
    }

    /// The path to execute it by (valid in this process).
    pub fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

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

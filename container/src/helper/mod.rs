//! The helper: this binary re-executed (from a sealed copy, see [`crate::launcher`]) to
//! build one container process. It runs ONLY in that freshly exec'd, single-threaded
//! process, never in the agent: it forks, changes namespaces, mounts and drops
//! privileges, none of which is safe in a multi-threaded program.
//!
//! ```text
//! stage 1 (the exec'd helper)            stage 2 (its child: the container process)
//!   Request on fd 3
//!   namespaces: create / join ───fork──▶ (init) rootfs: build, enter, finish
//!   report ChildPid, wait for Ack, exit          hostname, sysctls
//!                                         prepare: rlimits, cwd, user, caps, PATH lookup
//!                                         (init) report Ready, wait at the start gate
//!                                         exec: seccomp, close fds, execve
//! ```
//!
//! Stage 1 receives the [`Request`] on fd 3 and enters the namespaces (`namespaces`):
//! an init process's are created or joined as the plan says (a new user namespace first,
//! with its id maps written by the launcher); an exec'd process joins those of the
//! container's init process. Then it forks: only a child enters a new pid namespace.
//! Stage 1 reports the child's pid and exits; the child, stage 2, is re-parented to the
//! agent (a child subreaper).
//!
//! Stage 2 of an init process builds the container's filesystem in its mount namespace
//! (`rootfs`, with `mounts` placing each mount inside the rootfs and `devices`
//! filling `/dev`; the spec's `createContainer` hooks run before it is entered), sets
//! the hostname and sysctls, and prepares the process (`exec`,
//! with `credentials` for user, groups and capabilities); it reports `Ready` and waits
//! at the start gate (then runs the spec's `startContainer` hooks). Seccomp comes last, right before `execve`, so the profile only has
//! to allow `execve` itself (without `no_new_privs` it must come before the capabilities
//! are dropped, as in runc). Stage 2 of an exec'd process prepares and executes at once.
//!
//! Every failure travels back to the launcher as a typed [`SetupError`] in a
//! `Report::Error` on the helper socket, and the helper exits. Each module reports its
//! failures as its own part of the setup (`Part`): `SetupError::Rootfs` from the
//! rootfs, mounts and devices, and so on; a process that cannot run says so precisely
//! (`ExecutableNotFound`, `PermissionDenied`, `InvalidCwd`).

mod credentials;
mod devices;
mod exec;
pub(crate) mod mounts;
mod namespaces;
mod rootfs;

use std::ffi::OsStr;
use std::fmt::Display;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};

use nix::errno::Errno;
use nix::unistd::ForkResult;

use crate::SetupError;
use crate::hooks::{HookKind, HookPlan};
use crate::plan::{ContainerPlan, NamespaceKind, ProcessPlan};
use crate::protocol::{self, Command, Gate, Report, Request};

/// The hidden first argument that turns this binary into the helper.
pub const HELPER_ARG: &str = "__hull_container_helper";

/// The fd the launcher places the helper's socket at.
const CHANNEL_FD: RawFd = 3;

type HelperResult<T> = Result<T, SetupError>;

/// The part of the setup a step belongs to, which picks its [`SetupError`] variant. Each
/// module names its own (`const PART`).
#[derive(Debug, Clone, Copy)]
enum Part {
    Namespace,
    Rootfs,
    Credentials,
    Process,
    Protocol,
}

impl Part {
    /// The error of `step`, failed for `reason`.
    fn error(self, step: impl Display, reason: impl Display) -> SetupError {
        let (step, reason) = (step.to_string(), reason.to_string());
        match self {
            Part::Namespace => SetupError::Namespace { step, reason },
            Part::Rootfs => SetupError::Rootfs { step, reason },
            Part::Credentials => SetupError::Credentials { step, reason },
            Part::Process => SetupError::Process { step, reason },
            Part::Protocol => SetupError::Protocol { step, reason },
        }
    }

    /// For `map_err`: the error of `step`, whatever the type of its cause.
    fn failed<E: Display>(self, step: impl Display) -> impl FnOnce(E) -> SetupError {
        move |cause| self.error(step, cause)
    }
}

/// Runs the helper and exits if this process was started as one; returns otherwise.
/// Call it first thing in `main`, before any thread or runtime exists.
pub fn run_if_helper() {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(HELPER_ARG)) {
        std::process::exit(helper_main());
    }
}

fn helper_main() -> i32 {
    // SAFETY: the launcher placed the helper's end of its socket at fd 3; nothing else
    // in this fresh process owns it.
    let mut chan = unsafe { UnixStream::from_raw_fd(CHANNEL_FD) };
    // SAFETY: fcntl on our own fd.
    unsafe { libc::fcntl(CHANNEL_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // Until execve, the helper's /proc entries belong to root and cannot be ptraced or
    // opened by the container's processes.
    let _ = nix::sys::prctl::set_dumpable(false);
    let request = match protocol::receive::<Request>(&mut chan) {
        Ok(Some(request)) => request,
        Ok(None) => return 1,
        Err(e) => {
            let _ = protocol::send(
                &mut chan,
                &Report::Error(Part::Protocol.error("bad request", e)),
            );
            return 1;
        }
    };
    let result = match request {
        Request::Init { plan, gate } => init_stage1(&mut chan, &plan, &gate),
        Request::Exec { init_pid, process } => exec_stage1(&mut chan, init_pid, &process),
    };
    match result {
        Ok(()) => 0,
        Err(error) => {
            let _ = protocol::send(&mut chan, &Report::Error(error));
            1
        }
    }
}

fn expect(chan: &mut UnixStream, wanted: Command) -> HelperResult<()> {
    match protocol::receive::<Command>(chan) {
        Ok(Some(c)) if c == wanted => Ok(()),
        Ok(other) => Err(Part::Protocol.error(
            format!("expected {wanted:?} from the launcher"),
            format!("got {other:?}"),
        )),
        Err(e) => Err(Part::Protocol.error(format!("waiting for {wanted:?}"), e)),
    }
}

/// Forks; the parent reports the child's pid, waits for the launcher's `Ack` and exits;
/// the child waits until its parent is done with the socket, then runs `stage2`.
fn fork_stage2(
    chan: &mut UnixStream,
    stage2: impl FnOnce(&mut UnixStream) -> HelperResult<()>,
) -> HelperResult<()> {
    let (sync_r, sync_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(Part::Protocol.failed("pipe2"))?;
    // SAFETY: the helper is single-threaded (a fresh exec that started no thread), so
    // the child may run arbitrary code.
    match unsafe { nix::unistd::fork() }.map_err(Part::Protocol.failed("fork"))? {
        ForkResult::Parent { child } => {
            drop(sync_r);
            protocol::send(chan, &Report::ChildPid(child.as_raw()))
                .map_err(Part::Protocol.failed("reporting the pid"))?;
            expect(chan, Command::Ack)?;
            let mut sync_w = File::from(sync_w);
            let _ = sync_w.write_all(b"1");
            // Stage 1 is done; stage 2 goes on alone.
            std::process::exit(0);
        }
        ForkResult::Child => {
            drop(sync_w);
            let mut byte = [0u8; 1];
            let mut sync_r = File::from(sync_r);
            match sync_r.read(&mut byte) {
                Ok(1) => {}
                // The parent failed: it reports the error; this child just ends.
                _ => std::process::exit(1),
            }
            match stage2(chan) {
                Ok(()) => std::process::exit(0),
                Err(error) => {
                    let _ = protocol::send(chan, &Report::Error(error));
                    std::process::exit(1);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- init process

fn init_stage1(chan: &mut UnixStream, plan: &ContainerPlan, gate: &Gate) -> HelperResult<()> {
    // The gate listener lives outside the rootfs, in the launcher's directory: bind it
    // while this process still has the launcher's credentials (before a user namespace).
    let listener = match gate {
        Gate::Listener(path) => {
            Some(UnixListener::bind(path).map_err(Part::Protocol.failed(path.display()))?)
        }
        Gate::Socket => None,
    };
    exec::set_oom_score_adj(&plan.process)?;
    namespaces::enter_planned(chan, plan)?;
    fork_stage2(chan, |chan| init_stage2(chan, plan, listener))
}

fn init_stage2(
    chan: &mut UnixStream,
    plan: &ContainerPlan,
    listener: Option<UnixListener>,
) -> HelperResult<()> {
    nix::unistd::setsid().map_err(Part::Process.failed("setsid"))?;
    if plan.process.terminal {
        set_controlling_terminal()?;
    }
    let in_user_ns = plan
        .namespaces
        .iter()
        .any(|n| n.kind == NamespaceKind::User);
    rootfs::build(plan, in_user_ns)?;
    run_hooks(
        HookKind::CreateContainer,
        &plan.create_container_hooks,
        plan,
    )?;
    rootfs::enter(&plan.rootfs, plan.no_pivot)?;
    rootfs::finish(plan, in_user_ns)?;
    namespaces::configure(plan)?;
    let prepared = exec::prepare(&plan.process)?;
    protocol::send(chan, &Report::Ready).map_err(Part::Protocol.failed("reporting ready"))?;
    // The start gate.
    let mut reply_to = match listener {
        None => {
            expect(chan, Command::Start)?;
            None
        }
        Some(listener) => {
            let (mut conn, _) = listener
                .accept()
                .map_err(Part::Protocol.failed("waiting for start"))?;
            expect(&mut conn, Command::Start)?;
            Some(conn)
        }
    };
    // Only returns when a hook or execve failed.
    let error = match run_hooks(HookKind::StartContainer, &plan.start_container_hooks, plan) {
        Ok(()) => exec::exec(&plan.process, prepared),
        Err(error) => error,
    };
    if let Some(conn) = reply_to.as_mut() {
        let _ = protocol::send(conn, &Report::Error(error.clone()));
    }
    Err(error)
}

/// Runs the spec's hooks of `kind` here, in order, with the container's state (this
/// process's pid, as Kata's agent gives it); the first failure is the setup's.
fn run_hooks(kind: HookKind, hooks: &[HookPlan], plan: &ContainerPlan) -> HelperResult<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let mut state = plan.hook_state.clone();
    state.pid = i32::try_from(std::process::id()).unwrap_or(0);
    for hook in hooks {
        crate::hooks::run_blocking(hook, &state).map_err(|failure| SetupError::Hook {
            kind,
            path: hook.path.clone(),
            failure,
        })?;
    }
    Ok(())
}

fn set_controlling_terminal() -> HelperResult<()> {
    // SAFETY: ioctl on fd 0, which the launcher made the terminal's slave side.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    Errno::result(rc)
        .map(|_| ())
        .map_err(Part::Process.failed("TIOCSCTTY"))
}

// ---------------------------------------------------------------- exec'd process

fn exec_stage1(chan: &mut UnixStream, init_pid: i32, process: &ProcessPlan) -> HelperResult<()> {
    exec::set_oom_score_adj(process)?;
    namespaces::join_init_namespaces(init_pid)?;
    fork_stage2(chan, |_chan| {
        nix::unistd::setsid().map_err(Part::Process.failed("setsid"))?;
        if process.terminal {
            set_controlling_terminal()?;
        }
        let prepared = exec::prepare(process)?;
        Err(exec::exec(process, prepared))
    })
}

//! `hull-runtime`: hull's container layer as a runc-compatible command line, so that
//! OCI conformance suites can drive it on a host, outside a VM.
//!
//! ```text
//! hull-runtime [--root DIR] [--log FILE] [--log-format text|json] [--debug]
//!              [--cgroup-root DIR] COMMAND
//!   create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--no-pivot] ID
//!   start ID
//!   state ID
//!   kill [--all] ID [SIGNAL]
//!   delete [--force] ID
//!   exec [--process FILE] [--tty] [--console-socket SOCK] [--cwd DIR] [--env K=V]...
//!        [--user UID[:GID]] [--detach] [--pid-file FILE] ID [ARGS...]
//!   run [--bundle DIR] [--pid-file FILE] [--no-pivot] ID
//! ```
//!
//! A crate and binary of its own (the guest agent does not link it: clap and the CLI stay
//! out of the guest image). The same code builds containers as in the agent
//! ([`hull_container`]): a plan from the bundle's `config.json`, a helper
//! re-executed from a read-only view of this binary, a cgroup v2 through libcgroups. What
//! differs from the agent: the spec is honoured as it is (a `network` namespace is
//! created), the container's stdio is the caller's (or a terminal whose master goes to
//! `--console-socket`), and the start gate is a Unix socket in the state directory
//! (`<root>/<id>/start.sock`), because `create` exits before `start`, as with runc.
//!
//! State lives in `<root>/<id>/state.json` (default root `/run/hull-runtime`). The status
//! is derived, never stored: `created` while the start socket exists and the init process
//! lives, `running` or `paused` (the cgroup's `cgroup.freeze`) once started, `stopped`
//! when the init process is gone (its start time guards against pid reuse).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{Process as OciProcess, Spec};
use serde::{Deserialize, Serialize};

use hull_container::cgroup::{self, Cgroup};
use hull_container::launcher::{self, HelperStdio, LaunchHooks};
use hull_container::plan::{self, ContainerPlan, PlanOptions};
use hull_container::process::ChildStdio;
use hull_container::protocol::{self, Gate, Report, Request};
use hull_container::self_exe::SelfExe;
use hull_container::{ContainerError, helper};

/// What the runtime CLI reports as failures.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("container {0} does not exist")]
    NoSuchContainer(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {id} is {status}: {what}")]
    WrongState {
        id: String,
        status: &'static str,
        what: &'static str,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CliError {
    let path = path.into();
    move |source| CliError::Io { path, source }
}

#[derive(Parser, Debug)]
#[command(
    name = "hull-runtime",
    version,
    about = "runc-compatible CLI over hull's container layer"
)]
struct Cli {
    /// Where container state is kept.
    #[arg(long, default_value = "/run/hull-runtime")]
    root: PathBuf,
    /// Append errors to this file (runc's --log).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Accepted for runc compatibility (`text` or `json`).
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Verbose logs to stderr.
    #[arg(long)]
    debug: bool,
    /// Accepted for runc compatibility; there is no systemd cgroup driver.
    #[arg(long)]
    systemd_cgroup: bool,
    /// The cgroup2 hierarchy (default: /sys/fs/cgroup, or /sys/fs/cgroup/unified on a
    /// hybrid host).
    #[arg(long)]
    cgroup_root: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a container; its process waits for `start`.
    Create {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        no_pivot: bool,
        id: String,
    },
    /// Start a created container.
    Start { id: String },
    /// Print the OCI state of a container.
    State { id: String },
    /// Send a signal (default SIGTERM) to the init process, or with --all to every
    /// process of the container.
    Kill {
        #[arg(long, short)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a container (--force kills it first).
    Delete {
        #[arg(long, short)]
        force: bool,
        id: String,
    },
    /// Run a process in a running container.
    Exec {
        #[arg(long, short)]
        process: Option<PathBuf>,
        #[arg(long, short)]
        tty: bool,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(long, short)]
        env: Vec<String>,
        #[arg(long, short)]
        user: Option<String>,
        #[arg(long, short)]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Create, start, and wait for a container; exits with its status.
    Run {
        #[arg(long, short, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        no_pivot: bool,
        id: String,
    },
}

/// What `create` leaves for the other commands.
#[derive(Debug, Serialize, Deserialize)]
struct SavedState {
    id: String,
    pid: i32,
    /// Field 22 of `/proc/<pid>/stat` when created: tells our process from a reused pid.
    start_time: u64,
    bundle: PathBuf,
    cgroup_root: PathBuf,
    cgroup_path: PathBuf,
    annotations: std::collections::HashMap<String, String>,
    plan: ContainerPlan,
}

/// Runs the CLI on `args` (without the program name); returns the exit status.
pub fn main_with_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    // A re-exec'd container helper never gets past this line.
    helper::run_if_helper();
    let argv = std::iter::once(std::ffi::OsString::from("hull-runtime")).chain(args);
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if cli.debug {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let log = cli.log.clone();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hull-runtime: {e}");
            if let Some(log) = log
                && let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
            {
                let _ = writeln!(f, "{{\"level\":\"error\",\"msg\":{:?}}}", e.to_string());
            }
            1
        }
    }
}

fn default_cgroup_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && unified.join("cgroup.procs").exists()
    {
        unified.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

fn run(cli: Cli) -> Result<i32, CliError> {
    let root = cli.root.clone();
    let cgroup_root = cli.cgroup_root.clone().unwrap_or_else(default_cgroup_root);
    match cli.command {
        Cmd::Create {
            bundle,
            pid_file,
            console_socket,
            no_pivot,
            id,
        } => {
            create(
                &root,
                &cgroup_root,
                &bundle,
                &id,
                pid_file.as_deref(),
                console_socket.as_deref(),
                no_pivot,
            )?;
            Ok(0)
        }
        Cmd::Start { id } => {
            start(&root, &id)?;
            Ok(0)
        }
        Cmd::State { id } => {
            let state = load(&root, &id)?;
            let status = status_of(&root, &state);
            let pid = if status == "stopped" { 0 } else { state.pid };
            let json = serde_json::json!({
                "ociVersion": "1.0.2",
                "id": state.id,
                "status": status,
                "pid": pid,
                "bundle": state.bundle,
                "annotations": state.annotations,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            let state = load(&root, &id)?;
            let signal = parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            kill(&root, &state, signal, all)?;
            Ok(0)
        }
        Cmd::Delete { force, id } => {
            delete(&root, &id, force)?;
            Ok(0)
        }
        Cmd::Exec {
            process,
            tty,
            console_socket,
            cwd,
            env,
            user,
            detach,
            pid_file,
            id,
            args,
        } => {
            let state = load(&root, &id)?;
            let status = status_of(&root, &state);
            if status != "running" {
                return Err(CliError::WrongState {
                    id,
                    status,
                    what: "exec needs a running container",
                });
            }
            let oci = exec_process(process.as_deref(), tty, cwd, env, user, args, &state)?;
            let code = exec(
                &state,
                &oci,
                console_socket.as_deref(),
                detach,
                pid_file.as_deref(),
            )?;
            Ok(code)
        }
        Cmd::Run {
            bundle,
            pid_file,
            no_pivot,
            id,
        } => {
            nix::sys::prctl::set_child_subreaper(true)
                .map_err(|e| CliError::Usage(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
            let pid = create(
                &root,
                &cgroup_root,
                &bundle,
                &id,
                pid_file.as_deref(),
                None,
                no_pivot,
            )?;
            start(&root, &id)?;
            let code = wait_pid(pid);
            let _ = delete(&root, &id, true);
            Ok(code)
        }
    }
}

fn state_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

fn load(root: &Path, id: &str) -> Result<SavedState, CliError> {
    plan::validate_id(id)?;
    let path = state_dir(root, id).join("state.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::NoSuchContainer(id.to_string()));
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    serde_json::from_str(&text).map_err(|e| io_err(path)(std::io::Error::other(e)))
}

fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); start time is field 22.
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn alive(state: &SavedState) -> bool {
    start_time(state.pid) == Some(state.start_time)
}

fn status_of(root: &Path, state: &SavedState) -> &'static str {
    if !alive(state) {
        return "stopped";
    }
    if state_dir(root, &state.id).join("start.sock").exists() {
        return "created";
    }
    let freeze = state
        .cgroup_root
        .join(
            state
                .cgroup_path
                .strip_prefix("/")
                .unwrap_or(&state.cgroup_path),
        )
        .join("cgroup.freeze");
    if std::fs::read_to_string(freeze).is_ok_and(|t| t.trim() == "1") {
        "paused"
    } else {
        "running"
    }
}

struct CliHooks<'a> {
    cgroup: &'a Cgroup,
}

impl LaunchHooks for CliHooks<'_> {
    fn spawned(&mut self, helper_pid: i32) -> Result<(), ContainerError> {
        Ok(self.cgroup.add(helper_pid)?)
    }
    fn child(&mut self, _pid: i32) {}
}

fn spawn_plain(cmd: &mut std::process::Command) -> std::io::Result<i32> {
    let child = cmd.spawn()?;
    i32::try_from(child.id()).map_err(std::io::Error::other)
}

/// Reaps a child of ours (the helper's stage 1, or a process re-parented to us).
fn wait_pid(pid: i32) -> i32 {
    loop {
        match nix::sys::wait::waitpid(Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return code,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// A terminal whose master goes to the console socket; the slave is the process's stdio.
fn console(socket: &Path) -> Result<ChildStdio, CliError> {
    let (master, slave) =
        hull_container::process::stdio::open_pty().map_err(|e| CliError::Container(e.into()))?;
    send_fd(socket, &master)?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(io_err("pty"));
    Ok(ChildStdio {
        stdin: dup(&slave)?,
        stdout: dup(&slave)?,
        stderr: slave,
    })
}

fn send_fd(socket: &Path, fd: &OwnedFd) -> Result<(), CliError> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let stream = UnixStream::connect(socket).map_err(io_err(socket))?;
    let fds = [fd.as_raw_fd()];
    let name = b"/dev/ptmx";
    let iov = [std::io::IoSlice::new(name)];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| io_err(socket)(e.into()))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn create(
    root: &Path,
    cgroup_root: &Path,
    bundle: &Path,
    id: &str,
    pid_file: Option<&Path>,
    console_socket: Option<&Path>,
    no_pivot: bool,
) -> Result<i32, CliError> {
    plan::validate_id(id)?;
    let bundle = std::fs::canonicalize(bundle).map_err(io_err(bundle))?;
    let config = bundle.join("config.json");
    let spec = Spec::load(&config).map_err(|e| {
        CliError::Container(ContainerError::InvalidSpec(format!(
            "{}: {e}",
            config.display()
        )))
    })?;
    let plan = plan::plan_container(
        id,
        &spec,
        &PlanOptions {
            bundle: bundle.clone(),
            share_sandbox_network: false,
            no_pivot,
        },
    )?;
    if !plan.rootfs.is_dir() {
        return Err(ContainerError::MissingRootfs(plan.rootfs.clone()).into());
    }
    let dir = state_dir(root, id);
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(CliError::Exists(id.to_string()));
        }
        Err(e) => return Err(io_err(&dir)(e)),
    }
    let result = create_in(
        &dir,
        cgroup_root,
        &bundle,
        id,
        &spec,
        plan,
        pid_file,
        console_socket,
    );
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn create_in(
    dir: &Path,
    cgroup_root: &Path,
    bundle: &Path,
    id: &str,
    spec: &Spec,
    plan: ContainerPlan,
    pid_file: Option<&Path>,
    console_socket: Option<&Path>,
) -> Result<i32, CliError> {
    let linux = spec.linux().as_ref();
    let cgroup_path = cgroup::cgroup_path_for(id, linux.and_then(|l| l.cgroups_path().as_deref()))
        .map_err(ContainerError::from)?;
    let cgroup = Cgroup::new(cgroup_root, &cgroup_path).map_err(ContainerError::from)?;
    let stdio = match (plan.process.terminal, console_socket) {
        (true, Some(socket)) => HelperStdio::Fds(console(socket)?),
        (true, None) => {
            return Err(CliError::Usage(
                "process.terminal needs --console-socket".into(),
            ));
        }
        (false, _) => HelperStdio::Inherit,
    };
    let exe = SelfExe::sealed()?;
    let gate = dir.join("start.sock");
    let request = Request::Init {
        plan: Box::new(plan.clone()),
        gate: Gate::Listener(gate),
    };
    let launched = launcher::launch(
        &exe,
        &request,
        stdio,
        &mut spawn_plain,
        &mut CliHooks { cgroup: &cgroup },
    );
    let launched = match launched {
        Ok(l) => l,
        Err(e) => {
            let _ = cgroup.remove();
            return Err(e.into());
        }
    };
    wait_pid(launched.helper_pid);
    if let Some(resources) = linux.and_then(|l| l.resources().as_ref())
        && let Err(e) = cgroup.apply(resources)
    {
        let _ = cgroup.remove();
        return Err(ContainerError::from(e).into());
    }
    let state = SavedState {
        id: id.to_string(),
        pid: launched.pid,
        start_time: start_time(launched.pid).unwrap_or(0),
        bundle: bundle.to_path_buf(),
        cgroup_root: cgroup_root.to_path_buf(),
        cgroup_path,
        annotations: spec.annotations().clone().unwrap_or_default(),
        plan,
    };
    let path = dir.join("state.json");
    let json = serde_json::to_vec(&state).map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
    std::fs::write(&path, json).map_err(io_err(&path))?;
    if let Some(pid_file) = pid_file {
        std::fs::write(pid_file, launched.pid.to_string()).map_err(io_err(pid_file))?;
    }
    Ok(launched.pid)
}

fn start(root: &Path, id: &str) -> Result<(), CliError> {
    let state = load(root, id)?;
    let status = status_of(root, &state);
    if status != "created" {
        return Err(CliError::WrongState {
            id: id.to_string(),
            status,
            what: "start needs a created container",
        });
    }
    let gate = state_dir(root, id).join("start.sock");
    let mut conn = UnixStream::connect(&gate).map_err(io_err(&gate))?;
    let _ = std::fs::remove_file(&gate);
    conn.set_read_timeout(Some(launcher::SETUP_TIMEOUT))
        .map_err(io_err(&gate))?;
    protocol::send(&mut conn, &protocol::Command::Start).map_err(io_err(&gate))?;
    match protocol::receive::<Report>(&mut conn).map_err(io_err(&gate))? {
        None => Ok(()),
        Some(Report::Error(error)) => Err(ContainerError::Setup(error).into()),
        Some(other) => Err(ContainerError::Helper(format!("unexpected {other:?}")).into()),
    }
}

fn parse_signal(text: &str) -> Result<Signal, CliError> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| CliError::Usage(format!("unknown signal {text}")));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| CliError::Usage(format!("unknown signal {text}")))
}

fn kill(root: &Path, state: &SavedState, signal: Signal, all: bool) -> Result<(), CliError> {
    let status = status_of(root, state);
    if status == "stopped" {
        return Err(CliError::WrongState {
            id: state.id.clone(),
            status,
            what: "nothing to signal",
        });
    }
    if all {
        let cgroup =
            Cgroup::new(&state.cgroup_root, &state.cgroup_path).map_err(ContainerError::from)?;
        for pid in cgroup.pids().map_err(ContainerError::from)? {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
        return Ok(());
    }
    nix::sys::signal::kill(Pid::from_raw(state.pid), signal)
        .map_err(|e| CliError::Usage(format!("kill {}: {e}", state.pid)))
}

fn delete(root: &Path, id: &str, force: bool) -> Result<(), CliError> {
    let state = match load(root, id) {
        Ok(s) => s,
        Err(CliError::NoSuchContainer(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = status_of(root, &state);
    if matches!(status, "running" | "paused") && !force {
        return Err(CliError::WrongState {
            id: id.to_string(),
            status,
            what: "delete needs --force",
        });
    }
    let cgroup =
        Cgroup::new(&state.cgroup_root, &state.cgroup_path).map_err(ContainerError::from)?;
    if status != "stopped" {
        let _ = cgroup.freeze(false);
        for pid in cgroup.pids().unwrap_or_default() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = nix::sys::signal::kill(Pid::from_raw(state.pid), Signal::SIGKILL);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(&state) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let mut removed = cgroup.remove();
    for _ in 0..50 {
        if removed.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        removed = cgroup.remove();
    }
    removed.map_err(ContainerError::from)?;
    let dir = state_dir(root, id);
    std::fs::remove_dir_all(&dir).map_err(io_err(&dir))
}

fn exec_process(
    process_file: Option<&Path>,
    tty: bool,
    cwd: Option<PathBuf>,
    env: Vec<String>,
    user: Option<String>,
    args: Vec<String>,
    state: &SavedState,
) -> Result<OciProcess, CliError> {
    if let Some(file) = process_file {
        let text = std::fs::read_to_string(file).map_err(io_err(file))?;
        return serde_json::from_str(&text).map_err(|e| {
            CliError::Container(ContainerError::InvalidSpec(format!(
                "{}: {e}",
                file.display()
            )))
        });
    }
    if args.is_empty() {
        return Err(CliError::Usage("exec needs a command".into()));
    }
    let base = &state.plan.process;
    let (uid, gid) = match user {
        None => (base.uid, base.gid),
        Some(u) => {
            let mut parts = u.splitn(2, ':');
            let uid = parts
                .next()
                .unwrap_or("0")
                .parse()
                .map_err(|_| CliError::Usage(format!("bad --user {u}")))?;
            let gid = match parts.next() {
                Some(g) => g
                    .parse()
                    .map_err(|_| CliError::Usage(format!("bad --user {u}")))?,
                None => 0,
            };
            (uid, gid)
        }
    };
    let mut all_env = base.env.clone();
    all_env.extend(env);
    let json = serde_json::json!({
        "terminal": tty,
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": all_env,
        "cwd": cwd.unwrap_or_else(|| base.cwd.clone()),
        "noNewPrivileges": base.no_new_privileges,
    });
    serde_json::from_value(json)
        .map_err(|e| CliError::Container(ContainerError::InvalidSpec(e.to_string())))
}

fn exec(
    state: &SavedState,
    process: &OciProcess,
    console_socket: Option<&Path>,
    detach: bool,
    pid_file: Option<&Path>,
) -> Result<i32, CliError> {
    let mut plan = plan::plan_process(process, state.plan.process.seccomp.clone())?;
    if process.capabilities().is_none() {
        plan.capabilities = state.plan.process.capabilities.clone();
    }
    let stdio = match (plan.terminal, console_socket) {
        (true, Some(socket)) => HelperStdio::Fds(console(socket)?),
        (true, None) => return Err(CliError::Usage("--tty needs --console-socket".into())),
        (false, _) => HelperStdio::Inherit,
    };
    // The exec'd process is re-parented to us when the helper exits: wait for it.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| CliError::Usage(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
    let cgroup =
        Cgroup::new(&state.cgroup_root, &state.cgroup_path).map_err(ContainerError::from)?;
    let exe = SelfExe::sealed()?;
    let request = Request::Exec {
        init_pid: state.pid,
        process: Box::new(plan),
    };
    let launched = launcher::launch(
        &exe,
        &request,
        stdio,
        &mut spawn_plain,
        &mut CliHooks { cgroup: &cgroup },
    )?;
    wait_pid(launched.helper_pid);
    if let Some(pid_file) = pid_file {
        std::fs::write(pid_file, launched.pid.to_string()).map_err(io_err(pid_file))?;
    }
    if detach {
        return Ok(0);
    }
    Ok(wait_pid(launched.pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_runc() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("sigterm").unwrap(), Signal::SIGTERM);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }

    #[test]
    fn the_command_line_parses_runc_style() {
        let cli = Cli::try_parse_from([
            "hull-runtime",
            "--root",
            "/tmp/r",
            "--log",
            "/tmp/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "c1",
        ])
        .unwrap();
        assert_eq!(cli.root, PathBuf::from("/tmp/r"));
        assert!(matches!(cli.command, Cmd::Create { ref id, .. } if id == "c1"));
        let cli =
            Cli::try_parse_from(["hull-runtime", "exec", "c1", "sh", "-c", "echo hi"]).unwrap();
        match cli.command {
            Cmd::Exec { id, args, .. } => {
                assert_eq!(id, "c1");
                assert_eq!(args, vec!["sh", "-c", "echo hi"]);
            }
            other => panic!("{other:?}"),
        }
    }
}

//! hull-container: containers from an OCI spec to a running process, runc-style. The
//! agent (`hull-agent`) and the runc-compatible CLI (`hull-runtime`) are built on it; it
//! depends on no other hull crate.
//!
//! ```text
//! oci_spec::runtime::Spec ──plan::plan_container──▶ ContainerPlan (validated, serde)
//!        │                                               │
//!        │                         launcher::launch ─────┤  (agent side, blocking)
//!        │                               │ re-exec of this binary, read-only (self_exe)
//!        ▼                               ▼
//!   cgroup::Cgroup ◀── pid ─────── helper (stage 1 → fork → stage 2: namespaces,
//!   (libcgroups v2)                 mounts, pivot_root, user, caps) ── waits at the gate
//! ```
//!
//! `CreateContainer` builds everything and leaves the container's init process waiting
//! at its start gate; `StartContainer` opens the gate and the workload is `execve`d
//! (runc's create/start split). `ExecProcess` runs another helper that joins the init
//! process's namespaces and cgroup. Processes are reaped by [`crate::process::Reaper`].
//!
//! Modules: [`plan`] (spec → plan, with [`mount_options`], the one parser of mount
//! options, which the agent's storages use too), [`seccomp`] (profile → BPF), [`protocol`] (agent ↔
//! helper messages), [`launcher`] (agent side) with [`self_exe`] (the binary helpers run
//! from, kept from being written: CVE-2019-5736), [`helper`] (the re-exec'd side; the only
//! code that forks or changes namespaces), [`cgroup`] (limits, [`stats`], freezer, OOM),
//! [`process`] (the reaper, stdio pipes and terminals).
//!
//! The rootfs is `root.path` of the spec: absolute as given, or relative to the bundle
//! `<container_base>/<id>/` (`/run/kata-containers/<id>/` in a guest, as Kata lays it
//! out). Storages (virtio-fs share, block devices) are mounted by the storage layer
//! before `CreateContainer` reaches this module.
//!
//! Networking: in the agent every container shares the sandbox's (the VM's) network
//! namespace, as with Kata: a `network` namespace without a path is not created. A UTS
//! namespace joined by path keeps its hostname (the spec's is not applied).
//!
//! The sandbox-wide PID namespace (`sandbox_pidns`) is the sandbox's business: it hands
//! this layer a spec whose PID namespace is new or a path to join.
//!
//! Not built (refused with a clear error where a request asks for it): user names in
//! `StringUser` (numeric ids only), seccomp user notification, Intel RDT, id-mapped
//! mounts. Ignored as Kata's agent ignores them: AppArmor/SELinux labels, device cgroup
//! rules (cgroup v2 needs BPF for them; the VM is the device boundary).
//!
//! Spec hooks ([`hooks`]): the plan carries the `createContainer` and `startContainer`
//! ones, which the helper runs inside the container; the caller runs the others. OOM events need the memory
//! controller (`memory.events`).

pub mod cgroup;
pub mod helper;
pub mod hooks;
pub mod launcher;
pub mod mount_options;
pub mod plan;
pub mod process;
pub mod protocol;
pub mod seccomp;
pub mod self_exe;
mod setup_error;
pub mod stats;

use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process as OciProcess, Spec};
use tokio::sync::mpsc;

use crate::process::{
    ExitStatus, ExitWatch, Process, ProcessError, ProcessIo, Reaper, StdioStreams,
};
use cgroup::{Cgroup, CgroupError};
use launcher::{HelperStdio, LaunchHooks, Launched};
use plan::{ContainerPlan, PlanOptions};
use protocol::{Gate, Request};
use self_exe::SelfExe;
pub use setup_error::SetupError;

/// What can go wrong with a container.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The spec (or a process) is malformed or asks for something unsupported.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// No container has this id.
    #[error("container {0} does not exist")]
    NoSuchContainer(String),
    /// The container has no process with this exec id (or it has been forgotten).
    #[error("container {container} has no process {exec_id}")]
    NoSuchProcess {
        /// The container's id.
        container: String,
        /// The exec id asked for.
        exec_id: String,
    },
    /// A container with this id exists, or is being created.
    #[error("container {0} already exists")]
    ContainerExists(String),
    /// The exec id is taken by another process of the container (one that exited is
    /// forgotten 30 s after it was waited for), or is the init process's (or empty).
    #[error("container {container} already has a process {exec_id}")]
    ProcessExists {
        /// The container's id.
        container: String,
        /// The exec id asked for.
        exec_id: String,
    },
    /// The request does not fit the container's current state (e.g. starting a running
    /// container, pausing a stopped one).
    #[error("container {id} is {state}: cannot {action}")]
    WrongState {
        /// The container's id.
        id: String,
        /// The state it was in.
        state: State,
        /// What was asked, for the message: `"start"`, `"pause"`, ...
        action: &'static str,
    },
    /// The planned rootfs (`root.path`, resolved against the bundle) is not a directory.
    #[error("rootfs {0} does not exist or is not a directory")]
    MissingRootfs(PathBuf),
    /// The helper could not build the container process, and says why.
    #[error("container setup failed: {0}")]
    Setup(SetupError),
    /// The launcher lost its helper, or could not do its own part of the setup.
    #[error("container setup failed: {0}")]
    Helper(String),
    /// No view of this binary that cannot be written could be made for helpers to run from.
    #[error("cannot prepare the helper binary: {0}")]
    SelfExe(String),
    /// The container's cgroup could not be created, limited, frozen, read or removed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// A process could not be signalled, reaped, or given its stdio.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The container's processes outlived the removal timeout; the message says which.
    #[error("{0}")]
    Timeout(String),
}

/// A container's life, as OCI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Set up, the init process waiting at its start gate for [`Containers::start`].
    Created,
    /// The gate was opened and the workload `execve`d; also after [`Containers::resume`].
    Running,
    /// Every process frozen through the cgroup freezer ([`Containers::pause`]).
    Paused,
    /// The init process has exited and been reaped, or its start failed.
    Stopped,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        })
    }
}

/// Settings of the container layer.
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    /// Where bundles live: a container's is `<container_base>/<id>/`, against which a
    /// relative `root.path` is resolved (the agent's run dir, `/run/kata-containers`).
    pub container_base: PathBuf,
    /// The cgroup v2 mount containers' cgroups are made under (`/sys/fs/cgroup` in the
    /// guest).
    pub cgroup_root: PathBuf,
}

/// Exec'd processes whose status was collected this long ago are forgotten (their
/// output has had time to be read).
const EXEC_FORGET_AFTER: Duration = Duration::from_secs(30);
/// OOM events kept while nobody polls `GetOOMEvent`.
const OOM_QUEUE: usize = 128;

/// A container the agent created.
pub struct Container {
    /// The container's id, as `CreateContainer` gave it.
    pub id: String,
    plan: ContainerPlan,
    cgroup: Arc<Cgroup>,
    init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    gate: Mutex<Option<UnixStream>>,
    state: Mutex<State>,
    oom: Arc<cgroup::OomCounter>,
    oom_task: tokio::task::JoinHandle<()>,
}

/// Queues an OOM event for `GetOOMEvent`.
fn report_oom(tx: &mpsc::Sender<String>, id: &str) {
    tracing::info!(container = %id, "OOM kill");
    if tx.try_send(id.to_string()).is_err() {
        tracing::warn!(container = %id, "OOM event dropped: nobody polls GetOOMEvent");
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Container {
    /// The current state (stopped once the init process has been reaped).
    pub fn state(&self) -> State {
        if self.init.exit_status().is_some() {
            return State::Stopped;
        }
        *lock(&self.state)
    }

    /// The init process's pid.
    pub fn pid(&self) -> i32 {
        self.init.pid
    }

    /// The container's root filesystem, as the agent sees it.
    pub fn rootfs(&self) -> &std::path::Path {
        &self.plan.rootfs
    }

    /// The init process (empty `exec_id` or the init's own) or an exec'd process.
    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>, ContainerError> {
        if exec_id.is_empty() || exec_id == self.init.exec_id {
            return Ok(self.init.clone());
        }
        lock(&self.execs)
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ContainerError::NoSuchProcess {
                container: self.id.clone(),
                exec_id: exec_id.to_string(),
            })
    }

    fn wrong_state(&self, action: &'static str) -> ContainerError {
        ContainerError::WrongState {
            id: self.id.clone(),
            state: self.state(),
            action,
        }
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }
}

/// Hooks that put the helper in the container's cgroup and register the container
/// process with the reaper.
struct Hooks<'a> {
    cgroup: &'a Cgroup,
    reaper: &'a Reaper,
    child: Option<ExitWatch>,
}

impl LaunchHooks for Hooks<'_> {
    fn spawned(&mut self, helper_pid: i32) -> Result<(), ContainerError> {
        self.cgroup.add(helper_pid).map_err(ContainerError::from)
    }
    fn child(&mut self, pid: i32) {
        self.child = Some(self.reaper.watch(pid));
    }
}

/// Every container of the sandbox, and what creating them needs.
pub struct Containers {
    settings: ContainerSettings,
    table: Mutex<HashMap<String, Arc<Container>>>,
    /// Ids being created: a duplicate id is refused while the first is still in setup.
    creating: Mutex<std::collections::HashSet<String>>,
    exe: OnceLock<Arc<SelfExe>>,
    oom_tx: mpsc::Sender<String>,
    oom_rx: tokio::sync::Mutex<mpsc::Receiver<String>>,
}

/// Removes an id from the reservation set when creation ends, however it ends.
struct Reservation<'a> {
    containers: &'a Containers,
    id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        lock(&self.containers.creating).remove(&self.id);
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> ContainerError {
    ContainerError::Helper(format!("the setup task failed: {e}"))
}

/// Runs the helper for `request` on a blocking thread: its pid joins `cgroup` as soon as it
/// is spawned, and the process it starts is watched by `reaper`. Answers what the helper
/// reported and the watch on the started process's exit.
async fn launch_blocking(
    exe: Arc<SelfExe>,
    request: Request,
    child_stdio: crate::process::ChildStdio,
    cgroup: Arc<Cgroup>,
    reaper: &Reaper,
) -> Result<(Launched, ExitWatch), ContainerError> {
    let reaper = reaper.clone();
    tokio::task::spawn_blocking(move || {
        let mut hooks = Hooks {
            cgroup: &cgroup,
            reaper: &reaper,
            child: None,
        };
        let launched = launcher::launch(
            &exe,
            &request,
            HelperStdio::Fds(child_stdio),
            &mut |cmd| spawn_registered(&reaper, cmd),
            &mut hooks,
        )?;
        let exit = hooks
            .child
            .take()
            .ok_or_else(|| ContainerError::Helper("the helper started no process".into()))?;
        Ok((launched, exit))
    })
    .await
    .map_err(blocking_failed)?
}

impl Containers {
    /// An empty table; the helper binary is copied on the first create.
    pub fn new(settings: ContainerSettings) -> Self {
        let (oom_tx, oom_rx) = mpsc::channel(OOM_QUEUE);
        Self {
            settings,
            table: Mutex::new(HashMap::new()),
            creating: Mutex::new(Default::default()),
            exe: OnceLock::new(),
            oom_tx,
            oom_rx: tokio::sync::Mutex::new(oom_rx),
        }
    }

    /// The container `id`.
    pub fn get(&self, id: &str) -> Result<Arc<Container>, ContainerError> {
        lock(&self.table)
            .get(id)
            .cloned()
            .ok_or_else(|| ContainerError::NoSuchContainer(id.to_string()))
    }

    /// Ids of every container.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.table).keys().cloned().collect()
    }

    async fn exe(&self) -> Result<Arc<SelfExe>, ContainerError> {
        if let Some(exe) = self.exe.get() {
            return Ok(exe.clone());
        }
        let exe = tokio::task::spawn_blocking(SelfExe::sealed)
            .await
            .map_err(blocking_failed)??;
        tracing::debug!(sealing = ?exe.sealing(), "helpers run from a view of the binary that cannot be written");
        Ok(self.exe.get_or_init(|| Arc::new(exe)).clone())
    }

    /// `CreateContainer`: builds the container and its init process, which waits for
    /// [`Containers::start`].
    pub async fn create(
        &self,
        id: &str,
        exec_id: &str,
        spec: Spec,
    ) -> Result<Arc<Container>, ContainerError> {
        plan::validate_id(id)?;
        {
            let table = lock(&self.table);
            let mut creating = lock(&self.creating);
            if table.contains_key(id) || !creating.insert(id.to_string()) {
                return Err(ContainerError::ContainerExists(id.to_string()));
            }
        }
        let _reservation = Reservation {
            containers: self,
            id: id.to_string(),
        };
        let options = PlanOptions {
            bundle: self.settings.container_base.join(id),
            share_sandbox_network: true,
            no_pivot: false,
        };
        let plan = plan::plan_container(id, &spec, &options)?;
        if !plan.rootfs.is_dir() {
            return Err(ContainerError::MissingRootfs(plan.rootfs.clone()));
        }
        let linux = spec.linux().as_ref();
        let cgroup_rel =
            cgroup::cgroup_path_for(id, linux.and_then(|l| l.cgroups_path().as_deref()))?;
        let cgroup = Cgroup::new(&self.settings.cgroup_root, &cgroup_rel)?;
        let resources = linux.and_then(|l| l.resources().clone());
        let exe = self.exe().await?;
        let reaper = Reaper::global()?;
        let (io, child_stdio) = new_stdio(spec.process().as_ref())?;
        let exec_id = if exec_id.is_empty() { id } else { exec_id }.to_string();

        let request = Request::Init {
            plan: Box::new(plan.clone()),
            gate: Gate::Socket,
        };
        let cgroup = Arc::new(cgroup);
        let launched = launch_blocking(exe, request, child_stdio, cgroup.clone(), &reaper).await;
        let (launched, exit) = match launched {
            Ok(l) => l,
            Err(e) => {
                let _ = cgroup.remove();
                return Err(e);
            }
        };

        if let Some(resources) = &resources
            && let Err(e) = cgroup.apply(resources)
        {
            let _ = cgroup.remove();
            return Err(e.into());
        }
        // Counted from now, before the workload can run; watched from a task.
        let oom = Arc::new(cgroup::OomCounter::new(cgroup.memory_events()));
        let oom_task = tokio::spawn(cgroup::watch_oom(oom.clone(), {
            let tx = self.oom_tx.clone();
            let id = id.to_string();
            move || report_oom(&tx, &id)
        }));
        let init = Arc::new(Process::new(exec_id, launched.pid, io, exit, reaper));
        let container = Arc::new(Container {
            id: id.to_string(),
            plan,
            cgroup,
            init,
            execs: Mutex::new(HashMap::new()),
            gate: Mutex::new(launched.channel),
            state: Mutex::new(State::Created),
            oom,
            oom_task,
        });
        lock(&self.table).insert(id.to_string(), container.clone());
        tracing::info!(container = id, pid = launched.pid, "container created");
        Ok(container)
    }

    /// `StartContainer`: lets the init process run its workload.
    pub async fn start(&self, id: &str) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        if container.state() != State::Created {
            return Err(container.wrong_state("start"));
        }
        let gate = lock(&container.gate)
            .take()
            .ok_or_else(|| container.wrong_state("start"))?;
        let result = tokio::task::spawn_blocking(move || {
            let mut gate = gate;
            launcher::start_through(&mut gate)
        })
        .await
        .map_err(blocking_failed)?;
        match result {
            Ok(()) => {
                *lock(&container.state) = State::Running;
                tracing::info!(container = id, "container started");
                Ok(())
            }
            Err(e) => {
                *lock(&container.state) = State::Stopped;
                Err(e)
            }
        }
    }

    /// `ExecProcess`: runs `process` in the container's namespaces and cgroup, with the
    /// container's capabilities when it names none.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &OciProcess,
    ) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        if exec_id.is_empty() || exec_id == container.init.exec_id {
            return Err(ContainerError::ProcessExists {
                container: id.to_string(),
                exec_id: exec_id.to_string(),
            });
        }
        if container.state() != State::Running {
            return Err(container.wrong_state("exec a process"));
        }
        let mut plan = plan::plan_process(process, container.plan.process.seccomp.clone())?;
        if plan.capabilities.is_none() {
            // As Kata's agent and runc: a process that names no capabilities gets the
            // container's (Kata's Go runtime never sends any with ExecProcess).
            plan.capabilities = container.plan.process.capabilities.clone();
        }
        {
            let mut execs = lock(&container.execs);
            execs.retain(|_, p| p.waited_for().is_none_or(|d| d <= EXEC_FORGET_AFTER));
            if execs.contains_key(exec_id) {
                return Err(ContainerError::ProcessExists {
                    container: id.to_string(),
                    exec_id: exec_id.to_string(),
                });
            }
        }
        let exe = self.exe().await?;
        let reaper = Reaper::global()?;
        let (io, child_stdio) = new_stdio(Some(process))?;
        let request = Request::Exec {
            init_pid: container.init.pid,
            process: Box::new(plan),
        };
        let (launched, exit) =
            launch_blocking(exe, request, child_stdio, container.cgroup.clone(), &reaper).await?;
        let pid = launched.pid;
        let process = Arc::new(Process::new(exec_id.to_string(), pid, io, exit, reaper));
        let mut execs = lock(&container.execs);
        if execs.contains_key(exec_id) {
            // A concurrent exec with the same id won the race; this one is killed.
            let _ = process.signal(Signal::SIGKILL);
            return Err(ContainerError::ProcessExists {
                container: id.to_string(),
                exec_id: exec_id.to_string(),
            });
        }
        execs.insert(exec_id.to_string(), process);
        tracing::info!(container = id, exec_id, pid, "process started");
        Ok(())
    }

    /// `SignalProcess`: an empty `exec_id` signals every process of the container.
    pub fn signal(&self, id: &str, exec_id: &str, signal: Signal) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        let process = container.process(exec_id)?;
        let mut signal = signal;
        // As Kata: an init process (pid 1 of its namespace) ignores signals it does not
        // handle; SIGTERM is what a runtime sends to stop it, so make it SIGKILL then,
        // for the init alone or (empty exec id) for every process, as Kata's agent does.
        if Arc::ptr_eq(&process, &container.init)
            && signal == Signal::SIGTERM
            && !signal_is_handled(process.pid, Signal::SIGTERM)
        {
            signal = Signal::SIGKILL;
        }
        if exec_id.is_empty() {
            return signal_all(&container, signal);
        }
        process.signal(signal)?;
        Ok(())
    }

    /// `WaitProcess`: the exit status once the process has been reaped.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<ExitStatus, ContainerError> {
        let container = self.get(id)?;
        let process = container.process(exec_id)?;
        let status = process.wait().await;
        // As Kata's agent: the exit status is given once output carried on streams has
        // all been copied and the streams closed.
        process.io.output_drained().await;
        process.mark_waited();
        Ok(status)
    }

    /// Moves a process's stdio onto connected sockets (Kata's vsock stdio ports), right
    /// after `CreateContainer` or `ExecProcess` started it: what it wrote meanwhile
    /// waits in its pipes.
    pub async fn carry_stdio(
        &self,
        id: &str,
        exec_id: &str,
        streams: StdioStreams,
    ) -> Result<(), ContainerError> {
        if streams.is_empty() {
            return Ok(());
        }
        let process = self.get(id)?.process(exec_id)?;
        Ok(process.carry_stdio(streams).await?)
    }

    /// A process's stdio.
    pub fn process(&self, id: &str, exec_id: &str) -> Result<Arc<Process>, ContainerError> {
        self.get(id)?.process(exec_id)
    }

    /// `RemoveContainer`: kills every process, waits for the init process (at most
    /// `timeout`, `None` for no bound), removes the cgroup and forgets the container.
    pub async fn remove(&self, id: &str, timeout: Option<Duration>) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        if container.state() != State::Stopped {
            if container.state() == State::Paused {
                let _ = container.cgroup.freeze(false);
            }
            signal_all(&container, Signal::SIGKILL)?;
            let wait = container.init.wait();
            match timeout {
                Some(t) => tokio::time::timeout(t, wait).await.map_err(|_| {
                    ContainerError::Timeout(format!(
                        "container {id}: processes still running after {t:?}"
                    ))
                })?,
                None => wait.await,
            };
        }
        // Exec'd processes die with the cgroup; give their statuses to any waiter.
        lock(&container.gate).take();
        // The last look at the OOM counter, for a kill the watcher has not reported yet.
        container.oom_task.abort();
        if container.oom.grew() == Some(true) {
            report_oom(&self.oom_tx, id);
        }
        let cgroup_result = remove_cgroup(&container.cgroup).await;
        lock(&self.table).remove(id);
        tracing::info!(container = id, "container removed");
        cgroup_result
    }

    /// `UpdateContainer`.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        if container.state() == State::Stopped {
            return Err(container.wrong_state("update"));
        }
        Ok(container.cgroup.apply(resources)?)
    }

    /// `StatsContainer`.
    pub fn stats(&self, id: &str) -> Result<stats::ContainerStats, ContainerError> {
        Ok(self.get(id)?.cgroup.stats()?)
    }

    /// `PauseContainer`.
    pub fn pause(&self, id: &str) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        if container.state() != State::Running {
            return Err(container.wrong_state("pause"));
        }
        container.cgroup.freeze(true)?;
        *lock(&container.state) = State::Paused;
        Ok(())
    }

    /// `ResumeContainer`.
    pub fn resume(&self, id: &str) -> Result<(), ContainerError> {
        let container = self.get(id)?;
        if container.state() != State::Paused {
            return Err(container.wrong_state("resume"));
        }
        container.cgroup.freeze(false)?;
        *lock(&container.state) = State::Running;
        Ok(())
    }

    /// `GetOOMEvent`: waits for the next OOM kill in any container; answers its id.
    pub async fn next_oom_event(&self) -> String {
        let mut rx = self.oom_rx.lock().await;
        // The sender lives in `self`: `recv` cannot end while we borrow it.
        rx.recv().await.unwrap_or_default()
    }
}

fn spawn_registered(reaper: &Reaper, cmd: &mut std::process::Command) -> std::io::Result<i32> {
    let (pid, _exit) = reaper.spawn_registered(|| {
        let child = cmd.spawn()?;
        let pid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
        // `child` is dropped without waiting: the reaper owns its status.
        Ok((pid, pid))
    })?;
    Ok(pid)
}

fn new_stdio(
    process: Option<&OciProcess>,
) -> Result<(ProcessIo, crate::process::ChildStdio), ContainerError> {
    let terminal = process.and_then(|p| p.terminal()).unwrap_or(false);
    Ok(if terminal {
        let (rows, cols) = process
            .and_then(|p| p.console_size())
            .map(|b| {
                (
                    u16::try_from(b.height()).unwrap_or(u16::MAX),
                    u16::try_from(b.width()).unwrap_or(u16::MAX),
                )
            })
            .unwrap_or((0, 0));
        ProcessIo::terminal(rows, cols)?
    } else {
        ProcessIo::pipes()?
    })
}

/// Signals every process of the container: the cgroup's members (frozen meanwhile, so
/// none can fork away), and the processes the agent knows.
fn signal_all(container: &Container, signal: Signal) -> Result<(), ContainerError> {
    let frozen = container.state() == State::Running && container.cgroup.freeze(true).is_ok();
    let mut pids = container.cgroup.pids().unwrap_or_default();
    for process in
        std::iter::once(container.init.clone()).chain(lock(&container.execs).values().cloned())
    {
        if process.exit_status().is_none() && !pids.contains(&process.pid) {
            let _ = process.signal(signal);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        if let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal) {
            tracing::debug!(pid, error = %e, "signal");
        }
    }
    if frozen {
        let _ = container.cgroup.freeze(false);
    }
    Ok(())
}

/// Whether `pid` has a handler for `signal` (`SigCgt` of `/proc/<pid>/status`).
fn signal_is_handled(pid: i32, signal: Signal) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (signal as i32 - 1)) != 0)
}

/// Removes the cgroup, retrying while the last processes leave it.
async fn remove_cgroup(cgroup: &Cgroup) -> Result<(), ContainerError> {
    let mut last = None;
    for _ in 0..50 {
        match cgroup.remove() {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last
        .map(ContainerError::from)
        .unwrap_or_else(|| ContainerError::Helper("cgroup removal".into())))
}

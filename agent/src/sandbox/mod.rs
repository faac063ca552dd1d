//! The sandbox: the one owner of the guest's state: what `CreateSandbox` set up, the
//! storages in use, the network, its containers ([`hull_container::Containers`]), and
//! whether the runtime has asked for the sandbox to end.
//!
//! Every RPC handler calls one method here with domain values and gets domain values
//! back; no handler reaches into the containers, storages or processes itself.
//!
//! - [`error`]: what its requests fail with ([`SandboxError`]); it names no error type
//!   of the layers above it.
//! - [`spec`]: `CreateSandbox`'s request and its checks.
//! - [`dns`], [`hostname`]: what `CreateSandbox` changes in the guest besides storages.
//! - [`guest`]: the facts `GetGuestDetails` reports.
//! - [`pod_namespaces`]: the IPC and UTS namespaces all containers of the pod share.
//! - [`shared_mounts`]: mounts of one container given to another (`CreateContainer`'s
//!   `shared_mounts`); a container's devices are [`crate::device::container`]'s.

pub mod dns;
pub mod error;
pub mod guest;
pub mod hostname;
pub mod leftovers;
pub mod pod_namespaces;
pub mod shared_mounts;
pub mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hull_container::process::ExitStatus;
use hull_container::stats::ContainerStats;
use hull_container::{ContainerError, ContainerSettings, Containers};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process as OciProcess, Spec};
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::device::DeviceWaiter;
use crate::device::container::{ContainerDevice, DeviceRequest, check_in_spec, rewrite_spec};
use crate::device::cpu_mem::{self, CpuMem};
use crate::diagnostic::{self, TerminationLog};
use crate::fs::responsive::{ROOTFS_ANSWER_TIMEOUT, answers_within};
use crate::hooks::{GuestHooks, HookKind, HookState, run_hooks};
use crate::mem_agent::MemAgent;
use crate::network::Network;
use crate::stdio_ports::{self, StdioConnections, StdioPorts};
use crate::storage::{StorageRef, StorageRequest, Storages};
use hull_container::hooks::SpecHooks;
use pod_namespaces::PodNamespaces;

pub use error::SandboxError;
pub use guest::{GuestFacts, read_guest_facts};
pub use shared_mounts::SharedMount;
pub use spec::{SandboxRequest, SandboxSpec};

/// How long `DestroySandbox` waits for the teardown before the agent exits anyway: a
/// mount stuck on a dead host daemon must not keep the VM up.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The OCI runtime-spec version of the state hooks read.
const OCI_VERSION: &str = "1.0.2";
/// How long `DestroySandbox` waits for each container's processes to die.
const CONTAINER_STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The guest-wide state every RPC works on.
pub struct Sandbox {
    shutdown: watch::Sender<bool>,
    /// Set by the first DestroySandbox, before it waits for anything.
    destroying: AtomicBool,
    /// The previous agent died with its sandbox: CreateContainer waits for a new
    /// CreateSandbox ([`Sandbox::mark_lost`]).
    lost: AtomicBool,
    teardown_timeout: Duration,
    storages: Storages,
    /// Waits for the devices containers are given (`agent.hotplug_timeout`).
    devices: DeviceWaiter,
    network: Network,
    /// Onlines hot-plugged vCPUs and memory (OnlineCPUMem, MemHotplugByProbe).
    cpu_mem: CpuMem,
    /// Serializes CreateSandbox and DestroySandbox.
    lifecycle: tokio::sync::Mutex<Lifecycle>,
    /// What CreateSandbox recorded, for containers to read.
    info: Mutex<Option<SandboxInfo>>,
    containers: Containers,
    /// Each container's Kubernetes name (Kata's annotations), the source of shared
    /// mounts; containers without one are not listed.
    container_names: Mutex<HashMap<String, String>>,
    /// Each container's holds on the storages `CreateContainer` gave it.
    container_storages: Mutex<HashMap<String, Vec<StorageRef>>>,
    /// The container whose init holds the sandbox-wide PID namespace, once created.
    pidns_holder: Mutex<Option<PidnsHolder>>,
    /// The pod's IPC and UTS namespaces, from CreateSandbox to DestroySandbox.
    pod_namespaces: Mutex<Option<PodNamespaces>>,
    /// Guest hooks found under CreateSandbox's `guest_hook_path`.
    hooks: Mutex<GuestHooks>,
    /// Each container's spec hooks and annotations (the state its hooks read).
    container_hooks: Mutex<HashMap<String, ContainerHooks>>,
    /// Where container bundles live (`<run dir>/<container id>/`), for hooks' OCI state.
    bundle_base: PathBuf,
    /// Each container's termination message, as its spec placed it (GetDiagnosticData).
    termination_logs: Mutex<HashMap<String, TerminationLog>>,
    /// The memory agent (MemAgentMemcgSet, MemAgentCompactSet).
    mem_agent: MemAgent,
    /// Connections to the stdio listener (`agent.passfd_listener_port`), if it runs.
    stdio_connections: Option<Arc<StdioConnections>>,
}

/// What a container's hooks need after `CreateContainer`.
#[derive(Debug, Clone, Default)]
struct ContainerHooks {
    hooks: SpecHooks,
    annotations: std::collections::BTreeMap<String, String>,
}

/// The first container that asked for the sandbox PID namespace created it (Kata's pause
/// container); later ones join it. It lives as long as this container's init.
#[derive(Debug, Clone)]
struct PidnsHolder {
    container: String,
    pid: i32,
}

/// `CreateContainer` as the host asked for it: the spec already converted (with the
/// agent's policy on it), the storages unchecked.
#[derive(Debug, Clone)]
pub struct ContainerRequest {
    /// The container's id, unique in the sandbox.
    pub id: String,
    /// The init process's exec id.
    pub exec_id: String,
    /// The container's OCI spec.
    pub spec: Spec,
    /// Storages to mount (or share) before the container is created; held until it is
    /// removed.
    pub storages: Vec<StorageRequest>,
    /// Join (or, first, create) the sandbox-wide PID namespace.
    pub sandbox_pidns: bool,
    /// Devices the host plugged in for the container, unchecked: their spec entries
    /// get the guest's numbers.
    pub devices: Vec<DeviceRequest>,
    /// Mounts made in other containers to give this one, unchecked.
    pub shared_mounts: Vec<SharedMount>,
    /// The init process's streams carried on vsock connections.
    pub stdio: StdioPorts,
}

/// One of a process's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output (`ReadStdout`).
    Stdout,
    /// Standard error (`ReadStderr`).
    Stderr,
}

/// What `GetGuestDetails` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDetails {
    /// What the guest kernel offers for memory hotplug.
    pub facts: GuestFacts,
    /// The storage drivers this agent has.
    pub storage_drivers: Vec<&'static str>,
}

/// What `CreateSandbox` recorded for containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    /// The sandbox's id, as the host named it.
    pub id: String,
    /// The hostname `CreateSandbox` set; `None` when the guest's was kept.
    pub hostname: Option<String>,
    /// Containers asking for it join one sandbox-wide PID namespace.
    pub sandbox_pidns: bool,
    /// Where OCI hooks for guest containers are looked up; `None`: no guest hooks.
    pub guest_hook_path: Option<PathBuf>,
}

#[derive(Default)]
struct Lifecycle {
    created: bool,
    destroying: bool,
    /// The sandbox's own holds on its storages.
    storages: Vec<StorageRef>,
    dns_installed: bool,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// An empty sandbox with the default configuration (`/run/kata-containers`, 3 s
    /// hot-plug timeout).
    pub fn new() -> Self {
        Self::with_config(&AgentConfig::default())
    }

    /// An empty sandbox with the configured directory and hot-plug timeout. Nothing is
    /// touched on disk until a storage is asked for.
    pub fn with_config(config: &AgentConfig) -> Self {
        let devices = DeviceWaiter::guest(config.hotplug_timeout);
        Self {
            shutdown: watch::Sender::new(false),
            destroying: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            teardown_timeout: TEARDOWN_TIMEOUT,
            storages: Storages::new(config.run_dir.clone(), devices.clone()),
            devices,
            network: Network::default(),
            cpu_mem: CpuMem::guest(config.hotplug_timeout.max(cpu_mem::MIN_CPU_WAIT)),
            lifecycle: tokio::sync::Mutex::new(Lifecycle::default()),
            info: Mutex::new(None),
            containers: Containers::new(ContainerSettings {
                container_base: config.run_dir.clone(),
                cgroup_root: config.cgroup_root.clone(),
            }),
            container_names: Mutex::new(HashMap::new()),
            container_storages: Mutex::new(HashMap::new()),
            pidns_holder: Mutex::new(None),
            pod_namespaces: Mutex::new(None),
            hooks: Mutex::new(GuestHooks::default()),
            container_hooks: Mutex::new(HashMap::new()),
            bundle_base: config.run_dir.clone(),
            termination_logs: Mutex::new(HashMap::new()),
            mem_agent: MemAgent::new(&config.cgroup_root, Path::new("/proc")),
            stdio_connections: None,
        }
    }

    /// The same sandbox taking processes' stdio connections from `connections`.
    pub fn with_stdio_connections(mut self, connections: Arc<StdioConnections>) -> Self {
        self.stdio_connections = Some(connections);
        self
    }

    /// Records that a previous agent died and its sandbox was torn down
    /// ([`leftovers`]): until CreateSandbox succeeds, CreateContainer is refused.
    pub fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// `GetGuestDetails`: facts read from sysfs, and what this agent supports.
    pub fn guest_details(&self) -> Result<GuestDetails, SandboxError> {
        Ok(GuestDetails {
            facts: read_guest_facts(Path::new("/sys"))?,
            storage_drivers: self.storages.drivers(),
        })
    }

    /// `CreateContainer`: checks the container's devices, storages, shared mounts and
    /// hooks, points its `ipc`/`uts` namespaces at the pod's, waits for the devices and
    /// puts their guest numbers into the spec, mounts the storages (held for it until it
    /// is removed), creates the container (its `createContainer` hooks run then), gives it
    /// the shared mounts and runs the guest and spec `prestart` hooks, then the spec's
    /// `createRuntime` ones; on an error the storages are released (and the container
    /// removed).
    pub async fn create_container(&self, request: ContainerRequest) -> Result<(), SandboxError> {
        let ContainerRequest {
            id,
            exec_id,
            spec,
            storages,
            sandbox_pidns,
            devices,
            shared_mounts,
            stdio,
        } = request;
        let (id, exec_id) = (id.as_str(), exec_id.as_str());
        if self.lost.load(Ordering::SeqCst) && !self.lifecycle.lock().await.created {
            return Err(SandboxError::SandboxLost);
        }
        let storages = storages
            .iter()
            .map(|s| self.storages.parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let devices = ContainerDevice::parse_all(&devices)?;
        shared_mounts::check(&shared_mounts)?;
        let name = shared_mounts::container_name(&spec);
        let hooks = ContainerHooks {
            hooks: SpecHooks::from_spec(&spec)?,
            annotations: spec
                .annotations()
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        if self.destroying.load(Ordering::SeqCst) {
            return Err(SandboxError::SandboxDestroyed);
        }
        if self.containers.get(id).is_ok() {
            return Err(ContainerError::ContainerExists(id.into()).into());
        }
        if let Some(rootfs) = spec.root().as_ref().map(|r| r.path().clone())
            && rootfs.is_absolute()
            && !answers_within(rootfs.clone(), ROOTFS_ANSWER_TIMEOUT).await
        {
            return Err(SandboxError::Unresponsive {
                path: rootfs,
                timeout: ROOTFS_ANSWER_TIMEOUT,
            });
        }
        let holder = self.pidns_holder.lock().map(|h| h.clone()).unwrap_or(None);
        let spec = match self.pod_namespaces.lock().as_deref() {
            Ok(Some(pod)) => pod.rewrite(spec),
            _ => spec,
        };
        let spec = match sandbox_pidns {
            true => self.in_sandbox_pidns(spec, holder.as_ref())?,
            false => own_pid_namespace(spec)?,
        };
        let spec = self.with_devices(spec, &devices).await?;
        // Claimed first, as Kata's agent does: on any error below they are closed.
        let streams = stdio_ports::claim(self.stdio_connections.as_deref(), stdio).await?;
        let refs = self.storages.acquire(&storages, Some(id)).await?;
        let termination_log = diagnostic::termination_log_of(&spec);
        match self.containers.create(id, exec_id, spec).await {
            Ok(container) => {
                if let Some(log) = termination_log
                    && let Ok(mut logs) = self.termination_logs.lock()
                {
                    logs.insert(id.to_string(), log);
                }
                if let Err(e) = self.containers.carry_stdio(id, "", streams).await {
                    if let Err(undo) = self
                        .remove_container(id, Some(CONTAINER_STOP_TIMEOUT))
                        .await
                    {
                        tracing::warn!(error = %undo, "removing a container whose stdio failed");
                    }
                    return Err(e.into());
                }
                if !refs.is_empty()
                    && let Ok(mut held) = self.container_storages.lock()
                {
                    held.insert(id.to_string(), refs);
                }
                if !name.is_empty()
                    && let Ok(mut names) = self.container_names.lock()
                {
                    names.insert(id.to_string(), name);
                }
                if let Ok(mut all) = self.container_hooks.lock() {
                    all.insert(id.to_string(), hooks.clone());
                }
                let state = self.hook_state(id, "created", container.pid());
                let sharing = self.share_mounts(&shared_mounts, container.pid()).await;
                if let Err(e) = sharing {
                    if let Err(undo) = self
                        .remove_container(id, Some(CONTAINER_STOP_TIMEOUT))
                        .await
                    {
                        tracing::warn!(error = %undo, "removing a container whose shared mounts failed");
                    }
                    return Err(e.into());
                }
                // Guest prestart hooks, then the spec's prestart and createRuntime ones.
                let mut ran = self.hooks().run(HookKind::Prestart, &state).await;
                for kind in [HookKind::Prestart, HookKind::CreateRuntime] {
                    if ran.is_ok() {
                        ran = run_hooks(kind, hooks.hooks.of(kind), &state).await;
                    }
                }
                if let Err(e) = ran {
                    if let Err(undo) = self
                        .remove_container(id, Some(CONTAINER_STOP_TIMEOUT))
                        .await
                    {
                        tracing::warn!(error = %undo, "removing a container whose prestart hook failed");
                    }
                    return Err(e.into());
                }
                if sandbox_pidns
                    && holder.is_none()
                    && let Ok(mut slot) = self.pidns_holder.lock()
                {
                    tracing::info!(
                        container = id,
                        pid = container.pid(),
                        "sandbox pid namespace created"
                    );
                    *slot = Some(PidnsHolder {
                        container: id.to_string(),
                        pid: container.pid(),
                    });
                }
                Ok(())
            }
            Err(e) => {
                if let Err(release) = self.storages.release(&refs).await {
                    tracing::warn!(error = %release, "releasing a failed container's storages");
                }
                Err(e.into())
            }
        }
    }

    /// Gives the container whose init is `pid` the mounts of other containers it asks
    /// for; sources that do not exist (by name) are skipped, as Kata does.
    async fn share_mounts(
        &self,
        mounts: &[SharedMount],
        pid: i32,
    ) -> Result<(), shared_mounts::SharedMountError> {
        let names = self
            .container_names
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default();
        let mut sharings = Vec::new();
        for mount in mounts {
            let source = names
                .iter()
                .find(|(_, name)| **name == mount.src_ctr)
                .and_then(|(id, _)| self.containers.get(id).ok());
            match source {
                Some(source) => sharings.push(shared_mounts::Sharing {
                    mount: mount.clone(),
                    source_pid: source.pid(),
                }),
                None => tracing::warn!(name = %mount.name, src_ctr = %mount.src_ctr,
                    "shared mount skipped: no container of that name"),
            }
        }
        shared_mounts::share(sharings, pid, shared_mounts::SOURCE_WAIT).await
    }

    /// Waits for each of a container's devices (in turn, each up to the hot-plug timeout)
    /// and gives `spec` their guest numbers.
    async fn with_devices(
        &self,
        mut spec: Spec,
        devices: &[ContainerDevice],
    ) -> Result<Spec, SandboxError> {
        check_in_spec(&spec, devices)?;
        let mut resolved = Vec::with_capacity(devices.len());
        for device in devices {
            resolved.push(device.resolve(&self.devices).await?);
        }
        rewrite_spec(&mut spec, &resolved)?;
        Ok(spec)
    }

    /// Points `spec` at the sandbox-wide PID namespace: a new one for the first container
    /// that asks (it becomes the holder), the holder's for every later one.
    fn in_sandbox_pidns(
        &self,
        spec: Spec,
        holder: Option<&PidnsHolder>,
    ) -> Result<Spec, SandboxError> {
        if !self.info().is_some_and(|info| info.sandbox_pidns) {
            return Err(SandboxError::NoSandboxPidns);
        }
        let path = match holder {
            None => None,
            Some(holder) => {
                let path = PathBuf::from(format!("/proc/{}/ns/pid", holder.pid));
                if !path.exists() {
                    return Err(SandboxError::SandboxPidnsEnded {
                        holder: holder.container.clone(),
                    });
                }
                Some(path)
            }
        };
        with_pid_namespace(spec, path)
    }

    /// `StartContainer`: starts the workload (its `startContainer` hooks run right before
    /// it), then runs the guest and spec poststart hooks (whose failures are logged, as
    /// OCI says).
    pub async fn start_container(&self, id: &str) -> Result<(), SandboxError> {
        self.containers.start(id).await?;
        let pid = self.containers.get(id).map(|c| c.pid()).unwrap_or(0);
        let state = self.hook_state(id, "running", pid);
        if let Err(e) = self.hooks().run(HookKind::Poststart, &state).await {
            tracing::warn!(container = id, error = %e, "poststart hook");
        }
        let spec_hooks = self.spec_hooks(id, HookKind::Poststart);
        if let Err(e) = run_hooks(HookKind::Poststart, &spec_hooks, &state).await {
            tracing::warn!(container = id, error = %e, "poststart hook");
        }
        Ok(())
    }

    fn hooks(&self) -> GuestHooks {
        self.hooks.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Container `id`'s spec hooks of `kind`.
    fn spec_hooks(&self, id: &str, kind: HookKind) -> Vec<hull_container::hooks::HookPlan> {
        self.container_hooks
            .lock()
            .ok()
            .and_then(|all| all.get(id).map(|c| c.hooks.of(kind).to_vec()))
            .unwrap_or_default()
    }

    fn hook_state(&self, id: &str, status: &str, pid: i32) -> HookState {
        let annotations = self
            .container_hooks
            .lock()
            .ok()
            .and_then(|all| all.get(id).map(|c| c.annotations.clone()))
            .unwrap_or_default();
        HookState {
            oci_version: OCI_VERSION.into(),
            id: id.into(),
            status: status.into(),
            pid,
            bundle: self.bundle_base.join(id),
            annotations,
        }
    }

    /// `RemoveContainer`: removes the container, runs the guest and spec poststop hooks
    /// (whose failures are logged), then releases its storages.
    pub async fn remove_container(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<(), SandboxError> {
        self.containers.remove(id, timeout).await?;
        if let Ok(mut names) = self.container_names.lock() {
            names.remove(id);
        }
        if let Ok(mut logs) = self.termination_logs.lock() {
            logs.remove(id);
        }
        let state = self.hook_state(id, "stopped", 0);
        if let Err(e) = self.hooks().run(HookKind::Poststop, &state).await {
            tracing::warn!(container = id, error = %e, "poststop hook");
        }
        let spec_hooks = self.spec_hooks(id, HookKind::Poststop);
        if let Err(e) = run_hooks(HookKind::Poststop, &spec_hooks, &state).await {
            tracing::warn!(container = id, error = %e, "poststop hook");
        }
        if let Ok(mut all) = self.container_hooks.lock() {
            all.remove(id);
        }
        let refs = self
            .container_storages
            .lock()
            .ok()
            .and_then(|mut held| held.remove(id));
        if let Some(refs) = refs {
            self.storages.release(&refs).await?;
        }
        // A container's life allocated most of what the agent holds (its spec, stdio
        // buffers, the helper's messages): give the freed pages back to the guest.
        crate::allocator::release_free_memory();
        Ok(())
    }

    /// `GetDiagnosticData`'s `termination_log`: the container's termination message.
    pub fn termination_log(&self, id: &str) -> Result<String, SandboxError> {
        self.containers.get(id)?;
        let log = self
            .termination_logs
            .lock()
            .ok()
            .and_then(|logs| logs.get(id).cloned());
        Ok(diagnostic::container_termination_log(id, log.as_ref())?)
    }

    /// The memory agent.
    pub fn mem_agent(&self) -> &MemAgent {
        &self.mem_agent
    }

    /// The same sandbox with `network` (settings from the agent's configuration).
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Onlines hot-plugged vCPUs and memory, and adds memory by probe.
    pub fn cpu_mem(&self) -> &CpuMem {
        &self.cpu_mem
    }

    /// The guest's network (the agent's own network namespace).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The storages in use; containers acquire and release theirs here.
    pub fn storages(&self) -> &Storages {
        &self.storages
    }

    /// What CreateSandbox recorded; `None` before it.
    pub fn info(&self) -> Option<SandboxInfo> {
        self.info.lock().ok().and_then(|info| info.clone())
    }

    /// `CreateSandbox`: checks the request whole, then sets the sandbox up: storages,
    /// DNS, the pod's IPC and UTS namespaces, the hostname, in that order; on an error,
    /// what was done is undone (the hostname, last, cannot fail half-way).
    pub async fn create(&self, request: &SandboxRequest) -> Result<(), SandboxError> {
        let spec = SandboxSpec::check(request, &self.storages)?;
        let mut lifecycle = self.lifecycle.lock().await;
        if lifecycle.destroying || self.destroying.load(Ordering::SeqCst) {
            return Err(SandboxError::SandboxDestroyed);
        }
        if lifecycle.created {
            return Err(SandboxError::SandboxExists {
                id: self.info().map(|i| i.id).unwrap_or_default(),
            });
        }
        let storages = self.storages.acquire(&spec.storages, None).await?;
        let undo_storages = |storages: Vec<StorageRef>| async move {
            if let Err(e) = self.storages.release(&storages).await {
                tracing::warn!(error = %e, "undoing the sandbox's storages");
            }
        };
        if !spec.dns.is_empty() {
            let installed = match self.storages.root().await {
                Ok(root) => dns::install_dns(&root, &spec.dns, Path::new(dns::RESOLV_CONF)),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = installed {
                undo_storages(storages).await;
                return Err(e);
            }
        }
        // The pod's IPC and UTS namespaces (the latter with the hostname), then the
        // guest's own hostname, as Kata's agent.
        let pod = PodNamespaces::create(spec.hostname.as_deref()).map_err(SandboxError::from);
        let set_up = match (&pod, &spec.hostname) {
            (Err(_), _) | (Ok(_), None) => pod,
            (Ok(_), Some(hostname)) => hostname::set_hostname(hostname).and(pod),
        };
        let pod = match set_up {
            Ok(pod) => pod,
            Err(e) => {
                if !spec.dns.is_empty()
                    && let Err(e) = dns::remove_dns(Path::new(dns::RESOLV_CONF))
                {
                    tracing::warn!(error = %e, "undoing DNS");
                }
                undo_storages(storages).await;
                return Err(e);
            }
        };
        if let Ok(mut slot) = self.pod_namespaces.lock() {
            *slot = Some(pod);
        }
        lifecycle.created = true;
        self.lost.store(false, Ordering::SeqCst);
        lifecycle.storages = storages;
        lifecycle.dns_installed = !spec.dns.is_empty();
        let info = SandboxInfo {
            id: spec.id,
            hostname: spec.hostname,
            sandbox_pidns: spec.sandbox_pidns,
            guest_hook_path: spec.guest_hook_path,
        };
        if let Some(path) = &info.guest_hook_path {
            // As Kata's agent does: hooks that cannot be read are logged, not fatal.
            match GuestHooks::load(path) {
                Ok(hooks) => {
                    if let Ok(mut slot) = self.hooks.lock() {
                        *slot = hooks;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "guest hooks not loaded"),
            }
        }
        tracing::info!(
            ?info,
            storages = lifecycle.storages.len(),
            "sandbox created"
        );
        if let Ok(mut slot) = self.info.lock() {
            *slot = Some(info);
        }
        Ok(())
    }

    /// Ends the sandbox: unmounts every storage (newest first) and the DNS file, then the
    /// agent stops serving and exits with status 0, which hull-init takes as the request
    /// to power the VM off. A failed unmount is logged, never a reason to keep the VM
    /// running; neither is a teardown that does not finish within 10 s.
    ///
    /// The teardown runs as a task of its own: were one of its system calls to block its
    /// worker thread, the answer would still come when the time is up, from another.
    pub async fn destroy(self: &Arc<Self>) -> Result<(), SandboxError> {
        if self.destroying.swap(true, Ordering::SeqCst) {
            return Err(SandboxError::AlreadyDestroying);
        }
        let sandbox = Arc::clone(self);
        let teardown = tokio::spawn(async move { sandbox.teardown().await });
        if tokio::time::timeout(self.teardown_timeout, teardown)
            .await
            .is_err()
        {
            tracing::error!(
                timeout = ?self.teardown_timeout,
                "the sandbox's teardown did not finish; the agent exits anyway"
            );
        }
        self.shutdown.send_replace(true);
        Ok(())
    }

    async fn teardown(&self) {
        let mut lifecycle = self.lifecycle.lock().await;
        lifecycle.destroying = true;
        // Containers are stopped before their storages go.
        for id in self.containers.ids() {
            if let Err(e) = self
                .remove_container(&id, Some(CONTAINER_STOP_TIMEOUT))
                .await
            {
                tracing::warn!(container = %id, error = %e, "removing a container at the sandbox's end");
            }
        }
        // The containers have left the pod's namespaces: closing them ends them.
        if let Ok(mut slot) = self.pod_namespaces.lock() {
            slot.take();
        }
        let failures = self.storages.release_all().await;
        lifecycle.storages.clear();
        if lifecycle.dns_installed
            && let Err(e) = dns::remove_dns(Path::new(dns::RESOLV_CONF))
        {
            tracing::warn!(error = %e, "removing DNS at the sandbox's end");
        }
        tracing::info!(unmount_failures = failures.len(), "sandbox torn down");
    }

    /// Resolves once [`Sandbox::destroy`] has been called.
    pub async fn destroyed(&self) {
        let mut rx = self.shutdown.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(|destroyed| *destroyed).await;
    }

    /// `ExecProcess`: runs `process` in container `id`'s namespaces and cgroup, its
    /// streams named in `stdio` carried on their vsock connections.
    pub async fn exec_process(
        &self,
        id: &str,
        exec_id: &str,
        process: &OciProcess,
        stdio: StdioPorts,
    ) -> Result<(), SandboxError> {
        // The process starts from the container's root: a root that does not answer
        // would hold the exec for the helper's whole setup timeout.
        let rootfs = self.containers.get(id)?.rootfs().to_path_buf();
        if !answers_within(rootfs.clone(), ROOTFS_ANSWER_TIMEOUT).await {
            return Err(SandboxError::Unresponsive {
                path: rootfs,
                timeout: ROOTFS_ANSWER_TIMEOUT,
            });
        }
        let streams = stdio_ports::claim(self.stdio_connections.as_deref(), stdio).await?;
        self.containers.exec(id, exec_id, process).await?;
        if let Err(e) = self.containers.carry_stdio(id, exec_id, streams).await {
            // Without its stdio the process is of no use to the runtime.
            let _ = self.containers.signal(id, exec_id, Signal::SIGKILL);
            return Err(e.into());
        }
        Ok(())
    }

    /// `SignalProcess`: an empty `exec_id` signals every process of the container.
    pub fn signal_process(
        &self,
        id: &str,
        exec_id: &str,
        signal: Signal,
    ) -> Result<(), SandboxError> {
        Ok(self.containers.signal(id, exec_id, signal)?)
    }

    /// `WaitProcess`: the exit status once the process has been reaped.
    pub async fn wait_process(&self, id: &str, exec_id: &str) -> Result<ExitStatus, SandboxError> {
        Ok(self.containers.wait(id, exec_id).await?)
    }

    /// `UpdateContainer`: new cgroup limits; `None` changes nothing (the container must
    /// exist all the same).
    pub fn update_container(
        &self,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<(), SandboxError> {
        match resources {
            Some(resources) => Ok(self.containers.update(id, resources)?),
            None => self.containers.get(id).map(drop).map_err(Into::into),
        }
    }

    /// `StatsContainer`: the container's cgroup statistics.
    pub fn container_stats(&self, id: &str) -> Result<ContainerStats, SandboxError> {
        Ok(self.containers.stats(id)?)
    }

    /// `PauseContainer`: freezes the container's cgroup.
    pub fn pause_container(&self, id: &str) -> Result<(), SandboxError> {
        Ok(self.containers.pause(id)?)
    }

    /// `ResumeContainer`: thaws it.
    pub fn resume_container(&self, id: &str) -> Result<(), SandboxError> {
        Ok(self.containers.resume(id)?)
    }

    /// `WriteStdin`: writes `data` to a process's stdin; answers how much was taken.
    pub async fn write_stdin(
        &self,
        id: &str,
        exec_id: &str,
        data: &[u8],
    ) -> Result<usize, SandboxError> {
        let process = self.containers.process(id, exec_id)?;
        Ok(process.io.write(data).await?)
    }

    /// `CloseStdin`: the process reads end of file.
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), SandboxError> {
        let process = self.containers.process(id, exec_id)?;
        Ok(process.io.close_stdin().await?)
    }

    /// `ReadStdout`/`ReadStderr`: up to `len` bytes of a process's output; empty at the
    /// end of the stream.
    pub async fn read_output(
        &self,
        id: &str,
        exec_id: &str,
        stream: OutputStream,
        len: usize,
    ) -> Result<Vec<u8>, SandboxError> {
        let process = self.containers.process(id, exec_id)?;
        Ok(process.io.read(stream == OutputStream::Stderr, len).await?)
    }

    /// `TtyWinResize`: the size of a process's terminal.
    pub fn resize_tty(
        &self,
        id: &str,
        exec_id: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), SandboxError> {
        let process = self.containers.process(id, exec_id)?;
        Ok(process.io.resize(rows, cols)?)
    }

    /// `GetOOMEvent`: waits for the next OOM kill in any container; answers its id.
    pub async fn next_oom_event(&self) -> String {
        self.containers.next_oom_event().await
    }
}

/// `spec` with exactly one PID namespace entry: joining `path`, or new when `None`.
/// As Kata's agent: a container whose spec lists no PID namespace gets a new one (both
/// Kata runtimes take it out of the spec and say `sandbox_pidns` instead), never the
/// guest's; one the spec lists, new or joined by path, is kept.
fn own_pid_namespace(spec: Spec) -> Result<Spec, SandboxError> {
    use oci_spec::runtime::LinuxNamespaceType;
    let Some(linux) = spec.linux() else {
        // Refused below, naming the missing section.
        return Ok(spec);
    };
    let listed = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|ns| ns.typ() == LinuxNamespaceType::Pid);
    if listed {
        Ok(spec)
    } else {
        with_pid_namespace(spec, None)
    }
}

fn with_pid_namespace(mut spec: Spec, path: Option<PathBuf>) -> Result<Spec, SandboxError> {
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, LinuxNamespaceType};
    let invalid = SandboxError::PidNamespace;
    let mut builder = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Pid);
    if let Some(path) = path {
        builder = builder.path(path);
    }
    let pid_ns = builder.build().map_err(invalid)?;
    let mut linux = match spec.linux().clone() {
        Some(linux) => linux,
        None => LinuxBuilder::default().build().map_err(invalid)?,
    };
    let mut namespaces: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| ns.typ() != LinuxNamespaceType::Pid)
        .collect();
    namespaces.push(pid_ns);
    linux.set_namespaces(Some(namespaces));
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn destroy_wakes_the_waiter_once() {
        let sandbox = std::sync::Arc::new(Sandbox::default());
        let waiter = tokio::spawn({
            let sandbox = sandbox.clone();
            async move { sandbox.destroyed().await }
        });
        sandbox.destroy().await.unwrap();
        waiter.await.unwrap();
        assert!(matches!(
            sandbox.destroy().await,
            Err(SandboxError::AlreadyDestroying)
        ));
    }

    /// A sandbox whose directory is a temporary one (nothing here mounts).
    fn sandbox(dir: &tempfile::TempDir) -> Sandbox {
        Sandbox::with_config(&AgentConfig {
            run_dir: dir.path().join("run"),
            ..AgentConfig::default()
        })
    }

    fn spec(id: &str) -> SandboxRequest {
        SandboxRequest {
            id: id.into(),
            sandbox_pidns: true,
            guest_hook_path: "/hooks".into(),
            ..SandboxRequest::default()
        }
    }

    #[tokio::test]
    async fn create_records_the_sandbox_once() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = sandbox(&dir);
        assert_eq!(sandbox.info(), None);
        sandbox.create(&spec("sb-1")).await.unwrap();
        let info = sandbox.info().unwrap();
        assert_eq!(info.id, "sb-1");
        assert!(info.sandbox_pidns);
        assert_eq!(info.guest_hook_path.as_deref(), Some(Path::new("/hooks")));
        let err = sandbox.create(&spec("sb-2")).await.unwrap_err();
        assert!(matches!(err, SandboxError::SandboxExists { .. }));
        assert!(err.to_string().contains("sb-1"), "{err}");
        assert_eq!(sandbox.info().unwrap().id, "sb-1");
    }

    #[tokio::test]
    async fn the_pods_namespaces_live_from_create_to_destroy() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Arc::new(sandbox(&dir));
        sandbox.create(&spec("sb-ns")).await.unwrap();
        let path = |sandbox: &Sandbox| {
            let pod = sandbox.pod_namespaces.lock().unwrap();
            pod.as_ref()
                .and_then(|pod| pod.path(oci_spec::runtime::LinuxNamespaceType::Ipc))
        };
        let ipc = path(&sandbox).expect("made at CreateSandbox");
        assert!(ipc.exists(), "{}", ipc.display());
        sandbox.destroy().await.unwrap();
        assert_eq!(path(&sandbox), None, "closed at DestroySandbox");
    }

    #[tokio::test]
    async fn nothing_is_created_after_destroy() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Arc::new(sandbox(&dir));
        sandbox.destroy().await.unwrap();
        let err = sandbox.create(&spec("late")).await.unwrap_err();
        assert!(matches!(err, SandboxError::SandboxDestroyed));
        assert!(!dir.path().join("run").exists(), "no storage, no directory");
    }

    #[tokio::test]
    async fn a_stuck_teardown_does_not_keep_the_sandbox_alive() {
        let dir = tempfile::tempdir().unwrap();
        let mut sandbox = sandbox(&dir);
        sandbox.teardown_timeout = Duration::from_millis(100);
        let sandbox = std::sync::Arc::new(sandbox);
        // Something (a mount waiting on a dead virtiofsd) holds the sandbox.
        let held = sandbox.lifecycle.lock().await;
        sandbox.destroy().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), sandbox.destroyed())
            .await
            .expect("destroyed despite the stuck teardown");
        assert!(matches!(
            sandbox.destroy().await,
            Err(SandboxError::AlreadyDestroying)
        ));
        drop(held);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_teardown_blocked_in_its_thread_still_lets_destroy_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut sandbox = sandbox(&dir);
        sandbox.teardown_timeout = Duration::from_millis(200);
        let sandbox = Arc::new(sandbox);
        // A thread holds the pod namespaces' lock (a std mutex): the teardown blocks the
        // thread it runs on, as a system call that does not return would.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let sandbox = Arc::clone(&sandbox);
            std::thread::spawn(move || {
                let _guard = sandbox.pod_namespaces.lock().unwrap();
                held_tx.send(()).unwrap();
                let _ = release_rx.recv();
            })
        };
        held_rx.recv().unwrap();
        let destroying = {
            let sandbox = Arc::clone(&sandbox);
            tokio::spawn(async move { sandbox.destroy().await })
        };
        let answered = tokio::time::timeout(Duration::from_secs(5), destroying).await;
        release_tx.send(()).unwrap();
        holder.join().unwrap();
        answered
            .expect("DestroySandbox answers while its teardown is blocked")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_failed_storage_leaves_the_sandbox_uncreated() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = sandbox(&dir);
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("run/out")).unwrap();
        let local = StorageRequest {
            driver: "local".into(),
            mount_point: dir.path().join("run/out/tmp/x").display().to_string(),
            ..Default::default()
        };
        let err = sandbox
            .create(&SandboxRequest {
                storages: vec![local],
                ..spec("sb")
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("resolves outside"), "{err}");
        assert_eq!(sandbox.info(), None);
        // The request can be made again, corrected.
        sandbox.create(&spec("sb")).await.unwrap();
    }

    #[test]
    fn an_update_without_resources_changes_nothing_but_needs_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let err = sandbox(&dir).update_container("nope", None).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn a_spec_without_a_pid_namespace_gets_its_own_as_in_kata() {
        use oci_spec::runtime::LinuxNamespaceType;
        let spec = |namespaces: serde_json::Value| -> Spec {
            serde_json::from_value(serde_json::json!({
                "ociVersion": "1.0.2",
                "linux": {"namespaces": namespaces},
            }))
            .unwrap()
        };
        let pid = |spec: &Spec| {
            spec.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .iter()
                .flatten()
                .filter(|ns| ns.typ() == LinuxNamespaceType::Pid)
                .map(|ns| ns.path().clone())
                .collect::<Vec<_>>()
        };
        // Both runtimes leave the PID namespace out: a new one.
        let given = own_pid_namespace(spec(serde_json::json!([{"type": "mount"}]))).unwrap();
        assert_eq!(pid(&given), [None]);
        let given = own_pid_namespace(spec(serde_json::Value::Null)).unwrap();
        assert_eq!(pid(&given), [None]);
        // One the spec lists is kept as it is.
        let joined = serde_json::json!([{"type": "pid", "path": "/proc/1/ns/pid"}]);
        let kept = own_pid_namespace(spec(joined)).unwrap();
        assert_eq!(pid(&kept), [Some(PathBuf::from("/proc/1/ns/pid"))]);
        // Without a linux section the spec is refused later, naming the section.
        let bare: Spec =
            serde_json::from_value(serde_json::json!({"ociVersion": "1.0.2"})).unwrap();
        assert!(own_pid_namespace(bare).unwrap().linux().is_none());
    }
}

//! Requests shaped as Kata's two runtimes build them, so hull can be shown to take them
//! unchanged: the Go runtime (`containerd-shim-kata-v2`, `virtcontainers/kata_agent.go`)
//! and the Rust one (`runtime-rs`, whose protobuf comes from Kata's `protocols/trans.rs`).
//! The agent's host tests and the VM test `kata_forms` share these builders.
//!
//! Both start from what CRI (containerd) hands a runtime for a pod's container: the
//! bundle's Kata-style spec ([`ContainerSpec`]) with CRI's annotations, a cgroup path, CPU
//! shares, an empty memory section, a deny-all device rule, a network namespace by path
//! and a cgroup namespace, and the pod's `/etc/hostname`, `/etc/hosts` and
//! `/etc/resolv.conf` bound from files the runtime shared into the guest
//! ([`SharedFile`]). Then each runtime does its own:
//!
//! | | Go runtime | runtime-rs |
//! |---|---|---|
//! | namespaces | PID taken out (`sandbox_pidns` if it had a path), network, cgroup and time dropped, paths cleared; OCI names (`mount`) | PID, network and time dropped, paths cleared; oci-spec's names (`mnt`) |
//! | capabilities | `CAP_CHOWN` | `CHOWN` |
//! | `/dev/shm` | bind (`rbind`) of the sandbox's shm, [`GUEST_SANDBOX_SHM`] | the same |
//! | resources | device rules, pids, block I/O, network cleared; `cpus`/`mems` emptied | device rules, pids, block I/O, network cleared |
//! | hooks, seccomp | none sent (`disable_guest_seccomp` is the default) | only `startContainer` hooks kept; seccomp off by default too |
//! | annotations | CRI's | CRI's plus `io.katacontainers.pkg.oci.container_type` and `.bundle_path` |
//! | `exec_id` of CreateContainer | the container's id | empty |
//! | ExecProcess | terminal, user ids, args, env, cwd: no capabilities | the whole exec process, capabilities without `CAP_` |
//! | UpdateContainer | always resources (possibly all empty), `cpus`/`mems` emptied | resources or none |
//! | CopyFile (no file sharing) | `Lstat`'s whole mode, Go's `DirMode` (0750 with `os.ModeDir`'s bit 31), 1 MiB chunks at offsets | the file's whole mode, no `dir_mode`, the file in one request |
//! | a hot-plugged disk | `Device` `blk`, its PCI path as `id` | the same |
//! | UpdateInterface | device and name, addresses, MTU, MAC, the endpoint's type (`virtual` for a veth pair), `IFF_NOARP` of the flags, the NIC's PCI path | the same but the host link's kind (`veth`) as type and no PCI path (found by MAC) |
//! | UpdateRoutes | each route with the device, family, scope, flags | the same |
//! | OnlineCPUMem after growing the VM | twice: the new vCPU total with `cpu_only`, then 0 CPUs for memory; `wait` false | once: the vCPU total, CPUs and memory; `wait` false |

use anyhow::{Context, Result};
use hull_protocols::agent::{
    CopyFileRequest, CreateContainerRequest, CreateSandboxRequest, Device, ExecProcessRequest,
    OnlineCPUMemRequest, Storage, UpdateContainerRequest,
};
use hull_protocols::oci;
use hull_protocols::oci_json;
use hull_protocols::oci_spec::runtime::{Capability, LinuxNamespaceType, LinuxResources};
use hull_protocols::types::{IPAddress, IPFamily, Interface, Route};
use serde_json::{Value, json};

use crate::bundle::{ContainerSpec, SHARED_FS_TAG, guest_rootfs};
use crate::guest::shared_fs_storage;

/// Where Kata's runtimes have the sandbox's `/dev/shm` mounted (an `ephemeral` storage
/// of CreateSandbox) and bind every container's `/dev/shm` from.
pub const GUEST_SANDBOX_SHM: &str = "/run/kata-containers/sandbox/shm";
/// The sandbox's shm size (Kata's default `DefaultShmSize` is 64 MiB).
pub const SANDBOX_SHM_SIZE: u64 = 64 << 20;
/// The pod's cgroup parent, as the kubelet names a BestEffort pod's.
const POD_CGROUP: &str = "/kubepods/besteffort/podhull";

/// One of Kata's two runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KataRuntime {
    /// `containerd-shim-kata-v2`, Go.
    Go,
    /// `runtime-rs`, Rust.
    Rust,
}

/// A file the runtime shares into the guest and binds into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    /// Where the container sees it (`/etc/hosts`).
    pub destination: String,
    /// Where it is in the guest: in the share, as `<share>/<container>-<random>-<name>`.
    pub guest_path: String,
}

impl SharedFile {
    /// The pod's `/etc/<name>` for container `id`, named in the share as Kata names it;
    /// the host file is `<share>/`[`SharedFile::share_name`].
    pub fn pod_file(id: &str, name: &str) -> Self {
        Self {
            destination: format!("/etc/{name}"),
            guest_path: format!(
                "{}/{}",
                crate::bundle::GUEST_SHARED_DIR,
                Self::share_name(id, name)
            ),
        }
    }

    /// The file's name in the shared directory.
    pub fn share_name(id: &str, name: &str) -> String {
        format!("{id}-5f1e0c2a9b7d4e31-{name}")
    }

    /// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` of container `id`.
    pub fn pod_files(id: &str) -> Vec<Self> {
        ["hostname", "hosts", "resolv.conf"]
            .iter()
            .map(|name| Self::pod_file(id, name))
            .collect()
    }
}

/// CreateSandbox as both runtimes send it for a pod: the virtio-fs share and the
/// sandbox's shm (`ephemeral`, tmpfs at [`GUEST_SANDBOX_SHM`]).
pub fn sandbox_request(sandbox_id: &str, hostname: &str) -> CreateSandboxRequest {
    let shm = Storage {
        driver: "ephemeral".into(),
        source: "shm".into(),
        fstype: "tmpfs".into(),
        options: ["noexec", "nosuid", "nodev", "mode=1777"]
            .iter()
            .map(|o| o.to_string())
            .chain([format!("size={SANDBOX_SHM_SIZE}")])
            .collect(),
        mount_point: GUEST_SANDBOX_SHM.into(),
        ..Default::default()
    };
    CreateSandboxRequest {
        sandbox_id: sandbox_id.into(),
        hostname: hostname.into(),
        storages: vec![shared_fs_storage(SHARED_FS_TAG), shm],
        ..Default::default()
    }
}

/// The Go runtime's `DirMode` as CopyFile carries it: `os.FileMode(0750) | os.ModeDir`
/// (Go's directory bit is bit 31, not `S_IFDIR`).
pub const GO_COPY_FILE_DIR_MODE: u32 = (1 << 31) | 0o750;
/// The Go runtime's CopyFile chunk (`grpcMaxDataSize`).
pub const GO_COPY_FILE_CHUNK: usize = 1 << 20;

/// The `Device` both runtimes send for a virtio-blk disk hot-plugged at `pci_path`, seen
/// at `container_path` in the container.
pub fn blk_device(pci_path: &str, container_path: &str) -> Device {
    Device {
        id: pci_path.into(),
        type_: "blk".into(),
        container_path: container_path.into(),
        ..Default::default()
    }
}

/// `request` with the disk at `pci_path` given to its container at `container_path`,
/// as both runtimes give it: the `Device`, and the spec's `linux.devices` entry under the
/// host's numbers `host` (the agent puts the guest's in), no cgroup rule (both runtimes
/// clear those).
pub fn with_blk_device(
    mut request: CreateContainerRequest,
    pci_path: &str,
    container_path: &str,
    host: (i64, i64),
) -> CreateContainerRequest {
    request.devices.push(blk_device(pci_path, container_path));
    let linux = request
        .OCI
        .mut_or_insert_default()
        .Linux
        .mut_or_insert_default();
    linux.Devices.push(oci::LinuxDevice {
        Path: container_path.into(),
        Type: "b".into(),
        Major: host.0,
        Minor: host.1,
        FileMode: 0o660,
        ..Default::default()
    });
    request
}

/// The `config.json` CRI gives the runtime for container `id` (see the module
/// documentation), its rootfs already in the guest's share.
fn cri_config(id: &str, spec: &ContainerSpec, shared: &[SharedFile]) -> Value {
    let mut config = spec.config_json(&guest_rootfs(id));
    config["annotations"] = json!({
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.container-name": id,
        "io.kubernetes.cri.sandbox-id": "hull-sandbox",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.image-name": "docker.io/library/busybox:latest",
    });
    let linux = &mut config["linux"];
    linux["cgroupsPath"] = json!(format!("{POD_CGROUP}/{id}"));
    if let Some(namespaces) = linux["namespaces"].as_array_mut() {
        namespaces.push(json!({"type": "network", "path": "/var/run/netns/cni-hull"}));
        namespaces.push(json!({"type": "cgroup"}));
    }
    let mut resources = linux["resources"].take();
    if resources.is_null() {
        resources = json!({});
    }
    resources["devices"] = json!([{"allow": false, "access": "rwm"}]);
    resources["cpu"] = json!({"shares": 2, "period": 100000});
    if resources["memory"].is_null() {
        resources["memory"] = json!({});
    }
    linux["resources"] = resources;
    if let Some(mounts) = config["mounts"].as_array_mut() {
        for file in shared {
            mounts.push(json!({
                "destination": file.destination,
                "type": "bind",
                "source": file.guest_path,
                "options": ["rbind", "rprivate", "rw"],
            }));
        }
    }
    config
}

/// Both runtimes bind the container's `/dev/shm` from the sandbox's.
fn bind_sandbox_shm(config: &mut Value) {
    for mount in config["mounts"].as_array_mut().into_iter().flatten() {
        if mount["destination"] == "/dev/shm" {
            *mount = json!({
                "destination": "/dev/shm",
                "type": "bind",
                "source": GUEST_SANDBOX_SHM,
                "options": ["rbind"],
            });
        }
    }
}

fn to_proto(config: &Value) -> Result<oci::Spec> {
    let spec = oci_json::spec_from_config_json(config.to_string().as_bytes())?;
    Ok(oci_json::spec_to_proto(&spec)?)
}

/// runtime-rs writes oci-spec's `to_string()` where Go writes OCI's JSON names: short
/// namespace types, capabilities without `CAP_`.
fn rust_spelling_of_namespace(name: &str) -> Result<String> {
    let typ = LinuxNamespaceType::try_from(name).context("a namespace type")?;
    Ok(typ.to_string())
}

fn rust_spelling_of_capability(name: &str) -> Result<String> {
    let cap: Capability = serde_json::from_value(json!(name)).context("a capability")?;
    Ok(cap.to_string())
}

fn rust_spelling_of_process(process: &mut oci::Process) -> Result<()> {
    if let Some(caps) = process.Capabilities.as_mut() {
        for set in [
            &mut caps.Bounding,
            &mut caps.Effective,
            &mut caps.Inheritable,
            &mut caps.Permitted,
            &mut caps.Ambient,
        ] {
            for name in set.iter_mut() {
                *name = rust_spelling_of_capability(name)?;
            }
        }
    }
    Ok(())
}

impl KataRuntime {
    /// Both, Go first.
    pub const BOTH: [Self; 2] = [Self::Go, Self::Rust];

    /// `go` or `rust`, for container ids and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Go => "go",
            Self::Rust => "rust",
        }
    }

    /// CreateContainer for container `id` running `spec`, with the pod files `shared`.
    pub fn create_container(
        self,
        id: &str,
        spec: &ContainerSpec,
        shared: &[SharedFile],
    ) -> Result<CreateContainerRequest> {
        self.create_container_with_hooks(id, spec, shared, Value::Null)
    }

    /// CreateSandbox for a pod named `hostname` with `dns` lines: the share and the
    /// sandbox's shm; neither runtime asks for the sandbox PID namespace unless the pod
    /// shares its process namespace (the Go runtime's `sharePidNs`, runtime-rs never at
    /// CreateSandbox).
    pub fn create_sandbox(
        self,
        sandbox_id: &str,
        hostname: &str,
        dns: &[&str],
    ) -> CreateSandboxRequest {
        CreateSandboxRequest {
            dns: dns.iter().map(|l| l.to_string()).collect(),
            sandbox_pidns: false,
            ..sandbox_request(sandbox_id, hostname)
        }
    }

    /// UpdateInterface for the pod's veth endpoint `name` behind the NIC with `mac` at
    /// `pci_path`, with `address`/`prefix_len` (IPv4) and MTU 1500.
    pub fn update_interface(
        self,
        name: &str,
        mac: &str,
        pci_path: &str,
        address: &str,
        prefix_len: u8,
    ) -> Interface {
        let (type_, device_path) = match self {
            Self::Go => ("virtual", pci_path),
            Self::Rust => ("veth", ""),
        };
        Interface {
            device: name.into(),
            name: name.into(),
            IPAddresses: vec![IPAddress {
                family: IPFamily::v4.into(),
                address: address.into(),
                mask: prefix_len.to_string(),
                ..Default::default()
            }],
            mtu: 1500,
            hwAddr: mac.into(),
            devicePath: device_path.into(),
            type_: type_.into(),
            raw_flags: 0,
            ..Default::default()
        }
    }

    /// UpdateRoutes' default route through `gateway` on `device` (both runtimes alike).
    pub fn default_route(self, gateway: &str, device: &str) -> Route {
        Route {
            gateway: gateway.into(),
            device: device.into(),
            family: IPFamily::v4.into(),
            ..Default::default()
        }
    }

    /// OnlineCPUMem once the VM was grown to `cpus` vCPUs and given memory: the Go
    /// runtime's `updateResources` onlines the CPUs (`cpu_only`, the new total) and then
    /// the memory (0 CPUs); runtime-rs's `update_linux_resource` asks once for both.
    pub fn online_cpu_mem(self, cpus: u32) -> Vec<OnlineCPUMemRequest> {
        let request = |nb_cpus, cpu_only| OnlineCPUMemRequest {
            wait: false,
            nb_cpus,
            cpu_only,
            ..Default::default()
        };
        match self {
            Self::Go => vec![request(cpus, true), request(0, false)],
            Self::Rust => vec![request(cpus, false)],
        }
    }

    /// CopyFile of a regular file (`mode`, e.g. 0o644, owned by root) with `data` to
    /// `guest_path`, as each runtime sends it when the VMM shares no file system.
    pub fn copy_file(self, guest_path: &str, data: &[u8], mode: u32) -> Vec<CopyFileRequest> {
        let whole = CopyFileRequest {
            path: guest_path.into(),
            file_size: i64::try_from(data.len()).unwrap_or(i64::MAX),
            file_mode: libc::S_IFREG | mode,
            ..Default::default()
        };
        match self {
            Self::Go => data
                .chunks(GO_COPY_FILE_CHUNK)
                .enumerate()
                .map(|(i, chunk)| CopyFileRequest {
                    dir_mode: GO_COPY_FILE_DIR_MODE,
                    offset: i64::try_from(i * GO_COPY_FILE_CHUNK).unwrap_or(i64::MAX),
                    data: chunk.to_vec(),
                    ..whole.clone()
                })
                .collect(),
            Self::Rust => vec![CopyFileRequest {
                data: data.to_vec(),
                ..whole
            }],
        }
    }

    /// CreateContainer as [`KataRuntime::create_container`], the CRI spec carrying
    /// `hooks` (its `hooks` object): the Go runtime strips them all (they run on the
    /// host), runtime-rs keeps the `startContainer` ones for the guest.
    pub fn create_container_with_hooks(
        self,
        id: &str,
        spec: &ContainerSpec,
        shared: &[SharedFile],
        hooks: Value,
    ) -> Result<CreateContainerRequest> {
        let mut config = cri_config(id, spec, shared);
        if !hooks.is_null() {
            config["hooks"] = hooks;
        }
        bind_sandbox_shm(&mut config);
        match self {
            Self::Go => go_create_container(id, config),
            Self::Rust => rust_create_container(id, config),
        }
    }

    /// ExecProcess of `spec`'s process as `exec_id` in container `container_id`.
    pub fn exec_process(
        self,
        container_id: &str,
        exec_id: &str,
        spec: &ContainerSpec,
    ) -> Result<ExecProcessRequest> {
        let process = match self {
            // cmdToKataProcess: only these fields, user ids numeric.
            Self::Go => oci::Process {
                Terminal: spec.terminal,
                User: Some(oci::User::default()).into(),
                Args: spec.args.clone(),
                Env: spec.env.clone(),
                Cwd: spec.cwd.clone(),
                ..Default::default()
            },
            // The exec spec containerd sends, through trans.rs.
            Self::Rust => {
                let mut process = spec.process_proto()?;
                rust_spelling_of_process(&mut process)?;
                process
            }
        };
        Ok(ExecProcessRequest {
            container_id: container_id.into(),
            exec_id: exec_id.into(),
            process: Some(process).into(),
            ..Default::default()
        })
    }

    /// UpdateContainer of container `id` to `resources`: the Go runtime always sends
    /// resources (all empty for `None`), runtime-rs none for `None`.
    pub fn update_container(
        self,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<UpdateContainerRequest> {
        let resources = match (self, resources) {
            (Self::Go, resources) => {
                let mut proto = match resources {
                    Some(r) => oci_json::resources_to_proto(r)?,
                    None => oci::LinuxResources::default(),
                };
                if let Some(cpu) = proto.CPU.as_mut() {
                    cpu.Cpus.clear();
                    cpu.Mems.clear();
                }
                Some(proto)
            }
            (Self::Rust, Some(r)) => Some(oci_json::resources_to_proto(r)?),
            (Self::Rust, None) => None,
        };
        Ok(UpdateContainerRequest {
            container_id: id.into(),
            resources: resources.into(),
            ..Default::default()
        })
    }
}

/// `kataAgent.createContainer`: `OCItoGRPC`, `handlePidNamespace`, `constrainGRPCSpec`.
fn go_create_container(id: &str, config: Value) -> Result<CreateContainerRequest> {
    let mut spec = to_proto(&config)?;
    let linux = spec
        .Linux
        .as_mut()
        .context("the spec has no linux section")?;
    let pid = linux.Namespaces.iter().position(|n| n.Type == "pid");
    let sandbox_pidns = pid.is_some_and(|i| !linux.Namespaces[i].Path.is_empty());
    if let Some(i) = pid {
        linux.Namespaces.remove(i);
    }
    spec.Hooks = Default::default();
    let linux = spec
        .Linux
        .as_mut()
        .context("the spec has no linux section")?;
    linux.Seccomp = Default::default();
    let resources = linux
        .Resources
        .as_mut()
        .context("CRI always sets resources")?;
    resources.Devices.clear();
    resources.Pids = Default::default();
    resources.BlockIO = Default::default();
    resources.Network = Default::default();
    if let Some(cpu) = resources.CPU.as_mut() {
        cpu.Cpus.clear();
        cpu.Mems.clear();
    }
    linux
        .Namespaces
        .retain(|n| !matches!(n.Type.as_str(), "cgroup" | "network" | "time"));
    for ns in &mut linux.Namespaces {
        ns.Path.clear();
    }
    if spec
        .Process
        .as_ref()
        .is_some_and(|p| !p.SelinuxLabel.is_empty())
    {
        // disable_guest_selinux, the default.
        if let Some(p) = spec.Process.as_mut() {
            p.SelinuxLabel.clear();
        }
        if let Some(l) = spec.Linux.as_mut() {
            l.MountLabel.clear();
        }
    }
    Ok(CreateContainerRequest {
        container_id: id.into(),
        exec_id: id.into(),
        OCI: Some(spec).into(),
        sandbox_pidns,
        ..Default::default()
    })
}

/// `Container::create` of runtime-rs: annotations, `amend_spec`, volumes, resources,
/// then `trans.rs`'s spelling.
fn rust_create_container(id: &str, mut config: Value) -> Result<CreateContainerRequest> {
    config["annotations"]["io.katacontainers.pkg.oci.container_type"] = json!("pod_container");
    config["annotations"]["io.katacontainers.pkg.oci.bundle_path"] = json!(format!(
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}"
    ));
    if !config["hooks"].is_null() {
        config["hooks"] = json!({"startContainer": config["hooks"]["startContainer"].take()});
    }
    let linux = &mut config["linux"];
    linux["seccomp"].take();
    let namespaces = linux["namespaces"].take();
    let sandbox_pidns = namespaces
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["type"] == "pid" && !n["path"].is_null());
    let kept: Vec<Value> = namespaces
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| !matches!(n["type"].as_str(), Some("pid" | "network" | "time")))
        .map(|n| json!({"type": n["type"]}))
        .collect();
    if !kept.is_empty() {
        linux["namespaces"] = Value::Array(kept);
    }
    if let Some(resources) = linux["resources"].as_object_mut() {
        for cleared in ["devices", "pids", "blockIO", "network"] {
            resources.remove(cleared);
        }
    }
    let mut spec = to_proto(&config)?;
    if let Some(linux) = spec.Linux.as_mut() {
        for ns in &mut linux.Namespaces {
            ns.Type = rust_spelling_of_namespace(&ns.Type)?;
        }
    }
    if let Some(process) = spec.Process.as_mut() {
        rust_spelling_of_process(process)?;
    }
    Ok(CreateContainerRequest {
        container_id: id.into(),
        exec_id: String::new(),
        OCI: Some(spec).into(),
        sandbox_pidns,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaces(req: &CreateContainerRequest) -> Vec<&str> {
        req.OCI
            .Linux
            .Namespaces
            .iter()
            .map(|n| n.Type.as_str())
            .collect()
    }

    #[test]
    fn each_runtime_spells_the_spec_its_way() {
        let spec = ContainerSpec::shell("true");
        let shared = SharedFile::pod_files("c1");
        let go = KataRuntime::Go
            .create_container("c1", &spec, &shared)
            .unwrap();
        let rust = KataRuntime::Rust
            .create_container("c1", &spec, &shared)
            .unwrap();
        assert_eq!(namespaces(&go), ["ipc", "uts", "mount"]);
        assert_eq!(namespaces(&rust), ["ipc", "uts", "mnt", "cgroup"]);
        assert!(!go.sandbox_pidns && !rust.sandbox_pidns);
        assert_eq!((go.exec_id.as_str(), rust.exec_id.as_str()), ("c1", ""));
        let caps = |req: &CreateContainerRequest| req.OCI.Process.Capabilities.Bounding.clone();
        assert!(caps(&go).contains(&"CAP_CHOWN".to_string()));
        assert!(caps(&rust).contains(&"CHOWN".to_string()));
        for req in [&go, &rust] {
            let shm = req
                .OCI
                .Mounts
                .iter()
                .find(|m| m.destination == "/dev/shm")
                .unwrap();
            assert_eq!(
                (shm.type_.as_str(), shm.source.as_str()),
                ("bind", GUEST_SANDBOX_SHM)
            );
            let resources = &req.OCI.Linux.Resources;
            assert!(resources.Devices.is_empty() && resources.Pids.is_none());
            assert_eq!(resources.CPU.Shares, 2);
            assert!(resources.Memory.is_some(), "an all-empty memory section");
            let hosts = req
                .OCI
                .Mounts
                .iter()
                .find(|m| m.destination == "/etc/hosts")
                .unwrap();
            assert!(hosts.source.ends_with("-hosts"), "{}", hosts.source);
        }
        assert!(
            rust.OCI
                .Annotations
                .contains_key("io.katacontainers.pkg.oci.container_type")
        );
        assert!(
            !go.OCI
                .Annotations
                .contains_key("io.katacontainers.pkg.oci.container_type")
        );
    }

    #[test]
    fn copy_file_and_hooks_differ() {
        let data = vec![7u8; GO_COPY_FILE_CHUNK + 10];
        let go = KataRuntime::Go.copy_file("/run/x", &data, 0o644);
        assert_eq!(go.len(), 2);
        assert_eq!((go[1].offset, go[1].data.len()), (1 << 20, 10));
        assert!(go.iter().all(|r| r.dir_mode == GO_COPY_FILE_DIR_MODE
            && r.file_mode == libc::S_IFREG | 0o644
            && r.file_size == data.len() as i64));
        let rust = KataRuntime::Rust.copy_file("/run/x", &data, 0o644);
        assert_eq!((rust.len(), rust[0].dir_mode), (1, 0));
        let hooks = json!({
            "prestart": [{"path": "/bin/p"}],
            "startContainer": [{"path": "/bin/s"}],
        });
        let spec = ContainerSpec::shell("true");
        let go = KataRuntime::Go
            .create_container_with_hooks("c1", &spec, &[], hooks.clone())
            .unwrap();
        assert!(go.OCI.Hooks.is_none() || go.OCI.Hooks.StartContainer.is_empty());
        let rust = KataRuntime::Rust
            .create_container_with_hooks("c1", &spec, &[], hooks)
            .unwrap();
        assert_eq!(rust.OCI.Hooks.StartContainer[0].Path, "/bin/s");
        assert!(rust.OCI.Hooks.Prestart.is_empty());
        let go_online = KataRuntime::Go.online_cpu_mem(2);
        assert_eq!(
            go_online
                .iter()
                .map(|r| (r.nb_cpus, r.cpu_only, r.wait))
                .collect::<Vec<_>>(),
            [(2, true, false), (0, false, false)]
        );
        let rust_online = KataRuntime::Rust.online_cpu_mem(2);
        assert_eq!(
            (
                rust_online.len(),
                rust_online[0].nb_cpus,
                rust_online[0].cpu_only
            ),
            (1, 2, false)
        );
        let with_disk = with_blk_device(rust, "18/00", "/dev/xda", (8, 0));
        assert_eq!(with_disk.devices[0].id, "18/00");
        assert_eq!(with_disk.OCI.Linux.Devices[0].Path, "/dev/xda");
    }

    #[test]
    fn exec_and_update_differ_too() {
        let spec = ContainerSpec::shell("id");
        let go = KataRuntime::Go.exec_process("c1", "e1", &spec).unwrap();
        assert!(go.process.Capabilities.is_none());
        assert_eq!(go.process.Args, ["sh", "-c", "id"]);
        let rust = KataRuntime::Rust.exec_process("c1", "e1", &spec).unwrap();
        assert!(
            rust.process
                .Capabilities
                .Bounding
                .contains(&"KILL".to_string())
        );
        assert!(
            KataRuntime::Go
                .update_container("c1", None)
                .unwrap()
                .resources
                .is_some()
        );
        assert!(
            KataRuntime::Rust
                .update_container("c1", None)
                .unwrap()
                .resources
                .is_none()
        );
    }
}

//! A validated OCI spec, reduced to what the helper carries out: a [`ContainerPlan`].
//!
//! Everything that can be checked without touching the system is checked here, in the
//! agent, so a bad spec fails `CreateContainer` with `INVALID_ARGUMENT` before any process
//! exists: unknown mount options, destinations that climb out of the rootfs, seccomp
//! profiles that cannot be compiled, a hostname without a UTS namespace. The plan is
//! plain data (serde) sent to the helper over its socket.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{
    LinuxDeviceType, LinuxNamespaceType, PosixRlimitType, Process as OciProcess, Spec,
};
use serde::{Deserialize, Serialize};

use super::ContainerError;
use super::hooks::{HookPlan, OciState, SpecHooks};
use super::mount_options::{MountOptions, propagation_flag};
use super::seccomp::{self, SeccompProgram};

/// How the container's namespaces, rootfs and mounts are to be built, and the process
/// to run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerPlan {
    /// The container's id (checked by [`validate_id`]).
    pub id: String,
    /// The rootfs, absolute, in the agent's mount namespace.
    pub rootfs: PathBuf,
    /// `root.readonly`: `/` is remounted read-only once the rest is set up.
    pub readonly_rootfs: bool,
    /// The spec's mounts, in its order.
    pub mounts: Vec<MountPlan>,
    /// The namespaces to create or join, each kind at most once; always a mount
    /// namespace. A network namespace shared with the sandbox is left out.
    pub namespaces: Vec<NamespacePlan>,
    /// `linux.uidMappings`, written for a new user namespace (empty without one).
    pub uid_mappings: Vec<IdMapping>,
    /// `linux.gidMappings`, written for a new user namespace (empty without one).
    pub gid_mappings: Vec<IdMapping>,
    /// Set in the container's own UTS namespace; `None` when unset or when the UTS
    /// namespace is joined (a shared one keeps its name).
    pub hostname: Option<String>,
    /// The NIS domain name, as `hostname`.
    pub domainname: Option<String>,
    /// `linux.maskedPaths`, normalised: covered by an empty read-only tmpfs (directories)
    /// or `/dev/null` (files); missing ones are skipped.
    pub masked_paths: Vec<PathBuf>,
    /// `linux.readonlyPaths`, normalised: bind-mounted over themselves read-only.
    pub readonly_paths: Vec<PathBuf>,
    /// Propagation of the container's `/` after setup (`MS_*` bits); default rslave.
    pub rootfs_propagation: u64,
    /// `linux.sysctl`: dotted name (`net.ipv4.ip_forward`) → value, written under
    /// `/proc/sys` inside the container's namespaces.
    pub sysctl: BTreeMap<String, String>,
    /// `linux.devices`: nodes made in the container's `/dev` (bound from the agent's
    /// `/dev` where `mknod` is not allowed).
    pub devices: Vec<DevicePlan>,
    /// `MS_MOVE` + `chroot` instead of `pivot_root` (forced; the helper also falls back
    /// to it by itself when `/` is an initramfs).
    pub no_pivot: bool,
    /// The init process.
    pub process: ProcessPlan,
    /// The spec's `createContainer` hooks, run by the helper in the container's
    /// namespaces before `pivot_root`.
    pub create_container_hooks: Vec<HookPlan>,
    /// The spec's `startContainer` hooks, run by the helper inside the container at the
    /// start, before the process.
    pub start_container_hooks: Vec<HookPlan>,
    /// The state those hooks read (`pid` is filled in by the helper).
    pub hook_state: OciState,
}

/// A namespace to create (`path: None`) or join.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamespacePlan {
    /// Which namespace.
    pub kind: NamespaceKind,
    /// The namespace file to join (absolute, e.g. `/proc/<pid>/ns/ipc`); `None` for a
    /// new one.
    pub path: Option<PathBuf>,
}

/// The kinds of namespace a container can have (`time` is not supported).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceKind {
    /// User and group ids, and the capabilities that go with them.
    User,
    /// The mount table; every container has its own.
    Mount,
    /// Process ids.
    Pid,
    /// System V IPC and POSIX message queues.
    Ipc,
    /// Hostname and NIS domain name.
    Uts,
    /// Network devices, addresses, routes, ports.
    Network,
    /// The view of the cgroup hierarchy (the container's cgroup becomes its root).
    Cgroup,
}

impl NamespaceKind {
    /// The name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Mount => "mnt",
            Self::Pid => "pid",
            Self::Ipc => "ipc",
            Self::Uts => "uts",
            Self::Network => "net",
            Self::Cgroup => "cgroup",
        }
    }

    /// The `CLONE_NEW*` flag.
    pub fn clone_flag(self) -> nix::sched::CloneFlags {
        use nix::sched::CloneFlags as F;
        match self {
            Self::User => F::CLONE_NEWUSER,
            Self::Mount => F::CLONE_NEWNS,
            Self::Pid => F::CLONE_NEWPID,
            Self::Ipc => F::CLONE_NEWIPC,
            Self::Uts => F::CLONE_NEWUTS,
            Self::Network => F::CLONE_NEWNET,
            Self::Cgroup => F::CLONE_NEWCGROUP,
        }
    }
}

/// One line of a user namespace's `uid_map` or `gid_map`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdMapping {
    /// First id of the range inside the container.
    pub container_id: u32,
    /// The id it maps to outside (in the agent's user namespace).
    pub host_id: u32,
    /// How many consecutive ids the range holds.
    pub size: u32,
}

/// One mount, in the order of the spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountPlan {
    /// Absolute, inside the container, without `..`.
    pub destination: PathBuf,
    /// What to mount: the path for a bind mount (always set; relative ones resolved
    /// against the bundle), a device or a name otherwise; `None` mounts the filesystem
    /// type's name as the source.
    pub source: Option<PathBuf>,
    /// Filesystem type (`proc`, `tmpfs`, ...; `bind` or empty for a bind mount; `cgroup`
    /// becomes `cgroup2`).
    pub fstype: String,
    /// `MS_*` flags for the mount call (for a bind mount: applied by a remount).
    pub flags: u64,
    /// `MS_*` propagation changes applied after mounting, in order.
    pub propagation: Vec<u64>,
    /// Filesystem options (`mode=755`, `size=65536k`, ...).
    pub data: String,
}

impl MountPlan {
    /// Whether this is a bind mount (`MS_BIND` set, by the `bind` type or option).
    pub fn is_bind(&self) -> bool {
        self.flags & MsFlags::MS_BIND.bits() != 0
    }
}

/// A device node to create in the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevicePlan {
    /// Where the node goes, absolute inside the container, normalised.
    pub path: PathBuf,
    /// `c`, `b` or `p`.
    pub kind: char,
    /// Device major number (ignored for a FIFO).
    pub major: u64,
    /// Device minor number (ignored for a FIFO).
    pub minor: u64,
    /// Permission bits of the node (`fileMode`, default `0o666`); the type bits are
    /// ignored.
    pub mode: u32,
    /// Owner of the node (default 0).
    pub uid: u32,
    /// Group of the node (default 0).
    pub gid: u32,
}

/// The process to run, for a container's init process as for an exec'd one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessPlan {
    /// The command line, never empty; `args[0]` is looked up in the `PATH` of `env` (or
    /// a default one) when it has no `/`.
    pub args: Vec<String>,
    /// The environment, `KEY=value` strings, as the process gets it (plus `HOME` from
    /// the container's `/etc/passwd`, or `/`, when it has none).
    pub env: Vec<String>,
    /// Working directory inside the container, absolute and normalised.
    pub cwd: PathBuf,
    /// User id the process runs as (in the container's user namespace).
    pub uid: u32,
    /// Group id the process runs as.
    pub gid: u32,
    /// Supplementary groups (`setgroups`).
    pub additional_gids: Vec<u32>,
    /// File mode creation mask; `None` keeps the inherited one.
    pub umask: Option<u32>,
    /// Whether the process gets a terminal (a pty as its controlling terminal and stdio)
    /// rather than pipes.
    pub terminal: bool,
    /// `None`: leave the capability sets as they are (root keeps all). An exec'd process
    /// without any is given the container's ([`crate::Containers::exec`]).
    pub capabilities: Option<CapabilitiesPlan>,
    /// (resource number, soft, hard)
    pub rlimits: Vec<(i32, u64, u64)>,
    /// Set `PR_SET_NO_NEW_PRIVS` before the seccomp filter and `execve`.
    pub no_new_privileges: bool,
    /// Written to `/proc/self/oom_score_adj` (-1000..=1000); `None` writes 0 (the agent's
    /// own protective value is not inherited).
    pub oom_score_adj: Option<i32>,
    /// The compiled `linux.seccomp` profile (exec'd processes get the container's);
    /// `None` for no filter.
    pub seccomp: Option<SeccompProgram>,
}

/// Capability names (`CAP_*`) per set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CapabilitiesPlan {
    /// The bounding set: every other capability is dropped from it.
    pub bounding: Vec<String>,
    /// The effective set after the switch to the process's user.
    pub effective: Vec<String>,
    /// The inheritable set.
    pub inheritable: Vec<String>,
    /// The permitted set (set last: it only shrinks).
    pub permitted: Vec<String>,
    /// Raised into the ambient set where the kernel allows (failures are only logged).
    pub ambient: Vec<String>,
}

/// Choices that do not come from the spec.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// The container's bundle directory: a relative `root.path` is resolved against it.
    pub bundle: PathBuf,
    /// In a VM, every container shares the sandbox's network namespace: a `network`
    /// namespace without a path in the spec is not created (as Kata's agent does), and
    /// one with a path (a host's netns file, which Kata's runtime strips) is refused. The
    /// runtime CLI on a host honours the spec instead.
    pub share_sandbox_network: bool,
    /// Copied to [`ContainerPlan::no_pivot`]: the runtime CLI's `--no-pivot`; the agent
    /// never sets it.
    pub no_pivot: bool,
}

fn invalid(message: impl Into<String>) -> ContainerError {
    ContainerError::InvalidSpec(message.into())
}

/// Validates `spec` and turns it into a plan.
pub fn plan_container(
    id: &str,
    spec: &Spec,
    options: &PlanOptions,
) -> Result<ContainerPlan, ContainerError> {
    validate_id(id)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| invalid("the spec has no root"))?;
    if root.path().as_os_str().is_empty() {
        return Err(invalid("root.path is empty"));
    }
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        options.bundle.join(root.path())
    };
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("the spec has no linux section"))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("the spec has no process"))?;

    let mut namespaces = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        let kind = match ns.typ() {
            LinuxNamespaceType::User => NamespaceKind::User,
            LinuxNamespaceType::Mount => NamespaceKind::Mount,
            LinuxNamespaceType::Pid => NamespaceKind::Pid,
            LinuxNamespaceType::Ipc => NamespaceKind::Ipc,
            LinuxNamespaceType::Uts => NamespaceKind::Uts,
            LinuxNamespaceType::Network => NamespaceKind::Network,
            LinuxNamespaceType::Cgroup => NamespaceKind::Cgroup,
            other => return Err(invalid(format!("unsupported namespace {other:?}"))),
        };
        if namespaces.iter().any(|n: &NamespacePlan| n.kind == kind) {
            return Err(invalid(format!(
                "namespace {} is listed twice",
                kind.proc_name()
            )));
        }
        let path = ns.path().clone().filter(|p| !p.as_os_str().is_empty());
        if kind == NamespaceKind::Network && options.share_sandbox_network {
            if let Some(path) = &path {
                return Err(invalid(format!(
                    "network namespace {}: containers share the sandbox's network \
                     namespace; leave out the path (or the entry)",
                    path.display()
                )));
            }
            continue;
        }
        if let Some(path) = &path
            && !path.is_absolute()
        {
            return Err(invalid(format!(
                "namespace path {} is not absolute",
                path.display()
            )));
        }
        namespaces.push(NamespacePlan { kind, path });
    }
    let new_ns = |kind| {
        namespaces
            .iter()
            .any(|n: &NamespacePlan| n.kind == kind && n.path.is_none())
    };
    if !namespaces.iter().any(|n| n.kind == NamespaceKind::Mount) {
        return Err(invalid(
            "a mount namespace is required (the rootfs is set up in it)",
        ));
    }
    let mut hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    let mut domainname = spec.domainname().clone().filter(|h| !h.is_empty());
    let joins_uts = namespaces
        .iter()
        .any(|n| n.kind == NamespaceKind::Uts && n.path.is_some());
    if joins_uts {
        // A shared UTS namespace (e.g. the sandbox's) keeps its own hostname.
        hostname = None;
        domainname = None;
    } else if (hostname.is_some() || domainname.is_some()) && !new_ns(NamespaceKind::Uts) {
        return Err(invalid(
            "a hostname needs the container's own UTS namespace",
        ));
    }
    let mappings = |list: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        list.iter()
            .flatten()
            .map(|m| IdMapping {
                container_id: m.container_id(),
                host_id: m.host_id(),
                size: m.size(),
            })
            .collect::<Vec<_>>()
    };
    let uid_mappings = mappings(linux.uid_mappings());
    let gid_mappings = mappings(linux.gid_mappings());
    if new_ns(NamespaceKind::User) && (uid_mappings.is_empty() || gid_mappings.is_empty()) {
        return Err(invalid(
            "a new user namespace needs uidMappings and gidMappings",
        ));
    }
    let has_mappings = !(uid_mappings.is_empty() && gid_mappings.is_empty());
    if has_mappings && !new_ns(NamespaceKind::User) {
        return Err(invalid("id mappings need a new user namespace"));
    }

    let mut mounts = Vec::new();
    for m in spec.mounts().iter().flatten() {
        mounts.push(plan_mount(m, &options.bundle)?);
    }

    let masked_paths = container_paths(linux.masked_paths(), "maskedPaths")?;
    let readonly_paths = container_paths(linux.readonly_paths(), "readonlyPaths")?;
    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => MsFlags::MS_REC | MsFlags::MS_SLAVE,
        Some(p) => match propagation_flag(p) {
            Some(flags) => flags,
            None => return Err(invalid(format!("unknown rootfsPropagation {p:?}"))),
        },
    };
    let mut sysctl = BTreeMap::new();
    for (key, value) in linux.sysctl().iter().flatten() {
        if key.is_empty() || key.contains("..") || key.starts_with('/') {
            return Err(invalid(format!("invalid sysctl name {key:?}")));
        }
        sysctl.insert(key.clone(), value.clone());
    }
    let mut devices = Vec::new();
    for d in linux.devices().iter().flatten() {
        let path = container_path(d.path(), "device path")?;
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            LinuxDeviceType::A => return Err(invalid("device type \"a\" is not a node type")),
        };
        devices.push(DevicePlan {
            path,
            kind,
            major: u64::try_from(d.major()).map_err(|_| invalid("negative device major"))?,
            minor: u64::try_from(d.minor()).map_err(|_| invalid("negative device minor"))?,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    if linux.intel_rdt().is_some() {
        return Err(invalid("intelRdt is not supported"));
    }
    if linux.personality().is_some() {
        return Err(invalid("personality is not supported"));
    }

    let seccomp = linux.seccomp().as_ref().map(seccomp::compile).transpose()?;
    let process = plan_process(process, seccomp)?;
    let hooks = SpecHooks::from_spec(spec)?;
    let hook_state = OciState {
        oci_version: spec.version().clone(),
        id: id.to_string(),
        status: "created".into(),
        pid: 0,
        bundle: options.bundle.clone(),
        annotations: spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };

    Ok(ContainerPlan {
        id: id.to_string(),
        rootfs,
        readonly_rootfs: root.readonly().unwrap_or(false),
        mounts,
        namespaces,
        uid_mappings,
        gid_mappings,
        hostname,
        domainname,
        masked_paths,
        readonly_paths,
        rootfs_propagation: rootfs_propagation.bits(),
        sysctl,
        devices,
        no_pivot: options.no_pivot,
        process,
        create_container_hooks: hooks.create_container,
        start_container_hooks: hooks.start_container,
        hook_state,
    })
}

/// Container ids become path components and cgroup names: keep them tame.
pub fn validate_id(id: &str) -> Result<(), ContainerError> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid container id {id:?}: use 1 to 256 of [A-Za-z0-9_.+-]"
        )))
    }
}

/// The plan for a process (the container's init, or an exec'd one with the container's
/// seccomp profile).
pub fn plan_process(
    process: &OciProcess,
    seccomp: Option<SeccompProgram>,
) -> Result<ProcessPlan, ContainerError> {
    let args = process.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(invalid("process.args is empty"));
    }
    if process.command_line().is_some() {
        return Err(invalid("process.commandLine is for Windows"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(format!(
            "process.cwd {:?} is not absolute",
            process.cwd()
        )));
    }
    let cwd = container_path(process.cwd(), "process.cwd")?;
    let user = process.user();
    let capabilities = process.capabilities().as_ref().map(|caps| {
        let names = |set: &Option<oci_spec::runtime::Capabilities>| {
            let mut names: Vec<String> = set
                .iter()
                .flatten()
                .map(|c| {
                    serde_json::to_value(c)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            names.sort();
            names
        };
        CapabilitiesPlan {
            bounding: names(caps.bounding()),
            effective: names(caps.effective()),
            inheritable: names(caps.inheritable()),
            permitted: names(caps.permitted()),
            ambient: names(caps.ambient()),
        }
    });
    if let Some(caps) = &capabilities {
        for name in caps
            .bounding
            .iter()
            .chain(&caps.effective)
            .chain(&caps.inheritable)
            .chain(&caps.permitted)
            .chain(&caps.ambient)
        {
            if name.parse::<caps::Capability>().is_err() {
                return Err(invalid(format!(
                    "capability {name} is unknown to this agent"
                )));
            }
        }
    }
    let mut rlimits = Vec::new();
    for limit in process.rlimits().iter().flatten() {
        if limit.soft() > limit.hard() {
            return Err(invalid(format!(
                "rlimit {:?}: soft limit above the hard limit",
                limit.typ()
            )));
        }
        rlimits.push((rlimit_resource(limit.typ())?, limit.soft(), limit.hard()));
    }
    if let Some(adj) = process.oom_score_adj()
        && !(-1000..=1000).contains(&adj)
    {
        return Err(invalid(format!(
            "oomScoreAdj {adj} is outside -1000..=1000"
        )));
    }
    if process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        tracing::warn!("process.apparmorProfile ignored: the guest has no AppArmor");
    }
    if process
        .selinux_label()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        tracing::warn!("process.selinuxLabel ignored: the guest has no SELinux");
    }
    if process.io_priority().is_some() || process.scheduler().is_some() {
        return Err(invalid(
            "process.ioPriority and process.scheduler are not supported",
        ));
    }
    let (rows, cols) = process
        .console_size()
        .map(|b| (b.height(), b.width()))
        .unwrap_or((0, 0));
    let _ = (rows, cols);
    Ok(ProcessPlan {
        args,
        env: process.env().clone().unwrap_or_default(),
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: user.additional_gids().clone().unwrap_or_default(),
        umask: user.umask(),
        terminal: process.terminal().unwrap_or(false),
        capabilities,
        rlimits,
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
        oom_score_adj: process.oom_score_adj(),
        seccomp,
    })
}

fn rlimit_resource(typ: PosixRlimitType) -> Result<i32, ContainerError> {
    use PosixRlimitType as T;
    let resource = match typ {
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitStack => libc::RLIMIT_STACK,
        #[allow(unreachable_patterns)]
        other => return Err(invalid(format!("unsupported rlimit {other:?}"))),
    };
    Ok(resource as i32)
}

/// An absolute container path with no `..` that climbs out of `/`; normalised.
pub fn container_path(path: &Path, what: &str) -> Result<PathBuf, ContainerError> {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                if !out.pop() {
                    return Err(invalid(format!(
                        "{what} {} climbs out of the container's root",
                        path.display()
                    )));
                }
                if out.as_os_str().is_empty() {
                    return Err(invalid(format!(
                        "{what} {} climbs out of the container's root",
                        path.display()
                    )));
                }
            }
            Component::Prefix(_) => return Err(invalid(format!("{what}: bad path"))),
        }
    }
    // `pop` on "/" returns false, so "/.." is caught above; "/a/../.." too.
    Ok(out)
}

fn container_paths(list: &Option<Vec<String>>, what: &str) -> Result<Vec<PathBuf>, ContainerError> {
    list.iter()
        .flatten()
        .map(|p| {
            if !p.starts_with('/') {
                return Err(invalid(format!("{what}: {p:?} is not absolute")));
            }
            container_path(Path::new(p), what)
        })
        .collect()
}

fn plan_mount(m: &oci_spec::runtime::Mount, bundle: &Path) -> Result<MountPlan, ContainerError> {
    if !m.destination().is_absolute() {
        return Err(invalid(format!(
            "mount destination {} is not absolute",
            m.destination().display()
        )));
    }
    let destination = container_path(m.destination(), "mount destination")?;
    if destination == Path::new("/") {
        return Err(invalid("a mount over the container's / is not allowed"));
    }
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(invalid("id-mapped mounts are not supported"));
    }
    let mut fstype = m.typ().clone().unwrap_or_default();
    let options = m.options().clone().unwrap_or_default();
    let parsed = MountOptions::parse(&options).map_err(|e| invalid(e.to_string()))?;
    let mut flags = parsed.flags;
    if fstype == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    let is_bind = flags.contains(MsFlags::MS_BIND);
    if fstype.is_empty() && !is_bind {
        return Err(invalid(format!(
            "mount {}: no type and not a bind mount",
            destination.display()
        )));
    }
    if fstype == "cgroup" {
        // The guest has cgroup v2 only.
        fstype = "cgroup2".into();
    }
    let source = m.source().clone().filter(|s| !s.as_os_str().is_empty());
    let source = match source {
        Some(s) if is_bind && s.is_relative() => Some(bundle.join(s)),
        other => other,
    };
    if is_bind && source.is_none() {
        return Err(invalid(format!(
            "bind mount {} has no source",
            destination.display()
        )));
    }
    Ok(MountPlan {
        destination,
        source,
        fstype,
        flags: flags.bits(),
        propagation: parsed.propagation.iter().map(|f| f.bits()).collect(),
        data: parsed.data.join(","),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "network"}]},
        })
    }

    fn options() -> PlanOptions {
        PlanOptions {
            bundle: PathBuf::from("/run/kata-containers/c1"),
            share_sandbox_network: true,
            no_pivot: false,
        }
    }

    #[test]
    fn a_relative_root_is_under_the_bundle_and_network_is_shared() {
        let plan = plan_container("c1", &spec(minimal()), &options()).unwrap();
        assert_eq!(plan.rootfs, PathBuf::from("/run/kata-containers/c1/rootfs"));
        let kinds: Vec<_> = plan.namespaces.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, vec![NamespaceKind::Mount, NamespaceKind::Pid]);
        let mut joined = minimal();
        joined["linux"]["namespaces"][2]["path"] = "/var/run/netns/cni-1".into();
        let err = plan_container("c1", &spec(joined.clone()), &options()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/var/run/netns/cni-1") && text.contains("sandbox's network namespace"),
            "{text}"
        );
        let mut opts = options();
        opts.share_sandbox_network = false;
        let plan = plan_container("c1", &spec(minimal()), &opts).unwrap();
        assert!(
            plan.namespaces
                .iter()
                .any(|n| n.kind == NamespaceKind::Network)
        );
        let plan = plan_container("c1", &spec(joined), &opts).unwrap();
        assert!(
            plan.namespaces
                .iter()
                .any(|n| n.kind == NamespaceKind::Network
                    && n.path.as_deref() == Some(std::path::Path::new("/var/run/netns/cni-1")))
        );
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"root": null}), "no root"),
            (
                serde_json::json!({"process": {"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}}}),
                "args is empty",
            ),
            (
                serde_json::json!({"process": {"args": ["sh"], "cwd": "rel", "user": {"uid": 0, "gid": 0}}}),
                "not absolute",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/../../etc", "type": "tmpfs"}]}),
                "climbs out",
            ),
            (
                serde_json::json!({"mounts": [{"destination": "/x", "type": "bind", "options": ["rbind", "tmpcopyup"]}]}),
                "not supported",
            ),
            (serde_json::json!({"hostname": "h"}), "UTS"),
            (
                serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}}),
                "mount namespace is required",
            ),
        ];
        for (patch, needle) in cases {
            let mut json = minimal();
            for (k, v) in patch.as_object().unwrap() {
                json[k] = v.clone();
            }
            let err = plan_container("c1", &spec(json), &options()).unwrap_err();
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        assert!(plan_container("../x", &spec(minimal()), &options()).is_err());
    }

    #[test]
    fn mount_options_split_into_flags_propagation_and_data() {
        let options: Vec<String> = [
            "nosuid", "noexec", "ro", "rprivate", "mode=755", "size=64k", "rw",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let parsed = MountOptions::parse(&options).unwrap();
        assert_eq!(parsed.flags, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC);
        assert_eq!(
            parsed.propagation,
            vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]
        );
        assert_eq!(parsed.data, vec!["mode=755", "size=64k"]);
    }

    #[test]
    fn a_spec_mount_takes_its_options_from_the_one_parser() {
        let mut json = minimal();
        json["mounts"] = serde_json::json!([{
            "destination": "/data",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "lazytime", "size=64k", "rshared", "private", "mode=1777"],
        }]);
        let plan = plan_container("c1", &spec(json), &options()).unwrap();
        let m = &plan.mounts[0];
        assert_eq!(
            MsFlags::from_bits_retain(m.flags),
            MsFlags::MS_NOSUID | MsFlags::MS_LAZYTIME
        );
        assert_eq!(
            m.propagation,
            vec![
                (MsFlags::MS_SHARED | MsFlags::MS_REC).bits(),
                MsFlags::MS_PRIVATE.bits()
            ]
        );
        assert_eq!(m.data, "size=64k,mode=1777");
    }

    #[test]
    fn kata_s_bind_mount_shapes_are_binds() {
        let mut json = minimal();
        json["mounts"] = serde_json::json!([
            // The runtimes' /dev/shm and pod files.
            {"destination": "/dev/shm", "type": "bind",
             "source": "/run/kata-containers/sandbox/shm", "options": ["rbind"]},
            {"destination": "/etc/hosts", "type": "bind",
             "source": "/run/kata-containers/shared/containers/c1-hosts",
             "options": ["rbind", "rprivate", "ro"]},
            // No type, or `none`, with a bind option: a bind, as in Kata's agent.
            {"destination": "/a", "source": "/run/a", "options": ["rbind"]},
            {"destination": "/b", "type": "none", "source": "/run/b", "options": ["bind"]},
        ]);
        let plan = plan_container("c1", &spec(json), &options()).unwrap();
        assert!(
            plan.mounts.iter().all(MountPlan::is_bind),
            "{:?}",
            plan.mounts
        );
        let hosts = &plan.mounts[1];
        assert_ne!(hosts.flags & MsFlags::MS_RDONLY.bits(), 0);
        assert_eq!(
            hosts.propagation,
            vec![(MsFlags::MS_PRIVATE | MsFlags::MS_REC).bits()]
        );
        assert_eq!(
            plan.mounts[2].flags & MsFlags::MS_REC.bits(),
            MsFlags::MS_REC.bits()
        );
    }

    #[test]
    fn container_paths_are_normalised_and_confined() {
        assert_eq!(
            container_path(Path::new("/a/./b/../c"), "x").unwrap(),
            PathBuf::from("/a/c")
        );
        assert!(container_path(Path::new("/.."), "x").is_err());
        assert!(container_path(Path::new("/a/../../b"), "x").is_err());
    }
}

//! The OCI runtime spec both ways: `config.json` ([`oci_spec::runtime`]) ⇄ the agent API's
//! protobuf rendering ([`crate::oci`]).
//!
//! Both directions go through the JSON shape of `config.json`, so every enum (namespace
//! types, capabilities, rlimits, seccomp actions) is read and written by `oci_spec`, the
//! same code that reads a bundle's `config.json`:
//!
//! - [`spec_to_proto`] (host side: hull-ctl, the tests) walks the JSON of a spec and
//!   refuses every field the protobuf has no place for (`domainname`, `linux.timeOffsets`,
//!   `process.scheduler`, ...), naming it: dropping one silently would run a container
//!   other than the one asked for.
//! - [`spec_from_proto`] (guest side: the agent's `CreateContainer`) builds that JSON from
//!   the protobuf and lets `oci_spec` deserialise it. It reads the names as Kata's agent
//!   does, since Kata's two runtimes spell them differently: a namespace type in OCI's
//!   spelling (`mount`, `network`: Kata's Go runtime, hull-ctl) or oci-spec's short one
//!   (`mnt`, `net`: Kata's runtime-rs and agent-ctl, which write `to_string()`); a
//!   capability with or without `CAP_` (`CAP_CHOWN`: the Go runtime; `CHOWN`: runtime-rs),
//!   also quoted as a JSON string, in upper case. An unknown name is refused naming its
//!   field. An empty `cwd` is `/` (the protobuf cannot leave it out; Kata's agent then
//!   stays in `/`).
//!
//! Conventions of the protobuf, as in Kata's: a number 0, an empty string or list and
//! `false` mean "not set", so `config.json → protobuf → config.json` is the identity for
//! every spec that does not spell out a zero (`"oomScoreAdj": 0`, `"terminal": false`);
//! those come back absent, which OCI defines to mean the same. A device cgroup rule's
//! absent major or minor (the wildcard `*`) is -1 in the protobuf. Capability sets are
//! written sorted.
//!
//! Whether a field is *honoured* is the agent's business, not this module's: it carries
//! hooks, device cgroup rules and the rest faithfully.

use std::collections::HashMap;
use std::str::FromStr;

use oci_spec::runtime::{Capability, LinuxNamespaceType, LinuxResources, Process, Spec};
use serde_json::{Map, Value, json};

use crate::oci;

/// Docker's default capabilities: what `docker run` (and Kata under a CRI runtime) gives a
/// container's processes unless told otherwise. hull-ctl gives them to an exec'd process.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// A spec that cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// `config.json` is not JSON, or not an OCI runtime spec.
    #[error("invalid {what}: {source}")]
    Decode {
        /// What was decoded (`spec`, `process`, `resources`).
        what: &'static str,
        /// Why it failed.
        #[source]
        source: serde_json::Error,
    },
    /// A field has no place in the protobuf, or a value does not fit it.
    #[error("{path}: {message}")]
    Field {
        /// The JSON path of the field, e.g. `linux.timeOffsets`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

fn field(path: &str, message: impl Into<String>) -> OciError {
    OciError::Field {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Parses the text of a `config.json`.
pub fn spec_from_config_json(text: &[u8]) -> Result<Spec, OciError> {
    serde_json::from_slice(text).map_err(|source| OciError::Decode {
        what: "spec",
        source,
    })
}

/// A `config.json` spec → the protobuf `CreateContainerRequest.OCI`.
pub fn spec_to_proto(spec: &Spec) -> Result<oci::Spec, OciError> {
    let value = to_value(spec, "spec")?;
    let mut o = Obj::new("", &value)?;
    let out = oci::Spec {
        Version: o.string("ociVersion")?,
        Root: o
            .object("root")?
            .map(|mut r| {
                let root = oci::Root {
                    Path: r.string("path")?,
                    Readonly: r.bool("readonly")?,
                    ..Default::default()
                };
                r.finish()?;
                Ok::<_, OciError>(root)
            })
            .transpose()?
            .into(),
        Process: o.object("process")?.map(process).transpose()?.into(),
        Hostname: o.string("hostname")?,
        Mounts: o.objects("mounts", |mut m| {
            let mount = oci::Mount {
                destination: m.string("destination")?,
                source: m.string("source")?,
                type_: m.string("type")?,
                options: m.strings("options")?,
                ..Default::default()
            };
            m.finish()?;
            Ok(mount)
        })?,
        Hooks: o.object("hooks")?.map(hooks).transpose()?.into(),
        Annotations: o.string_map("annotations")?,
        Linux: o.object("linux")?.map(linux).transpose()?.into(),
        ..Default::default()
    };
    o.finish()?;
    Ok(out)
}

/// An exec'd process (`ExecProcessRequest.process`) → protobuf.
pub fn process_to_proto(p: &Process) -> Result<oci::Process, OciError> {
    let value = to_value(p, "process")?;
    process(Obj::new("process", &value)?)
}

/// Resources (`UpdateContainerRequest.resources`) → protobuf.
pub fn resources_to_proto(r: &LinuxResources) -> Result<oci::LinuxResources, OciError> {
    let value = to_value(r, "resources")?;
    resources(Obj::new("linux.resources", &value)?)
}

/// The protobuf `CreateContainerRequest.OCI` → a spec.
pub fn spec_from_proto(spec: &oci::Spec) -> Result<Spec, OciError> {
    let mut m = Map::new();
    m.insert("ociVersion".into(), json!(spec.Version));
    if let Some(root) = spec.Root.as_ref() {
        let mut r = Map::new();
        r.insert("path".into(), json!(root.Path));
        put(&mut r, "readonly", json!(root.Readonly));
        m.insert("root".into(), Value::Object(r));
    }
    if let Some(process) = spec.Process.as_ref() {
        m.insert("process".into(), process_json(process)?);
    }
    put(&mut m, "hostname", json!(spec.Hostname));
    let mounts: Vec<Value> = spec
        .Mounts
        .iter()
        .map(|mount| {
            let mut o = Map::new();
            o.insert("destination".into(), json!(mount.destination));
            put(&mut o, "source", json!(mount.source));
            put(&mut o, "type", json!(mount.type_));
            put(&mut o, "options", json!(mount.options));
            Value::Object(o)
        })
        .collect();
    put(&mut m, "mounts", Value::Array(mounts));
    if let Some(hooks) = spec.Hooks.as_ref() {
        put(&mut m, "hooks", hooks_json(hooks));
    }
    put(&mut m, "annotations", json!(spec.Annotations));
    if let Some(linux) = spec.Linux.as_ref() {
        m.insert("linux".into(), linux_json(linux)?);
    }
    from_value(Value::Object(m), "spec")
}

/// `ExecProcessRequest.process` → a process.
pub fn process_from_proto(process: &oci::Process) -> Result<Process, OciError> {
    from_value(process_json(process)?, "process")
}

/// `UpdateContainerRequest.resources` → resources.
pub fn resources_from_proto(resources: &oci::LinuxResources) -> Result<LinuxResources, OciError> {
    from_value(resources_json(resources), "resources")
}

// ---------------------------------------------------------------------------------------
// config.json → protobuf

fn to_value<T: serde::Serialize>(value: &T, what: &'static str) -> Result<Value, OciError> {
    serde_json::to_value(value).map_err(|source| OciError::Decode { what, source })
}

/// A JSON object being read: every key must be taken, or [`Obj::finish`] names it.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
    taken: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    fn new(path: &str, value: &'a Value) -> Result<Self, OciError> {
        match value {
            Value::Object(map) => Ok(Self {
                path: path.to_string(),
                map,
                taken: Vec::new(),
            }),
            other => Err(field(path, format!("expected an object, found {other}"))),
        }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`, `None` when absent or null.
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.taken.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &'static str) -> Result<String, OciError> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(field(
                &self.child(key),
                format!("expected a string: {other}"),
            )),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<bool, OciError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(field(
                &self.child(key),
                format!("expected a boolean: {other}"),
            )),
        }
    }

    fn u64(&mut self, key: &'static str) -> Result<u64, OciError> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| {
                field(
                    &self.child(key),
                    format!("expected a non-negative integer: {v}"),
                )
            }),
        }
    }

    fn u32(&mut self, key: &'static str) -> Result<u32, OciError> {
        let value = self.u64(key)?;
        u32::try_from(value)
            .map_err(|_| field(&self.child(key), format!("{value} does not fit 32 bits")))
    }

    fn i64_or(&mut self, key: &'static str, absent: i64) -> Result<i64, OciError> {
        match self.get(key) {
            None => Ok(absent),
            Some(v) => v
                .as_i64()
                .ok_or_else(|| field(&self.child(key), format!("expected an integer: {v}"))),
        }
    }

    fn i64(&mut self, key: &'static str) -> Result<i64, OciError> {
        self.i64_or(key, 0)
    }

    fn strings(&mut self, key: &'static str) -> Result<Vec<String>, OciError> {
        let path = self.child(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(field(&path, format!("expected strings: {other}"))),
                })
                .collect(),
            Some(other) => Err(field(&path, format!("expected a list: {other}"))),
        }
    }

    /// A list of strings written sorted (capability sets are sets).
    fn sorted_strings(&mut self, key: &'static str) -> Result<Vec<String>, OciError> {
        let mut list = self.strings(key)?;
        list.sort();
        Ok(list)
    }

    fn u32s(&mut self, key: &'static str) -> Result<Vec<u32>, OciError> {
        let path = self.child(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| field(&path, format!("expected 32-bit integers: {v}")))
                })
                .collect(),
            Some(other) => Err(field(&path, format!("expected a list: {other}"))),
        }
    }

    fn string_map(&mut self, key: &'static str) -> Result<HashMap<String, String>, OciError> {
        let path = self.child(key);
        match self.get(key) {
            None => Ok(HashMap::new()),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    other => Err(field(
                        &format!("{path}.{k}"),
                        format!("expected a string: {other}"),
                    )),
                })
                .collect(),
            Some(other) => Err(field(&path, format!("expected an object: {other}"))),
        }
    }

    fn object(&mut self, key: &'static str) -> Result<Option<Obj<'a>>, OciError> {
        let path = self.child(key);
        self.get(key).map(|v| Obj::new(&path, v)).transpose()
    }

    fn objects<T>(
        &mut self,
        key: &'static str,
        mut each: impl FnMut(Obj<'a>) -> Result<T, OciError>,
    ) -> Result<Vec<T>, OciError> {
        let path = self.child(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| each(Obj::new(&format!("{path}[{i}]"), v)?))
                .collect(),
            Some(other) => Err(field(&path, format!("expected a list: {other}"))),
        }
    }

    /// Fails on the first key that was not taken: a field the protobuf cannot carry.
    fn finish(self) -> Result<(), OciError> {
        for (key, value) in self.map {
            if !value.is_null() && !self.taken.contains(&key.as_str()) {
                return Err(field(
                    &self.child(key),
                    "the agent API's protobuf has no such field; refusing to drop it",
                ));
            }
        }
        Ok(())
    }
}

fn process(mut p: Obj<'_>) -> Result<oci::Process, OciError> {
    let out = oci::Process {
        Terminal: p.bool("terminal")?,
        ConsoleSize: p
            .object("consoleSize")?
            .map(|mut b| {
                let size = oci::Box {
                    Height: b.u32("height")?,
                    Width: b.u32("width")?,
                    ..Default::default()
                };
                b.finish()?;
                Ok::<_, OciError>(size)
            })
            .transpose()?
            .into(),
        User: p
            .object("user")?
            .map(|mut u| {
                let user = oci::User {
                    UID: u.u32("uid")?,
                    GID: u.u32("gid")?,
                    AdditionalGids: u.u32s("additionalGids")?,
                    Username: u.string("username")?,
                    ..Default::default()
                };
                u.finish()?;
                Ok::<_, OciError>(user)
            })
            .transpose()?
            .into(),
        Args: p.strings("args")?,
        Env: p.strings("env")?,
        Cwd: p.string("cwd")?,
        Capabilities: p
            .object("capabilities")?
            .map(|mut c| {
                let caps = oci::LinuxCapabilities {
                    Bounding: c.sorted_strings("bounding")?,
                    Effective: c.sorted_strings("effective")?,
                    Inheritable: c.sorted_strings("inheritable")?,
                    Permitted: c.sorted_strings("permitted")?,
                    Ambient: c.sorted_strings("ambient")?,
                    ..Default::default()
                };
                c.finish()?;
                Ok::<_, OciError>(caps)
            })
            .transpose()?
            .into(),
        Rlimits: p.objects("rlimits", |mut r| {
            let rlimit = oci::POSIXRlimit {
                Type: r.string("type")?,
                Hard: r.u64("hard")?,
                Soft: r.u64("soft")?,
                ..Default::default()
            };
            r.finish()?;
            Ok(rlimit)
        })?,
        NoNewPrivileges: p.bool("noNewPrivileges")?,
        ApparmorProfile: p.string("apparmorProfile")?,
        OOMScoreAdj: p.i64("oomScoreAdj")?,
        SelinuxLabel: p.string("selinuxLabel")?,
        ..Default::default()
    };
    p.finish()?;
    Ok(out)
}

fn hooks(mut h: Obj<'_>) -> Result<oci::Hooks, OciError> {
    let hook = |mut o: Obj<'_>| {
        let hook = oci::Hook {
            Path: o.string("path")?,
            Args: o.strings("args")?,
            Env: o.strings("env")?,
            Timeout: o.i64("timeout")?,
            ..Default::default()
        };
        o.finish()?;
        Ok(hook)
    };
    let out = oci::Hooks {
        Prestart: h.objects("prestart", hook)?,
        Poststart: h.objects("poststart", hook)?,
        Poststop: h.objects("poststop", hook)?,
        CreateRuntime: h.objects("createRuntime", hook)?,
        CreateContainer: h.objects("createContainer", hook)?,
        StartContainer: h.objects("startContainer", hook)?,
        ..Default::default()
    };
    h.finish()?;
    Ok(out)
}

fn linux(mut l: Obj<'_>) -> Result<oci::Linux, OciError> {
    let mapping = |mut o: Obj<'_>| {
        let m = oci::LinuxIDMapping {
            HostID: o.u32("hostID")?,
            ContainerID: o.u32("containerID")?,
            Size: o.u32("size")?,
            ..Default::default()
        };
        o.finish()?;
        Ok(m)
    };
    let out = oci::Linux {
        UIDMappings: l.objects("uidMappings", mapping)?,
        GIDMappings: l.objects("gidMappings", mapping)?,
        Sysctl: l.string_map("sysctl")?,
        Resources: l.object("resources")?.map(resources).transpose()?.into(),
        CgroupsPath: l.string("cgroupsPath")?,
        Namespaces: l.objects("namespaces", |mut n| {
            let ns = oci::LinuxNamespace {
                Type: n.string("type")?,
                Path: n.string("path")?,
                ..Default::default()
            };
            n.finish()?;
            Ok(ns)
        })?,
        Devices: l.objects("devices", |mut d| {
            let device = oci::LinuxDevice {
                Path: d.string("path")?,
                Type: d.string("type")?,
                Major: d.i64("major")?,
                Minor: d.i64("minor")?,
                FileMode: d.u32("fileMode")?,
                UID: d.u32("uid")?,
                GID: d.u32("gid")?,
                ..Default::default()
            };
            d.finish()?;
            Ok(device)
        })?,
        Seccomp: l.object("seccomp")?.map(seccomp).transpose()?.into(),
        RootfsPropagation: l.string("rootfsPropagation")?,
        MaskedPaths: l.strings("maskedPaths")?,
        ReadonlyPaths: l.strings("readonlyPaths")?,
        MountLabel: l.string("mountLabel")?,
        IntelRdt: l
            .object("intelRdt")?
            .map(|mut r| {
                let rdt = oci::LinuxIntelRdt {
                    L3CacheSchema: r.string("l3CacheSchema")?,
                    ..Default::default()
                };
                r.finish()?;
                Ok::<_, OciError>(rdt)
            })
            .transpose()?
            .into(),
        ..Default::default()
    };
    l.finish()?;
    Ok(out)
}

fn seccomp(mut s: Obj<'_>) -> Result<oci::LinuxSeccomp, OciError> {
    let out = oci::LinuxSeccomp {
        DefaultAction: s.string("defaultAction")?,
        Architectures: s.strings("architectures")?,
        Flags: s.strings("flags")?,
        Syscalls: s.objects("syscalls", |mut sc| {
            let errno = sc.get("errnoRet");
            let errno = errno
                .map(|v| {
                    v.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| field(&sc.child("errnoRet"), format!("not an errno: {v}")))
                })
                .transpose()?;
            let syscall = oci::LinuxSyscall {
                Names: sc.strings("names")?,
                Action: sc.string("action")?,
                ErrnoRet: errno.map(oci::linux_syscall::ErrnoRet::Errnoret),
                Args: sc.objects("args", |mut a| {
                    let arg = oci::LinuxSeccompArg {
                        Index: a.u64("index")?,
                        Value: a.u64("value")?,
                        ValueTwo: a.u64("valueTwo")?,
                        Op: a.string("op")?,
                        ..Default::default()
                    };
                    a.finish()?;
                    Ok(arg)
                })?,
                ..Default::default()
            };
            sc.finish()?;
            Ok(syscall)
        })?,
        ..Default::default()
    };
    s.finish()?;
    Ok(out)
}

fn resources(mut r: Obj<'_>) -> Result<oci::LinuxResources, OciError> {
    let throttle = |mut t: Obj<'_>| {
        let device = oci::LinuxThrottleDevice {
            Major: t.i64("major")?,
            Minor: t.i64("minor")?,
            Rate: t.u64("rate")?,
            ..Default::default()
        };
        t.finish()?;
        Ok(device)
    };
    let out = oci::LinuxResources {
        Devices: r.objects("devices", |mut d| {
            let rule = oci::LinuxDeviceCgroup {
                Allow: d.bool("allow")?,
                Type: d.string("type")?,
                Major: d.i64_or("major", -1)?,
                Minor: d.i64_or("minor", -1)?,
                Access: d.string("access")?,
                ..Default::default()
            };
            d.finish()?;
            Ok(rule)
        })?,
        Memory: r
            .object("memory")?
            .map(|mut m| {
                let memory = oci::LinuxMemory {
                    Limit: m.i64("limit")?,
                    Reservation: m.i64("reservation")?,
                    Swap: m.i64("swap")?,
                    Kernel: m.i64("kernel")?,
                    KernelTCP: m.i64("kernelTCP")?,
                    Swappiness: m.u64("swappiness")?,
                    DisableOOMKiller: m.bool("disableOOMKiller")?,
                    ..Default::default()
                };
                m.finish()?;
                Ok::<_, OciError>(memory)
            })
            .transpose()?
            .into(),
        CPU: r
            .object("cpu")?
            .map(|mut c| {
                let cpu = oci::LinuxCPU {
                    Shares: c.u64("shares")?,
                    Quota: c.i64("quota")?,
                    Period: c.u64("period")?,
                    RealtimeRuntime: c.i64("realtimeRuntime")?,
                    RealtimePeriod: c.u64("realtimePeriod")?,
                    Cpus: c.string("cpus")?,
                    Mems: c.string("mems")?,
                    ..Default::default()
                };
                c.finish()?;
                Ok::<_, OciError>(cpu)
            })
            .transpose()?
            .into(),
        Pids: r
            .object("pids")?
            .map(|mut p| {
                let pids = oci::LinuxPids {
                    Limit: p.i64("limit")?,
                    ..Default::default()
                };
                p.finish()?;
                Ok::<_, OciError>(pids)
            })
            .transpose()?
            .into(),
        BlockIO: r
            .object("blockIO")?
            .map(|mut b| {
                let io = oci::LinuxBlockIO {
                    Weight: b.u32("weight")?,
                    LeafWeight: b.u32("leafWeight")?,
                    WeightDevice: b.objects("weightDevice", |mut w| {
                        let device = oci::LinuxWeightDevice {
                            Major: w.i64("major")?,
                            Minor: w.i64("minor")?,
                            Weight: w.u32("weight")?,
                            LeafWeight: w.u32("leafWeight")?,
                            ..Default::default()
                        };
                        w.finish()?;
                        Ok(device)
                    })?,
                    ThrottleReadBpsDevice: b.objects("throttleReadBpsDevice", throttle)?,
                    ThrottleWriteBpsDevice: b.objects("throttleWriteBpsDevice", throttle)?,
                    ThrottleReadIOPSDevice: b.objects("throttleReadIOPSDevice", throttle)?,
                    ThrottleWriteIOPSDevice: b.objects("throttleWriteIOPSDevice", throttle)?,
                    ..Default::default()
                };
                b.finish()?;
                Ok::<_, OciError>(io)
            })
            .transpose()?
            .into(),
        HugepageLimits: r.objects("hugepageLimits", |mut h| {
            let limit = oci::LinuxHugepageLimit {
                Pagesize: h.string("pageSize")?,
                Limit: h.u64("limit")?,
                ..Default::default()
            };
            h.finish()?;
            Ok(limit)
        })?,
        Network: r
            .object("network")?
            .map(|mut n| {
                let network = oci::LinuxNetwork {
                    ClassID: n.u32("classID")?,
                    Priorities: n.objects("priorities", |mut p| {
                        let priority = oci::LinuxInterfacePriority {
                            Name: p.string("name")?,
                            Priority: p.u32("priority")?,
                            ..Default::default()
                        };
                        p.finish()?;
                        Ok(priority)
                    })?,
                    ..Default::default()
                };
                n.finish()?;
                Ok::<_, OciError>(network)
            })
            .transpose()?
            .into(),
        ..Default::default()
    };
    r.finish()?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// protobuf → config.json

fn from_value<T: for<'de> serde::Deserialize<'de>>(
    value: Value,
    what: &'static str,
) -> Result<T, OciError> {
    serde_json::from_value(value).map_err(|source| OciError::Decode { what, source })
}

/// Adds `key` unless `value` is "not set" (null, empty, zero, false).
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0) || n.as_u64() == Some(0),
        Value::Bool(b) => !b,
    };
    if !empty {
        map.insert(key.to_string(), value);
    }
}

/// A namespace type in either spelling (see the module documentation), written in OCI's.
fn namespace_type(name: &str, path: &str) -> Result<Value, OciError> {
    let typ = LinuxNamespaceType::try_from(name)
        .map_err(|_| field(path, format!("unknown namespace type {name:?}")))?;
    to_value(&typ, "spec")
}

/// A capability as Kata's agent reads one: `CAP_CHOWN` or `CHOWN`, either also quoted as a
/// JSON string (`"\"CAP_CHOWN\""`), in upper case; written as OCI spells it (`CAP_CHOWN`).
fn capability(name: &str, path: &str) -> Result<Value, OciError> {
    let unquoted = serde_json::from_str::<String>(name).ok();
    let bare = unquoted.as_deref().unwrap_or(name);
    let bare = bare.strip_prefix("CAP_").unwrap_or(bare);
    let cap = Capability::from_str(bare)
        .map_err(|_| field(path, format!("unknown capability {name:?}")))?;
    to_value(&cap, "spec")
}

fn capabilities(names: &[String], path: &str) -> Result<Value, OciError> {
    names
        .iter()
        .map(|name| capability(name, path))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn process_json(p: &oci::Process) -> Result<Value, OciError> {
    let mut m = Map::new();
    put(&mut m, "terminal", json!(p.Terminal));
    if let Some(size) = p.ConsoleSize.as_ref()
        && (size.Height > 0 || size.Width > 0)
    {
        m.insert(
            "consoleSize".into(),
            json!({"height": size.Height, "width": size.Width}),
        );
    }
    let user = p.User.as_ref();
    let mut u = Map::new();
    u.insert("uid".into(), json!(user.map_or(0, |u| u.UID)));
    u.insert("gid".into(), json!(user.map_or(0, |u| u.GID)));
    if let Some(user) = user {
        put(&mut u, "additionalGids", json!(user.AdditionalGids));
        put(&mut u, "username", json!(user.Username));
    }
    m.insert("user".into(), Value::Object(u));
    put(&mut m, "args", json!(p.Args));
    put(&mut m, "env", json!(p.Env));
    let cwd = if p.Cwd.is_empty() {
        "/"
    } else {
        p.Cwd.as_str()
    };
    m.insert("cwd".into(), json!(cwd));
    if let Some(caps) = p.Capabilities.as_ref() {
        let mut c = Map::new();
        for (key, names) in [
            ("bounding", &caps.Bounding),
            ("effective", &caps.Effective),
            ("inheritable", &caps.Inheritable),
            ("permitted", &caps.Permitted),
            ("ambient", &caps.Ambient),
        ] {
            let path = format!("process.capabilities.{key}");
            put(&mut c, key, capabilities(names, &path)?);
        }
        m.insert("capabilities".into(), Value::Object(c));
    }
    let rlimits: Vec<Value> = p
        .Rlimits
        .iter()
        .map(|r| json!({"type": r.Type, "hard": r.Hard, "soft": r.Soft}))
        .collect();
    put(&mut m, "rlimits", Value::Array(rlimits));
    put(&mut m, "noNewPrivileges", json!(p.NoNewPrivileges));
    put(&mut m, "apparmorProfile", json!(p.ApparmorProfile));
    // Out of i32's range, oci_spec refuses it by name.
    put(&mut m, "oomScoreAdj", json!(p.OOMScoreAdj));
    put(&mut m, "selinuxLabel", json!(p.SelinuxLabel));
    Ok(Value::Object(m))
}

fn hooks_json(h: &oci::Hooks) -> Value {
    let list = |hooks: &[oci::Hook]| -> Value {
        Value::Array(
            hooks
                .iter()
                .map(|hook| {
                    let mut o = Map::new();
                    o.insert("path".into(), json!(hook.Path));
                    put(&mut o, "args", json!(hook.Args));
                    put(&mut o, "env", json!(hook.Env));
                    put(&mut o, "timeout", json!(hook.Timeout));
                    Value::Object(o)
                })
                .collect(),
        )
    };
    let mut m = Map::new();
    put(&mut m, "prestart", list(&h.Prestart));
    put(&mut m, "poststart", list(&h.Poststart));
    put(&mut m, "poststop", list(&h.Poststop));
    put(&mut m, "createRuntime", list(&h.CreateRuntime));
    put(&mut m, "createContainer", list(&h.CreateContainer));
    put(&mut m, "startContainer", list(&h.StartContainer));
    Value::Object(m)
}

fn linux_json(l: &oci::Linux) -> Result<Value, OciError> {
    let mut m = Map::new();
    let mapping = |list: &[oci::LinuxIDMapping]| -> Value {
        Value::Array(
            list.iter()
                .map(|i| json!({"hostID": i.HostID, "containerID": i.ContainerID, "size": i.Size}))
                .collect(),
        )
    };
    put(&mut m, "uidMappings", mapping(&l.UIDMappings));
    put(&mut m, "gidMappings", mapping(&l.GIDMappings));
    put(&mut m, "sysctl", json!(l.Sysctl));
    if let Some(resources) = l.Resources.as_ref() {
        put(&mut m, "resources", resources_json(resources));
    }
    put(&mut m, "cgroupsPath", json!(l.CgroupsPath));
    let namespaces: Vec<Value> = l
        .Namespaces
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut o = Map::new();
            let path = format!("linux.namespaces[{i}].type");
            o.insert("type".into(), namespace_type(&n.Type, &path)?);
            put(&mut o, "path", json!(n.Path));
            Ok(Value::Object(o))
        })
        .collect::<Result<_, OciError>>()?;
    put(&mut m, "namespaces", Value::Array(namespaces));
    let devices: Vec<Value> = l
        .Devices
        .iter()
        .map(|d| {
            let mut o = Map::new();
            o.insert("path".into(), json!(d.Path));
            o.insert("type".into(), json!(d.Type));
            o.insert("major".into(), json!(d.Major));
            o.insert("minor".into(), json!(d.Minor));
            put(&mut o, "fileMode", json!(d.FileMode));
            put(&mut o, "uid", json!(d.UID));
            put(&mut o, "gid", json!(d.GID));
            Value::Object(o)
        })
        .collect();
    put(&mut m, "devices", Value::Array(devices));
    if let Some(seccomp) = l.Seccomp.as_ref()
        && !(seccomp.DefaultAction.is_empty() && seccomp.Syscalls.is_empty())
    {
        m.insert("seccomp".into(), seccomp_json(seccomp));
    }
    put(&mut m, "rootfsPropagation", json!(l.RootfsPropagation));
    put(&mut m, "maskedPaths", json!(l.MaskedPaths));
    put(&mut m, "readonlyPaths", json!(l.ReadonlyPaths));
    put(&mut m, "mountLabel", json!(l.MountLabel));
    if let Some(rdt) = l.IntelRdt.as_ref()
        && !rdt.L3CacheSchema.is_empty()
    {
        m.insert(
            "intelRdt".into(),
            json!({"l3CacheSchema": rdt.L3CacheSchema}),
        );
    }
    Ok(Value::Object(m))
}

fn seccomp_json(s: &oci::LinuxSeccomp) -> Value {
    let syscalls: Vec<Value> = s
        .Syscalls
        .iter()
        .map(|sc| {
            let mut o = Map::new();
            o.insert("names".into(), json!(sc.Names));
            o.insert("action".into(), json!(sc.Action));
            if let Some(oci::linux_syscall::ErrnoRet::Errnoret(errno)) = &sc.ErrnoRet {
                o.insert("errnoRet".into(), json!(errno));
            }
            let args: Vec<Value> = sc
                .Args
                .iter()
                .map(|a| {
                    let mut arg = Map::new();
                    arg.insert("index".into(), json!(a.Index));
                    arg.insert("value".into(), json!(a.Value));
                    put(&mut arg, "valueTwo", json!(a.ValueTwo));
                    arg.insert("op".into(), json!(a.Op));
                    Value::Object(arg)
                })
                .collect();
            put(&mut o, "args", Value::Array(args));
            Value::Object(o)
        })
        .collect();
    let mut m = Map::new();
    m.insert("defaultAction".into(), json!(s.DefaultAction));
    put(&mut m, "architectures", json!(s.Architectures));
    put(&mut m, "flags", json!(s.Flags));
    put(&mut m, "syscalls", Value::Array(syscalls));
    Value::Object(m)
}

fn resources_json(r: &oci::LinuxResources) -> Value {
    let mut m = Map::new();
    let rules: Vec<Value> = r
        .Devices
        .iter()
        .map(|d| {
            let mut o = Map::new();
            o.insert("allow".into(), json!(d.Allow));
            put(&mut o, "type", json!(d.Type));
            if d.Major >= 0 {
                o.insert("major".into(), json!(d.Major));
            }
            if d.Minor >= 0 {
                o.insert("minor".into(), json!(d.Minor));
            }
            put(&mut o, "access", json!(d.Access));
            Value::Object(o)
        })
        .collect();
    put(&mut m, "devices", Value::Array(rules));
    if let Some(mem) = r.Memory.as_ref() {
        let mut o = Map::new();
        put(&mut o, "limit", json!(mem.Limit));
        put(&mut o, "reservation", json!(mem.Reservation));
        put(&mut o, "swap", json!(mem.Swap));
        put(&mut o, "kernel", json!(mem.Kernel));
        put(&mut o, "kernelTCP", json!(mem.KernelTCP));
        put(&mut o, "swappiness", json!(mem.Swappiness));
        put(&mut o, "disableOOMKiller", json!(mem.DisableOOMKiller));
        put(&mut m, "memory", Value::Object(o));
    }
    if let Some(cpu) = r.CPU.as_ref() {
        let mut o = Map::new();
        put(&mut o, "shares", json!(cpu.Shares));
        put(&mut o, "quota", json!(cpu.Quota));
        put(&mut o, "period", json!(cpu.Period));
        put(&mut o, "realtimeRuntime", json!(cpu.RealtimeRuntime));
        put(&mut o, "realtimePeriod", json!(cpu.RealtimePeriod));
        put(&mut o, "cpus", json!(cpu.Cpus));
        put(&mut o, "mems", json!(cpu.Mems));
        put(&mut m, "cpu", Value::Object(o));
    }
    if let Some(pids) = r.Pids.as_ref()
        && pids.Limit != 0
    {
        m.insert("pids".into(), json!({"limit": pids.Limit}));
    }
    if let Some(io) = r.BlockIO.as_ref() {
        let mut o = Map::new();
        put(&mut o, "weight", json!(io.Weight));
        put(&mut o, "leafWeight", json!(io.LeafWeight));
        let weights: Vec<Value> = io
            .WeightDevice
            .iter()
            .map(|w| {
                let mut d = Map::new();
                d.insert("major".into(), json!(w.Major));
                d.insert("minor".into(), json!(w.Minor));
                put(&mut d, "weight", json!(w.Weight));
                put(&mut d, "leafWeight", json!(w.LeafWeight));
                Value::Object(d)
            })
            .collect();
        put(&mut o, "weightDevice", Value::Array(weights));
        for (key, list) in [
            ("throttleReadBpsDevice", &io.ThrottleReadBpsDevice),
            ("throttleWriteBpsDevice", &io.ThrottleWriteBpsDevice),
            ("throttleReadIOPSDevice", &io.ThrottleReadIOPSDevice),
            ("throttleWriteIOPSDevice", &io.ThrottleWriteIOPSDevice),
        ] {
            let devices: Vec<Value> = list
                .iter()
                .map(|t| json!({"major": t.Major, "minor": t.Minor, "rate": t.Rate}))
                .collect();
            put(&mut o, key, Value::Array(devices));
        }
        put(&mut m, "blockIO", Value::Object(o));
    }
    let hugepages: Vec<Value> = r
        .HugepageLimits
        .iter()
        .map(|h| json!({"pageSize": h.Pagesize, "limit": h.Limit}))
        .collect();
    put(&mut m, "hugepageLimits", Value::Array(hugepages));
    if let Some(net) = r.Network.as_ref() {
        let mut o = Map::new();
        put(&mut o, "classID", json!(net.ClassID));
        let priorities: Vec<Value> = net
            .Priorities
            .iter()
            .map(|p| json!({"name": p.Name, "priority": p.Priority}))
            .collect();
        put(&mut o, "priorities", Value::Array(priorities));
        put(&mut m, "network", Value::Object(o));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests;

//! Our protobuf rendering of the OCI spec (`hull_protocols::oci`) → `oci_spec::runtime`,
//! and cgroup statistics → protobuf.
//!
//! The protobuf is turned into the OCI `config.json` shape and deserialised by
//! `oci_spec`, so every enum (namespace types, capabilities, rlimits, seccomp actions) is
//! checked by the same code that reads a `config.json`, and a field the protobuf leaves
//! empty is absent, as in JSON. In this encoding 0 means "not set" for the resource
//! numbers (memory, CPU, pids).
//!
//! Ignored on purpose, as Kata's agent does: hooks (the host runtime ran them; Kata's
//! runtime does not send them), `mountLabel`, the device cgroup rules (cgroup v2 device
//! control needs BPF, which this agent does not carry; the VM is the device boundary),
//! `network` resources (cgroup v1 only), kernel memory limits, `disableOOMKiller` and
//! swappiness (not in cgroup v2). Refused: Intel RDT, realtime CPU limits.

use std::collections::HashMap;

use hull_protocols::oci;
use oci_spec::runtime::{LinuxResources, Process, Spec};
use serde_json::{Map, Value, json};

use crate::error::AgentError;

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::InvalidArgument(message.into())
}

/// Adds `key` when `value` is not empty/zero.
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

/// `CreateContainerRequest.OCI` → a spec.
pub fn spec_from_proto(spec: &oci::Spec) -> Result<Spec, AgentError> {
    let mut m = Map::new();
    m.insert("ociVersion".into(), json!(spec.Version));
    if let Some(root) = spec.Root.as_ref() {
        m.insert(
            "root".into(),
            json!({"path": root.Path, "readonly": root.Readonly}),
        );
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
    put(&mut m, "annotations", json!(spec.Annotations));
    if let Some(linux) = spec.Linux.as_ref() {
        m.insert("linux".into(), linux_json(linux)?);
    }
    if spec.Hooks.as_ref().is_some_and(|h| {
        !(h.Prestart.is_empty() && h.Poststart.is_empty() && h.Poststop.is_empty())
    }) {
        tracing::debug!("spec hooks ignored: they are the host runtime's");
    }
    from_json(Value::Object(m), "spec")
}

/// `StringUser` (ids as strings) over the process's user. Only numeric ids are
/// understood: names would have to be looked up in the container's `/etc/passwd`, which
/// this agent does not do (a clear error instead).
pub fn apply_string_user(
    process: &mut oci::Process,
    user: &hull_protocols::agent::StringUser,
) -> Result<(), AgentError> {
    if user.uid.is_empty() && user.gid.is_empty() && user.additionalGids.is_empty() {
        return Ok(());
    }
    let number = |text: &str, what: &str| {
        text.parse::<u32>().map_err(|_| {
            invalid(format!(
                "string_user {what} {text:?}: only numeric ids are supported"
            ))
        })
    };
    let target = process.User.mut_or_insert_default();
    if !user.uid.is_empty() {
        target.UID = number(&user.uid, "uid")?;
    }
    if !user.gid.is_empty() {
        target.GID = number(&user.gid, "gid")?;
    }
    if !user.additionalGids.is_empty() {
        target.AdditionalGids = user
            .additionalGids
            .iter()
            .map(|g| number(g, "additional gid"))
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}

/// `ExecProcessRequest.process` → a process.
pub fn process_from_proto(process: &oci::Process) -> Result<Process, AgentError> {
    from_json(process_json(process)?, "process")
}

/// `UpdateContainerRequest.resources` → resources.
pub fn resources_from_proto(resources: &oci::LinuxResources) -> Result<LinuxResources, AgentError> {
    from_json(resources_json(resources)?, "resources")
}

fn from_json<T: for<'de> serde::Deserialize<'de>>(
    value: Value,
    what: &str,
) -> Result<T, AgentError> {
    serde_json::from_value(value).map_err(|e| invalid(format!("invalid {what}: {e}")))
}

fn process_json(p: &oci::Process) -> Result<Value, AgentError> {
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
    m.insert("cwd".into(), json!(p.Cwd));
    if let Some(caps) = p.Capabilities.as_ref() {
        m.insert(
            "capabilities".into(),
            json!({
                "bounding": caps.Bounding,
                "effective": caps.Effective,
                "inheritable": caps.Inheritable,
                "permitted": caps.Permitted,
                "ambient": caps.Ambient,
            }),
        );
    }
    let rlimits: Vec<Value> = p
        .Rlimits
        .iter()
        .map(|r| json!({"type": r.Type, "hard": r.Hard, "soft": r.Soft}))
        .collect();
    put(&mut m, "rlimits", Value::Array(rlimits));
    put(&mut m, "noNewPrivileges", json!(p.NoNewPrivileges));
    put(&mut m, "apparmorProfile", json!(p.ApparmorProfile));
    let adj = i32::try_from(p.OOMScoreAdj)
        .map_err(|_| invalid(format!("OOMScoreAdj {} is out of range", p.OOMScoreAdj)))?;
    m.insert("oomScoreAdj".into(), json!(adj));
    put(&mut m, "selinuxLabel", json!(p.SelinuxLabel));
    Ok(Value::Object(m))
}

fn linux_json(l: &oci::Linux) -> Result<Value, AgentError> {
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
        put(&mut m, "resources", resources_json(resources)?);
    }
    put(&mut m, "cgroupsPath", json!(l.CgroupsPath));
    let namespaces: Vec<Value> = l
        .Namespaces
        .iter()
        .map(|n| {
            let mut o = Map::new();
            o.insert("type".into(), json!(n.Type));
            put(&mut o, "path", json!(n.Path));
            Value::Object(o)
        })
        .collect();
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
            o.insert("uid".into(), json!(d.UID));
            o.insert("gid".into(), json!(d.GID));
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
    if l.IntelRdt
        .as_ref()
        .is_some_and(|r| !r.L3CacheSchema.is_empty())
    {
        return Err(invalid("Intel RDT is not supported"));
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
                    json!({"index": a.Index, "value": a.Value, "valueTwo": a.ValueTwo, "op": a.Op})
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

fn resources_json(r: &oci::LinuxResources) -> Result<Value, AgentError> {
    let mut m = Map::new();
    if let Some(mem) = r.Memory.as_ref() {
        let mut o = Map::new();
        put(&mut o, "limit", json!(mem.Limit));
        put(&mut o, "reservation", json!(mem.Reservation));
        put(&mut o, "swap", json!(mem.Swap));
        put(&mut m, "memory", Value::Object(o));
    }
    if let Some(cpu) = r.CPU.as_ref() {
        if cpu.RealtimeRuntime != 0 || cpu.RealtimePeriod != 0 {
            return Err(invalid(
                "realtime CPU limits are not supported with cgroup v2",
            ));
        }
        let mut o = Map::new();
        put(&mut o, "shares", json!(cpu.Shares));
        put(&mut o, "quota", json!(cpu.Quota));
        put(&mut o, "period", json!(cpu.Period));
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
            .map(|w| json!({"major": w.Major, "minor": w.Minor, "weight": w.Weight, "leafWeight": w.LeafWeight}))
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
    Ok(Value::Object(m))
}

/// cgroup statistics → `CgroupStats`.
pub fn stats_to_proto(stats: &libcgroups::stats::Stats) -> hull_protocols::agent::CgroupStats {
    use hull_protocols::agent as pb;
    let cpu = &stats.cpu;
    let memory = &stats.memory;
    let data = |d: &libcgroups::stats::MemoryData| pb::MemoryData {
        usage: d.usage,
        max_usage: d.max_usage,
        failcnt: d.fail_count,
        limit: d.limit,
        ..Default::default()
    };
    let blkio = |list: &[libcgroups::stats::BlkioDeviceStat]| -> Vec<pb::BlkioStatsEntry> {
        list.iter()
            .map(|e| pb::BlkioStatsEntry {
                major: e.major,
                minor: e.minor,
                op: e.op_type.clone().unwrap_or_default(),
                value: e.value,
                ..Default::default()
            })
            .collect()
    };
    let hugetlb: HashMap<String, pb::HugetlbStats> = stats
        .hugetlb
        .iter()
        .map(|(size, h)| {
            (
                size.clone(),
                pb::HugetlbStats {
                    usage: h.usage,
                    max_usage: h.max_usage,
                    failcnt: h.fail_count,
                    ..Default::default()
                },
            )
        })
        .collect();
    pb::CgroupStats {
        cpu_stats: Some(pb::CpuStats {
            cpu_usage: Some(pb::CpuUsage {
                total_usage: cpu.usage.usage_total,
                percpu_usage: cpu.usage.per_core_usage_total.clone(),
                usage_in_kernelmode: cpu.usage.usage_kernel,
                usage_in_usermode: cpu.usage.usage_user,
                ..Default::default()
            })
            .into(),
            throttling_data: Some(pb::ThrottlingData {
                periods: cpu.throttling.periods,
                throttled_periods: cpu.throttling.throttled_periods,
                throttled_time: cpu.throttling.throttled_time,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory_stats: Some(pb::MemoryStats {
            cache: memory.cache,
            usage: Some(data(&memory.memory)).into(),
            swap_usage: Some(data(&memory.memswap)).into(),
            kernel_usage: Some(data(&memory.kernel)).into(),
            use_hierarchy: memory.hierarchy,
            stats: memory.stats.clone(),
            ..Default::default()
        })
        .into(),
        pids_stats: Some(pb::PidsStats {
            current: stats.pids.current,
            limit: stats.pids.limit,
            ..Default::default()
        })
        .into(),
        blkio_stats: Some(pb::BlkioStats {
            io_service_bytes_recursive: blkio(&stats.blkio.service_bytes),
            io_serviced_recursive: blkio(&stats.blkio.serviced),
            io_queued_recursive: blkio(&stats.blkio.queued),
            io_service_time_recursive: blkio(&stats.blkio.service_time),
            io_wait_time_recursive: blkio(&stats.blkio.wait_time),
            io_merged_recursive: blkio(&stats.blkio.merged),
            io_time_recursive: blkio(&stats.blkio.time),
            sectors_recursive: blkio(&stats.blkio.sectors),
            ..Default::default()
        })
        .into(),
        hugetlb_stats: hugetlb,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_spec() -> oci::Spec {
        let mut spec = oci::Spec::new();
        spec.Version = "1.0.2".into();
        spec.Root = Some(oci::Root {
            Path: "/run/rootfs".into(),
            Readonly: true,
            ..Default::default()
        })
        .into();
        let mut process = oci::Process::new();
        process.Args = vec!["sh".into(), "-c".into(), "true".into()];
        process.Cwd = "/".into();
        process.Env = vec!["PATH=/bin".into()];
        process.User = Some(oci::User {
            UID: 1000,
            GID: 1000,
            AdditionalGids: vec![10],
            ..Default::default()
        })
        .into();
        process.Capabilities = Some(oci::LinuxCapabilities {
            Bounding: vec!["CAP_CHOWN".into()],
            ..Default::default()
        })
        .into();
        process.Rlimits = vec![oci::POSIXRlimit {
            Type: "RLIMIT_NOFILE".into(),
            Hard: 1024,
            Soft: 512,
            ..Default::default()
        }];
        spec.Process = Some(process).into();
        spec.Hostname = "box".into();
        spec.Mounts = vec![oci::Mount {
            destination: "/proc".into(),
            source: "proc".into(),
            type_: "proc".into(),
            ..Default::default()
        }];
        let mut linux = oci::Linux::new();
        linux.Namespaces = vec![
            oci::LinuxNamespace {
                Type: "mount".into(),
                ..Default::default()
            },
            oci::LinuxNamespace {
                Type: "uts".into(),
                ..Default::default()
            },
        ];
        linux.Resources = Some(oci::LinuxResources {
            Memory: Some(oci::LinuxMemory {
                Limit: 64 << 20,
                ..Default::default()
            })
            .into(),
            Pids: Some(oci::LinuxPids {
                Limit: 10,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into();
        linux.Seccomp = Some(oci::LinuxSeccomp {
            DefaultAction: "SCMP_ACT_ALLOW".into(),
            Syscalls: vec![oci::LinuxSyscall {
                Names: vec!["mkdir".into()],
                Action: "SCMP_ACT_ERRNO".into(),
                ErrnoRet: Some(oci::linux_syscall::ErrnoRet::Errnoret(1)),
                ..Default::default()
            }],
            ..Default::default()
        })
        .into();
        linux.MaskedPaths = vec!["/proc/kcore".into()];
        spec.Linux = Some(linux).into();
        spec
    }

    #[test]
    fn a_full_spec_converts() {
        let spec = spec_from_proto(&proto_spec()).unwrap();
        let root = spec.root().as_ref().unwrap();
        assert_eq!(root.path().to_str(), Some("/run/rootfs"));
        assert_eq!(root.readonly(), Some(true));
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.user().uid(), 1000);
        assert_eq!(process.user().additional_gids().as_deref(), Some(&[10][..]));
        assert_eq!(process.rlimits().as_ref().unwrap()[0].soft(), 512);
        let linux = spec.linux().as_ref().unwrap();
        let resources = linux.resources().as_ref().unwrap();
        assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(resources.pids().as_ref().unwrap().limit(), 10);
        assert!(resources.cpu().is_none(), "zero means not set");
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(seccomp.syscalls().as_ref().unwrap()[0].errno_ret(), Some(1));
        assert_eq!(spec.hostname().as_deref(), Some("box"));
    }

    #[test]
    fn string_user_overrides_numeric_ids_only() {
        let mut process = oci::Process::new();
        let user = hull_protocols::agent::StringUser {
            uid: "1000".into(),
            gid: "100".into(),
            additionalGids: vec!["5".into()],
            ..Default::default()
        };
        apply_string_user(&mut process, &user).unwrap();
        assert_eq!(process.User.UID, 1000);
        assert_eq!(process.User.GID, 100);
        assert_eq!(process.User.AdditionalGids, vec![5]);
        let named = hull_protocols::agent::StringUser {
            uid: "nobody".into(),
            ..Default::default()
        };
        let err = apply_string_user(&mut process, &named).unwrap_err();
        assert!(err.to_string().contains("numeric"), "{err}");
    }

    #[test]
    fn unknown_names_are_invalid_arguments() {
        for patch in [
            |s: &mut oci::Spec| s.Linux.as_mut().unwrap().Namespaces[0].Type = "bogus".into(),
            |s: &mut oci::Spec| {
                s.Process
                    .as_mut()
                    .unwrap()
                    .Capabilities
                    .as_mut()
                    .unwrap()
                    .Bounding = vec!["CAP_BOGUS".into()]
            },
            |s: &mut oci::Spec| s.Process.as_mut().unwrap().Rlimits[0].Type = "RLIMIT_X".into(),
            |s: &mut oci::Spec| {
                s.Linux
                    .as_mut()
                    .unwrap()
                    .Seccomp
                    .as_mut()
                    .unwrap()
                    .DefaultAction = "SCMP_ACT_MAYBE".into()
            },
        ] {
            let mut spec = proto_spec();
            patch(&mut spec);
            let err = spec_from_proto(&spec).unwrap_err();
            assert!(matches!(err, AgentError::InvalidArgument(_)), "{err}");
        }
    }
}

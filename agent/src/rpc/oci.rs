//! The OCI spec from the wire (`hull_protocols::oci`) → `oci_spec::runtime`, with the
//! agent's policy on top; and cgroup statistics → protobuf.
//!
//! The conversion itself is `hull_protocols::oci_json`, the one converter of both
//! directions (hull-ctl and the tests use the other). It carries every field faithfully;
//! what this agent does with them is decided here, as Kata's agent does:
//!
//! - kept: hooks, run in the guest as Kata's agent runs them (the Go runtime sends
//!   none, runtime-rs its `startContainer` ones);
//! - ignored: `mountLabel`, the device cgroup rules (cgroup v2 device control needs BPF, which
//!   this agent does not carry; the VM is the device boundary: a container's rules are
//!   kept in its spec, rewritten to the guest's numbers for its `devices`, as Kata's
//!   agent does, and `UpdateContainer`'s are dropped), `network` resources
//!   (cgroup v1 only), kernel memory limits, `disableOOMKiller` and swappiness (not in
//!   cgroup v2);
//! - refused: Intel RDT, realtime CPU limits;
//! - `OOMScoreAdj` 0 is written as 0: the protobuf cannot tell it from "not set".

use std::collections::HashMap;

use hull_container::stats::{BlkioEntry, ContainerStats, MemoryCounter};
use hull_protocols::oci;
use hull_protocols::oci_json::{self, OciError};
use oci_spec::runtime::{LinuxResources, Process, Spec};

use crate::error::AgentError;

/// A conversion error, for the request field `field`.
fn converted(field: &'static str) -> impl Fn(OciError) -> AgentError {
    move |error| AgentError::InvalidRequest {
        field,
        reason: error.to_string(),
    }
}

/// `CreateContainerRequest.OCI` → a spec.
pub fn spec_from_proto(spec: &oci::Spec) -> Result<Spec, AgentError> {
    let mut spec = spec.clone();
    if let Some(linux) = spec.Linux.as_mut() {
        if linux
            .IntelRdt
            .as_ref()
            .is_some_and(|r| !r.L3CacheSchema.is_empty())
        {
            return Err(AgentError::Unsupported { what: "Intel RDT" });
        }
        linux.MountLabel.clear();
        if let Some(resources) = linux.Resources.as_mut() {
            guest_resources(resources)?;
        }
    }
    let mut out = oci_json::spec_from_proto(&spec).map_err(converted("OCI"))?;
    if let Some(process) = out.process_mut() {
        written_oom_score_adj(process);
    }
    Ok(out)
}

/// What the guest does not act on is dropped, what it cannot do is refused.
fn guest_resources(resources: &mut oci::LinuxResources) -> Result<(), AgentError> {
    if let Some(cpu) = resources.CPU.as_ref()
        && (cpu.RealtimeRuntime != 0 || cpu.RealtimePeriod != 0)
    {
        return Err(AgentError::Unsupported {
            what: "a realtime CPU limit (cgroup v2 has none)",
        });
    }
    resources.Network.clear();
    if let Some(memory) = resources.Memory.as_mut() {
        memory.Kernel = 0;
        memory.KernelTCP = 0;
        memory.Swappiness = 0;
        memory.DisableOOMKiller = false;
    }
    Ok(())
}

fn written_oom_score_adj(process: &mut Process) {
    if process.oom_score_adj().is_none() {
        process.set_oom_score_adj(Some(0));
    }
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
    let number = |text: &str, field: &'static str| {
        text.parse::<u32>().map_err(|_| AgentError::UserName {
            field,
            value: text.to_string(),
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
    let mut out = oci_json::process_from_proto(process).map_err(converted("process"))?;
    written_oom_score_adj(&mut out);
    Ok(out)
}

/// `UpdateContainerRequest.resources` → resources.
pub fn resources_from_proto(resources: &oci::LinuxResources) -> Result<LinuxResources, AgentError> {
    let mut resources = resources.clone();
    guest_resources(&mut resources)?;
    resources.Devices.clear();
    oci_json::resources_from_proto(&resources).map_err(converted("resources"))
}

/// A container's statistics → `CgroupStats`.
pub fn stats_to_proto(stats: &ContainerStats) -> hull_protocols::agent::CgroupStats {
    use hull_protocols::agent as pb;
    let cpu = &stats.cpu;
    let memory = &stats.memory;
    let data = |d: &MemoryCounter| pb::MemoryData {
        usage: d.usage,
        max_usage: d.max_usage,
        failcnt: d.fail_count,
        limit: d.limit,
        ..Default::default()
    };
    let blkio = |list: &[BlkioEntry]| -> Vec<pb::BlkioStatsEntry> {
        list.iter()
            .map(|e| pb::BlkioStatsEntry {
                major: e.major,
                minor: e.minor,
                op: e.op.clone(),
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
                total_usage: cpu.total_ns,
                percpu_usage: cpu.per_cpu_ns.clone(),
                usage_in_kernelmode: cpu.kernel_ns,
                usage_in_usermode: cpu.user_ns,
                ..Default::default()
            })
            .into(),
            throttling_data: Some(pb::ThrottlingData {
                periods: cpu.throttling.periods,
                throttled_periods: cpu.throttling.throttled_periods,
                throttled_time: cpu.throttling.throttled_ns,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        memory_stats: Some(pb::MemoryStats {
            cache: memory.cache,
            usage: Some(data(&memory.usage)).into(),
            swap_usage: Some(data(&memory.swap)).into(),
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
    fn the_guest_policy_keeps_hooks_drops_what_it_does_not_act_on_and_refuses_what_it_cannot_do() {
        let mut spec = proto_spec();
        spec.Hooks = Some(oci::Hooks {
            Prestart: vec![oci::Hook {
                Path: "/bin/hook".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .into();
        let linux = spec.Linux.as_mut().unwrap();
        linux.MountLabel = "label".into();
        let resources = linux.Resources.as_mut().unwrap();
        resources.Devices = vec![oci::LinuxDeviceCgroup {
            Access: "rwm".into(),
            Major: -1,
            Minor: -1,
            ..Default::default()
        }];
        resources.Memory.as_mut().unwrap().Swappiness = 10;
        let converted = spec_from_proto(&spec).unwrap();
        let hooks = converted.hooks().as_ref().expect("hooks are kept");
        assert_eq!(
            hooks.prestart().as_ref().unwrap()[0].path(),
            std::path::Path::new("/bin/hook")
        );
        let linux = converted.linux().as_ref().unwrap();
        assert!(linux.mount_label().is_none());
        let resources = linux.resources().as_ref().unwrap();
        // A container's device rules stay (the device layer rewrites them); not enforced.
        let rules = resources.devices().as_ref().unwrap();
        assert_eq!((rules.len(), rules[0].major()), (1, None));
        assert!(resources.memory().as_ref().unwrap().swappiness().is_none());
        let update = resources_from_proto(spec.Linux.as_ref().unwrap().Resources.as_ref().unwrap());
        assert!(
            update.unwrap().devices().is_none(),
            "UpdateContainer's are dropped"
        );
        assert_eq!(
            converted.process().as_ref().unwrap().oom_score_adj(),
            Some(0),
            "a zero OOMScoreAdj is written"
        );

        let mut realtime = proto_spec();
        realtime
            .Linux
            .as_mut()
            .unwrap()
            .Resources
            .as_mut()
            .unwrap()
            .CPU = Some(oci::LinuxCPU {
            RealtimeRuntime: 10,
            ..Default::default()
        })
        .into();
        let err = spec_from_proto(&realtime).unwrap_err();
        assert!(err.to_string().contains("realtime"), "{err}");
        let mut rdt = proto_spec();
        rdt.Linux.as_mut().unwrap().IntelRdt = Some(oci::LinuxIntelRdt {
            L3CacheSchema: "L3:0=f".into(),
            ..Default::default()
        })
        .into();
        let err = spec_from_proto(&rdt).unwrap_err();
        assert!(err.to_string().contains("Intel RDT"), "{err}");
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
            assert!(
                matches!(err, AgentError::InvalidRequest { field: "OCI", .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn stats_fill_kata_cgroup_stats() {
        use hull_container::stats::{CpuStats, CpuThrottling, HugetlbStats};
        let entry = BlkioEntry {
            major: 254,
            minor: 1,
            op: "Read".into(),
            value: 7,
        };
        let mut stats = ContainerStats {
            cpu: CpuStats {
                total_ns: 1,
                user_ns: 2,
                kernel_ns: 3,
                per_cpu_ns: vec![4],
                throttling: CpuThrottling {
                    periods: 5,
                    throttled_periods: 6,
                    throttled_ns: 8,
                },
            },
            ..Default::default()
        };
        stats.memory.usage = MemoryCounter {
            usage: 9,
            max_usage: 10,
            fail_count: 11,
            limit: 12,
        };
        stats.memory.swap.usage = 13;
        stats.memory.kernel.usage = 14;
        stats.memory.cache = 15;
        stats.memory.hierarchy = true;
        stats.memory.stats.insert("anon".into(), 16);
        stats.pids.current = 17;
        stats.pids.limit = 18;
        stats.blkio.service_bytes = vec![entry.clone()];
        stats.blkio.sectors = vec![entry];
        stats.hugetlb.insert(
            "2MB".into(),
            HugetlbStats {
                usage: 19,
                max_usage: 20,
                fail_count: 21,
            },
        );
        let pb = stats_to_proto(&stats);
        let cpu = &pb.cpu_stats;
        assert_eq!(cpu.cpu_usage.total_usage, 1);
        assert_eq!(cpu.cpu_usage.usage_in_usermode, 2);
        assert_eq!(cpu.cpu_usage.usage_in_kernelmode, 3);
        assert_eq!(cpu.cpu_usage.percpu_usage, vec![4]);
        assert_eq!(cpu.throttling_data.periods, 5);
        assert_eq!(cpu.throttling_data.throttled_periods, 6);
        assert_eq!(cpu.throttling_data.throttled_time, 8);
        let memory = &pb.memory_stats;
        assert_eq!(memory.usage.usage, 9);
        assert_eq!(memory.usage.max_usage, 10);
        assert_eq!(memory.usage.failcnt, 11);
        assert_eq!(memory.usage.limit, 12);
        assert_eq!(memory.swap_usage.usage, 13);
        assert_eq!(memory.kernel_usage.usage, 14);
        assert_eq!(memory.cache, 15);
        assert!(memory.use_hierarchy);
        assert_eq!(memory.stats["anon"], 16);
        assert_eq!(pb.pids_stats.current, 17);
        assert_eq!(pb.pids_stats.limit, 18);
        let blkio = &pb.blkio_stats;
        assert_eq!(blkio.io_service_bytes_recursive.len(), 1);
        let e = &blkio.io_service_bytes_recursive[0];
        assert_eq!(
            (e.major, e.minor, e.op.as_str(), e.value),
            (254, 1, "Read", 7)
        );
        assert_eq!(blkio.sectors_recursive.len(), 1);
        assert!(blkio.io_serviced_recursive.is_empty());
        let h = &pb.hugetlb_stats["2MB"];
        assert_eq!((h.usage, h.max_usage, h.failcnt), (19, 20, 21));
    }
}

use super::*;

/// Every field the protobuf carries, none spelled as a zero.
fn rich_config() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "root": {"path": "/run/kata-containers/shared/containers/c1/rootfs", "readonly": true},
        "hostname": "box",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/data", "type": "bind", "source": "/run/data",
             "options": ["rbind", "ro"]}
        ],
        "process": {
            "terminal": true,
            "consoleSize": {"height": 24, "width": 80},
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "username": "app"},
            "args": ["sh", "-c", "echo hi"],
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/srv",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN"],
                "effective": ["CAP_CHOWN"],
                "inheritable": ["CAP_CHOWN"],
                "permitted": ["CAP_KILL", "CAP_CHOWN"],
                "ambient": ["CAP_CHOWN"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}],
            "noNewPrivileges": true,
            "apparmorProfile": "unconfined",
            "oomScoreAdj": -500,
            "selinuxLabel": "system_u:system_r:container_t:s0"
        },
        "hooks": {
            "prestart": [{"path": "/bin/pre", "args": ["pre", "1"], "env": ["A=1"], "timeout": 5}],
            "poststart": [{"path": "/bin/post"}],
            "poststop": [{"path": "/bin/stop"}],
            "createRuntime": [{"path": "/bin/cr"}],
            "createContainer": [{"path": "/bin/cc"}],
            "startContainer": [{"path": "/bin/sc"}]
        },
        "annotations": {"io.kubernetes.cri.container-type": "container", "x": ""},
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "sysctl": {"net.ipv4.ip_forward": "1"},
            "resources": {
                "devices": [
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                    {"allow": true, "type": "c", "major": 136, "access": "rwm"}
                ],
                "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                           "kernel": 1048576, "kernelTCP": 65536, "swappiness": 10,
                           "disableOOMKiller": true},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000,
                        "realtimeRuntime": 950, "realtimePeriod": 1000,
                        "cpus": "0-1", "mems": "0"},
                "pids": {"limit": 32},
                "blockIO": {
                    "weight": 500, "leafWeight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 200}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 200}]
                },
                "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
                "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]}
            },
            "cgroupsPath": "/hull/c1",
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": "/var/run/netns/cni-1"}
            ],
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                         "fileMode": 438, "uid": 1, "gid": 2}],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "architectures": ["SCMP_ARCH_X86_64"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "syscalls": [
                    {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 8, "valueTwo": 4, "op": "SCMP_CMP_EQ"}]}
                ]
            },
            "rootfsPropagation": "rslave",
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys"],
            "mountLabel": "system_u:object_r:container_file_t:s0",
            "intelRdt": {"l3CacheSchema": "L3:0=ff"}
        }
    })
}

fn parse(value: &Value) -> Spec {
    spec_from_config_json(value.to_string().as_bytes()).expect("a valid config.json")
}

#[test]
fn a_rich_config_json_survives_the_protobuf_unchanged() {
    let spec = parse(&rich_config());
    let proto = spec_to_proto(&spec).unwrap();
    let back = spec_from_proto(&proto).unwrap();
    assert_eq!(back, spec);
    // And the protobuf carries what Kata's runtime would put there.
    assert_eq!(proto.Version, "1.0.2");
    let process = proto.Process.as_ref().unwrap();
    assert_eq!(process.OOMScoreAdj, -500);
    assert_eq!(
        process.Capabilities.as_ref().unwrap().Bounding,
        ["CAP_CHOWN", "CAP_KILL"],
        "capability sets are written sorted"
    );
    let linux = proto.Linux.as_ref().unwrap();
    let rules = &linux.Resources.as_ref().unwrap().Devices;
    assert_eq!((rules[0].Major, rules[0].Minor), (-1, -1), "wildcards");
    assert_eq!((rules[2].Major, rules[2].Minor), (136, -1));
    assert_eq!(linux.Namespaces[4].Type, "network");
    assert_eq!(linux.Namespaces[4].Path, "/var/run/netns/cni-1");
    assert_eq!(
        errno_ret(&linux.Seccomp.as_ref().unwrap().Syscalls[1]),
        Some(1)
    );
    assert_eq!(proto.Hooks.as_ref().unwrap().Prestart[0].Timeout, 5);
}

fn errno_ret(syscall: &oci::LinuxSyscall) -> Option<u32> {
    syscall
        .ErrnoRet
        .as_ref()
        .map(|oci::linux_syscall::ErrnoRet::Errnoret(n)| *n)
}

#[test]
fn the_minimal_runc_spec_survives_too() {
    let spec = parse(&json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "mount"}]}
    }));
    let proto = spec_to_proto(&spec).unwrap();
    assert_eq!(spec_from_proto(&proto).unwrap(), spec);
}

#[test]
fn explicit_zeros_come_back_absent() {
    let spec = parse(&json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs", "readonly": false},
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
                    "oomScoreAdj": 0}
    }));
    let back = spec_from_proto(&spec_to_proto(&spec).unwrap()).unwrap();
    let process = back.process().as_ref().unwrap();
    assert_eq!(process.terminal(), None);
    assert_eq!(process.oom_score_adj(), None);
    assert_eq!(back.root().as_ref().unwrap().readonly(), None);
}

#[test]
fn fields_the_protobuf_cannot_carry_are_refused_by_name() {
    for (patch, path) in [
        (json!({"domainname": "example.org"}), "domainname"),
        (
            json!({"process": {"user": {"uid": 0, "gid": 0, "umask": 18}, "cwd": "/"}}),
            "process.user.umask",
        ),
        (
            json!({"linux": {"resources": {"unified": {"memory.high": "1M"}}}}),
            "linux.resources.unified",
        ),
        (
            json!({"linux": {"timeOffsets": {"monotonic": {"secs": 1, "nanosecs": 0}}}}),
            "linux.timeOffsets",
        ),
    ] {
        let mut config = json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
        if let (Value::Object(base), Value::Object(extra)) = (&mut config, patch) {
            base.extend(extra);
        }
        let err = spec_to_proto(&parse(&config)).unwrap_err();
        assert!(
            matches!(&err, OciError::Field { path: p, .. } if p == path),
            "{path}: {err}"
        );
        assert!(err.to_string().contains("no such field"), "{err}");
    }
}

#[test]
fn bad_names_from_the_wire_are_refused() {
    let good = spec_to_proto(&parse(&rich_config())).unwrap();
    fn caps(s: &mut oci::Spec, names: &[&str]) {
        s.Process
            .as_mut()
            .unwrap()
            .Capabilities
            .as_mut()
            .unwrap()
            .Bounding = names.iter().map(|n| n.to_string()).collect();
    }
    type Patch = fn(&mut oci::Spec);
    let named: [(Patch, &str); 5] = [
        (
            |s| s.Linux.as_mut().unwrap().Namespaces[1].Type = "bogus".into(),
            "linux.namespaces[1].type",
        ),
        (
            |s| s.Linux.as_mut().unwrap().Namespaces[0].Type = "MOUNT".into(),
            "linux.namespaces[0].type",
        ),
        (|s| caps(s, &["CAP_BOGUS"]), "process.capabilities.bounding"),
        // Kata's agent takes capability names in upper case only, one `CAP_` at most.
        (|s| caps(s, &["cap_chown"]), "process.capabilities.bounding"),
        (
            |s| caps(s, &["CAP_CAP_CHOWN"]),
            "process.capabilities.bounding",
        ),
    ];
    for (patch, path) in named {
        let mut spec = good.clone();
        patch(&mut spec);
        let err = spec_from_proto(&spec).unwrap_err();
        assert!(
            matches!(&err, OciError::Field { path: p, .. } if p == path),
            "{path}: {err}"
        );
        assert!(err.to_string().contains("unknown"), "{err}");
    }
    for patch in [
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
        |s: &mut oci::Spec| s.Process.as_mut().unwrap().OOMScoreAdj = i64::from(i32::MAX) + 1,
    ] {
        let mut spec = good.clone();
        patch(&mut spec);
        let err = spec_from_proto(&spec).unwrap_err();
        assert!(
            matches!(err, OciError::Decode { what: "spec", .. }),
            "{err}"
        );
    }
}

#[test]
fn both_runtimes_spellings_of_names_are_read_as_kata_s_agent_reads_them() {
    let mut spec = spec_to_proto(&parse(&rich_config())).unwrap();
    let linux = spec.Linux.as_mut().unwrap();
    for extra in ["user", "cgroup"] {
        linux.Namespaces.push(oci::LinuxNamespace {
            Type: extra.into(),
            ..Default::default()
        });
    }
    // runtime-rs writes oci-spec's `to_string()`; the Go runtime OCI's JSON names.
    for (ns, name) in linux
        .Namespaces
        .iter_mut()
        .zip(["pid", "ipc", "uts", "mnt", "net", "user", "cgroup"])
    {
        ns.Type = name.into();
    }
    let process = spec.Process.as_mut().unwrap();
    let caps = process.Capabilities.as_mut().unwrap();
    caps.Bounding = vec!["CHOWN".into(), "\"CAP_KILL\"".into()];
    caps.Effective = vec!["\"CHOWN\"".into()];
    caps.Permitted = vec!["CAP_KILL".into(), "SYS_TTY_CONFIG".into(), "SETFCAP".into()];
    process.Cwd = String::new();
    let back = spec_from_proto(&spec).unwrap();
    let written = serde_json::to_value(&back).unwrap();
    let types: Vec<&str> = written["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["pid", "ipc", "uts", "mount", "network", "user", "cgroup"]
    );
    let caps = &written["process"]["capabilities"];
    let mut bounding: Vec<&str> = caps["bounding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    bounding.sort();
    assert_eq!(bounding, ["CAP_CHOWN", "CAP_KILL"]);
    assert_eq!(caps["effective"], json!(["CAP_CHOWN"]));
    let mut permitted: Vec<&str> = caps["permitted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    permitted.sort();
    assert_eq!(permitted, ["CAP_KILL", "CAP_SETFCAP", "CAP_SYS_TTY_CONFIG"]);
    assert_eq!(written["process"]["cwd"], "/", "an empty cwd is /");
    // An exec'd process reads the same way.
    let process = process_from_proto(spec.Process.as_ref().unwrap()).unwrap();
    assert_eq!(process.cwd(), std::path::Path::new("/"));
}

#[test]
fn processes_and_resources_convert_alone() {
    let spec = parse(&rich_config());
    let process = spec.process().as_ref().unwrap();
    let proto = process_to_proto(process).unwrap();
    assert_eq!(&process_from_proto(&proto).unwrap(), process);
    let resources = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .unwrap();
    let proto = resources_to_proto(resources).unwrap();
    assert_eq!(proto.Pids.as_ref().unwrap().Limit, 32);
    assert_eq!(&resources_from_proto(&proto).unwrap(), resources);
}

#[test]
fn not_json_is_a_decode_error() {
    let err = spec_from_config_json(b"{\"ociVersion\": ").unwrap_err();
    assert!(err.to_string().starts_with("invalid spec: "), "{err}");
}

/// runtime-rs writes every other name with oci-spec's `to_string()` (rlimits, seccomp
/// actions, architectures, flags, operators); those are OCI's names already, so they
/// need no tolerance: this guards that they stay so.
#[test]
fn runtime_rs_spells_rlimits_and_seccomp_names_as_oci_does() {
    use oci_spec::runtime::{
        Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, PosixRlimitType,
    };
    fn same<T: serde::de::DeserializeOwned + std::fmt::Display>(names: &[&str]) {
        for name in names {
            let parsed: T = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(parsed.to_string(), *name);
        }
    }
    same::<PosixRlimitType>(&[
        "RLIMIT_NOFILE",
        "RLIMIT_NPROC",
        "RLIMIT_RTTIME",
        "RLIMIT_AS",
    ]);
    same::<LinuxSeccompAction>(&[
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG",
    ]);
    same::<Arch>(&[
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
        "SCMP_ARCH_MIPS64N32",
        "SCMP_ARCH_MIPSEL64",
        "SCMP_ARCH_PPC64LE",
        "SCMP_ARCH_S390X",
        "SCMP_ARCH_RISCV64",
    ]);
    same::<LinuxSeccompFilterFlag>(&["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]);
    same::<LinuxSeccompOperator>(&["SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"]);
}

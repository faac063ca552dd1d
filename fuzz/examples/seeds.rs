//! Writes the seed corpora (`fuzz/corpus/<target>/seed-*`) from the shapes of real
//! requests: what a Kata runtime sends to create a sandbox and a container, configure the
//! network and drive processes, each also framed as ttRPC would carry it. Run by
//! `./run fuzz` before fuzzing; the corpus directories are not checked in.

use std::path::Path;

use hull_agent::rpc::IMPLEMENTED_AGENT_METHODS;
use hull_image::manifest::Manifest;
use hull_protocols::agent::{
    ARPNeighbors, AddARPNeighborsRequest, CreateContainerRequest, CreateSandboxRequest,
    ExecProcessRequest, ReadStreamRequest, Routes, SignalProcessRequest, Storage,
    TtyWinResizeRequest, UpdateContainerRequest, UpdateInterfaceRequest, UpdateRoutesRequest,
    WaitProcessRequest,
};
use hull_protocols::oci_json;
use hull_protocols::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use protobuf::{EnumOrUnknown, Message};

const CONFIG_JSON: &str = r#"{
  "ociVersion": "1.0.2",
  "root": {"path": "/run/kata-containers/shared/containers/c1/rootfs", "readonly": true},
  "hostname": "box",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
  ],
  "process": {
    "terminal": false,
    "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
    "args": ["sh", "-c", "echo hi"],
    "env": ["PATH=/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}],
    "noNewPrivileges": true
  },
  "linux": {
    "resources": {
      "devices": [{"allow": false, "access": "rwm"}],
      "memory": {"limit": 67108864},
      "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1"},
      "pids": {"limit": 64}
    },
    "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
    "maskedPaths": ["/proc/kcore"],
    "readonlyPaths": ["/proc/sys"]
  }
}"#;

const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - rootfs rootfs rw
23 22 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
24 22 0:22 / /run/kata-containers/shared/containers rw,relatime - virtiofs kataShared rw
25 22 254:0 /a\\040b /mnt/with\\040space ro,relatime master:3 - ext4 /dev/vda rw
";

const CMDLINE: &str = "console=hvc0 root=/dev/pmem0p1 rootflags=dax,data=ordered ro \
rootfstype=ext4 quiet init=/sbin/hull-init agent.log=debug \"agent.x=a b\" systemd.unit=x -- y";

const FRAGMENT: &str = "\
# hull: virtio and vsock
CONFIG_VIRTIO=y
CONFIG_VIRTIO_PCI=y
CONFIG_VSOCKETS=m
# CONFIG_MODULES is not set
CONFIG_CMDLINE=\"console=hvc0\"
CONFIG_LOG_BUF_SHIFT=14
";

fn storages() -> Vec<Storage> {
    vec![
        Storage {
            driver: "virtio-fs".into(),
            source: "kataShared".into(),
            fstype: "virtiofs".into(),
            mount_point: "/run/kata-containers/shared/containers".into(),
            ..Default::default()
        },
        Storage {
            driver: "ephemeral".into(),
            source: "tmpfs".into(),
            fstype: "tmpfs".into(),
            options: vec!["size=64m".into()],
            mount_point: "/run/kata-containers/sandbox/ephemeral/v".into(),
            ..Default::default()
        },
        Storage {
            driver: "blk".into(),
            source: "0000:00:02.0".into(),
            fstype: "ext4".into(),
            options: vec!["ro".into()],
            mount_point: "/run/kata-containers/c1/rootfs".into(),
            ..Default::default()
        },
    ]
}

fn interface() -> Interface {
    Interface {
        device: "eth0".into(),
        name: "eth0".into(),
        hwAddr: "02:00:00:00:00:01".into(),
        mtu: 1500,
        IPAddresses: vec![IPAddress {
            family: EnumOrUnknown::new(IPFamily::v4),
            address: "10.0.2.15".into(),
            mask: "24".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn routes() -> Routes {
    Routes {
        Routes: vec![
            Route {
                dest: "10.0.2.0/24".into(),
                device: "eth0".into(),
                source: "10.0.2.15".into(),
                scope: 253,
                ..Default::default()
            },
            Route {
                gateway: "10.0.2.2".into(),
                device: "eth0".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn neighbors() -> ARPNeighbors {
    ARPNeighbors {
        ARPNeighbors: vec![ARPNeighbor {
            toIPAddress: Some(IPAddress {
                address: "10.0.2.2".into(),
                ..Default::default()
            })
            .into(),
            device: "eth0".into(),
            lladdr: "02:00:00:00:00:02".into(),
            state: 128,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `method`'s request framed as one ttRPC request on `stream`.
fn frame(stream: u32, method: &str, payload: Vec<u8>) -> Vec<u8> {
    let request = ttrpc::Request {
        service: "grpc.AgentService".into(),
        method: method.into(),
        payload,
        timeout_nano: 5_000_000_000,
        ..Default::default()
    };
    let body = request.write_to_bytes().unwrap_or_default();
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(ttrpc::proto::MESSAGE_TYPE_REQUEST);
    out.push(0);
    out.extend_from_slice(&body);
    out
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
}

/// A policy that allows every request, as Kata's images carry by default.
const POLICY_ALLOW_ALL: &str = "package agent_policy\n\ndefault ExecProcessRequest := true\ndefault CreateContainerRequest := true\n";

/// A policy that allows only listed commands to be exec'd, with a data document.
const POLICY_EXEC_LIST: &str = "package agent_policy\n\nimport future.keywords.in\n\ndefault ExecProcessRequest := false\n\nExecProcessRequest {\n    input.process.Args[0] in policy_data.allowed\n}\n\npolicy_data := {\"allowed\": [\"sh\", \"ls\"]}\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let corpus = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/corpus").to_string());
    let corpus = Path::new(&corpus);

    let spec = oci_json::spec_to_proto(&oci_json::spec_from_config_json(CONFIG_JSON.as_bytes())?)?;
    let process = spec.Process.clone().into_option().unwrap_or_default();
    let resources = spec
        .Linux
        .as_ref()
        .and_then(|l| l.Resources.clone().into_option())
        .unwrap_or_default();
    let requests: Vec<(&str, Vec<u8>)> = vec![
        (
            "CreateSandbox",
            CreateSandboxRequest {
                hostname: "box".into(),
                dns: vec!["nameserver 10.0.2.3".into()],
                storages: storages()[..2].to_vec(),
                sandbox_id: "sb1".into(),
                sandbox_pidns: true,
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "CreateContainer",
            CreateContainerRequest {
                container_id: "c1".into(),
                exec_id: "c1".into(),
                storages: storages()[2..].to_vec(),
                OCI: Some(spec.clone()).into(),
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "ExecProcess",
            ExecProcessRequest {
                container_id: "c1".into(),
                exec_id: "e1".into(),
                process: Some(process).into(),
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "SignalProcess",
            SignalProcessRequest {
                container_id: "c1".into(),
                exec_id: "c1".into(),
                signal: 15,
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "UpdateContainer",
            UpdateContainerRequest {
                container_id: "c1".into(),
                resources: Some(resources).into(),
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "TtyWinResize",
            TtyWinResizeRequest {
                container_id: "c1".into(),
                exec_id: "e1".into(),
                row: 24,
                column: 80,
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "UpdateInterface",
            UpdateInterfaceRequest {
                interface: Some(interface()).into(),
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "UpdateRoutes",
            UpdateRoutesRequest {
                routes: Some(routes()).into(),
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "AddARPNeighbors",
            AddARPNeighborsRequest {
                neighbors: Some(neighbors()).into(),
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "WaitProcess",
            WaitProcessRequest {
                container_id: "c1".into(),
                exec_id: "c1".into(),
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
        (
            "ReadStdout",
            ReadStreamRequest {
                container_id: "c1".into(),
                exec_id: "c1".into(),
                len: 4096,
                ..Default::default()
            }
            .write_to_bytes()?,
        ),
    ];

    // agent_requests: the method's index, then its request.
    for (method, payload) in &requests {
        if let Some(index) = IMPLEMENTED_AGENT_METHODS.iter().position(|m| m == method) {
            let mut seed = vec![u8::try_from(index)?];
            seed.extend_from_slice(payload);
            write(corpus, "agent_requests", method, &seed)?;
        }
    }
    // ttrpc_frames: each request framed, all of them interleaved on one connection, an
    // oversized header and a truncated frame.
    let mut all = Vec::new();
    for (stream, (method, payload)) in (1u32..).step_by(2).zip(&requests) {
        let framed = frame(stream, method, payload.clone());
        write(corpus, "ttrpc_frames", method, &framed)?;
        all.extend_from_slice(&framed);
    }
    write(corpus, "ttrpc_frames", "all", &all)?;
    let mut oversized = vec![0x00, 0x50, 0x00, 0x00, 0, 0, 0, 1, 1, 0];
    oversized.extend_from_slice(&[0; 64]);
    write(corpus, "ttrpc_frames", "oversized", &oversized)?;
    write(corpus, "ttrpc_frames", "truncated", &all[..all.len() / 2])?;

    // oci_json: 0 then config.json; 1 then the protobuf spec.
    write(
        corpus,
        "oci_json",
        "config-json",
        &[b"\0", CONFIG_JSON.as_bytes()].concat(),
    )?;
    write(
        corpus,
        "oci_json",
        "proto",
        &[&[1u8][..], &spec.write_to_bytes()?].concat(),
    )?;

    // storage_confine: 0 then a Storage; 1 or 2 then a path (beneath / in-root).
    for (i, storage) in storages().iter().enumerate() {
        let seed = [&[0u8][..], &storage.write_to_bytes()?].concat();
        write(corpus, "storage_confine", &format!("storage-{i}"), &seed)?;
    }
    for (i, path) in [
        "dir/inside/../file",
        "dir/up/etc",
        "/abs/passwd",
        "loop",
        "dir/sub",
    ]
    .iter()
    .enumerate()
    {
        write(
            corpus,
            "storage_confine",
            &format!("path-{i}"),
            &[b"\x01", path.as_bytes()].concat(),
        )?;
        write(
            corpus,
            "storage_confine",
            &format!("inroot-{i}"),
            &[b"\x02", path.as_bytes()].concat(),
        )?;
    }

    // network: 0 interface, 1 routes, 2 neighbours.
    write(
        corpus,
        "network",
        "interface",
        &[&[0u8][..], &interface().write_to_bytes()?].concat(),
    )?;
    write(
        corpus,
        "network",
        "routes",
        &[&[1u8][..], &routes().write_to_bytes()?].concat(),
    )?;
    write(
        corpus,
        "network",
        "neighbors",
        &[&[2u8][..], &neighbors().write_to_bytes()?].concat(),
    )?;

    write(corpus, "cmdline", "guest", CMDLINE.as_bytes())?;
    write(corpus, "policy", "allow-all", POLICY_ALLOW_ALL.as_bytes())?;
    write(
        corpus,
        "policy",
        "exec-allow-list",
        POLICY_EXEC_LIST.as_bytes(),
    )?;
    write(corpus, "mountinfo", "guest", MOUNTINFO.as_bytes())?;
    write(
        corpus,
        "image_inputs",
        "fragment",
        &[b"\0", FRAGMENT.as_bytes()].concat(),
    )?;
    write(
        corpus,
        "image_inputs",
        "manifest",
        &[
            b"\x01",
            Manifest::new("rootfs", "x86_64", 0).to_json().as_bytes(),
        ]
        .concat(),
    )?;
    Ok(())
}

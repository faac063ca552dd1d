//! Container messages → the sandbox's requests: `CreateContainerRequest` →
//! [`ContainerRequest`], `ExecProcessRequest` → an OCI process, the stdio ports
//! ([`StdioPorts`]) and signal fields → domain values.
//!
//! Request fields this agent does not act on are refused (INVALID_ARGUMENT) instead of
//! being silently dropped. `devices` go to the device layer ([`super::device`]),
//! `shared_mounts` to the sandbox ([`crate::sandbox::shared_mounts`]).

use hull_container::process::signal_from_number;
use hull_protocols::agent::{CreateContainerRequest, ExecProcessRequest};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process};

use super::device::device_requests;
use super::oci;
use super::storage::storage_requests;
use crate::error::AgentError;
use crate::sandbox::{ContainerRequest, SharedMount};
use crate::stdio_ports::StdioPorts;

/// `CreateContainerRequest` as a request: the OCI spec with the agent's policy applied,
/// storages unchecked (the sandbox checks them).
pub fn container_request(req: &CreateContainerRequest) -> Result<ContainerRequest, AgentError> {
    let mut spec = req
        .OCI
        .clone()
        .into_option()
        .ok_or(AgentError::MissingField { field: "OCI spec" })?;
    if let Some(process) = spec.Process.as_mut() {
        oci::apply_string_user(process, &req.string_user)?;
    }
    Ok(ContainerRequest {
        id: req.container_id.clone(),
        exec_id: req.exec_id.clone(),
        spec: oci::spec_from_proto(&spec)?,
        storages: storage_requests(&req.storages)?,
        sandbox_pidns: req.sandbox_pidns,
        devices: device_requests(&req.devices),
        shared_mounts: req
            .shared_mounts
            .iter()
            .map(|m| SharedMount {
                name: m.name.clone(),
                src_ctr: m.src_ctr.clone(),
                src_path: m.src_path.clone(),
                dst_ctr: m.dst_ctr.clone(),
                dst_path: m.dst_path.clone(),
            })
            .collect(),
        stdio: StdioPorts {
            stdin: req.stdin_port,
            stdout: req.stdout_port,
            stderr: req.stderr_port,
        },
    })
}

/// `ExecProcessRequest.process` (with `string_user` applied) as an OCI process.
pub fn exec_process(req: &ExecProcessRequest) -> Result<Process, AgentError> {
    let mut process = req
        .process
        .clone()
        .into_option()
        .ok_or(AgentError::MissingField { field: "process" })?;
    oci::apply_string_user(&mut process, &req.string_user)?;
    oci::process_from_proto(&process)
}

/// `ExecProcessRequest`'s stdio ports.
pub fn exec_stdio_ports(req: &ExecProcessRequest) -> StdioPorts {
    StdioPorts {
        stdin: req.stdin_port,
        stdout: req.stdout_port,
        stderr: req.stderr_port,
    }
}

/// `UpdateContainerRequest.resources` as OCI resources, with the agent's policy. Without
/// any (runtime-rs sends none when nothing the guest enforces changed) there is nothing
/// to update, as in Kata's agent.
pub fn resources(
    resources: Option<&hull_protocols::oci::LinuxResources>,
) -> Result<Option<LinuxResources>, AgentError> {
    resources.map(oci::resources_from_proto).transpose()
}

/// `SignalProcessRequest.signal` as a signal.
pub fn signal(number: u32) -> Result<Signal, AgentError> {
    Ok(signal_from_number(number)?)
}

/// `TtyWinResizeRequest`'s rows and columns, saturated to what a terminal holds.
pub fn window_size(rows: u32, columns: u32) -> (u16, u16) {
    (
        u16::try_from(rows).unwrap_or(u16::MAX),
        u16::try_from(columns).unwrap_or(u16::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_container::plan::{
        ContainerPlan, NamespaceKind, PlanOptions, plan_container, plan_process,
    };
    use hull_e2e::bundle::{ContainerSpec, DEFAULT_CAPABILITIES};
    use hull_e2e::kata_forms::{GUEST_SANDBOX_SHM, KataRuntime, SharedFile};
    use hull_protocols::agent::Storage;
    use hull_protocols::oci;

    fn create(patch: impl FnOnce(&mut CreateContainerRequest)) -> CreateContainerRequest {
        let mut spec = oci::Spec::new();
        spec.Root = Some(oci::Root {
            Path: "rootfs".into(),
            ..Default::default()
        })
        .into();
        let mut req = CreateContainerRequest {
            container_id: "c1".into(),
            exec_id: "c1".into(),
            OCI: Some(spec).into(),
            storages: vec![Storage {
                driver: "local".into(),
                ..Default::default()
            }],
            sandbox_pidns: true,
            ..Default::default()
        };
        patch(&mut req);
        req
    }

    #[test]
    fn a_container_request_carries_ids_spec_and_storages() {
        let request = container_request(&create(|_| {})).unwrap();
        assert_eq!(
            (request.id.as_str(), request.exec_id.as_str()),
            ("c1", "c1")
        );
        assert_eq!(
            request.spec.root().as_ref().unwrap().path().to_str(),
            Some("rootfs")
        );
        assert_eq!(request.storages[0].driver, "local");
        assert!(request.sandbox_pidns);
        let with_device = create(|r| {
            r.devices = vec![hull_protocols::agent::Device {
                type_: "blk".into(),
                id: "02".into(),
                container_path: "/dev/xda".into(),
                ..Default::default()
            }]
        });
        let mut with_device = with_device;
        with_device.shared_mounts = vec![hull_protocols::agent::SharedMount {
            name: "m".into(),
            src_ctr: "a".into(),
            src_path: "/x".into(),
            dst_ctr: "b".into(),
            dst_path: "/y".into(),
            ..Default::default()
        }];
        let request = container_request(&with_device).unwrap();
        assert_eq!(
            request.shared_mounts,
            vec![SharedMount {
                name: "m".into(),
                src_ctr: "a".into(),
                src_path: "/x".into(),
                dst_ctr: "b".into(),
                dst_path: "/y".into(),
            }]
        );
        assert_eq!(request.devices[0].driver, "blk");
        assert_eq!(request.devices[0].container_path, "/dev/xda");
        assert!(request.stdio.is_empty());
        let request = container_request(&create(|r| {
            r.stdin_port = 7;
            r.stdout_port = 8;
            r.stderr_port = 9;
        }))
        .unwrap();
        assert_eq!(
            request.stdio,
            StdioPorts {
                stdin: 7,
                stdout: 8,
                stderr: 9
            }
        );
        let exec = ExecProcessRequest {
            stdout_port: 3,
            ..Default::default()
        };
        assert_eq!(
            exec_stdio_ports(&exec),
            StdioPorts {
                stdout: 3,
                ..Default::default()
            }
        );
    }

    #[test]
    fn fields_this_agent_does_not_act_on_are_refused() {
        let cases: Vec<(CreateContainerRequest, &str)> =
            vec![(create(|r| r.OCI = Default::default()), "OCI spec")];
        for (req, needle) in cases {
            let err = container_request(&req).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        let exec = ExecProcessRequest::default();
        let err = exec_process(&exec).unwrap_err();
        assert!(matches!(err, AgentError::MissingField { field: "process" }));
    }

    /// The container layer's plan of a converted request: the whole way short of
    /// starting a process.
    fn planned(req: &CreateContainerRequest) -> ContainerPlan {
        let request = container_request(req).unwrap();
        let options = PlanOptions {
            bundle: "/run/kata-containers/c".into(),
            share_sandbox_network: true,
            no_pivot: false,
        };
        plan_container(&req.container_id, &request.spec, &options).unwrap()
    }

    fn default_capabilities() -> Vec<String> {
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn both_kata_runtimes_create_requests_are_taken() {
        for runtime in KataRuntime::BOTH {
            let id = format!("{}-c1", runtime.name());
            let spec = ContainerSpec::shell("true");
            let req = runtime
                .create_container(&id, &spec, &SharedFile::pod_files(&id))
                .unwrap();
            let plan = planned(&req);
            let kinds: Vec<NamespaceKind> = plan.namespaces.iter().map(|n| n.kind).collect();
            let mut expected = vec![NamespaceKind::Ipc, NamespaceKind::Uts, NamespaceKind::Mount];
            if runtime == KataRuntime::Rust {
                expected.push(NamespaceKind::Cgroup);
            }
            assert_eq!(kinds, expected, "{runtime:?}");
            let caps = plan.process.capabilities.as_ref().unwrap();
            assert_eq!(caps.bounding, default_capabilities(), "{runtime:?}");
            assert_eq!(caps.effective, default_capabilities(), "{runtime:?}");
            let shm = plan
                .mounts
                .iter()
                .find(|m| m.destination == std::path::Path::new("/dev/shm"))
                .unwrap();
            assert!(shm.is_bind());
            assert_eq!(shm.source.as_deref(), Some(GUEST_SANDBOX_SHM.as_ref()));
            let hosts = plan
                .mounts
                .iter()
                .find(|m| m.destination == std::path::Path::new("/etc/hosts"))
                .unwrap();
            assert!(hosts.is_bind(), "{runtime:?}");
            assert_eq!(plan.process.cwd, std::path::Path::new("/"));
        }
    }

    #[test]
    fn both_kata_runtimes_exec_requests_are_taken() {
        for runtime in KataRuntime::BOTH {
            let req = runtime
                .exec_process("c1", "e1", &ContainerSpec::shell("id"))
                .unwrap();
            let process = exec_process(&req).unwrap();
            let plan = plan_process(&process, None).unwrap();
            assert_eq!(plan.args, ["sh", "-c", "id"]);
            match runtime {
                // The container's are given at exec (hull_container::Containers::exec).
                KataRuntime::Go => assert!(plan.capabilities.is_none()),
                KataRuntime::Rust => {
                    assert_eq!(plan.capabilities.unwrap().bounding, default_capabilities())
                }
            }
        }
        let mut req = KataRuntime::Go
            .exec_process("c1", "e2", &ContainerSpec::shell("pwd"))
            .unwrap();
        req.process.as_mut().unwrap().Cwd.clear();
        let plan = plan_process(&exec_process(&req).unwrap(), None).unwrap();
        assert_eq!(plan.cwd, std::path::Path::new("/"), "an empty cwd is /");
    }

    #[test]
    fn update_requests_with_and_without_resources_are_taken() {
        let rust = KataRuntime::Rust.update_container("c1", None).unwrap();
        assert_eq!(resources(rust.resources.as_ref()).unwrap(), None);
        // The Go runtime's "nothing": every section empty.
        let go = KataRuntime::Go.update_container("c1", None).unwrap();
        let empty = resources(go.resources.as_ref()).unwrap().unwrap();
        assert!(empty.memory().is_none() && empty.cpu().is_none() && empty.pids().is_none());
        let wanted: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 33554432},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
        }))
        .unwrap();
        for runtime in KataRuntime::BOTH {
            let req = runtime.update_container("c1", Some(&wanted)).unwrap();
            let got = resources(req.resources.as_ref()).unwrap().unwrap();
            assert_eq!(
                got.memory().as_ref().unwrap().limit(),
                Some(32 << 20),
                "{runtime:?}"
            );
            assert_eq!(got.cpu().as_ref().unwrap().quota(), Some(50000));
        }
        let go = KataRuntime::Go
            .update_container("c1", Some(&wanted))
            .unwrap();
        let got = resources(go.resources.as_ref()).unwrap().unwrap();
        assert_eq!(
            got.cpu().as_ref().unwrap().cpus(),
            &None,
            "host CPUs are not sent"
        );
    }

    #[test]
    fn window_sizes_saturate() {
        assert_eq!(window_size(24, 80), (24, 80));
        assert_eq!(window_size(1 << 20, 80), (u16::MAX, 80));
    }
}

//! Container messages → the sandbox's requests: `CreateContainerRequest` →
//! [`ContainerRequest`], `ExecProcessRequest` → an OCI process, the stdio ports
//! ([`StdioPorts`]) and signal fields → domain values.
//!
//! Request fields this agent does not act on are refused (INVALID_ARGUMENT) instead of
//! being silently dropped. Per-container `devices` (resolving a host device into the
//! spec) are not wired to the device layer yet, so they are refused here.

use hull_container::process::signal_from_number;
use hull_protocols::agent::{CreateContainerRequest, ExecProcessRequest};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Process};

use super::oci;
use super::storage::storage_requests;
use crate::error::AgentError;
use crate::sandbox::ContainerRequest;
use crate::stdio_ports::StdioPorts;

/// `CreateContainerRequest` as a request: the OCI spec with the agent's policy applied,
/// storages unchecked (the sandbox checks them).
pub fn container_request(req: &CreateContainerRequest) -> Result<ContainerRequest, AgentError> {
    if !req.shared_mounts.is_empty() {
        return Err(AgentError::Unsupported {
            what: "shared_mounts",
        });
    }
    if !req.devices.is_empty() {
        return Err(AgentError::Unsupported {
            what: "CreateContainer devices (the device layer is not wired here yet)",
        });
    }
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

/// `UpdateContainerRequest.resources` as OCI resources, with the agent's policy.
pub fn resources(
    resources: Option<&hull_protocols::oci::LinuxResources>,
) -> Result<LinuxResources, AgentError> {
    let resources = resources.ok_or(AgentError::MissingField { field: "resources" })?;
    oci::resources_from_proto(resources)
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
        let cases: Vec<(CreateContainerRequest, &str)> = vec![
            (create(|r| r.OCI = Default::default()), "OCI spec"),
            (
                create(|r| r.shared_mounts = vec![Default::default()]),
                "shared_mounts",
            ),
            (create(|r| r.devices = vec![Default::default()]), "devices"),
        ];
        for (req, needle) in cases {
            let err = container_request(&req).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
        let exec = ExecProcessRequest::default();
        let err = exec_process(&exec).unwrap_err();
        assert!(matches!(err, AgentError::MissingField { field: "process" }));
    }

    #[test]
    fn window_sizes_saturate() {
        assert_eq!(window_size(24, 80), (24, 80));
        assert_eq!(window_size(1 << 20, 80), (u16::MAX, 80));
    }
}

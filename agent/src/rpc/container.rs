//! Container messages → the sandbox's requests: `CreateContainerRequest` →
//! [`ContainerRequest`], `ExecProcessRequest` → an OCI process, the stdio and signal
//! fields → domain values.
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

/// `CreateContainerRequest` as a request: the OCI spec with the agent's policy applied,
/// storages unchecked (the sandbox checks them).
pub fn container_request(req: &CreateContainerRequest) -> Result<ContainerRequest, AgentError> {
    refuse_vsock_stdio(req.stdin_port, req.stdout_port, req.stderr_port)?;
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
    })
}

/// `ExecProcessRequest.process` (with `string_user` applied) as an OCI process.
pub fn exec_process(req: &ExecProcessRequest) -> Result<Process, AgentError> {
    refuse_vsock_stdio(req.stdin_port, req.stdout_port, req.stderr_port)?;
    let mut process = req
        .process
        .clone()
        .into_option()
        .ok_or(AgentError::MissingField { field: "process" })?;
    oci::apply_string_user(&mut process, &req.string_user)?;
    oci::process_from_proto(&process)
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

fn refuse_vsock_stdio(stdin: u32, stdout: u32, stderr: u32) -> Result<(), AgentError> {
    if stdin != 0 || stdout != 0 || stderr != 0 {
        return Err(AgentError::VsockStdio);
    }
    Ok(())
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
    }

    #[test]
    fn fields_this_agent_does_not_act_on_are_refused() {
        let cases: Vec<(CreateContainerRequest, &str)> = vec![
            (create(|r| r.OCI = Default::default()), "OCI spec"),
            (create(|r| r.stdout_port = 1030), "vsock"),
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

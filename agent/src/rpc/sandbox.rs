//! The sandbox's messages: `CreateSandboxRequest` → [`SandboxRequest`], the guest's facts
//! → `GuestDetailsResponse`.

use hull_protocols::agent::{
    AgentDetails, CreateSandboxRequest, GuestDetailsRequest, GuestDetailsResponse,
};

use super::storage::storage_requests;
use crate::sandbox::{GuestDetails, SandboxRequest};
use crate::storage::StorageError;

/// `CreateSandboxRequest` as a request; the sandbox checks it.
pub fn sandbox_request(req: &CreateSandboxRequest) -> Result<SandboxRequest, StorageError> {
    Ok(SandboxRequest {
        id: req.sandbox_id.clone(),
        hostname: req.hostname.clone(),
        dns: req.dns.clone(),
        storages: storage_requests(&req.storages)?,
        sandbox_pidns: req.sandbox_pidns,
        guest_hook_path: req.guest_hook_path.clone(),
        kernel_modules: req.kernel_modules.iter().map(|m| m.name.clone()).collect(),
    })
}

/// The answer to `GetGuestDetails`: what `req` asked for of `details`.
pub fn guest_details_to_proto(
    req: &GuestDetailsRequest,
    details: GuestDetails,
    under_init: bool,
) -> GuestDetailsResponse {
    GuestDetailsResponse {
        mem_block_size_bytes: if req.mem_block_size {
            details.facts.mem_block_size_bytes
        } else {
            0
        },
        support_mem_hotplug_probe: req.mem_hotplug_probe && details.facts.mem_hotplug_probe,
        agent_details: Some(AgentDetails {
            version: env!("CARGO_PKG_VERSION").to_string(),
            init_daemon: under_init,
            // Filled in as device handlers are built.
            device_handlers: Vec::new(),
            storage_handlers: details
                .storage_drivers
                .into_iter()
                .map(String::from)
                .collect(),
            supports_seccomp: true,
            extra_features: Vec::new(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::GuestFacts;
    use hull_protocols::agent::{KernelModule, Storage};

    #[test]
    fn create_sandbox_carries_every_field() {
        let req = CreateSandboxRequest {
            hostname: "pod-1".into(),
            dns: vec!["nameserver 10.0.0.1".into()],
            storages: vec![Storage {
                driver: "virtio-fs".into(),
                source: "kataShared".into(),
                ..Default::default()
            }],
            sandbox_pidns: true,
            sandbox_id: "sb-1".into(),
            guest_hook_path: "/usr/share/oci/hooks".into(),
            kernel_modules: vec![KernelModule {
                name: "e1000".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let request = sandbox_request(&req).unwrap();
        assert_eq!(request.id, "sb-1");
        assert_eq!(request.hostname, "pod-1");
        assert_eq!(request.dns, vec!["nameserver 10.0.0.1"]);
        assert_eq!(request.storages[0].driver, "virtio-fs");
        assert_eq!(request.storages[0].source, "kataShared");
        assert!(request.sandbox_pidns);
        assert_eq!(request.guest_hook_path, "/usr/share/oci/hooks");
        assert_eq!(request.kernel_modules, vec!["e1000"]);
    }

    #[test]
    fn guest_details_answer_what_was_asked() {
        let details = || GuestDetails {
            facts: GuestFacts {
                mem_block_size_bytes: 128 << 20,
                mem_hotplug_probe: true,
            },
            storage_drivers: vec!["virtio-fs", "local"],
        };
        let asked = GuestDetailsRequest {
            mem_block_size: true,
            mem_hotplug_probe: true,
            ..Default::default()
        };
        let answer = guest_details_to_proto(&asked, details(), true);
        assert_eq!(answer.mem_block_size_bytes, 128 << 20);
        assert!(answer.support_mem_hotplug_probe);
        assert!(answer.agent_details.init_daemon);
        assert_eq!(
            answer.agent_details.storage_handlers,
            vec!["virtio-fs", "local"]
        );
        let answer = guest_details_to_proto(&GuestDetailsRequest::default(), details(), false);
        assert_eq!(answer.mem_block_size_bytes, 0);
        assert!(!answer.support_mem_hotplug_probe);
        assert!(!answer.agent_details.init_daemon);
    }
}

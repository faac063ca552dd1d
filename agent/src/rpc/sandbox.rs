//! The sandbox's messages: `CreateSandboxRequest` → [`SandboxRequest`].

use hull_protocols::agent::CreateSandboxRequest;

use super::storage::storage_requests;
use crate::sandbox::SandboxRequest;
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

#[cfg(test)]
mod tests {
    use super::*;
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
}

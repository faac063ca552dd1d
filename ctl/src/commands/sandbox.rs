//! `create-sandbox`, `guest-details`, `destroy-sandbox` and `set-policy`.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hull_protocols::AgentClient;
use hull_protocols::agent::{AgentDetails, CreateSandboxRequest, GuestDetailsResponse, Storage};
use serde::Serialize;

use super::Outcome;
use crate::output::{Report, kv_lines, list, to_json};

/// The tag Kata's runtime gives the sandbox's virtio-fs share.
pub const DEFAULT_SHARED_FS_TAG: &str = "kataShared";

/// Sandbox and guest commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum SandboxCommand {
    /// AgentService.CreateSandbox: hostname, DNS and the shared directory for container
    /// bundles.
    CreateSandbox(CreateSandboxArgs),
    /// AgentService.GetGuestDetails: memory block size, hotplug support,
    /// agent details.
    GuestDetails,
    /// AgentService.DestroySandbox: tear the sandbox down.
    DestroySandbox,
    /// AgentService.SetPolicy: the Rego agent policy in FILE replaces the one in force
    /// (if that policy allows SetPolicyRequest).
    SetPolicy {
        /// A Rego module of package agent_policy.
        file: PathBuf,
    },
}

/// `create-sandbox` options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CreateSandboxArgs {
    /// The guest's hostname.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// A resolv.conf line (`nameserver 10.0.2.3`, `search example.org`) or a bare
    /// nameserver address; repeat for more.
    #[arg(long, value_name = "LINE")]
    pub dns: Vec<String>,
    /// Mount the virtio-fs share with this tag (default kataShared) at
    /// /run/kata-containers/shared/containers/, where container bundles are looked for.
    #[arg(long, value_name = "TAG", num_args = 0..=1, default_missing_value = DEFAULT_SHARED_FS_TAG)]
    pub shared_fs: Option<String>,
    /// The sandbox's id.
    #[arg(long, value_name = "ID", default_value = "hull-sandbox")]
    pub sandbox_id: String,
    /// Containers asking for a new PID namespace share one sandbox-wide namespace.
    #[arg(long)]
    pub sandbox_pidns: bool,
}

impl CreateSandboxArgs {
    /// The request: Kata's virtio-fs storage for the shared directory when asked.
    pub fn request(&self) -> CreateSandboxRequest {
        CreateSandboxRequest {
            hostname: self.hostname.clone().unwrap_or_default(),
            dns: self
                .dns
                .iter()
                .map(|line| match line.trim().parse::<IpAddr>() {
                    Ok(address) => format!("nameserver {address}"),
                    Err(_) => line.clone(),
                })
                .collect(),
            storages: self
                .shared_fs
                .iter()
                .map(|tag| Storage {
                    driver: "virtio-fs".into(),
                    source: tag.clone(),
                    fstype: "virtiofs".into(),
                    mount_point: format!("{}/", super::container::GUEST_SHARED_DIR),
                    ..Default::default()
                })
                .collect(),
            sandbox_pidns: self.sandbox_pidns,
            sandbox_id: self.sandbox_id.clone(),
            ..Default::default()
        }
    }
}

/// Runs a sandbox command.
pub async fn run(client: &AgentClient, command: &SandboxCommand) -> anyhow::Result<Outcome> {
    match command {
        SandboxCommand::CreateSandbox(args) => {
            let req = args.request();
            client.create_sandbox(&req).await?;
            Ok(Outcome::ok(CreatedReport {
                sandbox_id: req.sandbox_id,
                hostname: req.hostname,
                storages: req.storages.iter().map(|s| s.mount_point.clone()).collect(),
            }))
        }
        SandboxCommand::GuestDetails => Ok(Outcome::ok(GuestDetailsReport::from(
            &client.guest_details().await?,
        ))),
        SandboxCommand::DestroySandbox => {
            client.destroy_sandbox().await?;
            Ok(Outcome::ok(DestroyReport { destroyed: true }))
        }
        SandboxCommand::SetPolicy { file } => {
            let policy = std::fs::read_to_string(file)
                .with_context(|| format!("reading the policy {}", file.display()))?;
            client.set_policy(&policy).await?;
            Ok(Outcome::ok(PolicyReport {
                policy: file.display().to_string(),
                bytes: policy.len(),
            }))
        }
    }
}

/// `set-policy` result. JSON: `{"policy": "FILE", "bytes": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// The file sent.
    pub policy: String,
    /// Its size.
    pub bytes: usize,
}

impl Report for PolicyReport {
    fn human(&self) -> String {
        format!("policy {} ({} bytes) in force", self.policy, self.bytes)
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `guest-details` result.
///
/// JSON: `{"mem_block_size_bytes": N, "support_mem_hotplug_probe": B,
/// "agent_details": {...} | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestDetailsReport {
    /// Memory block size for hotplug alignment, bytes (0 if unknown).
    pub mem_block_size_bytes: u64,
    /// Whether `/sys/devices/system/memory/probe` is usable.
    pub support_mem_hotplug_probe: bool,
    /// What the agent says about itself, if it said anything.
    pub agent_details: Option<AgentDetailsReport>,
}

/// The `agent_details` object of [`GuestDetailsReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentDetailsReport {
    /// Agent version.
    pub version: String,
    /// Whether the agent runs as PID 1.
    pub init_daemon: bool,
    /// Device handlers (e.g. `blk`, `vfio`).
    pub device_handlers: Vec<String>,
    /// Storage drivers (e.g. `virtio-fs`, `blk`).
    pub storage_handlers: Vec<String>,
    /// Whether seccomp is supported.
    pub supports_seccomp: bool,
    /// Optional features built in.
    pub extra_features: Vec<String>,
}

impl From<&AgentDetails> for AgentDetailsReport {
    fn from(d: &AgentDetails) -> Self {
        Self {
            version: d.version.clone(),
            init_daemon: d.init_daemon,
            device_handlers: d.device_handlers.clone(),
            storage_handlers: d.storage_handlers.clone(),
            supports_seccomp: d.supports_seccomp,
            extra_features: d.extra_features.clone(),
        }
    }
}

impl From<&GuestDetailsResponse> for GuestDetailsReport {
    fn from(resp: &GuestDetailsResponse) -> Self {
        Self {
            mem_block_size_bytes: resp.mem_block_size_bytes,
            support_mem_hotplug_probe: resp.support_mem_hotplug_probe,
            agent_details: resp.agent_details.as_ref().map(AgentDetailsReport::from),
        }
    }
}

impl Report for GuestDetailsReport {
    fn human(&self) -> String {
        let mut pairs = vec![
            (
                "mem_block_size_bytes",
                self.mem_block_size_bytes.to_string(),
            ),
            (
                "support_mem_hotplug_probe",
                self.support_mem_hotplug_probe.to_string(),
            ),
        ];
        match &self.agent_details {
            Some(d) => pairs.extend([
                ("agent_version", d.version.clone()),
                ("init_daemon", d.init_daemon.to_string()),
                ("device_handlers", list(&d.device_handlers)),
                ("storage_handlers", list(&d.storage_handlers)),
                ("supports_seccomp", d.supports_seccomp.to_string()),
                ("extra_features", list(&d.extra_features)),
            ]),
            None => pairs.push(("agent_details", "-".to_owned())),
        }
        kv_lines(&pairs)
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `create-sandbox` result. JSON: `{"sandbox_id", "hostname", "storages": [mount points]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedReport {
    pub sandbox_id: String,
    pub hostname: String,
    pub storages: Vec<String>,
}

impl Report for CreatedReport {
    fn human(&self) -> String {
        kv_lines(&[
            ("sandbox_id", self.sandbox_id.clone()),
            ("hostname", self.hostname.clone()),
            ("storages", list(&self.storages)),
        ])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `destroy-sandbox` result. JSON: `{"destroyed": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestroyReport {
    /// Always true (failures are errors).
    pub destroyed: bool,
}

impl Report for DestroyReport {
    fn human(&self) -> String {
        "sandbox destroyed".to_owned()
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Format, render};

    fn sample() -> GuestDetailsResponse {
        let mut d = AgentDetails::new();
        d.version = "0.1.0".into();
        d.init_daemon = true;
        d.storage_handlers = vec!["virtio-fs".into(), "blk".into()];
        let mut resp = GuestDetailsResponse::new();
        resp.mem_block_size_bytes = 134_217_728;
        resp.agent_details = Some(d).into();
        resp
    }

    #[test]
    fn guest_details_human() {
        let text = render(&GuestDetailsReport::from(&sample()), Format::Human);
        assert_eq!(
            text,
            "mem_block_size_bytes:      134217728\n\
             support_mem_hotplug_probe: false\n\
             agent_version:             0.1.0\n\
             init_daemon:               true\n\
             device_handlers:           -\n\
             storage_handlers:          virtio-fs, blk\n\
             supports_seccomp:          false\n\
             extra_features:            -\n"
        );
    }

    #[test]
    fn guest_details_json_field_names() {
        let report = GuestDetailsReport::from(&sample());
        assert_eq!(
            report.json(),
            serde_json::json!({
                "mem_block_size_bytes": 134217728u64,
                "support_mem_hotplug_probe": false,
                "agent_details": {
                    "version": "0.1.0",
                    "init_daemon": true,
                    "device_handlers": [],
                    "storage_handlers": ["virtio-fs", "blk"],
                    "supports_seccomp": false,
                    "extra_features": []
                }
            })
        );
    }

    #[test]
    fn guest_details_without_agent_details() {
        let report = GuestDetailsReport::from(&GuestDetailsResponse::new());
        assert_eq!(report.json()["agent_details"], serde_json::Value::Null);
        assert!(report.human().ends_with("agent_details:             -"));
    }

    #[test]
    fn create_sandbox_adds_katas_shared_fs_storage() {
        let args = CreateSandboxArgs {
            hostname: Some("box".into()),
            dns: vec!["10.0.2.3".into(), "search example.org".into()],
            shared_fs: Some(DEFAULT_SHARED_FS_TAG.into()),
            sandbox_id: "sb".into(),
            sandbox_pidns: false,
        };
        let req = args.request();
        assert_eq!(req.dns, ["nameserver 10.0.2.3", "search example.org"]);
        assert_eq!(req.storages.len(), 1);
        let storage = &req.storages[0];
        assert_eq!(
            (
                storage.driver.as_str(),
                storage.source.as_str(),
                storage.fstype.as_str(),
                storage.mount_point.as_str()
            ),
            (
                "virtio-fs",
                "kataShared",
                "virtiofs",
                "/run/kata-containers/shared/containers/"
            )
        );
        let without = CreateSandboxArgs {
            shared_fs: None,
            ..args
        };
        assert!(without.request().storages.is_empty());
    }

    #[test]
    fn destroy_output() {
        let r = DestroyReport { destroyed: true };
        assert_eq!(render(&r, Format::Human), "sandbox destroyed\n");
        assert_eq!(render(&r, Format::Json), "{\n  \"destroyed\": true\n}\n");
    }
}

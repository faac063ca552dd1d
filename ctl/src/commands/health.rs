//! `check` and `version`: the Health service.

use clap::Subcommand;
use hull_protocols::AgentClient;
use hull_protocols::health::{
    HealthCheckResponse, VersionCheckResponse, health_check_response::ServingStatus,
};
use serde::Serialize;

use super::Outcome;
use crate::output::{Report, kv_lines, to_json};

/// Health service commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum HealthCommand {
    /// Health.Check: is the agent serving? Exits non-zero unless SERVING.
    Check,
    /// Health.Version: agent and protocol versions.
    Version,
}

/// Runs a health command.
pub async fn run(client: &AgentClient, command: &HealthCommand) -> anyhow::Result<Outcome> {
    match command {
        HealthCommand::Check => {
            let report = CheckReport::from(&client.check().await?);
            let failure = (report.status != "SERVING")
                .then(|| format!("agent health status is {}", report.status));
            Ok(Outcome {
                report: Box::new(report),
                failure,
                exit_status: None,
            })
        }
        HealthCommand::Version => Ok(Outcome::ok(VersionReport::from(&client.version().await?))),
    }
}

/// `check` result. JSON: `{"status": "SERVING"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN`, or `UNKNOWN(<n>)` for values
    /// this build does not know.
    pub status: String,
}

impl From<&HealthCheckResponse> for CheckReport {
    fn from(resp: &HealthCheckResponse) -> Self {
        let status = match resp.status.enum_value() {
            Ok(ServingStatus::SERVING) => "SERVING".to_owned(),
            Ok(ServingStatus::NOT_SERVING) => "NOT_SERVING".to_owned(),
            Ok(ServingStatus::UNKNOWN) => "UNKNOWN".to_owned(),
            Err(n) => format!("UNKNOWN({n})"),
        };
        Self { status }
    }
}

impl Report for CheckReport {
    fn human(&self) -> String {
        kv_lines(&[("status", self.status.clone())])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `version` result. JSON: `{"agent_version": "...", "grpc_version": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionReport {
    /// Version of the agent binary.
    pub agent_version: String,
    /// Version of the API the agent speaks.
    pub grpc_version: String,
}

impl From<&VersionCheckResponse> for VersionReport {
    fn from(resp: &VersionCheckResponse) -> Self {
        Self {
            agent_version: resp.agent_version.clone(),
            grpc_version: resp.grpc_version.clone(),
        }
    }
}

impl Report for VersionReport {
    fn human(&self) -> String {
        kv_lines(&[
            ("agent_version", self.agent_version.clone()),
            ("grpc_version", self.grpc_version.clone()),
        ])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Format, render};

    #[test]
    fn check_statuses() {
        let mut resp = HealthCheckResponse::new();
        assert_eq!(CheckReport::from(&resp).status, "UNKNOWN");
        resp.status = ServingStatus::SERVING.into();
        let report = CheckReport::from(&resp);
        assert_eq!(render(&report, Format::Human), "status: SERVING\n");
        assert_eq!(report.json(), serde_json::json!({"status": "SERVING"}));
        resp.status = hull_protocols::protobuf::EnumOrUnknown::from_i32(9);
        assert_eq!(CheckReport::from(&resp).status, "UNKNOWN(9)");
    }

    #[test]
    fn version_output() {
        let resp = VersionCheckResponse {
            agent_version: "0.1.0".into(),
            grpc_version: "1".into(),
            ..Default::default()
        };
        let report = VersionReport::from(&resp);
        assert_eq!(
            render(&report, Format::Human),
            "agent_version: 0.1.0\ngrpc_version:  1\n"
        );
        assert_eq!(
            report.json(),
            serde_json::json!({"agent_version": "0.1.0", "grpc_version": "1"})
        );
    }
}

//! Health and introspection: Health.Check, Health.Version, GetMetrics,
//! GetDiagnosticData.

use crate::agent::{GetDiagnosticDataRequest, GetMetricsRequest};
use crate::health::{CheckRequest, HealthCheckResponse, VersionCheckResponse};

use super::{AgentClient, ClientError};

impl AgentClient {
    /// `Health.Check` for the whole agent (empty service name).
    pub async fn check(&self) -> Result<HealthCheckResponse, ClientError> {
        let req = CheckRequest::new();
        self.call_health("Health.Check", |health, ctx| health.check(ctx, &req))
            .await
    }

    /// `Health.Version`.
    pub async fn version(&self) -> Result<VersionCheckResponse, ClientError> {
        let req = CheckRequest::new();
        self.call_health("Health.Version", |health, ctx| health.version(ctx, &req))
            .await
    }

    /// `AgentService.GetMetrics`: the agent's figures in Prometheus text format.
    pub async fn get_metrics(&self) -> Result<String, ClientError> {
        let req = GetMetricsRequest::new();
        self.call_agent("AgentService.GetMetrics", |agent, ctx| {
            agent.get_metrics(ctx, &req)
        })
        .await
        .map(|r| r.metrics)
    }

    /// `AgentService.GetDiagnosticData` of `log_type` (for `container_id`, if not empty).
    pub async fn get_diagnostic_data(
        &self,
        log_type: &str,
        container_id: &str,
    ) -> Result<String, ClientError> {
        let req = GetDiagnosticDataRequest {
            log_type: log_type.to_owned(),
            container_id: container_id.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.GetDiagnosticData", |agent, ctx| {
            agent.get_diagnostic_data(ctx, &req)
        })
        .await
        .map(|r| r.data)
    }
}

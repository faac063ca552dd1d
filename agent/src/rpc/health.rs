//! `grpc.Health` handlers.

use async_trait::async_trait;
use hull_protocols::health::{
    CheckRequest, HealthCheckResponse, VersionCheckResponse, health_check_response::ServingStatus,
};
use hull_protocols::health_ttrpc::Health;
use ttrpc::asynchronous::TtrpcContext;

/// The version of the agent API this agent speaks (Kata's agent reports the same string).
pub const API_VERSION: &str = "0.0.1";

/// The Health implementation: if it answers, the agent serves.
pub struct HealthRpc;

#[async_trait]
impl Health for HealthRpc {
    async fn check(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> ttrpc::Result<HealthCheckResponse> {
        Ok(HealthCheckResponse {
            status: ServingStatus::SERVING.into(),
            ..Default::default()
        })
    }

    async fn version(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> ttrpc::Result<VersionCheckResponse> {
        Ok(VersionCheckResponse {
            grpc_version: API_VERSION.to_string(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }
}

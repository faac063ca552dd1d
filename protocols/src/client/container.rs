//! A container's life: CreateContainer, StartContainer, UpdateContainer,
//! StatsContainer, PauseContainer, ResumeContainer, RemoveContainer, and GetOOMEvent.

use crate::agent::{
    CreateContainerRequest, GetOOMEventRequest, PauseContainerRequest, RemoveContainerRequest,
    ResumeContainerRequest, StartContainerRequest, StatsContainerRequest, StatsContainerResponse,
    UpdateContainerRequest,
};
use crate::oci::LinuxResources;

use super::{AgentClient, ClientError};

impl AgentClient {
    /// `AgentService.CreateContainer`: the container and its init process, which waits
    /// for [`AgentClient::start_container`].
    pub async fn create_container(&self, req: &CreateContainerRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.CreateContainer", |agent, ctx| {
            agent.create_container(ctx, req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.StartContainer`.
    pub async fn start_container(&self, container_id: &str) -> Result<(), ClientError> {
        let req = StartContainerRequest {
            container_id: container_id.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.StartContainer", |agent, ctx| {
            agent.start_container(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.RemoveContainer`, giving the agent `timeout_secs` (0: its default)
    /// to stop the container.
    pub async fn remove_container(
        &self,
        container_id: &str,
        timeout_secs: u32,
    ) -> Result<(), ClientError> {
        let req = RemoveContainerRequest {
            container_id: container_id.to_owned(),
            timeout: timeout_secs,
            ..Default::default()
        };
        self.call_agent("AgentService.RemoveContainer", |agent, ctx| {
            agent.remove_container(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.UpdateContainer`: new cgroup `resources` for a running container.
    pub async fn update_container(
        &self,
        container_id: &str,
        resources: LinuxResources,
    ) -> Result<(), ClientError> {
        let req = UpdateContainerRequest {
            container_id: container_id.to_owned(),
            resources: Some(resources).into(),
            ..Default::default()
        };
        self.update_container_request(&req).await
    }

    /// `AgentService.UpdateContainer` as given (`resources` may be absent: runtime-rs
    /// sends none when nothing the guest enforces changed).
    pub async fn update_container_request(
        &self,
        req: &UpdateContainerRequest,
    ) -> Result<(), ClientError> {
        self.call_agent("AgentService.UpdateContainer", |agent, ctx| {
            agent.update_container(ctx, req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.StatsContainer` for `container_id`.
    pub async fn stats_container(
        &self,
        container_id: &str,
    ) -> Result<StatsContainerResponse, ClientError> {
        let req = StatsContainerRequest {
            container_id: container_id.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.StatsContainer", |agent, ctx| {
            agent.stats_container(ctx, &req)
        })
        .await
    }

    /// `AgentService.PauseContainer`: freeze every process of the container.
    pub async fn pause_container(&self, container_id: &str) -> Result<(), ClientError> {
        let req = PauseContainerRequest {
            container_id: container_id.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.PauseContainer", |agent, ctx| {
            agent.pause_container(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.ResumeContainer`: thaw what [`AgentClient::pause_container`] froze.
    pub async fn resume_container(&self, container_id: &str) -> Result<(), ClientError> {
        let req = ResumeContainerRequest {
            container_id: container_id.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.ResumeContainer", |agent, ctx| {
            agent.resume_container(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.GetOOMEvent`: waits for the next OOM kill in any container and
    /// answers its id. Blocks like [`AgentClient::wait_process`].
    pub async fn get_oom_event(&self) -> Result<String, ClientError> {
        let req = GetOOMEventRequest::new();
        self.call_agent("AgentService.GetOOMEvent", |agent, ctx| {
            agent.get_oom_event(ctx, &req)
        })
        .await
        .map(|r| r.container_id)
    }
}

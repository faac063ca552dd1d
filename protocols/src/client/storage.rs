//! Storages and files beside the sandbox's own: UpdateEphemeralMounts,
//! RemoveStaleVirtiofsShareMounts, GetVolumeStats, ResizeVolume, CopyFile.

use crate::agent::{
    CopyFileRequest, RemoveStaleVirtiofsShareMountsRequest, ResizeVolumeRequest, Storage,
    UpdateEphemeralMountsRequest, VolumeStatsRequest,
};
use crate::csi::VolumeStatsResponse;

use super::{AgentClient, ClientError};

impl AgentClient {
    /// `AgentService.UpdateEphemeralMounts` with these `storages`.
    pub async fn update_ephemeral_mounts(&self, storages: Vec<Storage>) -> Result<(), ClientError> {
        let req = UpdateEphemeralMountsRequest {
            storages,
            ..Default::default()
        };
        self.call_agent("AgentService.UpdateEphemeralMounts", |agent, ctx| {
            agent.update_ephemeral_mounts(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.RemoveStaleVirtiofsShareMounts`.
    pub async fn remove_stale_virtiofs_share_mounts(&self) -> Result<(), ClientError> {
        let req = RemoveStaleVirtiofsShareMountsRequest::new();
        self.call_agent(
            "AgentService.RemoveStaleVirtiofsShareMounts",
            |agent, ctx| agent.remove_stale_virtiofs_share_mounts(ctx, &req),
        )
        .await
        .map(drop)
    }

    /// `AgentService.GetVolumeStats` of the volume mounted at `volume_guest_path`.
    pub async fn get_volume_stats(
        &self,
        volume_guest_path: &str,
    ) -> Result<VolumeStatsResponse, ClientError> {
        let req = VolumeStatsRequest {
            volume_guest_path: volume_guest_path.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.GetVolumeStats", |agent, ctx| {
            agent.get_volume_stats(ctx, &req)
        })
        .await
    }

    /// `AgentService.ResizeVolume`: grow the volume at `volume_guest_path` to `size` bytes.
    pub async fn resize_volume(
        &self,
        volume_guest_path: &str,
        size: u64,
    ) -> Result<(), ClientError> {
        let req = ResizeVolumeRequest {
            volume_guest_path: volume_guest_path.to_owned(),
            size,
            ..Default::default()
        };
        self.call_agent("AgentService.ResizeVolume", |agent, ctx| {
            agent.resize_volume(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.CopyFile`: one chunk of a file copied into the guest.
    pub async fn copy_file(&self, req: &CopyFileRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.CopyFile", |agent, ctx| {
            agent.copy_file(ctx, req)
        })
        .await
        .map(drop)
    }
}

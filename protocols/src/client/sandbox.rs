//! The sandbox and the guest as a whole: CreateSandbox, DestroySandbox, GetGuestDetails,
//! SetPolicy, and the guest's resources (CPU and memory hotplug, entropy, clock, swap,
//! the memory agent).

use crate::agent::{
    AddSwapPathRequest, AddSwapRequest, CreateSandboxRequest, DestroySandboxRequest,
    GuestDetailsRequest, GuestDetailsResponse, MemAgentCompactConfig, MemAgentMemcgConfig,
    MemHotplugByProbeRequest, OnlineCPUMemRequest, ReseedRandomDevRequest, SetGuestDateTimeRequest,
    SetPolicyRequest,
};

use super::{AgentClient, ClientError};

impl AgentClient {
    /// `AgentService.CreateSandbox`.
    pub async fn create_sandbox(&self, req: &CreateSandboxRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.CreateSandbox", |agent, ctx| {
            agent.create_sandbox(ctx, req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.DestroySandbox`.
    pub async fn destroy_sandbox(&self) -> Result<(), ClientError> {
        let req = DestroySandboxRequest::new();
        self.call_agent("AgentService.DestroySandbox", |agent, ctx| {
            agent.destroy_sandbox(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.GetGuestDetails`, asking for the memory block size and
    /// memory-hotplug-probe support.
    pub async fn guest_details(&self) -> Result<GuestDetailsResponse, ClientError> {
        let req = GuestDetailsRequest {
            mem_block_size: true,
            mem_hotplug_probe: true,
            ..Default::default()
        };
        self.call_agent("AgentService.GetGuestDetails", |agent, ctx| {
            agent.get_guest_details(ctx, &req)
        })
        .await
    }

    /// `AgentService.SetPolicy` with a Rego `policy` document.
    pub async fn set_policy(&self, policy: &str) -> Result<(), ClientError> {
        let req = SetPolicyRequest {
            policy: policy.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.SetPolicy", |agent, ctx| {
            agent.set_policy(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.OnlineCPUMem`: bring hot-plugged CPUs (and memory, unless
    /// `cpu_only`) online.
    pub async fn online_cpu_mem(&self, req: &OnlineCPUMemRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.OnlineCPUMem", |agent, ctx| {
            agent.online_cpu_mem(ctx, req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.ReseedRandomDev` with `data` as entropy.
    pub async fn reseed_random_dev(&self, data: &[u8]) -> Result<(), ClientError> {
        let req = ReseedRandomDevRequest {
            data: data.to_vec(),
            ..Default::default()
        };
        self.call_agent("AgentService.ReseedRandomDev", |agent, ctx| {
            agent.reseed_random_dev(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.MemHotplugByProbe` for memory blocks at these physical `addresses`.
    pub async fn mem_hotplug_by_probe(&self, addresses: &[u64]) -> Result<(), ClientError> {
        let req = MemHotplugByProbeRequest {
            memHotplugProbeAddr: addresses.to_vec(),
            ..Default::default()
        };
        self.call_agent("AgentService.MemHotplugByProbe", |agent, ctx| {
            agent.mem_hotplug_by_probe(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.SetGuestDateTime` to `sec`.`usec` since the epoch.
    pub async fn set_guest_date_time(&self, sec: i64, usec: i64) -> Result<(), ClientError> {
        let req = SetGuestDateTimeRequest {
            Sec: sec,
            Usec: usec,
            ..Default::default()
        };
        self.call_agent("AgentService.SetGuestDateTime", |agent, ctx| {
            agent.set_guest_date_time(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.AddSwap` on the block device at `pci_path`.
    pub async fn add_swap(&self, pci_path: &[u32]) -> Result<(), ClientError> {
        let req = AddSwapRequest {
            PCIPath: pci_path.to_vec(),
            ..Default::default()
        };
        self.call_agent("AgentService.AddSwap", |agent, ctx| {
            agent.add_swap(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.AddSwapPath` on the file or device at `path` in the guest.
    pub async fn add_swap_path(&self, path: &str) -> Result<(), ClientError> {
        let req = AddSwapPathRequest {
            path: path.to_owned(),
            ..Default::default()
        };
        self.call_agent("AgentService.AddSwapPath", |agent, ctx| {
            agent.add_swap_path(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.MemAgentMemcgSet`.
    pub async fn mem_agent_memcg_set(
        &self,
        config: &MemAgentMemcgConfig,
    ) -> Result<(), ClientError> {
        self.call_agent("AgentService.MemAgentMemcgSet", |agent, ctx| {
            agent.mem_agent_memcg_set(ctx, config)
        })
        .await
        .map(drop)
    }

    /// `AgentService.MemAgentCompactSet`.
    pub async fn mem_agent_compact_set(
        &self,
        config: &MemAgentCompactConfig,
    ) -> Result<(), ClientError> {
        self.call_agent("AgentService.MemAgentCompactSet", |agent, ctx| {
            agent.mem_agent_compact_set(ctx, config)
        })
        .await
        .map(drop)
    }
}

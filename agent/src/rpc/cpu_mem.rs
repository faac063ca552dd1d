//! `OnlineCPUMem` and `MemHotplugByProbe` requests as the domain's
//! ([`crate::device::cpu_mem`]).
//!
//! `wait` is accepted and not needed: like Kata's agent, hull onlines before it answers,
//! so a failure reaches the runtime.

use hull_protocols::agent::{MemHotplugByProbeRequest, OnlineCPUMemRequest};

use crate::device::cpu_mem::OnlineRequest;

/// `OnlineCPUMem`'s request: `nb_cpus` CPUs online in all (0: leave CPUs alone), memory
/// too unless `cpu_only`.
pub fn online_request(req: &OnlineCPUMemRequest) -> OnlineRequest {
    OnlineRequest {
        cpus: req.nb_cpus,
        cpu_only: req.cpu_only,
    }
}

/// `MemHotplugByProbe`'s physical addresses, one per memory block.
pub fn probe_addresses(req: &MemHotplugByProbeRequest) -> &[u64] {
    &req.memHotplugProbeAddr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_carry_over() {
        let req = OnlineCPUMemRequest {
            wait: false,
            nb_cpus: 3,
            cpu_only: true,
            ..Default::default()
        };
        assert_eq!(
            online_request(&req),
            OnlineRequest {
                cpus: 3,
                cpu_only: true
            }
        );
        let req = MemHotplugByProbeRequest {
            memHotplugProbeAddr: vec![0x1_0000_0000],
            ..Default::default()
        };
        assert_eq!(probe_addresses(&req), [0x1_0000_0000]);
    }
}

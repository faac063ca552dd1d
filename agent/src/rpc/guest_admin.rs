//! Protobuf ⇄ domain for the guest's administration methods: the memory agent's
//! configurations (`MemAgentMemcgSet`, `MemAgentCompactSet`), `GetDiagnosticData` and
//! `GetIPTables` / `SetIPTables`.

use hull_protocols::agent::{MemAgentCompactConfig, MemAgentMemcgConfig};

use crate::iptables::IpFamily;
use crate::mem_agent::{CompactUpdate, MemcgUpdate};

/// `MemAgentMemcgConfig` → the update it asks for (checked when applied).
pub fn memcg_update(config: &MemAgentMemcgConfig) -> MemcgUpdate {
    MemcgUpdate {
        disabled: config.disabled,
        swap: config.swap,
        swappiness_max: config.swappiness_max,
        period_secs: config.period_secs,
        period_psi_percent_limit: config.period_psi_percent_limit,
        eviction_psi_percent_limit: config.eviction_psi_percent_limit,
        eviction_run_aging_count_min: config.eviction_run_aging_count_min,
    }
}

/// `MemAgentCompactConfig` → the update it asks for (checked when applied).
pub fn compact_update(config: &MemAgentCompactConfig) -> CompactUpdate {
    CompactUpdate {
        disabled: config.disabled,
        period_secs: config.period_secs,
        period_psi_percent_limit: config.period_psi_percent_limit,
        compact_psi_percent_limit: config.compact_psi_percent_limit,
        compact_sec_max: config.compact_sec_max,
        compact_order: config.compact_order,
        compact_threshold: config.compact_threshold,
        compact_force_times: config.compact_force_times,
    }
}

/// `is_ipv6` → the address family.
pub fn ip_family(is_ipv6: bool) -> IpFamily {
    if is_ipv6 { IpFamily::V6 } else { IpFamily::V4 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_stay_absent() {
        let config = MemAgentMemcgConfig {
            period_secs: Some(5),
            swap: Some(true),
            ..Default::default()
        };
        assert_eq!(
            memcg_update(&config),
            MemcgUpdate {
                period_secs: Some(5),
                swap: Some(true),
                ..Default::default()
            }
        );
        let config = MemAgentCompactConfig {
            compact_sec_max: Some(-1),
            compact_order: Some(3),
            ..Default::default()
        };
        assert_eq!(
            compact_update(&config),
            CompactUpdate {
                compact_sec_max: Some(-1),
                compact_order: Some(3),
                ..Default::default()
            }
        );
    }
}

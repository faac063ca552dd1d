//! Volumes and swap: `UpdateEphemeralMounts`' storages, `GetVolumeStats`' answer in
//! Kata's CSI shapes (`VolumeUsage` per unit, `VolumeCondition`), and the swap
//! requests.

use hull_protocols::agent::UpdateEphemeralMountsRequest;
use hull_protocols::csi::volume_usage::Unit;
use hull_protocols::csi::{VolumeCondition, VolumeStatsResponse, VolumeUsage};

use super::storage::storage_requests;
use crate::storage::{StorageError, StorageRequest, Usage, VolumeStats};

/// `UpdateEphemeralMounts`' storages as requests, checked by the storage layer.
pub fn ephemeral_updates(
    req: &UpdateEphemeralMountsRequest,
) -> Result<Vec<StorageRequest>, StorageError> {
    storage_requests(&req.storages)
}

/// A volume's figures as Kata's agent answers them: bytes, then inodes, and a healthy
/// condition (the figures could be read).
pub fn volume_stats_to_proto(stats: &VolumeStats) -> VolumeStatsResponse {
    let usage = |usage: &Usage, unit: Unit| VolumeUsage {
        total: usage.total,
        used: usage.used,
        available: usage.available,
        unit: unit.into(),
        ..Default::default()
    };
    VolumeStatsResponse {
        usage: vec![
            usage(&stats.bytes, Unit::BYTES),
            usage(&stats.inodes, Unit::INODES),
        ],
        volume_condition: Some(VolumeCondition {
            abnormal: false,
            message: "OK".into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_first_then_inodes() {
        let stats = VolumeStats {
            bytes: Usage {
                total: 100,
                used: 40,
                available: 50,
            },
            inodes: Usage {
                total: 10,
                used: 3,
                available: 7,
            },
        };
        let proto = volume_stats_to_proto(&stats);
        assert_eq!(proto.usage.len(), 2);
        assert_eq!(proto.usage[0].unit.enum_value(), Ok(Unit::BYTES));
        assert_eq!(
            (
                proto.usage[0].total,
                proto.usage[0].used,
                proto.usage[0].available
            ),
            (100, 40, 50)
        );
        assert_eq!(proto.usage[1].unit.enum_value(), Ok(Unit::INODES));
        assert_eq!(
            (
                proto.usage[1].total,
                proto.usage[1].used,
                proto.usage[1].available
            ),
            (10, 3, 7)
        );
        let condition = proto.volume_condition.into_option().unwrap();
        assert!(!condition.abnormal);
        assert_eq!(condition.message, "OK");
    }
}

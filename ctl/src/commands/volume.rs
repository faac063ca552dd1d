//! Volumes and swap: `update-ephemeral-mounts`, `remove-stale-virtiofs-share-mounts`,
//! `volume-stats`, `resize-volume`, `add-swap` and `add-swap-path`.

use clap::Subcommand;
use hull_protocols::AgentClient;
use hull_protocols::agent::Storage;
use hull_protocols::csi::VolumeStatsResponse;
use hull_protocols::csi::volume_usage::Unit;
use serde::Serialize;

use super::Outcome;
use crate::output::{Report, kv_lines, to_json};

/// Volume and swap commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum VolumeCommand {
    /// AgentService.UpdateEphemeralMounts: remount an ephemeral (tmpfs) storage with new
    /// options, e.g. `size=256M`.
    UpdateEphemeralMounts {
        /// The storage's mount point in the guest.
        mount_point: String,
        /// Mount options (`size=256M`, `nr_inodes=1k`, ...).
        #[arg(required = true)]
        options: Vec<String>,
    },
    /// AgentService.RemoveStaleVirtiofsShareMounts: drop mounts beneath the virtio-fs
    /// share whose host side is gone.
    RemoveStaleVirtiofsShareMounts,
    /// AgentService.GetVolumeStats: bytes and inodes of the volume mounted at PATH.
    VolumeStats {
        /// The volume's mount point in the guest.
        path: String,
    },
    /// AgentService.ResizeVolume: grow the ext4 volume at PATH to SIZE (after its disk
    /// was grown).
    ResizeVolume {
        /// The volume's mount point in the guest.
        path: String,
        /// The new size: bytes, or with a K, M, G or T suffix (powers of 1024).
        #[arg(value_parser = parse_size)]
        size: u64,
    },
    /// AgentService.AddSwap: swap on the virtio-blk disk at a Kata PCI path (`02/01`).
    AddSwap {
        /// The disk's PCI path: slots in hex, separated by `/`.
        #[arg(value_parser = parse_pci_path)]
        pci_path: PciSlots,
    },
    /// AgentService.AddSwapPath: swap on a guest block device (`/dev/vdc`) or a swap
    /// file beneath /run/kata-containers.
    AddSwapPath {
        /// The device or file in the guest.
        path: String,
    },
}

/// A PCI path's slots, as `AddSwapRequest.PCIPath` carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciSlots(pub Vec<u32>);

fn parse_pci_path(text: &str) -> Result<PciSlots, String> {
    text.split('/')
        .map(|slot| {
            u32::from_str_radix(slot, 16)
                .ok()
                .filter(|s| !slot.is_empty() && slot.len() <= 2 && *s <= 0x1f)
                .ok_or_else(|| format!("{slot:?} is not a slot (hex 00 to 1f)"))
        })
        .collect::<Result<_, _>>()
        .map(PciSlots)
}

fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.trim().char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: unknown suffix {c:?} (K, M, G or T)")),
            };
            (&text.trim()[..i], shift)
        }
        _ => (text.trim(), 0),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size"))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Runs a volume command.
pub async fn run(client: &AgentClient, command: &VolumeCommand) -> anyhow::Result<Outcome> {
    Ok(Outcome::ok(match command {
        VolumeCommand::UpdateEphemeralMounts {
            mount_point,
            options,
        } => {
            client
                .update_ephemeral_mounts(vec![ephemeral_update(mount_point, options)])
                .await?;
            Done::new("updated", mount_point)
        }
        VolumeCommand::RemoveStaleVirtiofsShareMounts => {
            client.remove_stale_virtiofs_share_mounts().await?;
            Done::new("removed_stale", "")
        }
        VolumeCommand::VolumeStats { path } => {
            return Ok(Outcome::ok(VolumeStatsReport::from(
                &client.get_volume_stats(path).await?,
            )));
        }
        VolumeCommand::ResizeVolume { path, size } => {
            client.resize_volume(path, *size).await?;
            Done::new("resized", path)
        }
        VolumeCommand::AddSwap { pci_path } => {
            client.add_swap(&pci_path.0).await?;
            let path: Vec<String> = pci_path.0.iter().map(|s| format!("{s:02x}")).collect();
            Done::new("swap_added", &path.join("/"))
        }
        VolumeCommand::AddSwapPath { path } => {
            client.add_swap_path(path).await?;
            Done::new("swap_added", path)
        }
    }))
}

/// The storage Kata's runtime sends to resize an ephemeral volume.
pub fn ephemeral_update(mount_point: &str, options: &[String]) -> Storage {
    Storage {
        driver: "ephemeral".into(),
        source: "tmpfs".into(),
        fstype: "tmpfs".into(),
        options: std::iter::once("remount".to_string())
            .chain(options.iter().cloned())
            .collect(),
        mount_point: mount_point.into(),
        ..Default::default()
    }
}

/// A command that answers nothing but success. JSON: `{"<what>": true, "target": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    what: &'static str,
    target: String,
}

impl Done {
    fn new(what: &'static str, target: &str) -> Self {
        Self {
            what,
            target: target.to_string(),
        }
    }
}

impl Report for Done {
    fn human(&self) -> String {
        let mut pairs = vec![(self.what, "true".to_string())];
        if !self.target.is_empty() {
            pairs.push(("target", self.target.clone()));
        }
        kv_lines(&pairs)
    }
    fn json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert(self.what.into(), true.into());
        if !self.target.is_empty() {
            object.insert("target".into(), self.target.clone().into());
        }
        object.into()
    }
}

/// `volume-stats` result. JSON: `{"bytes": {"total", "used", "available"}, "inodes":
/// {...}, "abnormal": false, "message": "OK"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeStatsReport {
    /// Bytes, if the agent reported them.
    pub bytes: Option<UsageReport>,
    /// Inodes, if the agent reported them.
    pub inodes: Option<UsageReport>,
    /// Whether the agent finds the volume unhealthy.
    pub abnormal: bool,
    /// The agent's word on the volume's condition.
    pub message: String,
}

/// One unit of [`VolumeStatsReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    pub total: u64,
    pub used: u64,
    pub available: u64,
}

impl From<&VolumeStatsResponse> for VolumeStatsReport {
    fn from(resp: &VolumeStatsResponse) -> Self {
        let unit = |wanted: Unit| {
            resp.usage
                .iter()
                .find(|u| u.unit.enum_value() == Ok(wanted))
                .map(|u| UsageReport {
                    total: u.total,
                    used: u.used,
                    available: u.available,
                })
        };
        let condition = resp.volume_condition.as_ref();
        Self {
            bytes: unit(Unit::BYTES),
            inodes: unit(Unit::INODES),
            abnormal: condition.is_some_and(|c| c.abnormal),
            message: condition.map(|c| c.message.clone()).unwrap_or_default(),
        }
    }
}

impl Report for VolumeStatsReport {
    fn human(&self) -> String {
        let usage = |u: &Option<UsageReport>| match u {
            Some(u) => format!(
                "{} total, {} used, {} available",
                u.total, u.used, u.available
            ),
            None => "-".to_string(),
        };
        kv_lines(&[
            ("bytes", usage(&self.bytes)),
            ("inodes", usage(&self.inodes)),
            ("abnormal", self.abnormal.to_string()),
            ("message", self.message.clone()),
        ])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_protocols::csi::{VolumeCondition, VolumeUsage};

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn pci_paths_are_hex_slots() {
        assert_eq!(parse_pci_path("10"), Ok(PciSlots(vec![0x10])));
        assert_eq!(parse_pci_path("02/1f"), Ok(PciSlots(vec![2, 0x1f])));
        for bad in ["", "20", "02/", "x", "100"] {
            assert!(parse_pci_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_update_is_a_remount_of_an_ephemeral_storage() {
        let storage = ephemeral_update(
            "/run/kata-containers/sandbox/ephemeral/v",
            &["size=8M".into()],
        );
        assert_eq!(storage.driver, "ephemeral");
        assert_eq!(storage.options, vec!["remount", "size=8M"]);
    }

    #[test]
    fn volume_stats_report_both_units() {
        let resp = VolumeStatsResponse {
            usage: vec![
                VolumeUsage {
                    total: 100,
                    used: 30,
                    available: 60,
                    unit: Unit::BYTES.into(),
                    ..Default::default()
                },
                VolumeUsage {
                    total: 8,
                    used: 2,
                    available: 6,
                    unit: Unit::INODES.into(),
                    ..Default::default()
                },
            ],
            volume_condition: Some(VolumeCondition {
                abnormal: false,
                message: "OK".into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let report = VolumeStatsReport::from(&resp);
        assert_eq!(
            report.json(),
            serde_json::json!({
                "bytes": {"total": 100, "used": 30, "available": 60},
                "inodes": {"total": 8, "used": 2, "available": 6},
                "abnormal": false,
                "message": "OK"
            })
        );
        assert!(report.human().contains("100 total, 30 used, 60 available"));
        let done = Done::new("resized", "/v");
        assert_eq!(
            done.json(),
            serde_json::json!({"resized": true, "target": "/v"})
        );
    }
}

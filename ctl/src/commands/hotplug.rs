//! `online-cpu-mem` and `mem-hotplug-probe`: bringing vCPUs and memory the VMM
//! hot-plugged online.

use clap::{Args, Subcommand};
use hull_protocols::AgentClient;
use hull_protocols::agent::OnlineCPUMemRequest;
use serde::Serialize;

use super::Outcome;
use crate::output::{Report, kv_lines, to_json};

/// vCPU and memory hot-plug commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum HotplugCommand {
    /// AgentService.OnlineCPUMem: online hot-plugged vCPUs (until --cpus are online in
    /// all) and, unless --cpu-only, every offline memory block.
    OnlineCpuMem(OnlineCpuMemArgs),
    /// AgentService.MemHotplugByProbe: add memory blocks by their physical addresses
    /// through /sys/devices/system/memory/probe, then online them.
    MemHotplugProbe(MemHotplugProbeArgs),
}

/// `online-cpu-mem` options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct OnlineCpuMemArgs {
    /// How many vCPUs should be online in all (0: leave CPUs alone).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub cpus: u32,
    /// Online CPUs only; leave memory alone.
    #[arg(long)]
    pub cpu_only: bool,
}

/// `mem-hotplug-probe` options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct MemHotplugProbeArgs {
    /// Physical addresses of the memory blocks (hex with 0x, or decimal).
    #[arg(required = true, value_name = "ADDR", value_parser = parse_address)]
    pub addresses: Vec<u64>,
}

/// `0x1_0000_0000`-style hex (with `0x`, underscores allowed) or decimal.
fn parse_address(text: &str) -> Result<u64, String> {
    let clean = text.replace('_', "");
    let parsed = match clean
        .strip_prefix("0x")
        .or_else(|| clean.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => clean.parse(),
    };
    parsed.map_err(|e| format!("{text:?} is not an address: {e}"))
}

/// Runs a hot-plug command.
pub async fn run(client: &AgentClient, command: &HotplugCommand) -> anyhow::Result<Outcome> {
    match command {
        HotplugCommand::OnlineCpuMem(args) => {
            client
                .online_cpu_mem(&OnlineCPUMemRequest {
                    wait: true,
                    nb_cpus: args.cpus,
                    cpu_only: args.cpu_only,
                    ..Default::default()
                })
                .await?;
            Ok(Outcome::ok(OnlineReport {
                cpus: args.cpus,
                memory: !args.cpu_only,
            }))
        }
        HotplugCommand::MemHotplugProbe(args) => {
            client.mem_hotplug_by_probe(&args.addresses).await?;
            Ok(Outcome::ok(ProbeReport {
                probed: args.addresses.iter().map(|a| format!("{a:#x}")).collect(),
            }))
        }
    }
}

/// `online-cpu-mem` result. JSON: `{"cpus": N, "memory": B}`: the CPU count asked to be
/// online, and whether memory was onlined too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnlineReport {
    /// CPUs online in all, as asked (0: CPUs left alone).
    pub cpus: u32,
    /// Whether offline memory blocks were onlined.
    pub memory: bool,
}

impl Report for OnlineReport {
    fn human(&self) -> String {
        kv_lines(&[
            ("cpus", self.cpus.to_string()),
            ("memory", self.memory.to_string()),
        ])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `mem-hotplug-probe` result. JSON: `{"probed": ["0x100000000", ...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// The addresses probed, in hex.
    pub probed: Vec<String>,
}

impl Report for ProbeReport {
    fn human(&self) -> String {
        kv_lines(&[("probed", self.probed.join(", "))])
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
    fn addresses_parse_in_hex_or_decimal() {
        assert_eq!(parse_address("0x1_0000_0000"), Ok(0x1_0000_0000));
        assert_eq!(parse_address("4294967296"), Ok(0x1_0000_0000));
        assert!(
            parse_address("0xzz")
                .unwrap_err()
                .contains("not an address")
        );
    }

    #[test]
    fn commands_parse() {
        use crate::cli::Cli;
        use crate::commands::Command;
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "hull-ctl",
            "--addr",
            "vsock://3:1024",
            "online-cpu-mem",
            "--cpus",
            "2",
            "--cpu-only",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Hotplug(HotplugCommand::OnlineCpuMem(OnlineCpuMemArgs {
                cpus: 2,
                cpu_only: true
            }))
        ));
        let cli = Cli::try_parse_from([
            "hull-ctl",
            "--addr",
            "vsock://3:1024",
            "mem-hotplug-probe",
            "0x100000000",
            "0x108000000",
        ])
        .unwrap();
        let Command::Hotplug(HotplugCommand::MemHotplugProbe(args)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(args.addresses, [0x1_0000_0000, 0x1_0800_0000]);
        assert!(
            Cli::try_parse_from(["hull-ctl", "--addr", "vsock://3:1024", "mem-hotplug-probe"])
                .is_err()
        );
    }

    #[test]
    fn reports_render() {
        let online = OnlineReport {
            cpus: 2,
            memory: true,
        };
        assert_eq!(render(&online, Format::Human), "cpus:   2\nmemory: true\n");
        assert_eq!(
            online.json(),
            serde_json::json!({"cpus": 2, "memory": true})
        );
        let probe = ProbeReport {
            probed: vec!["0x100000000".into()],
        };
        assert_eq!(probe.json(), serde_json::json!({"probed": ["0x100000000"]}));
    }
}

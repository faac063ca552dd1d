//! `mem-agent-memcg`, `mem-agent-compact`, `diagnostic-data` and `iptables get|set`: the
//! guest's memory agent, diagnostic data and packet filter.
//!
//! The memory agent's flags are the fields of Kata's `MemAgentMemcgConfig` /
//! `MemAgentCompactConfig`: a flag not given is not sent, and the agent keeps that
//! setting. The agent checks the values.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hull_protocols::AgentClient;
use hull_protocols::agent::{MemAgentCompactConfig, MemAgentMemcgConfig};
use serde::Serialize;

use super::Outcome;
use crate::output::{Report, kv_lines, to_json};

/// Guest administration commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum GuestAdminCommand {
    /// AgentService.MemAgentMemcgSet: configure (and start) proactive reclaim of the
    /// guest's memory cgroups.
    MemAgentMemcg(MemcgArgs),
    /// AgentService.MemAgentCompactSet: configure (and start) periodic memory
    /// compaction.
    MemAgentCompact(CompactArgs),
    /// AgentService.GetDiagnosticData: data of LOG_TYPE (`termination_log`: a
    /// container's termination message).
    DiagnosticData(DiagnosticArgs),
    /// AgentService.GetIPTables / SetIPTables: the guest's packet filter in
    /// iptables-save format.
    Iptables {
        /// `get` or `set`.
        #[command(subcommand)]
        action: IptablesAction,
    },
}

/// `mem-agent-memcg` flags (each optional; absent ones are not sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct MemcgArgs {
    /// Disable (true) or enable (false) the reclaim.
    #[arg(long, value_name = "BOOL")]
    pub disabled: Option<bool>,
    /// Allow reclaiming anonymous pages to swap.
    #[arg(long, value_name = "BOOL")]
    pub swap: Option<bool>,
    /// The highest swappiness used (0-200).
    #[arg(long, value_name = "N")]
    pub swappiness_max: Option<u32>,
    /// Seconds between two looks at each memory cgroup.
    #[arg(long, value_name = "SECS")]
    pub period_secs: Option<u64>,
    /// Skip a cgroup whose pressure over the period exceeds this percentage.
    #[arg(long, value_name = "PERCENT")]
    pub period_psi_percent_limit: Option<u32>,
    /// Stop a reclaim once the cgroup's pressure exceeds this percentage.
    #[arg(long, value_name = "PERCENT")]
    pub eviction_psi_percent_limit: Option<u32>,
    /// Calm periods a cgroup needs before it is reclaimed from.
    #[arg(long, value_name = "N")]
    pub eviction_run_aging_count_min: Option<u64>,
}

/// `mem-agent-compact` flags (each optional; absent ones are not sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct CompactArgs {
    /// Disable (true) or enable (false) the compaction.
    #[arg(long, value_name = "BOOL")]
    pub disabled: Option<bool>,
    /// Seconds between two compaction decisions.
    #[arg(long, value_name = "SECS")]
    pub period_secs: Option<u64>,
    /// No compaction in a period whose pressure exceeds this percentage.
    #[arg(long, value_name = "PERCENT")]
    pub period_psi_percent_limit: Option<u32>,
    /// Stop a compaction once the pressure exceeds this percentage.
    #[arg(long, value_name = "PERCENT")]
    pub compact_psi_percent_limit: Option<u32>,
    /// Stop a compaction after this many seconds.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
    pub compact_sec_max: Option<i64>,
    /// Free pages below this order count as fragmented (0-10).
    #[arg(long, value_name = "ORDER")]
    pub compact_order: Option<u32>,
    /// Pages of growth in fragmentation that trigger a compaction.
    #[arg(long, value_name = "PAGES")]
    pub compact_threshold: Option<u64>,
    /// Force a compaction after this many periods without one.
    #[arg(long, value_name = "N")]
    pub compact_force_times: Option<u64>,
}

/// `diagnostic-data` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DiagnosticArgs {
    /// The log type (`termination_log`).
    pub log_type: String,
    /// The container it is about.
    #[arg(long, value_name = "ID", default_value = "")]
    pub container: String,
}

/// `iptables get|set`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum IptablesAction {
    /// Print the rules (iptables-save / ip6tables-save output).
    Get {
        /// IPv6 (ip6tables) instead of IPv4.
        #[arg(long)]
        ipv6: bool,
    },
    /// Replace the rules with FILE (iptables-restore format; `-` or none: stdin).
    Set {
        /// IPv6 (ip6tables) instead of IPv4.
        #[arg(long)]
        ipv6: bool,
        /// The rules.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

impl MemcgArgs {
    fn to_proto(&self) -> MemAgentMemcgConfig {
        MemAgentMemcgConfig {
            disabled: self.disabled,
            swap: self.swap,
            swappiness_max: self.swappiness_max,
            period_secs: self.period_secs,
            period_psi_percent_limit: self.period_psi_percent_limit,
            eviction_psi_percent_limit: self.eviction_psi_percent_limit,
            eviction_run_aging_count_min: self.eviction_run_aging_count_min,
            ..Default::default()
        }
    }
}

impl CompactArgs {
    fn to_proto(&self) -> MemAgentCompactConfig {
        MemAgentCompactConfig {
            disabled: self.disabled,
            period_secs: self.period_secs,
            period_psi_percent_limit: self.period_psi_percent_limit,
            compact_psi_percent_limit: self.compact_psi_percent_limit,
            compact_sec_max: self.compact_sec_max,
            compact_order: self.compact_order,
            compact_threshold: self.compact_threshold,
            compact_force_times: self.compact_force_times,
            ..Default::default()
        }
    }
}

/// A configuration the agent accepted.
#[derive(Debug, Serialize)]
struct Applied {
    method: &'static str,
    applied: bool,
}

impl Report for Applied {
    fn human(&self) -> String {
        kv_lines(&[(self.method, "applied".to_string())])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// Text the agent answered (diagnostic data, rules): printed as is.
#[derive(Debug, Serialize)]
struct Text {
    #[serde(flatten)]
    about: serde_json::Map<String, serde_json::Value>,
    data: String,
}

impl Report for Text {
    fn human(&self) -> String {
        self.data.clone()
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

fn text(about: serde_json::Value, data: String) -> Text {
    Text {
        about: match about {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        data,
    }
}

fn read_rules(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => {
            let mut rules = Vec::new();
            std::io::stdin()
                .read_to_end(&mut rules)
                .context("cannot read the rules from stdin")?;
            Ok(rules)
        }
    }
}

/// Runs one guest administration command.
pub async fn run(client: &AgentClient, command: &GuestAdminCommand) -> anyhow::Result<Outcome> {
    match command {
        GuestAdminCommand::MemAgentMemcg(args) => {
            client.mem_agent_memcg_set(&args.to_proto()).await?;
            Ok(Outcome::ok(Applied {
                method: "MemAgentMemcgSet",
                applied: true,
            }))
        }
        GuestAdminCommand::MemAgentCompact(args) => {
            client.mem_agent_compact_set(&args.to_proto()).await?;
            Ok(Outcome::ok(Applied {
                method: "MemAgentCompactSet",
                applied: true,
            }))
        }
        GuestAdminCommand::DiagnosticData(args) => {
            let data = client
                .get_diagnostic_data(&args.log_type, &args.container)
                .await?;
            let about = serde_json::json!({
                "log_type": args.log_type,
                "container_id": args.container,
            });
            Ok(Outcome::ok(text(about, data)))
        }
        GuestAdminCommand::Iptables { action } => match action {
            IptablesAction::Get { ipv6 } => {
                let data = client.get_ip_tables(*ipv6).await?;
                let about = serde_json::json!({ "ipv6": ipv6 });
                Ok(Outcome::ok(text(
                    about,
                    String::from_utf8_lossy(&data).into_owned(),
                )))
            }
            IptablesAction::Set { ipv6, file } => {
                let rules = read_rules(file.as_ref())?;
                let data = client.set_ip_tables(*ipv6, &rules).await?;
                let about = serde_json::json!({ "ipv6": ipv6 });
                Ok(Outcome::ok(text(
                    about,
                    String::from_utf8_lossy(&data).into_owned(),
                )))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use crate::commands::Command;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> GuestAdminCommand {
        let cli = Cli::try_parse_from(
            ["hull-ctl", "--addr", "unix:///a.sock"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .expect("parse");
        match cli.command {
            Command::GuestAdmin(c) => c,
            other => panic!("not a guest admin command: {other:?}"),
        }
    }

    #[test]
    fn only_given_memcg_flags_are_sent() {
        let GuestAdminCommand::MemAgentMemcg(args) =
            parse(&["mem-agent-memcg", "--period-secs", "2", "--swap", "true"])
        else {
            panic!("wrong command");
        };
        let proto = args.to_proto();
        assert_eq!(proto.period_secs, Some(2));
        assert_eq!(proto.swap, Some(true));
        assert_eq!(proto.disabled, None);
        assert_eq!(proto.swappiness_max, None);
    }

    #[test]
    fn compact_flags_take_negative_seconds_for_the_agent_to_refuse() {
        let GuestAdminCommand::MemAgentCompact(args) = parse(&[
            "mem-agent-compact",
            "--compact-sec-max",
            "-1",
            "--compact-order",
            "3",
        ]) else {
            panic!("wrong command");
        };
        let proto = args.to_proto();
        assert_eq!(proto.compact_sec_max, Some(-1));
        assert_eq!(proto.compact_order, Some(3));
        assert_eq!(proto.period_secs, None);
    }

    #[test]
    fn diagnostic_and_iptables_commands_parse() {
        assert_eq!(
            parse(&["diagnostic-data", "termination_log", "--container", "c1"]),
            GuestAdminCommand::DiagnosticData(DiagnosticArgs {
                log_type: "termination_log".into(),
                container: "c1".into(),
            })
        );
        assert_eq!(
            parse(&["iptables", "get", "--ipv6"]),
            GuestAdminCommand::Iptables {
                action: IptablesAction::Get { ipv6: true }
            }
        );
        assert_eq!(
            parse(&["iptables", "set", "rules.txt"]),
            GuestAdminCommand::Iptables {
                action: IptablesAction::Set {
                    ipv6: false,
                    file: Some("rules.txt".into())
                }
            }
        );
    }

    #[test]
    fn text_reports_print_the_data_as_is_and_describe_it_in_json() {
        let report = text(
            serde_json::json!({"ipv6": false}),
            "*filter\nCOMMIT\n".into(),
        );
        assert_eq!(report.human(), "*filter\nCOMMIT\n");
        assert_eq!(
            report.json(),
            serde_json::json!({"ipv6": false, "data": "*filter\nCOMMIT\n"})
        );
    }
}

//! Init's configuration, read once from the kernel command line.
//!
//! Keys (a `-` in a key is read as `_`, as the kernel does for its own
//! parameters; when a key repeats, the last one wins):
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `hull.debug`, `hull.debug=1\|0\|true\|false\|yes\|no\|on\|off` | debug-level log lines | off |
//! | `hull.hostname=NAME` | hostname, 1..64 of `[A-Za-z0-9.-]` | `hull` |
//! | `hull.agent_restarts=N` | agent restarts after crashes, 0..=100 | 5 |
//! | `hull.shutdown=poweroff\|reboot` | how init ends the machine: `reboot` for VMMs without ACPI power-off that end on the guest's reset (vmm-lite, Firecracker; with `reboot=k`) | `poweroff` |
//!
//! Everything else is ignored: kernel parameters, and `agent.*`, which belong
//! to the agent (it reads /proc/cmdline itself). Unknown `hull.*` keys and bad
//! values yield warnings and fall back to the defaults. Nothing here chooses
//! what runs as the agent: its path is a constant.

use alloc::borrow::ToOwned as _;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::hostname::{self, DEFAULT_HOSTNAME, HostnameError};
use hull_common::cmdline::{self, Param};

pub const DEFAULT_AGENT_RESTARTS: u32 = 5;
pub const MAX_AGENT_RESTARTS: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub debug: bool,
    pub hostname: String,
    pub agent_restarts: u32,
    pub shutdown: ShutdownAction,
}

/// How init ends the machine once everything is stopped and synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShutdownAction {
    /// `reboot(RB_POWER_OFF)` (ACPI S5 under QEMU), rebooting if that fails.
    #[default]
    PowerOff,
    /// `reboot(RB_AUTOBOOT)`: without ACPI the kernel cannot power off (it would halt
    /// forever), but a reset through the i8042 (`reboot=k`) ends the VMM.
    Reboot,
}

impl ShutdownAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PowerOff => "poweroff",
            Self::Reboot => "reboot",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            debug: false,
            hostname: DEFAULT_HOSTNAME.to_owned(),
            agent_restarts: DEFAULT_AGENT_RESTARTS,
            shutdown: ShutdownAction::PowerOff,
        }
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "hull.debug={} hull.hostname={} hull.agent_restarts={} hull.shutdown={}",
            u8::from(self.debug),
            self.hostname,
            self.agent_restarts,
            self.shutdown.as_str()
        )
    }
}

/// Something on the command line that init did not accept; logged as a warning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    #[error(
        "invalid hull.debug value {0:?} (expected 1/0/true/false/yes/no/on/off), keeping the previous value"
    )]
    BadDebug(String),
    #[error("invalid hull.hostname {value:?}: {reason}; using the default")]
    BadHostname {
        value: String,
        reason: HostnameError,
    },
    #[error(
        "invalid hull.agent_restarts value {0:?} (expected 0..={MAX_AGENT_RESTARTS}), keeping the previous value"
    )]
    BadRestarts(String),
    #[error("hull.agent_restarts={0} is above the maximum, using {MAX_AGENT_RESTARTS}")]
    RestartsClamped(String),
    #[error(
        "invalid hull.shutdown value {0:?} (expected poweroff or reboot), keeping the previous value"
    )]
    BadShutdown(String),
    #[error("unknown parameter {0:?} ignored")]
    UnknownKey(String),
}

/// Parses `cmdline` (the content of /proc/cmdline). Pure; never fails.
pub fn parse(cmdline: &str) -> (Config, Vec<ConfigWarning>) {
    let mut config = Config::default();
    let mut warnings = Vec::new();
    for Param { key, value } in cmdline::params(cmdline) {
        let Some(name) = key.strip_prefix("hull.") else {
            continue;
        };
        match name.replace('-', "_").as_str() {
            "debug" => match parse_bool(value) {
                Some(on) => config.debug = on,
                None => warnings.push(ConfigWarning::BadDebug(value.unwrap_or("").to_owned())),
            },
            "hostname" => {
                let value = value.unwrap_or("");
                match hostname::validate(value) {
                    Ok(()) => config.hostname = value.to_owned(),
                    Err(reason) => {
                        config.hostname = DEFAULT_HOSTNAME.to_owned();
                        warnings.push(ConfigWarning::BadHostname {
                            value: value.to_owned(),
                            reason,
                        });
                    }
                }
            }
            "agent_restarts" => {
                let text = value.unwrap_or("");
                match text.parse::<u64>() {
                    Ok(n) if n <= u64::from(MAX_AGENT_RESTARTS) => {
                        config.agent_restarts = u32::try_from(n).unwrap_or(MAX_AGENT_RESTARTS);
                    }
                    Ok(_) => {
                        config.agent_restarts = MAX_AGENT_RESTARTS;
                        warnings.push(ConfigWarning::RestartsClamped(text.to_owned()));
                    }
                    Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                        // Digits only but too large for u64.
                        config.agent_restarts = MAX_AGENT_RESTARTS;
                        warnings.push(ConfigWarning::RestartsClamped(text.to_owned()));
                    }
                    Err(_) => warnings.push(ConfigWarning::BadRestarts(text.to_owned())),
                }
            }
            "shutdown" => match value {
                Some("poweroff") => config.shutdown = ShutdownAction::PowerOff,
                Some("reboot") => config.shutdown = ShutdownAction::Reboot,
                other => warnings.push(ConfigWarning::BadShutdown(other.unwrap_or("").to_owned())),
            },
            _ => warnings.push(ConfigWarning::UnknownKey(key.to_owned())),
        }
    }
    (config, warnings)
}

fn parse_bool(value: Option<&str>) -> Option<bool> {
    match value {
        None => Some(true),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" | "y" => Some(true),
            "0" | "false" | "no" | "off" | "n" => Some(false),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString as _;
    use alloc::vec;

    fn cfg(debug: bool, hostname: &str, agent_restarts: u32) -> Config {
        Config {
            debug,
            hostname: hostname.to_owned(),
            agent_restarts,
            ..Config::default()
        }
    }

    #[test]
    fn shutdown_action() {
        assert_eq!(parse("").0.shutdown, ShutdownAction::PowerOff);
        assert_eq!(
            parse("reboot=k hull.shutdown=reboot").0.shutdown,
            ShutdownAction::Reboot
        );
        assert_eq!(
            parse("hull.shutdown=reboot hull.shutdown=poweroff")
                .0
                .shutdown,
            ShutdownAction::PowerOff
        );
        let (c, w) = parse("hull.shutdown=halt");
        assert_eq!(c.shutdown, ShutdownAction::PowerOff);
        assert_eq!(w, vec![ConfigWarning::BadShutdown("halt".into())]);
    }

    #[test]
    fn defaults_when_absent() {
        let (c, w) = parse("console=ttyS0 root=/dev/vda1 ro quiet");
        assert_eq!(c, Config::default());
        assert_eq!(c, cfg(false, "hull", 5));
        assert!(w.is_empty());
        assert_eq!(parse(""), (Config::default(), vec![]));
    }

    #[test]
    fn all_keys() {
        let (c, w) =
            parse("console=ttyS0 hull.debug hull.hostname=sb-1.local hull.agent_restarts=7\n");
        assert_eq!(c, cfg(true, "sb-1.local", 7));
        assert!(w.is_empty());
    }

    #[test]
    fn debug_values() {
        for (text, want) in [
            ("hull.debug", true),
            ("hull.debug=1", true),
            ("hull.debug=TRUE", true),
            ("hull.debug=on", true),
            ("hull.debug=0", false),
            ("hull.debug=off", false),
            ("hull.debug hull.debug=0", false),
        ] {
            assert_eq!(parse(text).0.debug, want, "{text}");
        }
        let (c, w) = parse("hull.debug=maybe");
        assert!(!c.debug);
        assert_eq!(w, vec![ConfigWarning::BadDebug("maybe".into())]);
    }

    #[test]
    fn quoted_values() {
        let (c, w) = parse(r#"hull.hostname="box" "hull.agent_restarts=3""#);
        assert_eq!(c, cfg(false, "box", 3));
        assert!(w.is_empty());
        let (c, w) = parse(r#"hull.hostname="two words""#);
        assert_eq!(c.hostname, "hull");
        assert_eq!(
            w,
            vec![ConfigWarning::BadHostname {
                value: "two words".into(),
                reason: HostnameError::BadChar(' ')
            }]
        );
    }

    #[test]
    fn repeated_keys_last_wins() {
        let (c, w) =
            parse("hull.hostname=a hull.hostname=b hull.agent_restarts=1 hull.agent-restarts=2");
        assert_eq!(c, cfg(false, "b", 2));
        assert!(w.is_empty());
        // A bad later value falls back to the default, not to the earlier value.
        let (c, w) = parse("hull.hostname=good hull.hostname=bad_name");
        assert_eq!(c.hostname, "hull");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn restarts_bounds() {
        assert_eq!(parse("hull.agent_restarts=0").0.agent_restarts, 0);
        assert_eq!(parse("hull.agent_restarts=100").0.agent_restarts, 100);
        let (c, w) = parse("hull.agent_restarts=101");
        assert_eq!(c.agent_restarts, 100);
        assert_eq!(w, vec![ConfigWarning::RestartsClamped("101".into())]);
        let (c, w) = parse("hull.agent_restarts=99999999999999999999999");
        assert_eq!(c.agent_restarts, 100);
        assert_eq!(w.len(), 1);
        for bad in ["-1", "", "x", "1.5", " 3"] {
            let (c, w) = parse(&format!("hull.agent_restarts=\"{bad}\""));
            assert_eq!(c.agent_restarts, 5, "{bad:?}");
            assert_eq!(w, vec![ConfigWarning::BadRestarts(bad.into())], "{bad:?}");
        }
        let (c, w) = parse("hull.agent_restarts");
        assert_eq!(c.agent_restarts, 5);
        assert_eq!(w, vec![ConfigWarning::BadRestarts(String::new())]);
    }

    #[test]
    fn foreign_and_unknown_keys() {
        let (c, w) = parse(
            "agent.log=debug agent.debug_console hull hullx.debug=1 hull.agent=/bin/sh \
             hull.agent_path=/tmp/evil init=/bin/sh HULL.debug",
        );
        assert_eq!(c, Config::default());
        assert_eq!(
            w,
            vec![
                ConfigWarning::UnknownKey("hull.agent".into()),
                ConfigWarning::UnknownKey("hull.agent_path".into()),
            ]
        );
    }

    #[test]
    fn junk_is_tolerated() {
        let (c, _) = parse("\"\" = == hull.= hull. \"hull.debug hull.hostname=\u{0}\u{7f} é");
        assert_eq!(c.agent_restarts, 5);
        let (c, _) = parse("hull.hostname=");
        assert_eq!(c.hostname, "hull");
    }

    #[test]
    fn display_round_trips() {
        let c = cfg(true, "x", 9);
        assert_eq!(parse(&c.to_string()), (c, vec![]));
    }
}

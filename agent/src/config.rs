//! The agent's configuration, parsed once at start-up.
//!
//! In a guest started by hull-init (which sets `HULL_INIT=1`), options come from the kernel
//! command line, with Kata's option names where Kata has one:
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `agent.log=LEVEL` | `trace`, `debug`, `info`, `warn` or `error` | `info` |
//! | `hull.debug` | shorthand for `agent.log=debug` (init reads it too) | off |
//! | `agent.log_vport=PORT` | send logs to the host through vsock port PORT | console |
//! | `agent.server_addr=ADDR` | ttRPC address: `vsock://-1:PORT` or `unix:///path` | `vsock://-1:1024` |
//! | `agent.debug_console` | a shell on vsock port `agent.debug_console_vport` | off |
//! | `agent.hotplug_timeout=SECS` | how long to wait for a hot-plugged device | `3` |
//!
//! `agent.debug_console` is honoured only when the image was built with the debug console
//! (the file [`DEBUG_CONSOLE_MARKER`] exists in the guest): a host that can only change
//! the kernel command line must not be able to open a root shell.
//!
//! On a host (tests, development) the kernel command line belongs to the host, so it is
//! not read; the environment is: `HULL_AGENT_SERVER_ADDR`, `HULL_AGENT_LOG`,
//! `HULL_AGENT_LOG_VPORT`, `HULL_AGENT_HOTPLUG_TIMEOUT`. The environment also overrides the
//! command line in a guest (init sets it, not the host).
//!
//! Two more settings exist only in the environment, for host tests and the runtime CLI:
//! `HULL_AGENT_CONTAINER_BASE` (where container bundles live, default
//! [`DEFAULT_CONTAINER_BASE`]) and `HULL_AGENT_CGROUP_ROOT` (the cgroup2 mount, default
//! [`DEFAULT_CGROUP_ROOT`]; `/sys/fs/cgroup/unified` on a host with a hybrid layout).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hull_protocols::address::AgentAddress;

/// The vsock port the agent serves ttRPC on by default.
pub const DEFAULT_SERVER_PORT: u32 = 1024;
/// Kata's default debug console port.
pub const DEFAULT_DEBUG_CONSOLE_VPORT: u32 = 1026;
/// Container bundles (`<base>/<container id>/`), as Kata's agent lays them out.
pub const DEFAULT_CONTAINER_BASE: &str = "/run/kata-containers";
/// Where the guest mounts cgroup2 (hull-init does).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Present in images built with the debug console.
pub const DEBUG_CONSOLE_MARKER: &str = "/etc/hull/debug-console";

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// The log level names the agent accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Ok(Self::Trace),
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" | "warning" => Ok(Self::Warn),
            "error" | "critical" | "fatal" => Ok(Self::Error),
            _ => Err("expected one of trace, debug, info, warn, error".into()),
        }
    }
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

/// Everything the agent reads from its environment, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub log_level: LogLevel,
    pub log_vport: Option<u32>,
    pub server_addr: AgentAddress,
    /// Asked for on the command line; see [`AgentConfig::debug_console_enabled`].
    pub debug_console_requested: bool,
    pub debug_console_vport: u32,
    pub hotplug_timeout: Duration,
    /// Started by hull-init as PID 1's child.
    pub under_init: bool,
    /// Where container bundles live; a relative `root.path` is resolved against
    /// `<container_base>/<container id>/`.
    pub container_base: PathBuf,
    /// The cgroup2 hierarchy container cgroups are created in.
    pub cgroup_root: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            log_vport: None,
            server_addr: AgentAddress::Vsock {
                cid: u32::MAX,
                port: DEFAULT_SERVER_PORT,
            },
            debug_console_requested: false,
            debug_console_vport: DEFAULT_DEBUG_CONSOLE_VPORT,
            hotplug_timeout: Duration::from_secs(3),
            under_init: false,
            container_base: PathBuf::from(DEFAULT_CONTAINER_BASE),
            cgroup_root: PathBuf::from(DEFAULT_CGROUP_ROOT),
        }
    }
}

impl AgentConfig {
    /// Reads the real sources: `/proc/cmdline` when started by hull-init, and the process
    /// environment.
    pub fn load() -> Result<Self, ConfigError> {
        let under_init = std::env::var("HULL_INIT").is_ok_and(|v| v == "1")
            // SAFETY: getppid has no preconditions and cannot fail.
            && unsafe { libc::getppid() } == 1;
        let cmdline = if under_init {
            std::fs::read_to_string("/proc/cmdline").unwrap_or_default()
        } else {
            String::new()
        };
        let mut config = Self::from_sources(&cmdline, |key| std::env::var(key).ok())?;
        config.under_init = under_init;
        Ok(config)
    }

    /// Builds the configuration from a kernel command line and an environment lookup.
    pub fn from_sources(
        cmdline: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for (key, value) in kernel_cmdline_options(cmdline) {
            config.apply(key, value, false)?;
        }
        for (env_key, key) in [
            ("HULL_AGENT_SERVER_ADDR", "agent.server_addr"),
            ("HULL_AGENT_LOG", "agent.log"),
            ("HULL_AGENT_LOG_VPORT", "agent.log_vport"),
            ("HULL_AGENT_HOTPLUG_TIMEOUT", "agent.hotplug_timeout"),
            ("HULL_AGENT_CONTAINER_BASE", "hull.container_base"),
            ("HULL_AGENT_CGROUP_ROOT", "hull.cgroup_root"),
        ] {
            if let Some(value) = env(env_key) {
                config.apply(key, Some(&value), true).map_err(|e| match e {
                    ConfigError::Invalid { value, reason, .. } => ConfigError::Invalid {
                        key: env_key.to_string(),
                        value,
                        reason,
                    },
                })?;
            }
        }
        Ok(config)
    }

    /// Whether the debug console runs: asked for, and allowed by the image.
    pub fn debug_console_enabled(&self, image_root: &Path) -> bool {
        self.debug_console_requested
            && image_root
                .join(DEBUG_CONSOLE_MARKER.trim_start_matches('/'))
                .is_file()
    }

    fn apply(&mut self, key: &str, value: Option<&str>, from_env: bool) -> Result<(), ConfigError> {
        let invalid = |reason: &str| ConfigError::Invalid {
            key: key.to_string(),
            value: value.unwrap_or_default().to_string(),
            reason: reason.to_string(),
        };
        let required = || value.ok_or_else(|| invalid("a value is required"));
        match key {
            "agent.log" => self.log_level = required()?.parse().map_err(|e: String| invalid(&e))?,
            "hull.debug" if value.is_none_or(|v| v != "0") => self.log_level = LogLevel::Debug,
            "agent.log_vport" => {
                self.log_vport = Some(parse_port(required()?).map_err(|e| invalid(&e))?)
            }
            "agent.server_addr" => {
                self.server_addr = required()?
                    .parse()
                    .map_err(|e: hull_protocols::address::AddressError| invalid(&e.to_string()))?;
                if matches!(self.server_addr, AgentAddress::HybridVsock { .. }) {
                    return Err(invalid(
                        "hybrid vsock is a host-side address; the agent listens on vsock:// or unix://",
                    ));
                }
            }
            "agent.debug_console" => {
                self.debug_console_requested = value.is_none_or(|v| v != "0" && v != "false")
            }
            "agent.debug_console_vport" => {
                self.debug_console_vport = parse_port(required()?).map_err(|e| invalid(&e))?
            }
            "agent.hotplug_timeout" => {
                let secs: u64 = required()?
                    .parse()
                    .map_err(|_| invalid("expected whole seconds"))?;
                if !(1..=600).contains(&secs) {
                    return Err(invalid("expected 1 to 600 seconds"));
                }
                self.hotplug_timeout = Duration::from_secs(secs);
            }
            // Environment-only keys (see `from_sources`); never read from the kernel
            // command line, where the host could set them.
            "hull.container_base" | "hull.cgroup_root" if from_env => {
                let path = PathBuf::from(required()?);
                if !path.is_absolute() {
                    return Err(invalid("expected an absolute path"));
                }
                if key == "hull.container_base" {
                    self.container_base = path;
                } else {
                    self.cgroup_root = path;
                }
            }
            // Other agent.* options of Kata's that hull does not use, and everything that
            // is not ours, are ignored.
            _ => {}
        }
        Ok(())
    }
}

fn parse_port(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(port) if port > 0 && port < u32::MAX => Ok(port),
        _ => Err("expected a vsock port number (1 to 4294967294)".into()),
    }
}

/// Splits a kernel command line into `key` / `key=value` options, honouring double quotes
/// the way the kernel does (`key="a b"` is one option with value `a b`).
pub fn kernel_cmdline_options(cmdline: &str) -> Vec<(&str, Option<&str>)> {
    let mut options = Vec::new();
    let mut rest = cmdline.trim_start();
    while !rest.is_empty() {
        let mut in_quotes = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quotes = !in_quotes;
                }
                c.is_whitespace() && !in_quotes
            })
            .map_or(rest.len(), |(i, _)| i);
        let (word, tail) = rest.split_at(end);
        rest = tail.trim_start();
        let option = match word.split_once('=') {
            Some((key, value)) => (key, Some(unquote(value))),
            None => (word, None),
        };
        options.push(option);
    }
    options
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_cmdline(cmdline: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::from_sources(cmdline, |_| None)
    }

    #[test]
    fn defaults_listen_on_vsock_1024() {
        let config = from_cmdline("console=ttyS0 quiet").unwrap();
        assert_eq!(config, AgentConfig::default());
        assert_eq!(config.server_addr.to_string(), "vsock://-1:1024");
    }

    #[test]
    fn kata_option_names_are_understood() {
        let config = from_cmdline(
            "console=ttyS0 agent.log=debug agent.log_vport=1025 agent.server_addr=vsock://-1:2048 agent.hotplug_timeout=10",
        )
        .unwrap();
        assert_eq!(config.log_level, LogLevel::Debug);
        assert_eq!(config.log_vport, Some(1025));
        assert_eq!(
            config.server_addr,
            AgentAddress::Vsock {
                cid: u32::MAX,
                port: 2048
            }
        );
        assert_eq!(config.hotplug_timeout, Duration::from_secs(10));
    }

    #[test]
    fn hull_debug_switch_turns_on_debug_logs() {
        assert_eq!(
            from_cmdline("hull.debug").unwrap().log_level,
            LogLevel::Debug
        );
        assert_eq!(
            from_cmdline("hull.debug=1").unwrap().log_level,
            LogLevel::Debug
        );
        assert_eq!(
            from_cmdline("hull.debug=0").unwrap().log_level,
            LogLevel::Info
        );
    }

    #[test]
    fn bad_values_name_the_option() {
        let err = from_cmdline("agent.log=loud").unwrap_err();
        assert!(err.to_string().contains("agent.log"), "{err}");
        let err = from_cmdline("agent.log_vport=0").unwrap_err();
        assert!(err.to_string().contains("agent.log_vport"), "{err}");
        let err = from_cmdline("agent.server_addr=tcp://1.2.3.4:5").unwrap_err();
        assert!(err.to_string().contains("agent.server_addr"), "{err}");
        let err = from_cmdline("agent.hotplug_timeout=0").unwrap_err();
        assert!(err.to_string().contains("agent.hotplug_timeout"), "{err}");
        let err = from_cmdline("agent.log").unwrap_err();
        assert!(err.to_string().contains("a value is required"), "{err}");
    }

    #[test]
    fn environment_overrides_the_command_line_and_is_named_in_errors() {
        let config = AgentConfig::from_sources("agent.log=warn", |k| {
            (k == "HULL_AGENT_SERVER_ADDR").then(|| "unix:///tmp/agent.sock".to_string())
        })
        .unwrap();
        assert_eq!(config.log_level, LogLevel::Warn);
        assert_eq!(
            config.server_addr,
            AgentAddress::Unix("/tmp/agent.sock".into())
        );
        let err = AgentConfig::from_sources("", |k| (k == "HULL_AGENT_LOG").then(|| "x".into()))
            .unwrap_err();
        assert!(err.to_string().contains("HULL_AGENT_LOG"), "{err}");
    }

    #[test]
    fn debug_console_needs_the_image_marker() {
        let root = tempfile::tempdir().unwrap();
        let config = from_cmdline("agent.debug_console").unwrap();
        assert!(config.debug_console_requested);
        assert!(!config.debug_console_enabled(root.path()));
        std::fs::create_dir_all(root.path().join("etc/hull")).unwrap();
        std::fs::write(root.path().join("etc/hull/debug-console"), "").unwrap();
        assert!(config.debug_console_enabled(root.path()));
        assert!(!from_cmdline("").unwrap().debug_console_enabled(root.path()));
    }

    #[test]
    fn container_paths_come_from_the_environment_only() {
        let config = from_cmdline("hull.container_base=/evil hull.cgroup_root=/evil").unwrap();
        assert_eq!(config.container_base, PathBuf::from(DEFAULT_CONTAINER_BASE));
        assert_eq!(config.cgroup_root, PathBuf::from(DEFAULT_CGROUP_ROOT));
        let config = AgentConfig::from_sources("", |k| match k {
            "HULL_AGENT_CONTAINER_BASE" => Some("/tmp/bundles".into()),
            "HULL_AGENT_CGROUP_ROOT" => Some("/sys/fs/cgroup/unified".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.container_base, PathBuf::from("/tmp/bundles"));
        assert_eq!(config.cgroup_root, PathBuf::from("/sys/fs/cgroup/unified"));
        let err = AgentConfig::from_sources("", |k| {
            (k == "HULL_AGENT_CGROUP_ROOT").then(|| "relative".into())
        })
        .unwrap_err();
        assert!(err.to_string().contains("HULL_AGENT_CGROUP_ROOT"), "{err}");
    }

    #[test]
    fn cmdline_splitting_honours_quotes() {
        assert_eq!(
            kernel_cmdline_options(r#"  a b=1 c="x y" d="" e=f=g "#),
            vec![
                ("a", None),
                ("b", Some("1")),
                ("c", Some("x y")),
                ("d", Some("")),
                ("e", Some("f=g")),
            ]
        );
        assert!(kernel_cmdline_options("   ").is_empty());
    }
}

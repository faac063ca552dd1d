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
//! | `agent.passfd_listener_port=PORT` | listen for stdio connections on vsock PORT ([`crate::stdio_ports`]) | off |
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
//! `HULL_AGENT_RUN_DIR` (environment only, never the command line: it bounds where the
//! host may mount) moves the agent's directory, `/run/kata-containers` by default, where
//! every storage is mounted. Host tests point it at a temporary directory. Container
//! bundles are `<run dir>/<container id>/`, as Kata lays them out.
//!
//! `HULL_AGENT_CGROUP_ROOT` (environment only) moves the cgroup2 hierarchy containers'
//! cgroups are made in, [`DEFAULT_CGROUP_ROOT`] by default (hull-init mounts it there);
//! host tests on a hybrid-cgroup host use `/sys/fs/cgroup/unified`.
//!
//! `HULL_AGENT_POLICY_FILE` (environment only, like Kata's `KATA_AGENT_POLICY_FILE`: the
//! host must not pick the policy) moves the agent policy read at start-up, by default
//! Kata's `/etc/kata-opa/default-policy.rego` (see [`crate::policy`]).

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hull_common::cmdline::{self, Param};
use hull_protocols::address::AgentAddress;

/// The vsock port the agent serves ttRPC on by default.
pub const DEFAULT_SERVER_PORT: u32 = 1024;
/// Kata's default debug console port.
pub const DEFAULT_DEBUG_CONSOLE_VPORT: u32 = 1026;
/// Kata's guest directory: storages, the shared directory, sandbox files.
pub const DEFAULT_RUN_DIR: &str = "/run/kata-containers";
/// Where the guest mounts cgroup2 (hull-init does).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub use hull_common::DEBUG_CONSOLE_MARKER;

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// An option's value did not parse or is not allowed.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        /// The option as the user spelled it: a command-line key (`agent.log`) or an
        /// environment variable (`HULL_AGENT_LOG`).
        key: String,
        /// The value given, verbatim.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The log level names the agent accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `trace`: the most verbose.
    Trace,
    /// `debug` (also set by `hull.debug`).
    Debug,
    /// `info`, the default.
    Info,
    /// `warn` (or `warning`).
    Warn,
    /// `error` (or `critical`, `fatal`): failures only.
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
    /// The most verbose level logged (`agent.log`, `hull.debug`, `HULL_AGENT_LOG`).
    pub log_level: LogLevel,
    /// The host vsock port logs are sent to (`agent.log_vport`); `None` logs to the
    /// console.
    pub log_vport: Option<u32>,
    /// Where the ttRPC server listens (`agent.server_addr`, `HULL_AGENT_SERVER_ADDR`).
    pub server_addr: AgentAddress,
    /// Asked for on the command line; see [`AgentConfig::debug_console_enabled`].
    pub debug_console_requested: bool,
    /// The vsock port the debug console listens on (`agent.debug_console_vport`).
    pub debug_console_vport: u32,
    /// How long to wait for a hot-plugged device to appear (`agent.hotplug_timeout`,
    /// whole seconds).
    pub hotplug_timeout: Duration,
    /// The agent's directory; every storage's mount point is beneath it.
    pub run_dir: PathBuf,
    /// The cgroup2 hierarchy container cgroups are created in.
    pub cgroup_root: PathBuf,
    /// Started by hull-init as PID 1's child.
    pub under_init: bool,
    /// The agent policy in force before any `SetPolicy`; none (everything allowed) when
    /// the file does not exist.
    pub policy_file: PathBuf,
    /// The vsock port stdio connections are accepted on (`agent.passfd_listener_port`,
    /// Kata's name); `None`: stdio only through the RPCs.
    pub passfd_listener_port: Option<u32>,
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
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
            cgroup_root: PathBuf::from(DEFAULT_CGROUP_ROOT),
            under_init: false,
            policy_file: PathBuf::from(crate::policy::DEFAULT_POLICY_FILE),
            passfd_listener_port: None,
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
            std::fs::read_to_string(cmdline::PROC_CMDLINE).unwrap_or_default()
        } else {
            String::new()
        };
        let mut config = Self::from_sources(&cmdline, |key| std::env::var(key).ok())?;
        config.under_init = under_init;
        Ok(config)
    }

    /// Builds the configuration from a kernel command line and an environment lookup.
    pub fn from_sources(
        cmdline_text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for Param { key, value } in cmdline::params(cmdline_text) {
            config.apply(key, value)?;
        }
        for (env_key, key) in [
            ("HULL_AGENT_SERVER_ADDR", "agent.server_addr"),
            ("HULL_AGENT_LOG", "agent.log"),
            ("HULL_AGENT_LOG_VPORT", "agent.log_vport"),
            ("HULL_AGENT_HOTPLUG_TIMEOUT", "agent.hotplug_timeout"),
            (
                "HULL_AGENT_PASSFD_LISTENER_PORT",
                "agent.passfd_listener_port",
            ),
        ] {
            if let Some(value) = env(env_key) {
                config.apply(key, Some(&value)).map_err(|e| match e {
                    ConfigError::Invalid { value, reason, .. } => ConfigError::Invalid {
                        key: env_key.to_string(),
                        value,
                        reason,
                    },
                })?;
            }
        }
        if let Some(run_dir) = env("HULL_AGENT_RUN_DIR") {
            let path = PathBuf::from(&run_dir);
            if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
                return Err(ConfigError::Invalid {
                    key: "HULL_AGENT_RUN_DIR".into(),
                    value: run_dir,
                    reason: "expected an absolute path without '..'".into(),
                });
            }
            config.run_dir = path;
        }
        if let Some(file) = env("HULL_AGENT_POLICY_FILE") {
            let path = PathBuf::from(&file);
            if !path.is_absolute() {
                return Err(ConfigError::Invalid {
                    key: "HULL_AGENT_POLICY_FILE".into(),
                    value: file,
                    reason: "expected an absolute path".into(),
                });
            }
            config.policy_file = path;
        }
        if let Some(root) = env("HULL_AGENT_CGROUP_ROOT") {
            let path = PathBuf::from(&root);
            if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
                return Err(ConfigError::Invalid {
                    key: "HULL_AGENT_CGROUP_ROOT".into(),
                    value: root,
                    reason: "expected an absolute path without '..'".into(),
                });
            }
            config.cgroup_root = path;
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

    fn apply(&mut self, key: &str, value: Option<&str>) -> Result<(), ConfigError> {
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
            // Kata's agent takes 0 as "off".
            "agent.passfd_listener_port" => {
                let value = required()?;
                self.passfd_listener_port = match value {
                    "0" => None,
                    _ => Some(parse_port(value).map_err(|e| invalid(&e))?),
                };
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
            "console=ttyS0 agent.log=\"debug\" agent.log_vport=1025 agent.server_addr=vsock://-1:2048 agent.hotplug_timeout=10",
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
    fn the_stdio_listener_port_is_kata_s_option() {
        assert_eq!(from_cmdline("").unwrap().passfd_listener_port, None);
        assert_eq!(
            from_cmdline("agent.passfd_listener_port=1027")
                .unwrap()
                .passfd_listener_port,
            Some(1027)
        );
        assert_eq!(
            from_cmdline("agent.passfd_listener_port=0")
                .unwrap()
                .passfd_listener_port,
            None
        );
        let err = from_cmdline("agent.passfd_listener_port=x").unwrap_err();
        assert!(
            err.to_string().contains("agent.passfd_listener_port"),
            "{err}"
        );
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
    fn the_cgroup_root_comes_from_the_environment_only() {
        assert_eq!(
            from_cmdline("HULL_AGENT_CGROUP_ROOT=/x")
                .unwrap()
                .cgroup_root,
            Path::new(DEFAULT_CGROUP_ROOT)
        );
        let config = AgentConfig::from_sources("", |k| {
            (k == "HULL_AGENT_CGROUP_ROOT").then(|| "/sys/fs/cgroup/unified".to_string())
        })
        .unwrap();
        assert_eq!(config.cgroup_root, Path::new("/sys/fs/cgroup/unified"));
        let err = AgentConfig::from_sources("", |k| {
            (k == "HULL_AGENT_CGROUP_ROOT").then(|| "relative".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("HULL_AGENT_CGROUP_ROOT"), "{err}");
    }

    #[test]
    fn the_run_dir_comes_from_the_environment_only() {
        assert_eq!(
            AgentConfig::default().run_dir,
            Path::new("/run/kata-containers")
        );
        let config = AgentConfig::from_sources("HULL_AGENT_RUN_DIR=/x hull.run_dir=/y", |k| {
            (k == "HULL_AGENT_RUN_DIR").then(|| "/tmp/run".to_string())
        })
        .unwrap();
        assert_eq!(config.run_dir, Path::new("/tmp/run"));
        assert_eq!(
            from_cmdline("HULL_AGENT_RUN_DIR=/x").unwrap().run_dir,
            Path::new("/run/kata-containers")
        );
        for bad in ["relative", "/a/../b"] {
            let err = AgentConfig::from_sources("", |k| {
                (k == "HULL_AGENT_RUN_DIR").then(|| bad.to_string())
            })
            .unwrap_err();
            assert!(err.to_string().contains("HULL_AGENT_RUN_DIR"), "{err}");
        }
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
}

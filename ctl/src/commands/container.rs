//! Containers: `create-container`, `start`, `exec`, `wait`, `signal`, `stats`, `remove`
//! and `run` (create, start, stream the output, wait).
//!
//! A bundle is a host directory with a `config.json` (an OCI runtime spec). The agent
//! reads the rootfs in the guest, so `create-container` points `root.path` at where the
//! rootfs is there: by default Kata's layout, the sandbox's virtio-fs share
//! (`create-sandbox --shared-fs`) mounted at `/run/kata-containers/shared/containers/`,
//! the bundle being the share's `ID/` directory on the host.
//!
//! `run` and `exec` stream the process's stdout and stderr to hull-ctl's own until both
//! end, then exit with the process's status (128+N when signal N ended it). They do not
//! forward stdin: the process's stdin is closed once it runs. With `--json` the output is
//! collected and printed in the report instead.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use hull_protocols::agent::{CreateContainerRequest, ExecProcessRequest, StatsContainerResponse};
use hull_protocols::oci_json::{self, DEFAULT_CAPABILITIES};
use hull_protocols::oci_spec::runtime::Spec;
use hull_protocols::{AgentClient, Stream, oci};
use serde::Serialize;

use super::Outcome;
use crate::output::{Format, Report, kv_lines, to_json};

/// Where the sandbox's shared directory is in the guest (Kata's layout).
pub const GUEST_SHARED_DIR: &str = "/run/kata-containers/shared/containers";

/// Container commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum ContainerCommand {
    /// AgentService.CreateContainer from a bundle's config.json; the container waits for
    /// `start`.
    CreateContainer(CreateArgs),
    /// AgentService.StartContainer: run the container's process.
    Start {
        /// The container.
        container_id: String,
    },
    /// AgentService.ExecProcess: run a command in a running container, stream its output
    /// and exit with its status (or return at once with --detach).
    Exec(ExecArgs),
    /// AgentService.WaitProcess: wait for a process to end and print its exit status.
    Wait {
        /// The container.
        container_id: String,
        /// The process (default: the container's own).
        exec_id: Option<String>,
    },
    /// AgentService.SignalProcess: send a signal (name or number) to the container's
    /// processes, or to one exec'd process.
    Signal {
        /// The container.
        container_id: String,
        /// `[EXEC_ID] SIGNAL`, e.g. `TERM`, `SIGKILL`, `9`, or `e1 TERM`.
        #[arg(value_name = "[EXEC_ID] SIGNAL", num_args = 1..=2, required = true)]
        args: Vec<String>,
    },
    /// AgentService.StatsContainer: the container's cgroup figures.
    Stats {
        /// The container.
        container_id: String,
    },
    /// AgentService.RemoveContainer: stop the container and remove it.
    Remove {
        /// The container.
        container_id: String,
        /// Seconds the agent waits for the container to stop (0: its default).
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        stop_timeout: u32,
    },
    /// Create and start a container from a bundle, stream its output until it ends, wait
    /// for it, and exit with its status.
    Run(RunArgs),
}

/// Where the bundle is and where its rootfs is in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct BundleArgs {
    /// The container's id.
    pub container_id: String,
    /// The bundle directory on this host (it holds config.json).
    #[arg(long, value_name = "PATH")]
    pub bundle: PathBuf,
    /// The rootfs in the guest [default: /run/kata-containers/shared/containers/ID/rootfs].
    #[arg(long, value_name = "PATH")]
    pub guest_rootfs: Option<String>,
}

/// `create-container` options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// The init process's exec id [default: the container id].
    #[arg(long, value_name = "ID")]
    pub exec_id: Option<String>,
}

/// `run` options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Remove the container once it has ended.
    #[arg(long)]
    pub rm: bool,
}

/// `exec` options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ExecArgs {
    /// The container.
    pub container_id: String,
    /// The new process's id.
    pub exec_id: String,
    /// Environment variables (KEY=VALUE); PATH is set unless given.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory in the container.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub cwd: String,
    /// User id, or UID:GID.
    #[arg(long, value_name = "UID[:GID]", value_parser = parse_user, default_value = "0")]
    pub user: (u32, u32),
    /// Allocate a terminal (stdout and stderr are then one stream).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Start the process and return; `wait` collects its status.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_user(s: &str) -> Result<(u32, u32), String> {
    let number = |part: &str| {
        part.parse::<u32>()
            .map_err(|_| format!("{part:?} is not a numeric id"))
    };
    match s.split_once(':') {
        Some((uid, gid)) => Ok((number(uid)?, number(gid)?)),
        None => {
            let uid = number(s)?;
            Ok((uid, uid))
        }
    }
}

/// Runs a container command.
pub async fn run(
    client: &AgentClient,
    command: &ContainerCommand,
    format: Format,
) -> anyhow::Result<Outcome> {
    // With --json, output is collected into the report instead of streamed.
    let collect = format == Format::Json;
    match command {
        ContainerCommand::CreateContainer(args) => {
            let exec_id = args
                .exec_id
                .clone()
                .unwrap_or_else(|| args.bundle.container_id.clone());
            let req = create_request(&args.bundle, &exec_id)?;
            client.create_container(&req).await?;
            Ok(Outcome::ok(Done::new(
                "created",
                &req.container_id,
                &exec_id,
            )))
        }
        ContainerCommand::Start { container_id } => {
            client.start_container(container_id).await?;
            Ok(Outcome::ok(Done::new("started", container_id, "")))
        }
        ContainerCommand::Exec(args) => exec(client, args, collect).await,
        ContainerCommand::Wait {
            container_id,
            exec_id,
        } => {
            let exec_id = exec_id.as_deref().unwrap_or_default();
            let status = blocking(client).wait_process(container_id, exec_id).await?;
            Ok(Outcome::ok(ExitReport {
                container_id: container_id.clone(),
                exec_id: exec_id.to_string(),
                exit_status: status,
                stdout: None,
                stderr: None,
            }))
        }
        ContainerCommand::Signal { container_id, args } => {
            let (exec_id, signal) = match args.as_slice() {
                [signal] => ("", signal),
                [exec_id, signal] => (exec_id.as_str(), signal),
                _ => bail!("expected [EXEC_ID] SIGNAL"),
            };
            let number = parse_signal(signal)?;
            client.signal_process(container_id, exec_id, number).await?;
            Ok(Outcome::ok(SignalReport {
                container_id: container_id.clone(),
                exec_id: exec_id.to_string(),
                signal: number,
            }))
        }
        ContainerCommand::Stats { container_id } => Ok(Outcome::ok(StatsReport::new(
            container_id,
            &client.stats_container(container_id).await?,
        ))),
        ContainerCommand::Remove {
            container_id,
            stop_timeout,
        } => {
            client.remove_container(container_id, *stop_timeout).await?;
            Ok(Outcome::ok(Done::new("removed", container_id, "")))
        }
        ContainerCommand::Run(args) => run_bundle(client, args, collect).await,
    }
}

/// The `CreateContainerRequest` for a bundle: its config.json with `root.path` set to
/// where the rootfs is in the guest.
pub fn create_request(
    bundle: &BundleArgs,
    exec_id: &str,
) -> anyhow::Result<CreateContainerRequest> {
    let id = &bundle.container_id;
    let spec = read_bundle(&bundle.bundle)?;
    let mut spec = oci_json::spec_to_proto(&spec).with_context(|| {
        format!(
            "{}: cannot be sent to the agent",
            config_path(&bundle.bundle).display()
        )
    })?;
    let root = spec.Root.mut_or_insert_default();
    root.Path = bundle
        .guest_rootfs
        .clone()
        .unwrap_or_else(|| format!("{GUEST_SHARED_DIR}/{id}/rootfs"));
    Ok(CreateContainerRequest {
        container_id: id.clone(),
        exec_id: exec_id.to_string(),
        OCI: Some(spec).into(),
        ..Default::default()
    })
}

fn config_path(bundle: &Path) -> PathBuf {
    bundle.join("config.json")
}

fn read_bundle(bundle: &Path) -> anyhow::Result<Spec> {
    let path = config_path(bundle);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    oci_json::spec_from_config_json(&text).with_context(|| path.display().to_string())
}

/// A client whose calls may wait as long as the process runs.
fn blocking(client: &AgentClient) -> AgentClient {
    client.clone().with_timeout(Duration::ZERO)
}

/// A signal by name (`TERM`, `SIGTERM`, any case) or number.
pub fn parse_signal(text: &str) -> anyhow::Result<u32> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2",
        "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
        "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];
    if let Ok(number) = text.parse::<u32>() {
        if (1..=64).contains(&number) {
            return Ok(number);
        }
        bail!("signal {number} is out of range (1-64)");
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == name)
        .map(|i| i as u32 + 1)
        .with_context(|| format!("unknown signal {text:?} (a name such as TERM, or a number)"))
}

/// The process `exec` runs.
pub fn exec_process(args: &ExecArgs) -> oci::Process {
    let mut env = args.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    oci::Process {
        Terminal: args.tty,
        User: Some(oci::User {
            UID: args.user.0,
            GID: args.user.1,
            ..Default::default()
        })
        .into(),
        Args: args.command.clone(),
        Env: env,
        Cwd: args.cwd.clone(),
        Capabilities: Some(oci::LinuxCapabilities {
            Bounding: caps.clone(),
            Effective: caps.clone(),
            Permitted: caps,
            ..Default::default()
        })
        .into(),
        NoNewPrivileges: true,
        ..Default::default()
    }
}

async fn exec(client: &AgentClient, args: &ExecArgs, collect: bool) -> anyhow::Result<Outcome> {
    let req = ExecProcessRequest {
        container_id: args.container_id.clone(),
        exec_id: args.exec_id.clone(),
        process: Some(exec_process(args)).into(),
        ..Default::default()
    };
    if args.detach {
        client.exec_process(&req).await?;
        return Ok(Outcome::ok(Done::new(
            "started",
            &args.container_id,
            &args.exec_id,
        )));
    }
    client.exec_process(&req).await?;
    follow(client, &args.container_id, &args.exec_id, args.tty, collect).await
}

async fn run_bundle(
    client: &AgentClient,
    args: &RunArgs,
    collect: bool,
) -> anyhow::Result<Outcome> {
    let id = &args.bundle.container_id;
    let req = create_request(&args.bundle, id)?;
    let terminal = req.OCI.Process.as_ref().is_some_and(|p| p.Terminal);
    client.create_container(&req).await?;
    if let Err(e) = client.start_container(id).await {
        // A container that cannot start is of no use: do not leave it behind.
        if let Err(remove) = client.remove_container(id, 0).await {
            tracing::warn!(error = %remove, "removing the container that did not start");
        }
        return Err(e.into());
    }
    let outcome = follow(client, id, "", terminal, collect).await?;
    if args.rm {
        client.remove_container(id, 0).await?;
    }
    Ok(outcome)
}

/// Closes stdin, streams stdout and stderr until both end, waits, and reports the
/// status; hull-ctl exits with it.
async fn follow(
    client: &AgentClient,
    id: &str,
    exec_id: &str,
    terminal: bool,
    collect: bool,
) -> anyhow::Result<Outcome> {
    if let Err(e) = client.close_stdin(id, exec_id).await {
        tracing::debug!(error = %e, "closing stdin");
    }
    let spawn = |stream: Stream| {
        let client = blocking(client);
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        tokio::spawn(async move { copy_stream(&client, &id, &exec_id, stream, collect).await })
    };
    let stdout = spawn(Stream::Stdout);
    let stderr = (!terminal).then(|| spawn(Stream::Stderr));
    let status = blocking(client).wait_process(id, exec_id).await?;
    let stdout = stdout.await.context("the stdout reader")??;
    let stderr = match stderr {
        Some(task) => task.await.context("the stderr reader")??,
        None => Vec::new(),
    };
    let report = ExitReport {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
        exit_status: status,
        stdout: collect.then(|| String::from_utf8_lossy(&stdout).into_owned()),
        stderr: collect.then(|| String::from_utf8_lossy(&stderr).into_owned()),
    };
    Ok(Outcome {
        report: Box::new(StreamedReport(report)),
        failure: None,
        exit_status: Some(status),
    })
}

/// Copies one stream of a process to hull-ctl's own stdout or stderr as it arrives (or
/// into the returned buffer when `collect`), until it ends.
async fn copy_stream(
    client: &AgentClient,
    id: &str,
    exec_id: &str,
    stream: Stream,
    collect: bool,
) -> Result<Vec<u8>, anyhow::Error> {
    let mut kept = Vec::new();
    client
        .read_each(id, exec_id, stream, |chunk| {
            if collect {
                kept.extend_from_slice(chunk);
                return Ok(());
            }
            let written = match stream {
                Stream::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(chunk).and_then(|()| out.flush())
                }
                Stream::Stderr => {
                    let mut out = std::io::stderr().lock();
                    out.write_all(chunk).and_then(|()| out.flush())
                }
            };
            written.context("writing the container's output")
        })
        .await?;
    Ok(kept)
}

/// A lifecycle step done. JSON: `{"container_id": ..., "exec_id": ..., "action": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub container_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub exec_id: String,
    pub action: &'static str,
}

impl Done {
    fn new(action: &'static str, container_id: &str, exec_id: &str) -> Self {
        Self {
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            action,
        }
    }
}

impl Report for Done {
    fn human(&self) -> String {
        if self.exec_id.is_empty() || self.exec_id == self.container_id {
            format!("container {} {}", self.container_id, self.action)
        } else {
            format!(
                "process {} of container {} {}",
                self.exec_id, self.container_id, self.action
            )
        }
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// A process's end. JSON: `{"container_id", "exec_id", "exit_status"}`, plus `stdout`
/// and `stderr` (text) for `run` and `exec` with `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitReport {
    pub container_id: String,
    pub exec_id: String,
    pub exit_status: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

impl Report for ExitReport {
    fn human(&self) -> String {
        kv_lines(&[("exit_status", self.exit_status.to_string())])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `run`'s and `exec`'s report: the output has been streamed already, so nothing more is
/// printed as text; JSON as [`ExitReport`].
#[derive(Debug)]
struct StreamedReport(ExitReport);

impl Report for StreamedReport {
    fn human(&self) -> String {
        String::new()
    }
    fn json(&self) -> serde_json::Value {
        self.0.json()
    }
}

/// `signal` result. JSON: `{"container_id", "exec_id", "signal"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignalReport {
    pub container_id: String,
    pub exec_id: String,
    pub signal: u32,
}

impl Report for SignalReport {
    fn human(&self) -> String {
        let target = if self.exec_id.is_empty() {
            format!("container {}", self.container_id)
        } else {
            format!(
                "process {} of container {}",
                self.exec_id, self.container_id
            )
        };
        format!("signal {} sent to {target}", self.signal)
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `stats` result: the figures a person looks at first.
///
/// JSON: `{"container_id", "cpu_usage_ns", "memory_usage_bytes", "memory_max_usage_bytes",
/// "memory_limit_bytes", "memory_failcnt", "pids_current", "pids_limit"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    pub container_id: String,
    pub cpu_usage_ns: u64,
    pub memory_usage_bytes: u64,
    pub memory_max_usage_bytes: u64,
    pub memory_limit_bytes: u64,
    pub memory_failcnt: u64,
    pub pids_current: u64,
    pub pids_limit: u64,
}

impl StatsReport {
    fn new(container_id: &str, resp: &StatsContainerResponse) -> Self {
        let stats = resp.cgroup_stats.as_ref();
        let cpu = stats
            .and_then(|s| s.cpu_stats.as_ref())
            .and_then(|c| c.cpu_usage.as_ref());
        let memory = stats
            .and_then(|s| s.memory_stats.as_ref())
            .and_then(|m| m.usage.as_ref());
        let pids = stats.and_then(|s| s.pids_stats.as_ref());
        Self {
            container_id: container_id.to_string(),
            cpu_usage_ns: cpu.map_or(0, |c| c.total_usage),
            memory_usage_bytes: memory.map_or(0, |m| m.usage),
            memory_max_usage_bytes: memory.map_or(0, |m| m.max_usage),
            memory_limit_bytes: memory.map_or(0, |m| m.limit),
            memory_failcnt: memory.map_or(0, |m| m.failcnt),
            pids_current: pids.map_or(0, |p| p.current),
            pids_limit: pids.map_or(0, |p| p.limit),
        }
    }
}

impl Report for StatsReport {
    fn human(&self) -> String {
        kv_lines(&[
            ("container_id", self.container_id.clone()),
            ("cpu_usage_ns", self.cpu_usage_ns.to_string()),
            ("memory_usage_bytes", self.memory_usage_bytes.to_string()),
            (
                "memory_max_usage_bytes",
                self.memory_max_usage_bytes.to_string(),
            ),
            ("memory_limit_bytes", self.memory_limit_bytes.to_string()),
            ("memory_failcnt", self.memory_failcnt.to_string()),
            ("pids_current", self.pids_current.to_string()),
            ("pids_limit", self.pids_limit.to_string()),
        ])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::render;

    #[test]
    fn signals_by_name_or_number() {
        for (text, number) in [
            ("TERM", 15),
            ("SIGTERM", 15),
            ("sigkill", 9),
            ("kill", 9),
            ("9", 9),
            ("HUP", 1),
            ("SYS", 31),
            ("34", 34),
        ] {
            assert_eq!(parse_signal(text).unwrap(), number, "{text}");
        }
        for bad in ["0", "65", "TERMINATE", "", "-9"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users_are_numeric() {
        assert_eq!(parse_user("0"), Ok((0, 0)));
        assert_eq!(parse_user("1000:100"), Ok((1000, 100)));
        assert!(parse_user("root").is_err());
        assert!(parse_user("1:x").is_err());
    }

    fn bundle(dir: &Path, config: &serde_json::Value) -> BundleArgs {
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        BundleArgs {
            container_id: "c1".into(),
            bundle: dir.to_path_buf(),
            guest_rootfs: None,
        }
    }

    #[test]
    fn a_bundle_becomes_a_request_with_the_guest_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let args = bundle(
            dir.path(),
            &serde_json::json!({
                "ociVersion": "1.0.2",
                "root": {"path": "rootfs", "readonly": true},
                "process": {"user": {"uid": 0, "gid": 0}, "args": ["uname", "-a"], "cwd": "/"},
                "linux": {"namespaces": [{"type": "mount"}, {"type": "network"}]}
            }),
        );
        let req = create_request(&args, "c1").unwrap();
        assert_eq!(
            (req.container_id.as_str(), req.exec_id.as_str()),
            ("c1", "c1")
        );
        let root = req.OCI.Root.as_ref().unwrap();
        assert_eq!(
            root.Path,
            "/run/kata-containers/shared/containers/c1/rootfs"
        );
        assert!(root.Readonly);
        assert_eq!(req.OCI.Process.Args, ["uname", "-a"]);
        // The network namespace is the agent's to judge: sent as written.
        assert_eq!(req.OCI.Linux.Namespaces[1].Type, "network");

        let elsewhere = BundleArgs {
            guest_rootfs: Some("/run/rootfs".into()),
            ..args
        };
        let req = create_request(&elsewhere, "init").unwrap();
        assert_eq!(req.OCI.Root.Path, "/run/rootfs");
        assert_eq!(req.exec_id, "init");
    }

    #[test]
    fn a_bad_bundle_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = BundleArgs {
            container_id: "c1".into(),
            bundle: dir.path().join("nope"),
            guest_rootfs: None,
        };
        let err = format!("{:#}", create_request(&missing, "c1").unwrap_err());
        assert!(err.contains("nope/config.json"), "{err}");
        let unknown = bundle(
            dir.path(),
            &serde_json::json!({"ociVersion": "1.0.2", "domainname": "x"}),
        );
        let err = format!("{:#}", create_request(&unknown, "c1").unwrap_err());
        assert!(err.contains("domainname"), "{err}");
        assert!(err.contains("config.json: cannot be sent"), "{err}");
        let invalid = bundle(
            dir.path(),
            &serde_json::json!({"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "bogus"}]}}),
        );
        let err = format!("{:#}", create_request(&invalid, "c1").unwrap_err());
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn exec_gets_a_path_and_the_default_capabilities() {
        let args = ExecArgs {
            container_id: "c1".into(),
            exec_id: "e1".into(),
            env: vec!["A=1".into()],
            cwd: "/tmp".into(),
            user: (1000, 100),
            tty: true,
            detach: false,
            command: vec!["ls".into(), "-l".into()],
        };
        let p = exec_process(&args);
        assert_eq!(p.Args, ["ls", "-l"]);
        assert!(p.Env[0].starts_with("PATH="), "{:?}", p.Env);
        assert_eq!(p.Env[1], "A=1");
        assert_eq!((p.User.UID, p.User.GID), (1000, 100));
        assert!(p.Terminal);
        assert_eq!(p.Cwd, "/tmp");
        assert!(p.Capabilities.Bounding.contains(&"CAP_KILL".to_string()));
        let own_path = ExecArgs {
            env: vec!["PATH=/opt".into()],
            ..args
        };
        assert_eq!(exec_process(&own_path).Env, ["PATH=/opt"]);
    }

    #[test]
    fn reports_render() {
        let done = Done::new("started", "c1", "e1");
        assert_eq!(
            render(&done, Format::Human),
            "process e1 of container c1 started\n"
        );
        assert_eq!(
            render(&Done::new("removed", "c1", ""), Format::Json),
            "{\n  \"action\": \"removed\",\n  \"container_id\": \"c1\"\n}\n"
        );
        let exit = ExitReport {
            container_id: "c1".into(),
            exec_id: String::new(),
            exit_status: 137,
            stdout: Some("hi\n".into()),
            stderr: Some(String::new()),
        };
        assert_eq!(render(&exit, Format::Human), "exit_status: 137\n");
        assert_eq!(exit.json()["stdout"], "hi\n");
        assert_eq!(render(&StreamedReport(exit), Format::Human), "");
        let mut resp = StatsContainerResponse::new();
        let stats = resp.cgroup_stats.mut_or_insert_default();
        stats.pids_stats.mut_or_insert_default().current = 3;
        stats
            .memory_stats
            .mut_or_insert_default()
            .usage
            .mut_or_insert_default()
            .limit = 64 << 20;
        let report = StatsReport::new("c1", &resp);
        assert_eq!(
            (report.pids_current, report.memory_limit_bytes),
            (3, 64 << 20)
        );
        assert!(
            report.human().contains("pids_current:           3"),
            "{}",
            report.human()
        );
    }
}

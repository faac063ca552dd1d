//! [`HostAgent`]: the `hull-agent` binary serving on a Unix socket in a temporary
//! directory, as a child of the test.
//!
//! ```no_run
//! # async fn demo() {
//! use hull_testkit::HostAgent;
//! // In an integration test of hull-agent: env!("CARGO_BIN_EXE_hull-agent").
//! let agent = HostAgent::builder("target/debug/hull-agent")
//!     .run_dir("bundles")
//!     .start();
//! agent.client().await.check().await.expect("Health.Check");
//! # }
//! ```
//!
//! Where it runs:
//! - [`Isolation::None`]: the test's own namespaces;
//! - [`Isolation::NetworkNamespace`]: a fresh network namespace holding the veth pair
//!   `v0`/`v1` (`v1` up; [`HostAgent::veth`]); the host's network is never touched;
//! - [`Isolation::MountNamespace`]: under `unshare --mount --uts --propagation private`,
//!   so its mounts, its `/etc/resolv.conf` and its hostname are its own.

use std::ffi::OsString;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hull_protocols::AgentAddress;
use hull_protocols::client::AgentClient;
use hull_protocols::health::health_check_response::ServingStatus;

use crate::netns::{self, VethPair};
use crate::require;

/// Where a [`HostAgent`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// In the test's own namespaces.
    None,
    /// In a fresh network namespace with a veth pair.
    NetworkNamespace,
    /// In private mount and UTS namespaces (`unshare`).
    MountNamespace,
}

/// How to start a [`HostAgent`]; see [`HostAgent::builder`].
#[derive(Debug)]
pub struct AgentBuilder {
    binary: PathBuf,
    dir: tempfile::TempDir,
    env: Vec<(OsString, OsString)>,
    run_dir: Option<PathBuf>,
    isolation: Isolation,
    nofile: Option<(u64, Option<u64>)>,
    stderr: Option<Stdio>,
}

impl AgentBuilder {
    /// Sets an environment variable of the agent (`HULL_AGENT_*`).
    #[must_use]
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The agent's directory (`HULL_AGENT_RUN_DIR`): `relative` inside the temporary
    /// directory.
    #[must_use]
    pub fn run_dir(mut self, relative: &str) -> Self {
        let run_dir = self.dir.path().join(relative);
        self.run_dir = Some(run_dir.clone());
        self.env("HULL_AGENT_RUN_DIR", run_dir)
    }

    /// Where the agent runs.
    #[must_use]
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// Starts the agent with an open-file soft limit of `soft` (at most the hard limit),
    /// and the hard limit `hard` when given.
    #[must_use]
    pub fn nofile(mut self, soft: u64, hard: Option<u64>) -> Self {
        self.nofile = Some((soft, hard));
        self
    }

    /// Where the agent's stderr (its log) goes; the test's own stderr by default.
    #[must_use]
    pub fn stderr(mut self, stderr: Stdio) -> Self {
        self.stderr = Some(stderr);
        self
    }

    /// The temporary directory the agent will run in (to lay files out before
    /// [`AgentBuilder::start`]).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Spawns the agent and waits for its socket.
    pub fn start(self) -> HostAgent {
        let socket = self.dir.path().join("agent.sock");
        let mut command = match self.isolation {
            Isolation::MountNamespace => {
                require::root("an agent in its own mount namespace");
                require::tool("unshare", "util-linux");
                let mut command = Command::new("unshare");
                command
                    .args(["--mount", "--uts", "--propagation", "private", "--"])
                    .arg(&self.binary);
                command
            }
            Isolation::None | Isolation::NetworkNamespace => Command::new(&self.binary),
        };
        command
            .env(
                "HULL_AGENT_SERVER_ADDR",
                format!("unix://{}", socket.display()),
            )
            .env("HULL_AGENT_LOG", "debug")
            .envs(self.env)
            .stdin(Stdio::null());
        if let Some(stderr) = self.stderr {
            command.stderr(stderr);
        }
        if let Some((soft, hard)) = self.nofile {
            use nix::sys::resource::{Resource, getrlimit, setrlimit};
            use std::os::unix::process::CommandExt;
            // SAFETY: getrlimit and setrlimit are async-signal-safe and touch no memory
            // of the parent.
            unsafe {
                command.pre_exec(move || {
                    let (_, current_hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
                    let hard = hard.unwrap_or(current_hard);
                    setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard)?;
                    Ok(())
                });
            }
        }
        let spawn = move |mut command: Command| {
            command
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {:?}: {e}", command.get_program()))
        };
        let (child, veth) = if self.isolation == Isolation::NetworkNamespace {
            // The namespace lives on in the agent after the thread ends.
            std::thread::spawn(move || {
                netns::enter_new_network_namespace();
                let veth = netns::veth_pair("v0", "v1");
                (spawn(command), Some(veth))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        } else {
            (spawn(command), None)
        };
        // From here on, Drop kills the agent even if the socket never appears.
        let agent = HostAgent {
            child,
            socket,
            run_dir: self.run_dir,
            veth,
            keeper: None,
            dir: self.dir,
        };
        crate::wait_for_socket(&agent.socket, "hull-agent");
        agent
    }
}

/// A `hull-agent` process on a Unix socket in a temporary directory. Dropping it kills
/// the agent (and the namespace keeper, if any) and removes the directory.
#[derive(Debug)]
pub struct HostAgent {
    child: Child,
    socket: PathBuf,
    run_dir: Option<PathBuf>,
    veth: Option<VethPair>,
    /// A process kept in the agent's mount namespace, to look at it after the agent is
    /// gone.
    keeper: Option<Child>,
    dir: tempfile::TempDir,
}

impl HostAgent {
    /// An agent of `binary` (`env!("CARGO_BIN_EXE_hull-agent")`) to be configured.
    pub fn builder(binary: impl Into<PathBuf>) -> AgentBuilder {
        AgentBuilder {
            binary: binary.into(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            env: Vec::new(),
            run_dir: None,
            isolation: Isolation::None,
            nofile: None,
            stderr: None,
        }
    }

    /// A plain agent of `binary`, in the test's own namespaces.
    pub fn start(binary: impl Into<PathBuf>) -> Self {
        Self::builder(binary).start()
    }

    /// Its socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `unix://` its socket.
    pub fn address(&self) -> AgentAddress {
        AgentAddress::Unix(self.socket.clone())
    }

    /// The temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The agent's directory, if [`AgentBuilder::run_dir`] set one.
    pub fn run_dir(&self) -> &Path {
        self.run_dir
            .as_deref()
            .expect("the agent was started without a run_dir")
    }

    /// The veth pair of an agent in [`Isolation::NetworkNamespace`].
    pub fn veth(&self) -> &VethPair {
        self.veth
            .as_ref()
            .expect("the agent was started without a network namespace")
    }

    /// The agent's process id (`unshare`'s, which execs the agent, in a mount namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client of the agent (default per-call timeout).
    pub async fn client(&self) -> AgentClient {
        AgentClient::connect(&self.address(), Duration::from_secs(5))
            .await
            .expect("connecting to the agent")
    }

    /// A raw connection to the socket, with a 10 s read timeout. The socket file exists
    /// before the agent listens on it: a refused connection is retried for 10 s.
    pub fn raw(&self) -> UnixStream {
        let stream = connect_when_listening(&self.socket).expect("a raw connection");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        stream
    }

    /// Fails the test unless the agent still answers Health.Check with SERVING.
    pub async fn assert_serving(&self) {
        assert_serving(&self.client().await).await;
    }

    /// Waits up to 10 s for the agent to exit on its own.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the agent's status") {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the agent is still running 10 s later"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a process in the agent's mount namespace that outlives the agent, so
    /// [`HostAgent::mount_namespace_pid`] can still be looked at after it exits.
    pub fn keep_mount_namespace(&mut self) {
        require::tool("nsenter", "util-linux");
        let keeper = Command::new("nsenter")
            .args(["--target", &self.pid().to_string(), "--mount", "--"])
            .args(["sleep", "120"])
            .stdin(Stdio::null())
            .spawn()
            .expect("nsenter sleep");
        // Held at once, so that Drop kills it whatever happens next.
        let keeper_pid = keeper.id();
        self.keeper = Some(keeper);
        // nsenter execs sleep once it is in the namespace.
        let start = Instant::now();
        let mine = std::fs::read_link("/proc/self/ns/mnt").expect("this mount namespace");
        loop {
            let theirs = std::fs::read_link(format!("/proc/{keeper_pid}/ns/mnt"));
            if theirs.is_ok_and(|ns| ns != mine) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "nsenter never entered"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A process in the agent's mount namespace: the keeper if there is one, else the
    /// agent.
    pub fn mount_namespace_pid(&self) -> u32 {
        self.keeper.as_ref().map_or(self.pid(), Child::id)
    }

    /// `path` as the agent sees it (through `/proc/PID/root`).
    pub fn in_agent(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        Path::new(&format!("/proc/{}/root", self.pid())).join(relative)
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(keeper) = &mut self.keeper {
            let _ = keeper.kill();
            let _ = keeper.wait();
        }
    }
}

/// Fails the test unless `client`'s agent answers Health.Check with SERVING.
pub async fn assert_serving(client: &AgentClient) {
    let response = client
        .check()
        .await
        .expect("the agent still answers Health.Check");
    assert_eq!(
        response.status.enum_value(),
        Ok(ServingStatus::SERVING),
        "Health.Check"
    );
}

/// Connects to the Unix socket at `path`, retrying for 10 s while it refuses: between
/// `bind` (the file appears) and `listen` a connection is refused.
pub fn connect_when_listening(path: &Path) -> std::io::Result<UnixStream> {
    let start = std::time::Instant::now();
    loop {
        match UnixStream::connect(path) {
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && start.elapsed() < Duration::from_secs(10) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// What became of an agent that was to refuse to start: see [`start_refused`].
#[derive(Debug)]
pub struct RefusedStart {
    /// How it exited.
    pub status: ExitStatus,
    /// Whether its socket appeared (it listened before it gave up).
    pub listened: bool,
    /// Everything it wrote on stderr.
    pub stderr: String,
    /// The image policy file it was given (already removed).
    pub policy_file: PathBuf,
}

/// Starts `agent` with `policy_text` as its image policy file
/// (`HULL_AGENT_POLICY_FILE`) and waits up to 10 s for it to exit by itself, as an agent
/// that must not serve under that policy does. Panics (after killing it) when it keeps
/// running.
pub fn start_refused(agent: &Path, policy_text: &str) -> RefusedStart {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let policy_file = dir.path().join("default-policy.rego");
    std::fs::write(&policy_file, policy_text).expect("writing the policy file");
    let socket = dir.path().join("agent.sock");
    let mut child = Command::new(agent)
        .env(
            "HULL_AGENT_SERVER_ADDR",
            format!("unix://{}", socket.display()),
        )
        .env("HULL_AGENT_RUN_DIR", dir.path().join("run"))
        .env("HULL_AGENT_POLICY_FILE", &policy_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning hull-agent");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for hull-agent") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hull-agent kept running with the image policy {policy_text:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    RefusedStart {
        status,
        listened: socket.exists(),
        stderr,
        policy_file,
    }
}

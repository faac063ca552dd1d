//! [`InProcessAgent`]: the agent's ttRPC server run by the test itself, on a Unix socket
//! in a temporary directory (the agent's directory is `run/` there). What needs no
//! container helper (the agent re-executing itself) runs this way without the binary.
//!
//! - [`InProcessAgent::start`] serves on the test's own tokio runtime;
//! - [`InProcessAgent::start_in_network_namespace`] serves on a thread of its own, moved
//!   into a fresh network namespace holding the veth pair `v0`/`v1`, with loopback up.
//!
//! Dropping it stops the server (and the thread, which ends the namespace) and removes
//! the directory.
//!
//! Starting one starts the process's reaper ([`hull_container::process::Reaper`]) first, as the agent binary has it: from
//! then on it owns `waitpid(-1)`, so a test binary serving an agent in-process runs its
//! other children through it ([`crate::cli::run`] does; it also keeps the reaper from
//! starting while it waits for a child itself).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hull_agent::config::AgentConfig;
use hull_agent::network::Network;
use hull_agent::sandbox::Sandbox;
use hull_agent::server::{self, Ending, ServerError};
use hull_protocols::AgentAddress;
use hull_protocols::client::AgentClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::netns::{self, VethPair};

/// The server's task on the test's runtime, or its own thread.
#[derive(Debug)]
enum Serving {
    Task(JoinHandle<Result<Ending, ServerError>>),
    Thread {
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

/// An agent served in this process; see the module documentation.
#[derive(Debug)]
pub struct InProcessAgent {
    address: AgentAddress,
    serving: Serving,
    veth: Option<VethPair>,
    dir: tempfile::TempDir,
}

fn config(dir: &Path) -> AgentConfig {
    AgentConfig {
        server_addr: AgentAddress::Unix(dir.join("agent.sock")),
        run_dir: dir.join("run"),
        ..AgentConfig::default()
    }
}

impl InProcessAgent {
    /// Serves on the current tokio runtime; waits for the socket.
    pub async fn start() -> Self {
        crate::cli::start_reaper();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = config(dir.path());
        let address = config.server_addr.clone();
        let sandbox = Arc::new(Sandbox::with_config(&config));
        let task = tokio::spawn(async move { server::serve(&config, sandbox).await });
        let agent = Self {
            address,
            serving: Serving::Task(task),
            veth: None,
            dir,
        };
        agent.wait_for_socket().await;
        agent
    }

    /// Serves on a thread in a new network namespace with the veth pair `v0`/`v1`
    /// (needs root); waits for the socket.
    pub fn start_in_network_namespace() -> Self {
        crate::cli::start_reaper();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = config(dir.path());
        let address = config.server_addr.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            netns::enter_new_network_namespace();
            let veth = netns::veth_pair("v0", "v1");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let network = Network::default();
                network.start().await.expect("loopback up");
                let sandbox = Arc::new(Sandbox::with_config(&config).with_network(network));
                let _ = ready_tx.send(veth);
                tokio::select! {
                    _ = server::serve(&config, sandbox) => {}
                    _ = stopped => {}
                }
            });
        });
        let veth = match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(veth) => veth,
            // The thread failed before it was ready: show its panic.
            Err(_) if thread.is_finished() => match thread.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => panic!("the agent thread ended before serving"),
            },
            Err(e) => panic!("the agent thread did not get ready: {e}"),
        };
        let agent = Self {
            address,
            serving: Serving::Thread {
                stop: Some(stop),
                thread: Some(thread),
            },
            veth: Some(veth),
            dir,
        };
        crate::wait_for_socket(agent.socket(), "the in-process agent");
        agent
    }

    async fn wait_for_socket(&self) {
        let socket = self.socket().to_path_buf();
        tokio::task::spawn_blocking(move || {
            crate::wait_for_socket(&socket, "the in-process agent");
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    }

    /// Its socket.
    pub fn socket(&self) -> &Path {
        match &self.address {
            AgentAddress::Unix(path) => path,
            other => unreachable!("an in-process agent listens on a Unix socket, not {other}"),
        }
    }

    /// Its address.
    pub fn address(&self) -> &AgentAddress {
        &self.address
    }

    /// The temporary directory (removed on drop); the agent's directory is `run/` in it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The veth pair of an agent started in a network namespace.
    pub fn veth(&self) -> &VethPair {
        self.veth
            .as_ref()
            .expect("the agent was started without a network namespace")
    }

    /// A client of the agent (default per-call timeout).
    pub async fn client(&self) -> AgentClient {
        AgentClient::connect(&self.address, Duration::from_secs(5))
            .await
            .expect("connecting to the agent")
    }

    /// Waits up to `timeout` for the server (started with [`InProcessAgent::start`]) to
    /// end on its own, and answers how it ended.
    pub async fn ended(&mut self, timeout: Duration) -> Result<Ending, ServerError> {
        let Serving::Task(task) = &mut self.serving else {
            panic!("ended() is for an agent served on the test's runtime");
        };
        tokio::time::timeout(timeout, task)
            .await
            .expect("the agent stops serving")
            .expect("the server task")
    }
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        match &mut self.serving {
            Serving::Task(task) => task.abort(),
            Serving::Thread { stop, thread } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

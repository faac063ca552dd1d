//! Containers driven over the agent API, as a Kata runtime drives them: `CreateContainer`,
//! `ReadStdout`/`ReadStderr` loops beside `StartContainer`, `WaitProcess`,
//! `RemoveContainer`. Shared by the tests, the demo and the benchmark.
//!
//! Output is read while the process runs (the agent keeps no buffer of its own: a process
//! whose output nobody reads blocks), stdout and stderr each by its own task, with
//! [`AgentClient::read_to_end`].

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hull_protocols::agent::{CreateContainerRequest, ExecProcessRequest};
use hull_protocols::client::{AgentClient, Captured, ClientError, Stream};
use hull_protocols::oci;
use tokio::task::JoinHandle;

/// A container in the guest, through its agent.
#[derive(Debug, Clone)]
pub struct Container {
    /// Calls that answer at once; they keep the client's per-call timeout.
    client: AgentClient,
    /// Calls that wait on the process (reads, `WaitProcess`): no per-call timeout.
    blocking: AgentClient,
    /// The container's id, also its init process's exec id.
    pub id: String,
}

/// The readers of a process's stdout and stderr, started before it runs.
pub struct Readers {
    stdout: JoinHandle<Result<Captured, ClientError>>,
    stderr: Option<JoinHandle<Result<Captured, ClientError>>>,
}

impl Readers {
    /// Waits for both streams to end.
    pub async fn finish(self) -> Result<(Captured, Captured)> {
        let stdout = self.stdout.await.context("the stdout reader")??;
        let stderr = match self.stderr {
            Some(task) => task.await.context("the stderr reader")??,
            None => Captured::default(),
        };
        Ok((stdout, stderr))
    }
}

/// The outcome of [`Container::run`].
#[derive(Debug, Clone)]
pub struct Run {
    /// Everything the process wrote to stdout, read while it ran.
    pub stdout: Captured,
    /// Everything it wrote to stderr (empty when it ran on a terminal).
    pub stderr: Captured,
    /// `WaitProcess`'s status (128+N for signal N).
    pub status: i32,
    /// From sending `CreateContainer` to the first byte on stdout.
    pub create_to_first_byte: Option<Duration>,
    /// From sending `CreateContainer` to its answer.
    pub create: Duration,
}

impl Container {
    /// `CreateContainer` for `id` with `spec` (the init process's exec id is `id`).
    pub async fn create(
        client: &AgentClient,
        id: &str,
        spec: oci::Spec,
    ) -> Result<Self, ClientError> {
        let req = CreateContainerRequest {
            container_id: id.into(),
            exec_id: id.into(),
            OCI: Some(spec).into(),
            ..Default::default()
        };
        client.create_container(&req).await?;
        Ok(Self::attach(client, id))
    }

    /// A handle on a container that exists already.
    pub fn attach(client: &AgentClient, id: &str) -> Self {
        Self {
            client: client.clone(),
            blocking: client.clone().with_timeout(Duration::ZERO),
            id: id.into(),
        }
    }

    /// Starts readers of `exec_id`'s output (empty: the init process); a process on a
    /// terminal has stdout only.
    pub fn readers(&self, exec_id: &str, terminal: bool) -> Readers {
        let spawn = |stream| {
            let client = self.blocking.clone();
            let id = self.id.clone();
            let exec_id = exec_id.to_string();
            tokio::spawn(async move { client.read_to_end(&id, &exec_id, stream).await })
        };
        Readers {
            stdout: spawn(Stream::Stdout),
            stderr: (!terminal).then(|| spawn(Stream::Stderr)),
        }
    }

    /// `StartContainer`.
    pub async fn start(&self) -> Result<(), ClientError> {
        self.client.start_container(&self.id).await
    }

    /// `ExecProcess` of `process` as `exec_id`.
    pub async fn exec(&self, exec_id: &str, process: oci::Process) -> Result<(), ClientError> {
        let req = ExecProcessRequest {
            container_id: self.id.clone(),
            exec_id: exec_id.into(),
            process: Some(process).into(),
            ..Default::default()
        };
        self.client.exec_process(&req).await
    }

    /// `WaitProcess` (empty `exec_id`: the init process).
    pub async fn wait(&self, exec_id: &str) -> Result<i32, ClientError> {
        self.blocking.wait_process(&self.id, exec_id).await
    }

    /// `SignalProcess` (empty `exec_id`: every process of the container).
    pub async fn signal(&self, exec_id: &str, signal: i32) -> Result<(), ClientError> {
        let signal = u32::try_from(signal).unwrap_or(0);
        self.client.signal_process(&self.id, exec_id, signal).await
    }

    /// `StatsContainer`.
    pub async fn stats(
        &self,
    ) -> Result<hull_protocols::agent::StatsContainerResponse, ClientError> {
        self.client.stats_container(&self.id).await
    }

    /// The memory limit StatsContainer reports for its cgroup, in bytes.
    pub async fn memory_limit(&self) -> Result<u64, ClientError> {
        let stats = self.stats().await?;
        Ok(stats.cgroup_stats.memory_stats.usage.limit)
    }

    /// `RemoveContainer` (the agent's default stop timeout).
    pub async fn remove(&self) -> Result<(), ClientError> {
        self.client.remove_container(&self.id, 0).await
    }

    /// The whole life of a container that runs to its end: create, read its output while
    /// it starts and runs, wait for its status, remove it.
    pub async fn run(client: &AgentClient, id: &str, spec: oci::Spec) -> Result<Run> {
        let terminal = spec.Process.as_ref().is_some_and(|p| p.Terminal);
        let asked = Instant::now();
        let container = Self::create(client, id, spec)
            .await
            .with_context(|| format!("CreateContainer {id}"))?;
        let create = asked.elapsed();
        let readers = container.readers("", terminal);
        container
            .start()
            .await
            .with_context(|| format!("StartContainer {id}"))?;
        let status = container
            .wait("")
            .await
            .with_context(|| format!("WaitProcess {id}"))?;
        let (stdout, stderr) = readers.finish().await?;
        container
            .remove()
            .await
            .with_context(|| format!("RemoveContainer {id}"))?;
        Ok(Run {
            create_to_first_byte: stdout.first_byte_at.map(|at| at - asked),
            stdout,
            stderr,
            status,
            create,
        })
    }
}

/// Reads the stdout of process `exec_id` (`""`: the init process) of container `id`
/// until `marker` has arrived, for at most a minute; returns what was read.
pub async fn read_until(
    client: &AgentClient,
    id: &str,
    exec_id: &str,
    marker: &str,
) -> Result<String> {
    let blocking = client.clone().with_timeout(Duration::ZERO);
    let mut seen = String::new();
    let read = async {
        while !seen.contains(marker) {
            let chunk = blocking.read_stdout(id, exec_id, 4096).await?;
            if chunk.is_empty() {
                anyhow::bail!("{id}/{exec_id}'s stdout ended before {marker:?}: {seen:?}");
            }
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .with_context(|| format!("waiting for {marker:?} from {id}/{exec_id}"))??;
    Ok(seen)
}

/// The rest of the first line of `text` that starts with `prefix`, trimmed.
pub fn line_with<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
}

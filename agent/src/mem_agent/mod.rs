//! The memory agent (Kata's mem-agent): two periodic jobs that give memory back to the
//! host without hurting the workload, each configured at run time
//! (`MemAgentMemcgSet`, `MemAgentCompactSet`) and gated by pressure stall information.
//!
//! - [`memcg`]: proactive reclaim of each container's memory cgroup (`memory.reclaim`).
//! - [`compact`]: memory compaction (`/proc/sys/vm/compact_memory`), so free memory
//!   comes in blocks large enough to report to the host.
//!
//! Both are off until their first `Set` call, which starts them with Kata's defaults
//! overridden by the fields it carries (hull's agent has no kernel parameter to enable
//! the mem-agent at boot, as Kata's `agent.mem_agent_enable`). A later call changes the
//! running configuration and restarts the period; `disabled: true` stops the job. Each
//! job is a tokio task that sleeps for its period, then runs one round on a blocking
//! thread.

pub mod compact;
pub mod config;
pub mod memcg;
pub mod psi;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::compact::Compactor;
pub use self::config::{CompactConfig, CompactUpdate, MemcgConfig, MemcgUpdate};
use self::memcg::Reclaimer;

/// What can go wrong in the memory agent.
#[derive(Debug, thiserror::Error)]
pub enum MemAgentError {
    /// A configuration field holds a value the agent cannot use.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field's name in `MemAgentMemcgConfig` / `MemAgentCompactConfig`.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// Reading or writing a kernel file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A kernel file does not hold what it should.
    #[error("{path}: expected {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// The compaction could not be started.
    #[error("compaction: {0}")]
    Compact(String),
}

impl MemAgentError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// One periodic job.
trait Periodic: Send + 'static {
    type Config: Clone + Send + Sync + 'static;
    /// The period, or `None` when the configuration disables the job.
    fn period(config: &Self::Config) -> Option<Duration>;
    /// Begins a period (samples the pressure it will be judged by).
    fn prime(&mut self);
    /// Ends a period: the job's work. Blocking.
    fn run(&mut self, config: &Self::Config);
}

impl Periodic for Reclaimer {
    type Config = MemcgConfig;
    fn period(config: &MemcgConfig) -> Option<Duration> {
        (!config.disabled).then_some(config.period)
    }
    fn prime(&mut self) {
        Reclaimer::prime(self);
    }
    fn run(&mut self, config: &MemcgConfig) {
        for outcome in self.run_period(config) {
            if outcome.reclaimed > 0 {
                tracing::info!(
                    cgroup = %outcome.cgroup.display(),
                    bytes = outcome.reclaimed,
                    "memcg reclaimed"
                );
            }
        }
    }
}

impl Periodic for Compactor {
    type Config = CompactConfig;
    fn period(config: &CompactConfig) -> Option<Duration> {
        (!config.disabled).then_some(config.period)
    }
    fn prime(&mut self) {
        Compactor::prime(self);
    }
    fn run(&mut self, config: &CompactConfig) {
        if let Err(e) = self.run_period(config) {
            tracing::warn!(error = %e, "compaction period");
        }
    }
}

/// Runs `job` every period of the latest configuration until the sender goes away.
async fn run_periodically<P: Periodic>(job: P, mut configs: watch::Receiver<Option<P::Config>>) {
    let job = Arc::new(Mutex::new(job));
    loop {
        let config = configs.borrow_and_update().clone();
        let Some((config, period)) = config.and_then(|c| P::period(&c).map(|p| (c, p))) else {
            if configs.changed().await.is_err() {
                return;
            }
            continue;
        };
        let primer = job.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut job) = primer.lock() {
                job.prime();
            }
        })
        .await;
        tokio::select! {
            changed = configs.changed() => {
                if changed.is_err() {
                    return;
                }
                // A new configuration: its period starts now.
                continue;
            }
            () = tokio::time::sleep(period) => {}
        }
        let worker = job.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut job) = worker.lock() {
                job.run(&config);
            }
        })
        .await;
    }
}

/// The memory agent: its two jobs' configurations, and their tasks once started.
pub struct MemAgent {
    cgroup_root: PathBuf,
    proc: PathBuf,
    memcg: watch::Sender<Option<MemcgConfig>>,
    compact: watch::Sender<Option<CompactConfig>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl MemAgent {
    /// A memory agent over the cgroup v2 mount `cgroup_root` and the `/proc` at `proc`;
    /// nothing runs before the first `set_*`.
    pub fn new(cgroup_root: &Path, proc: &Path) -> Self {
        Self {
            cgroup_root: cgroup_root.to_path_buf(),
            proc: proc.to_path_buf(),
            memcg: watch::channel(None).0,
            compact: watch::channel(None).0,
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The memcg job's configuration, if it was ever set.
    pub fn memcg_config(&self) -> Option<MemcgConfig> {
        self.memcg.borrow().clone()
    }

    /// The compaction job's configuration, if it was ever set.
    pub fn compact_config(&self) -> Option<CompactConfig> {
        self.compact.borrow().clone()
    }

    /// `MemAgentMemcgSet`: checks the update, applies it to the current configuration
    /// (Kata's defaults the first time) and hands it to the running job.
    pub fn set_memcg(&self, update: &MemcgUpdate) -> Result<MemcgConfig, MemAgentError> {
        let next = update.apply(&self.memcg_config().unwrap_or_default())?;
        self.start();
        tracing::info!(config = ?next, "mem-agent memcg configuration");
        self.memcg.send_replace(Some(next.clone()));
        Ok(next)
    }

    /// `MemAgentCompactSet`: as [`set_memcg`](Self::set_memcg), for compaction.
    pub fn set_compact(&self, update: &CompactUpdate) -> Result<CompactConfig, MemAgentError> {
        let next = update.apply(&self.compact_config().unwrap_or_default())?;
        self.start();
        tracing::info!(config = ?next, "mem-agent compaction configuration");
        self.compact.send_replace(Some(next.clone()));
        Ok(next)
    }

    /// Starts the two tasks, once (must be called inside the runtime).
    fn start(&self) {
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        if !tasks.is_empty() {
            return;
        }
        let reclaimer = Reclaimer::new(&self.cgroup_root, &self.proc);
        let compactor = Compactor::new(&self.proc);
        tasks.push(tokio::spawn(run_periodically(
            reclaimer,
            self.memcg.subscribe(),
        )));
        tasks.push(tokio::spawn(run_periodically(
            compactor,
            self.compact.subscribe(),
        )));
    }

    /// Stops both tasks (a round in progress on its blocking thread finishes).
    pub fn stop(&self) {
        if let Ok(mut tasks) = self.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }
}

impl Drop for MemAgent {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(Arc<AtomicUsize>);

    impl Periodic for Counting {
        type Config = Option<Duration>;
        fn period(config: &Option<Duration>) -> Option<Duration> {
            *config
        }
        fn prime(&mut self) {}
        fn run(&mut self, _: &Option<Duration>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_job_runs_each_period_and_follows_new_configurations() {
        let runs = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(run_periodically(Counting(runs.clone()), rx));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 0, "unset: nothing runs");
        tx.send_replace(Some(Some(Duration::from_millis(20))));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let running = runs.load(Ordering::SeqCst);
        assert!(running >= 3, "ran {running} times in 300 ms at 20 ms");
        // Disabled: no more rounds.
        tx.send_replace(Some(None));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stopped = runs.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(runs.load(Ordering::SeqCst), stopped);
        // The sender gone: the task ends.
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends with its configuration's sender")
            .unwrap();
    }

    #[tokio::test]
    async fn a_bad_update_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let agent = MemAgent::new(dir.path(), dir.path());
        assert_eq!(agent.memcg_config(), None);
        let bad = MemcgUpdate {
            period_secs: Some(1),
            swappiness_max: Some(500),
            ..Default::default()
        };
        assert!(matches!(
            agent.set_memcg(&bad),
            Err(MemAgentError::Invalid {
                field: "swappiness_max",
                ..
            })
        ));
        assert_eq!(agent.memcg_config(), None);
        let good = CompactUpdate {
            period_secs: Some(7),
            ..Default::default()
        };
        let set = agent.set_compact(&good).unwrap();
        assert_eq!(set.period, Duration::from_secs(7));
        assert_eq!(agent.compact_config(), Some(set));
        let tasks: Vec<_> = agent
            .tasks
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.abort_handle())
            .collect();
        assert_eq!(tasks.len(), 2, "both jobs started");
        agent.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(tasks.iter().all(|t| t.is_finished()), "stop ends both jobs");
    }
}

//! Memory compaction, as Kata's mem-agent decides it: each period, unless the system
//! was under pressure, compact when the free memory got more fragmented than
//! `compact_threshold` pages since the last compaction (or free memory shrank by as
//! much), or when `compact_force_times` periods passed without one. A compaction is a
//! write to `/proc/sys/vm/compact_memory` made by a child process, killed when it runs
//! past `compact_sec_max` or the pressure exceeds `compact_psi_percent_limit`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hull_container::process::reaper::Reaper;
use nix::sys::signal::Signal;

use super::MemAgentError;
use super::config::CompactConfig;
use super::psi::{self, PsiWindow};

/// What one period decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactDecision {
    /// The system was under more pressure than `period_psi_percent_limit`.
    Pressure {
        /// The pressure measured over the period.
        percent: u64,
    },
    /// Not fragmented enough since the last compaction.
    BelowThreshold,
    /// Compact (`forced`: because of `compact_force_times`).
    Compact {
        /// Because of `compact_force_times`.
        forced: bool,
    },
}

/// What the compactor remembers between periods.
#[derive(Debug, Clone, Default)]
pub struct CompactState {
    /// Periods since the last compaction.
    pub idle_periods: u64,
    /// `MemFree` after the last compaction, in kB.
    pub prev_memfree_kb: u64,
    /// Free movable pages below `compact_order` after the last compaction.
    pub prev_free_movable: u64,
}

impl CompactState {
    /// The decision for this period, from its measurements.
    pub fn decide(
        &self,
        config: &CompactConfig,
        psi_percent: u64,
        memfree_kb: u64,
        free_movable: u64,
    ) -> CompactDecision {
        if psi_percent > u64::from(config.period_psi_percent_limit) {
            return CompactDecision::Pressure {
                percent: psi_percent,
            };
        }
        if config.forces() && self.idle_periods >= config.compact_force_times {
            return CompactDecision::Compact { forced: true };
        }
        // The threshold is in 4 KiB pages; MemFree in kB.
        let shrunk = self.prev_memfree_kb
            > memfree_kb.saturating_add(config.compact_threshold.saturating_mul(4));
        let fragmented = free_movable
            > config
                .compact_threshold
                .saturating_add(self.prev_free_movable);
        if shrunk || fragmented {
            CompactDecision::Compact { forced: false }
        } else {
            CompactDecision::BelowThreshold
        }
    }
}

/// Free pages on the movable free lists below `order`, in 4 KiB pages, from
/// `/proc/pagetypeinfo` (each `Movable` row counts free blocks per order).
pub fn free_movable_pages(pagetypeinfo: &str, order: u8) -> u64 {
    pagetypeinfo
        .lines()
        .filter(|l| l.starts_with("Node"))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            fields.find(|f| *f == "Movable")?;
            Some(
                fields
                    .take(usize::from(order))
                    .enumerate()
                    .filter_map(|(o, count)| Some(count.parse::<u64>().ok()? << o))
                    .sum::<u64>(),
            )
        })
        .sum()
}

/// `MemFree` from `/proc/meminfo`, in kB.
pub fn memfree_kb(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemFree:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The compactor: state plus where it reads and writes.
#[derive(Debug)]
pub struct Compactor {
    proc: PathBuf,
    state: CompactState,
    psi: PsiWindow,
}

impl Compactor {
    /// A compactor over the `/proc` at `proc`.
    pub fn new(proc: &Path) -> Self {
        Self {
            proc: proc.to_path_buf(),
            state: CompactState::default(),
            psi: PsiWindow::default(),
        }
    }

    /// Starts the pressure window (called when a period begins).
    pub fn prime(&mut self) {
        if let Ok(total) = psi::read_total_us(&psi::system_files(&self.proc)) {
            self.psi.percent(total, Instant::now());
        }
    }

    fn measure(&self, config: &CompactConfig) -> Result<(u64, u64), MemAgentError> {
        let meminfo_path = self.proc.join("meminfo");
        let meminfo = std::fs::read_to_string(&meminfo_path)
            .map_err(|e| MemAgentError::io(&meminfo_path, e))?;
        let memfree = memfree_kb(&meminfo).ok_or(MemAgentError::Parse {
            path: meminfo_path,
            what: "MemFree",
        })?;
        let types_path = self.proc.join("pagetypeinfo");
        let types =
            std::fs::read_to_string(&types_path).map_err(|e| MemAgentError::io(&types_path, e))?;
        Ok((memfree, free_movable_pages(&types, config.compact_order)))
    }

    /// One period: decides, and compacts when it should.
    pub fn run_period(&mut self, config: &CompactConfig) -> Result<CompactDecision, MemAgentError> {
        let total = psi::read_total_us(&psi::system_files(&self.proc))?;
        let percent = self.psi.percent(total, Instant::now());
        let (memfree, free_movable) = self.measure(config)?;
        let decision = self.state.decide(config, percent, memfree, free_movable);
        tracing::debug!(?decision, memfree, free_movable, "compaction period");
        if let CompactDecision::Compact { forced } = decision {
            tracing::info!(forced, "compacting memory");
            self.compact(config)?;
            let (memfree, free_movable) = self.measure(config)?;
            self.state = CompactState {
                idle_periods: 0,
                prev_memfree_kb: memfree,
                prev_free_movable: free_movable,
            };
        } else {
            self.state.idle_periods = self.state.idle_periods.saturating_add(1);
        }
        Ok(decision)
    }

    /// Writes `compact_memory` from a child process, watched each second and killed on
    /// timeout or pressure. Blocking: runs on a blocking thread.
    fn compact(&mut self, config: &CompactConfig) -> Result<(), MemAgentError> {
        let trigger = self.proc.join("sys/vm/compact_memory");
        let path =
            std::ffi::CString::new(trigger.as_os_str().as_encoded_bytes()).map_err(|_| {
                MemAgentError::Parse {
                    path: trigger.clone(),
                    what: "a path without NUL",
                }
            })?;
        let reaper = Reaper::global().map_err(|e| MemAgentError::Compact(e.to_string()))?;
        let (pid, exited) = reaper
            .spawn_registered(|| {
                // SAFETY: the child only calls async-signal-safe functions (open, write,
                // _exit) on memory prepared before the fork, as POSIX requires of a
                // child of a multi-threaded process.
                match unsafe { libc::fork() } {
                    -1 => Err(std::io::Error::last_os_error()),
                    0 => unsafe {
                        // SAFETY: see above; `path` is a valid NUL-terminated string.
                        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                        let ok = fd >= 0 && libc::write(fd, b"1".as_ptr().cast(), 1) == 1;
                        libc::_exit(if ok { 0 } else { 1 })
                    },
                    pid => Ok((pid, pid)),
                }
            })
            .map_err(|e| MemAgentError::Compact(format!("forking the compaction: {e}")))?;
        let started = Instant::now();
        let mut pressure = PsiWindow::default();
        let files = psi::system_files(&self.proc);
        loop {
            if let Some(status) = exited.status() {
                tracing::info!(?status, took = ?started.elapsed(), "compaction done");
                return Ok(());
            }
            let percent = psi::read_total_us(&files)
                .map(|t| pressure.percent(t, Instant::now()))
                .unwrap_or(0);
            let stop = if started.elapsed() >= config.compact_max {
                Some("compact_sec_max reached")
            } else if percent > u64::from(config.compact_psi_percent_limit) {
                Some("pressure above compact_psi_percent_limit")
            } else {
                None
            };
            if let Some(reason) = stop {
                tracing::info!(reason, percent, "stopping the compaction");
                let _ = reaper.signal(pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(200).min(config.compact_max));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGETYPEINFO: &str = "\
Page block order: 9
Pages per block:  512

Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10
Node    0, zone      DMA, type    Unmovable      0      0      0      0      0      0      0      0      0      0      0
Node    0, zone      DMA, type      Movable      1      2      0      0      0      0      0      0      0      1      3
Node    0, zone    DMA32, type      Movable      4      1      1      0      0      0      0      0      0      0     50

Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic      Isolate
Node 0, zone      DMA            1            7            0            0            0
";

    #[test]
    fn free_movable_pages_count_orders_below_the_limit() {
        // DMA: 1 + 2*2; DMA32: 4 + 1*2 + 1*4 (order 9 and 10 are not counted).
        assert_eq!(free_movable_pages(PAGETYPEINFO, 9), 5 + 10);
        assert_eq!(free_movable_pages(PAGETYPEINFO, 1), 1 + 4);
        assert_eq!(free_movable_pages(PAGETYPEINFO, 0), 0);
        assert_eq!(free_movable_pages(PAGETYPEINFO, 10), 15 + 512);
    }

    #[test]
    fn memfree_is_read() {
        let meminfo = "MemTotal:  500000 kB\nMemFree:   123456 kB\n";
        assert_eq!(memfree_kb(meminfo), Some(123_456));
        assert_eq!(memfree_kb("MemTotal: 1 kB\n"), None);
    }

    fn config(threshold: u64) -> CompactConfig {
        CompactConfig {
            compact_threshold: threshold,
            ..Default::default()
        }
    }

    #[test]
    fn pressure_above_the_limit_skips_the_period() {
        let state = CompactState::default();
        assert_eq!(
            state.decide(&config(0), 2, 1000, 1_000_000),
            CompactDecision::Pressure { percent: 2 }
        );
        assert_eq!(
            state.decide(&config(0), 1, 1000, 1_000_000),
            CompactDecision::Compact { forced: false }
        );
    }

    #[test]
    fn fragmentation_beyond_the_threshold_compacts() {
        let state = CompactState {
            idle_periods: 0,
            prev_memfree_kb: 100_000,
            prev_free_movable: 500,
        };
        let c = config(1024);
        assert_eq!(
            state.decide(&c, 0, 100_000, 1524),
            CompactDecision::BelowThreshold
        );
        assert_eq!(
            state.decide(&c, 0, 100_000, 1525),
            CompactDecision::Compact { forced: false }
        );
        // Free memory shrank by more than 1024 pages (4096 kB).
        assert_eq!(
            state.decide(&c, 0, 100_000 - 4097, 0),
            CompactDecision::Compact { forced: false }
        );
        assert_eq!(
            state.decide(&c, 0, 100_000 - 4096, 0),
            CompactDecision::BelowThreshold
        );
    }

    #[test]
    fn a_period_compacts_through_compact_memory_and_remembers_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        std::fs::create_dir_all(proc.join("pressure")).unwrap();
        std::fs::create_dir_all(proc.join("sys/vm")).unwrap();
        std::fs::write(proc.join("pressure/memory"), "some total=10\n").unwrap();
        std::fs::write(proc.join("meminfo"), "MemFree: 5000 kB\n").unwrap();
        std::fs::write(proc.join("pagetypeinfo"), PAGETYPEINFO).unwrap();
        std::fs::write(proc.join("sys/vm/compact_memory"), "").unwrap();
        let config = CompactConfig {
            compact_threshold: 1_000_000,
            ..Default::default()
        };
        let mut compactor = Compactor::new(proc);
        compactor.prime();
        // Not fragmented enough: nothing written.
        assert_eq!(
            compactor.run_period(&config).unwrap(),
            CompactDecision::BelowThreshold
        );
        assert_eq!(compactor.state.idle_periods, 1);
        let forced = CompactConfig {
            compact_force_times: 1,
            ..config
        };
        assert_eq!(
            compactor.run_period(&forced).unwrap(),
            CompactDecision::Compact { forced: true }
        );
        assert_eq!(
            std::fs::read_to_string(proc.join("sys/vm/compact_memory")).unwrap(),
            "1",
            "the child process wrote the trigger"
        );
        assert_eq!(compactor.state.idle_periods, 0);
        assert_eq!(compactor.state.prev_memfree_kb, 5000);
        assert_eq!(compactor.state.prev_free_movable, 15);
    }

    #[test]
    fn idle_periods_force_a_compaction_when_asked() {
        let mut c = config(u64::MAX);
        let state = CompactState {
            idle_periods: 3,
            ..Default::default()
        };
        assert_eq!(state.decide(&c, 0, 0, 0), CompactDecision::BelowThreshold);
        c.compact_force_times = 3;
        assert_eq!(
            state.decide(&c, 0, 0, 0),
            CompactDecision::Compact { forced: true }
        );
        c.compact_force_times = 4;
        assert_eq!(state.decide(&c, 0, 0, 0), CompactDecision::BelowThreshold);
        // Pressure wins over forcing.
        c.compact_force_times = 0;
        assert!(matches!(
            state.decide(&c, 50, 0, 0),
            CompactDecision::Pressure { .. }
        ));
    }
}

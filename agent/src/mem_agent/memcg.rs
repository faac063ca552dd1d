//! Proactive reclaim of memory cgroups. Kata's mem-agent ages and evicts generations of
//! the multi-generational LRU; this guest kernel has no MGLRU, so the same policy runs
//! on cgroup v2's `memory.reclaim`: each period, every leaf memory cgroup whose pressure
//! stayed under `period_psi_percent_limit` counts one calm ("aging") period; after
//! `eviction_run_aging_count_min` of them its inactive pages are reclaimed, in steps,
//! stopping when the cgroup's pressure during the reclaim exceeds
//! `eviction_psi_percent_limit` or the kernel finds nothing more to take. Anonymous
//! pages are asked for only with `swap` and free swap, in the share Kata computes
//! (capped by `swappiness_max`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::MemAgentError;
use super::config::MemcgConfig;
use super::psi::{self, PsiWindow};

/// A reclaim is made in this many steps, the pressure checked between them.
const RECLAIM_STEPS: u64 = 4;
/// Free swap below this (in kB: 256 pages) counts as no swap, as in Kata.
const SWAP_FREE_MIN_KB: u64 = 256 * 4;
const PAGE_SIZE: u64 = 4096;

/// The counters of `memory.stat` the policy reads, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemStat {
    /// `inactive_anon`.
    pub inactive_anon: u64,
    /// `inactive_file`.
    pub inactive_file: u64,
}

impl MemStat {
    /// Parses a cgroup's `memory.stat`.
    pub fn parse(text: &str) -> Self {
        let mut stat = Self::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(value) = value.parse() else { continue };
            match key {
                "inactive_anon" => stat.inactive_anon = value,
                "inactive_file" => stat.inactive_file = value,
                _ => {}
            }
        }
        stat
    }
}

/// Kata's share of anonymous pages in a reclaim (0–200): proportional to their part of
/// the inactive pages, capped by `max`.
pub fn swappiness(anon: u64, file: u64, max: u8) -> u8 {
    let total = anon.saturating_add(file);
    if total == 0 {
        return 0;
    }
    let share = (u128::from(anon) * 200 + u128::from(total) / 2) / u128::from(total);
    u8::try_from(share).unwrap_or(200).min(max)
}

/// How many bytes to reclaim from a cgroup: its inactive file pages, plus inactive
/// anonymous pages in the swappiness share when swapping is allowed and possible.
pub fn reclaim_target(stat: &MemStat, config: &MemcgConfig, swap_free_kb: u64) -> u64 {
    let mut target = stat.inactive_file;
    if config.swap && swap_free_kb > SWAP_FREE_MIN_KB && stat.inactive_anon > 0 {
        let s = swappiness(
            stat.inactive_anon,
            stat.inactive_file,
            config.swappiness_max,
        );
        let anon = u128::from(stat.inactive_anon) * u128::from(s) / 200;
        target = target.saturating_add(u64::try_from(anon).unwrap_or(u64::MAX));
    }
    target / PAGE_SIZE * PAGE_SIZE
}

/// What one period decided for one cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemcgDecision {
    /// The cgroup was under more pressure than `period_psi_percent_limit`.
    Pressure {
        /// The pressure measured over the period.
        percent: u64,
    },
    /// Still aging: fewer calm periods than `eviction_run_aging_count_min`.
    Aging {
        /// Calm periods so far.
        periods: u64,
    },
    /// Nothing inactive to take.
    Nothing,
    /// Reclaim this many bytes.
    Reclaim {
        /// How much to ask `memory.reclaim` for.
        bytes: u64,
    },
}

/// What is remembered of one cgroup between periods.
#[derive(Debug, Clone, Default)]
pub struct MemcgState {
    psi: PsiWindow,
    calm_periods: u64,
}

impl MemcgState {
    /// The decision for this period; counts the calm period.
    pub fn decide(
        &mut self,
        config: &MemcgConfig,
        psi_percent: u64,
        stat: &MemStat,
        swap_free_kb: u64,
    ) -> MemcgDecision {
        if psi_percent > u64::from(config.period_psi_percent_limit) {
            self.calm_periods = 0;
            return MemcgDecision::Pressure {
                percent: psi_percent,
            };
        }
        self.calm_periods = self.calm_periods.saturating_add(1);
        if self.calm_periods < config.eviction_run_aging_count_min {
            return MemcgDecision::Aging {
                periods: self.calm_periods,
            };
        }
        match reclaim_target(stat, config, swap_free_kb) {
            0 => MemcgDecision::Nothing,
            bytes => {
                self.calm_periods = 0;
                MemcgDecision::Reclaim { bytes }
            }
        }
    }
}

/// The leaf memory cgroups below `root` (not `root` itself): directories with a
/// `memory.reclaim` file and no such subdirectory.
pub fn leaf_memcgs(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) -> bool {
        let has_reclaim = dir.join("memory.reclaim").is_file();
        let mut child_memcg = false;
        if depth < 16
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    child_memcg |= walk(&entry.path(), depth + 1, found);
                }
            }
        }
        if has_reclaim && !child_memcg && depth > 0 {
            found.push(dir.to_path_buf());
        }
        has_reclaim || child_memcg
    }
    let mut found = Vec::new();
    walk(root, 0, &mut found);
    found.sort();
    found
}

/// `SwapFree` from `/proc/meminfo`, in kB (0 when absent).
fn swap_free_kb(proc: &Path) -> u64 {
    std::fs::read_to_string(proc.join("meminfo"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("SwapFree:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// What a period did to one cgroup (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcgOutcome {
    /// The cgroup's directory.
    pub cgroup: PathBuf,
    /// What the period decided.
    pub decision: MemcgDecision,
    /// Bytes the kernel reclaimed (all requested steps that succeeded).
    pub reclaimed: u64,
}

/// The reclaimer: per-cgroup state, and where it reads.
#[derive(Debug)]
pub struct Reclaimer {
    cgroup_root: PathBuf,
    proc: PathBuf,
    cgroups: HashMap<PathBuf, MemcgState>,
}

impl Reclaimer {
    /// A reclaimer of the memory cgroups below `cgroup_root`.
    pub fn new(cgroup_root: &Path, proc: &Path) -> Self {
        Self {
            cgroup_root: cgroup_root.to_path_buf(),
            proc: proc.to_path_buf(),
            cgroups: HashMap::new(),
        }
    }

    /// Starts every cgroup's pressure window (called when a period begins).
    pub fn prime(&mut self) {
        let now = Instant::now();
        for cgroup in leaf_memcgs(&self.cgroup_root) {
            if let Ok(total) = psi::read_total_us(&psi::cgroup_files(&cgroup)) {
                let state = self.cgroups.entry(cgroup).or_default();
                state.psi.percent(total, now);
            }
        }
    }

    /// One period over every leaf memory cgroup. Blocking.
    pub fn run_period(&mut self, config: &MemcgConfig) -> Vec<MemcgOutcome> {
        let cgroups = leaf_memcgs(&self.cgroup_root);
        self.cgroups.retain(|path, _| cgroups.contains(path));
        let swap_free = swap_free_kb(&self.proc);
        let mut outcomes = Vec::new();
        for cgroup in cgroups {
            match self.period_of(&cgroup, config, swap_free) {
                Ok(outcome) => outcomes.push(outcome),
                // A cgroup removed meanwhile, most often.
                Err(e) => tracing::debug!(cgroup = %cgroup.display(), error = %e, "memcg skipped"),
            }
        }
        outcomes
    }

    fn period_of(
        &mut self,
        cgroup: &Path,
        config: &MemcgConfig,
        swap_free: u64,
    ) -> Result<MemcgOutcome, MemAgentError> {
        let files = psi::cgroup_files(cgroup);
        let total = psi::read_total_us(&files)?;
        let stat_path = cgroup.join("memory.stat");
        let stat = std::fs::read_to_string(&stat_path)
            .map(|t| MemStat::parse(&t))
            .map_err(|e| MemAgentError::io(&stat_path, e))?;
        let state = self.cgroups.entry(cgroup.to_path_buf()).or_default();
        let percent = state.psi.percent(total, Instant::now());
        let decision = state.decide(config, percent, &stat, swap_free);
        let reclaimed = match decision {
            MemcgDecision::Reclaim { bytes } => reclaim(cgroup, bytes, config, &files)?,
            _ => 0,
        };
        tracing::debug!(cgroup = %cgroup.display(), ?decision, reclaimed, "memcg period");
        Ok(MemcgOutcome {
            cgroup: cgroup.to_path_buf(),
            decision,
            reclaimed,
        })
    }
}

/// Asks the kernel for `bytes` in [`RECLAIM_STEPS`] steps, stopping on pressure or when
/// a step cannot be met (`EAGAIN`). Answers the bytes of the steps that succeeded.
fn reclaim(
    cgroup: &Path,
    bytes: u64,
    config: &MemcgConfig,
    psi_files: &[PathBuf],
) -> Result<u64, MemAgentError> {
    let path = cgroup.join("memory.reclaim");
    let step = (bytes / RECLAIM_STEPS).max(PAGE_SIZE) / PAGE_SIZE * PAGE_SIZE;
    let mut window = PsiWindow::default();
    if let Ok(total) = psi::read_total_us(psi_files) {
        window.percent(total, Instant::now());
    }
    let mut done = 0;
    while done < bytes {
        let ask = step.min(bytes - done);
        match std::fs::write(&path, ask.to_string()) {
            Ok(()) => done += ask,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break,
            Err(e) => return Err(MemAgentError::io(&path, e)),
        }
        let total = psi::read_total_us(psi_files)?;
        let percent = window.percent(total, Instant::now());
        if percent > u64::from(config.eviction_psi_percent_limit) {
            tracing::info!(cgroup = %cgroup.display(), percent, done, "reclaim stopped by pressure");
            break;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn config() -> MemcgConfig {
        MemcgConfig {
            eviction_run_aging_count_min: 2,
            ..Default::default()
        }
    }

    #[test]
    fn memory_stat_is_parsed() {
        let stat = MemStat::parse(
            "anon 100\nfile 200\ninactive_anon 4096\nactive_anon 1\ninactive_file 8192\nbad\n",
        );
        assert_eq!(
            stat,
            MemStat {
                inactive_anon: 4096,
                inactive_file: 8192
            }
        );
    }

    #[test]
    fn swappiness_follows_the_anonymous_share_up_to_the_cap() {
        assert_eq!(swappiness(1, 1, 200), 100);
        assert_eq!(swappiness(3, 1, 200), 150);
        assert_eq!(swappiness(3, 1, 50), 50);
        assert_eq!(swappiness(0, 5, 200), 0);
        assert_eq!(swappiness(0, 0, 200), 0);
    }

    #[test]
    fn anonymous_pages_are_asked_for_only_with_swap_allowed_and_present() {
        let stat = MemStat {
            inactive_anon: 8 * MIB,
            inactive_file: 8 * MIB,
        };
        let mut c = config();
        assert_eq!(reclaim_target(&stat, &c, 1 << 20), 8 * MIB);
        c.swap = true;
        c.swappiness_max = 200;
        // 100 of 200: half the anonymous pages.
        assert_eq!(reclaim_target(&stat, &c, 1 << 20), 12 * MIB);
        assert_eq!(reclaim_target(&stat, &c, 0), 8 * MIB, "no free swap");
    }

    #[test]
    fn a_cgroup_is_reclaimed_after_its_calm_periods() {
        let stat = MemStat {
            inactive_anon: 0,
            inactive_file: 3 * MIB + 5,
        };
        let c = config();
        let mut state = MemcgState::default();
        assert_eq!(
            state.decide(&c, 0, &stat, 0),
            MemcgDecision::Aging { periods: 1 }
        );
        assert_eq!(
            state.decide(&c, 0, &stat, 0),
            MemcgDecision::Reclaim { bytes: 3 * MIB }
        );
        // The count starts again after a reclaim.
        assert_eq!(
            state.decide(&c, 0, &stat, 0),
            MemcgDecision::Aging { periods: 1 }
        );
        // Pressure resets it.
        assert_eq!(
            state.decide(&c, 5, &stat, 0),
            MemcgDecision::Pressure { percent: 5 }
        );
        assert_eq!(
            state.decide(&c, 0, &stat, 0),
            MemcgDecision::Aging { periods: 1 }
        );
        assert_eq!(
            state.decide(&c, 0, &MemStat::default(), 0),
            MemcgDecision::Nothing
        );
    }

    #[test]
    fn leaf_memcgs_skip_the_root_and_inner_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["a/b", "a/c", "d", "e/f"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "memory.reclaim",
            "a/memory.reclaim",
            "a/b/memory.reclaim",
            "d/memory.reclaim",
            "e/f/memory.reclaim",
        ] {
            std::fs::write(root.join(f), "").unwrap();
        }
        assert_eq!(
            leaf_memcgs(root),
            vec![root.join("a/b"), root.join("d"), root.join("e/f")]
        );
    }

    #[test]
    fn a_period_reclaims_through_memory_reclaim() {
        let dir = tempfile::tempdir().unwrap();
        let (root, proc) = (dir.path().join("cg"), dir.path().join("proc"));
        let cg = root.join("c1");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::write(cg.join("memory.reclaim"), "").unwrap();
        std::fs::write(cg.join("memory.pressure"), "some total=0\n").unwrap();
        std::fs::write(
            cg.join("memory.stat"),
            format!("inactive_file {}\n", 4 * MIB),
        )
        .unwrap();
        let c = MemcgConfig {
            eviction_run_aging_count_min: 1,
            ..Default::default()
        };
        let mut reclaimer = Reclaimer::new(&root, &proc);
        let outcomes = reclaimer.run_period(&c);
        assert_eq!(outcomes.len(), 1);
        assert_eq!(
            outcomes[0].decision,
            MemcgDecision::Reclaim { bytes: 4 * MIB }
        );
        assert_eq!(outcomes[0].reclaimed, 4 * MIB);
        // The last step written: a quarter.
        assert_eq!(
            std::fs::read_to_string(cg.join("memory.reclaim")).unwrap(),
            MIB.to_string()
        );
    }
}

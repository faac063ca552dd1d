//! A container's cgroup (v2 only), through youki's `libcgroups` without systemd or BPF.
//!
//! The cgroup root is configurable (`/sys/fs/cgroup` in the guest, where hull-init mounts
//! cgroup2). A container's cgroup is `linux.cgroupsPath` below it, or `/hull/<id>` when
//! the spec has none; a systemd-style `slice:prefix:name` path becomes
//! `/slice/prefix-name` (there is no systemd in the guest).
//!
//! Limits (`memory`, `cpu`, `pids`, ...) need the controllers enabled in the root's
//! `cgroup.controllers`; a limit whose controller is missing fails the request. The
//! freezer (`cgroup.freeze`), `cgroup.kill`, `cgroup.procs` and `cpu.stat` are core files
//! of every non-root cgroup. OOM kills are read from `memory.events` ([`watch_oom`]).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use libcgroups::common::{CgroupManager, ControllerOpt, FreezerState};
use libcgroups::v2::manager::Manager;
use nix029::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::stats::{
    BlkioEntry, BlkioStats, ContainerStats, CpuStats, CpuThrottling, HugetlbStats, MemoryCounter,
    MemoryStats, PidsStats,
};

/// What can go wrong with a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `linux.cgroupsPath` climbs out with `..` or names the cgroup root itself.
    #[error("invalid cgroupsPath {0:?}")]
    InvalidPath(String),
    /// `libcgroups` failed on the cgroup (creating, joining, limiting, freezing, reading
    /// or removing it).
    #[error("cgroup {path}: {message}")]
    Manager {
        /// The cgroup directory.
        path: PathBuf,
        /// The error `libcgroups` reported.
        message: String,
    },
}

/// One container's cgroup.
pub struct Cgroup {
    manager: Manager,
    /// Absolute path of the cgroup directory.
    full_path: PathBuf,
    /// Relative to the root, starting with `/`.
    relative: PathBuf,
}

/// Turns `linux.cgroupsPath` into a path below the cgroup root.
pub fn cgroup_path_for(id: &str, cgroups_path: Option<&Path>) -> Result<PathBuf, CgroupError> {
    let Some(raw) = cgroups_path.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(PathBuf::from("/hull").join(id));
    };
    let text = raw.to_string_lossy();
    let path = match text.split(':').collect::<Vec<_>>().as_slice() {
        [slice, prefix, name] if !text.starts_with('/') => {
            let slice = if slice.is_empty() {
                "hull.slice"
            } else {
                slice
            };
            PathBuf::from("/")
                .join(slice)
                .join(format!("{prefix}-{name}"))
        }
        _ => PathBuf::from("/").join(raw),
    };
    let mut clean = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => clean.push(part),
            _ => return Err(CgroupError::InvalidPath(text.into_owned())),
        }
    }
    if clean == Path::new("/") {
        return Err(CgroupError::InvalidPath(text.into_owned()));
    }
    Ok(clean)
}

impl Cgroup {
    /// A handle on `relative` below `root`; nothing is created until [`Cgroup::add`].
    pub fn new(root: &Path, relative: &Path) -> Result<Self, CgroupError> {
        let manager = Manager::new(root.to_path_buf(), relative.to_path_buf()).map_err(|e| {
            CgroupError::Manager {
                path: root.join(relative),
                message: e.to_string(),
            }
        })?;
        let full_path = root.join(relative.strip_prefix("/").unwrap_or(relative));
        Ok(Self {
            manager,
            full_path,
            relative: relative.to_path_buf(),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> CgroupError {
        CgroupError::Manager {
            path: self.full_path.clone(),
            message: e.to_string(),
        }
    }

    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.full_path
    }

    /// The path below the root (as the container sees it with its own cgroup namespace).
    pub fn relative(&self) -> &Path {
        &self.relative
    }

    /// Moves `pid` into the cgroup, creating it (and enabling the root's controllers on
    /// the way) if needed.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        self.manager
            .add_task(Pid::from_raw(pid))
            .map_err(|e| self.err(e))
    }

    /// Applies resource limits.
    pub fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        self.manager.apply(&opt).map_err(|e| self.err(e))
    }

    /// Freezes (`true`) or thaws the cgroup, waiting until the kernel reports it done.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        let state = if frozen {
            FreezerState::Frozen
        } else {
            FreezerState::Thawed
        };
        self.manager.freeze(state).map_err(|e| self.err(e))
    }

    /// Every pid in the cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        self.manager
            .get_all_pids()
            .map(|pids| pids.into_iter().map(Pid::as_raw).collect())
            .map_err(|e| self.err(e))
    }

    /// Statistics. When a controller is not enabled (a host test's empty cgroup2), the
    /// full collection fails; then the files that exist are read alone: CPU time and
    /// pids from the core files, memory and pids limits when those controllers are on.
    pub fn stats(&self) -> Result<ContainerStats, CgroupError> {
        match self.manager.stats() {
            Ok(stats) => Ok(from_library(stats)),
            Err(e) => {
                tracing::debug!(error = %e, "full cgroup stats unavailable; reading core files");
                let mut stats = ContainerStats::default();
                let cpu = std::fs::read_to_string(self.full_path.join("cpu.stat"))
                    .map_err(|e| self.err(format!("cpu.stat: {e}")))?;
                for line in cpu.lines() {
                    let mut words = line.split_whitespace();
                    let (Some(key), Some(value)) = (words.next(), words.next()) else {
                        continue;
                    };
                    let Ok(value) = value.parse::<u64>() else {
                        continue;
                    };
                    // cpu.stat is in microseconds; the stats are in nanoseconds.
                    match key {
                        "usage_usec" => stats.cpu.total_ns = value * 1000,
                        "user_usec" => stats.cpu.user_ns = value * 1000,
                        "system_usec" => stats.cpu.kernel_ns = value * 1000,
                        _ => {}
                    }
                }
                stats.pids.current = self.pids().map(|p| p.len() as u64).unwrap_or(0);
                // Whatever of the memory and pids controllers is enabled.
                let read = |name: &str| std::fs::read_to_string(self.full_path.join(name)).ok();
                let number = |name: &str| {
                    read(name).and_then(|t| match t.trim() {
                        "max" => Some(u64::MAX),
                        v => v.parse().ok(),
                    })
                };
                if let Some(v) = number("memory.current") {
                    stats.memory.usage.usage = v;
                }
                if let Some(v) = number("memory.max") {
                    stats.memory.usage.limit = v;
                }
                if let Some(v) = number("memory.peak") {
                    stats.memory.usage.max_usage = v;
                }
                if let Some(text) = read("memory.stat") {
                    for line in text.lines() {
                        if let Some((k, v)) = line.split_once(' ')
                            && let Ok(v) = v.trim().parse()
                        {
                            stats.memory.stats.insert(k.to_string(), v);
                        }
                    }
                }
                if let Some(v) = number("pids.current") {
                    stats.pids.current = v;
                }
                if let Some(v) = number("pids.max") {
                    stats.pids.limit = v;
                }
                Ok(stats)
            }
        }
    }

    /// Kills what is left and removes the cgroup.
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.manager.remove().map_err(|e| self.err(e))
    }

    /// The `memory.events` file OOM kills are counted in.
    pub fn memory_events(&self) -> PathBuf {
        self.full_path.join("memory.events")
    }
}

/// libcgroups' figures as hull's (the pressure stall figures are not reported).
fn from_library(stats: libcgroups::stats::Stats) -> ContainerStats {
    use libcgroups::stats as lib;
    let memory = |m: lib::MemoryData| MemoryCounter {
        usage: m.usage,
        max_usage: m.max_usage,
        fail_count: m.fail_count,
        limit: m.limit,
    };
    let blkio = |list: Vec<lib::BlkioDeviceStat>| -> Vec<BlkioEntry> {
        list.into_iter()
            .map(|e| BlkioEntry {
                major: e.major,
                minor: e.minor,
                op: e.op_type.unwrap_or_default(),
                value: e.value,
            })
            .collect()
    };
    let lib::Stats {
        cpu,
        pids,
        hugetlb,
        blkio: io,
        memory: mem,
    } = stats;
    // cgroup v2 reports CPU times in microseconds (`usage_usec`, `user_usec`,
    // `system_usec`, `throttled_usec`), and libcgroups passes them on as read; hull's
    // figures are nanoseconds, as Kata's `CpuUsage` is. (v2 has no per-CPU figures.)
    let ns = |usec: u64| usec.saturating_mul(1000);
    ContainerStats {
        cpu: CpuStats {
            total_ns: ns(cpu.usage.usage_total),
            user_ns: ns(cpu.usage.usage_user),
            kernel_ns: ns(cpu.usage.usage_kernel),
            per_cpu_ns: cpu.usage.per_core_usage_total,
            throttling: CpuThrottling {
                periods: cpu.throttling.periods,
                throttled_periods: cpu.throttling.throttled_periods,
                throttled_ns: ns(cpu.throttling.throttled_time),
            },
        },
        memory: MemoryStats {
            usage: memory(mem.memory),
            swap: memory(mem.memswap),
            kernel: memory(mem.kernel),
            cache: mem.cache,
            hierarchy: mem.hierarchy,
            stats: mem.stats,
        },
        pids: PidsStats {
            current: pids.current,
            limit: pids.limit,
        },
        blkio: BlkioStats {
            service_bytes: blkio(io.service_bytes),
            serviced: blkio(io.serviced),
            queued: blkio(io.queued),
            service_time: blkio(io.service_time),
            wait_time: blkio(io.wait_time),
            merged: blkio(io.merged),
            time: blkio(io.time),
            sectors: blkio(io.sectors),
        },
        hugetlb: hugetlb
            .into_iter()
            .map(|(size, h)| {
                (
                    size,
                    HugetlbStats {
                        usage: h.usage,
                        max_usage: h.max_usage,
                        fail_count: h.fail_count,
                    },
                )
            })
            .collect(),
    }
}

/// The `oom_kill` counter of a `memory.events` text.
pub fn oom_kill_count(memory_events: &str) -> u64 {
    memory_events
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One container's OOM-kill counter (`oom_kill` in its `memory.events`), with the count
/// already reported. Each kill is reported once, whoever looks first: the inotify watcher
/// ([`watch_oom`]) or the last look before the cgroup is removed ([`OomCounter::grew`]).
#[derive(Debug)]
pub struct OomCounter {
    events: PathBuf,
    reported: std::sync::atomic::AtomicU64,
}

impl OomCounter {
    /// Starts counting from the file's current count (zero when it cannot be read): call
    /// it before the container's workload runs so that no kill is taken for the baseline.
    pub fn new(events: PathBuf) -> Self {
        let reported = std::fs::read_to_string(&events)
            .map(|t| oom_kill_count(&t))
            .unwrap_or(0);
        Self {
            events,
            reported: std::sync::atomic::AtomicU64::new(reported),
        }
    }

    /// The `memory.events` file counted.
    pub fn path(&self) -> &Path {
        &self.events
    }

    /// Reads the counter; true when it grew since the last report (the growth is then
    /// taken as reported). `None` when the file is gone.
    pub fn grew(&self) -> Option<bool> {
        let now = oom_kill_count(&std::fs::read_to_string(&self.events).ok()?);
        let before = self
            .reported
            .fetch_max(now, std::sync::atomic::Ordering::AcqRel);
        Some(now > before)
    }
}

/// Watches one container's `memory.events` with inotify and calls `on_oom` each time the
/// `oom_kill` counter grows, including growth between the counter's baseline and the
/// watch. Runs until the file disappears or the task is aborted.
pub async fn watch_oom(counter: Arc<OomCounter>, mut on_oom: impl FnMut()) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let inotify = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "inotify_init: OOM events unavailable");
            return;
        }
    };
    if let Err(e) = inotify.add_watch(counter.path(), AddWatchFlags::IN_MODIFY) {
        tracing::debug!(path = %counter.path().display(), error = %e, "no memory.events: OOM events unavailable");
        return;
    }
    struct InotifyFd(Inotify);
    impl std::os::fd::AsRawFd for InotifyFd {
        fn as_raw_fd(&self) -> std::os::fd::RawFd {
            use std::os::fd::AsFd;
            self.0.as_fd().as_raw_fd()
        }
    }
    // SAFETY: the inotify fd is owned by the wrapper and stays open, the same fd, for
    // the AsyncFd's whole life.
    let fd = match unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            InotifyFd(inotify),
            tokio::io::Interest::READABLE,
        )
    } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "inotify registration");
            return;
        }
    };
    loop {
        // Looked at before each wait: a kill between the baseline and the watch, or
        // between two events, is not lost.
        match counter.grew() {
            Some(true) => on_oom(),
            Some(false) => {}
            None => return,
        }
        let mut ready = match fd.readable().await {
            Ok(r) => r,
            Err(_) => return,
        };
        match ready.try_io(|inner| {
            inner
                .get_ref()
                .0
                .read_events()
                .map_err(std::io::Error::from)
        }) {
            Ok(Ok(_events)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(Err(_)) => return,
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_paths_stay_below_the_root() {
        assert_eq!(
            cgroup_path_for("c1", None).unwrap(),
            PathBuf::from("/hull/c1")
        );
        assert_eq!(
            cgroup_path_for("c1", Some(Path::new("/kubepods/pod1/c1"))).unwrap(),
            PathBuf::from("/kubepods/pod1/c1")
        );
        assert_eq!(
            cgroup_path_for("c1", Some(Path::new("kubepods.slice:cri-containerd:c1"))).unwrap(),
            PathBuf::from("/kubepods.slice/cri-containerd-c1")
        );
        assert!(cgroup_path_for("c1", Some(Path::new("/a/../../etc"))).is_err());
        assert!(cgroup_path_for("c1", Some(Path::new("/"))).is_err());
    }

    #[test]
    fn library_stats_become_hull_stats_figure_by_figure() {
        use libcgroups::stats as lib;
        let mut stats = lib::Stats::default();
        stats.cpu.usage.usage_total = 1;
        stats.cpu.usage.usage_user = 2;
        stats.cpu.usage.usage_kernel = 3;
        stats.cpu.usage.per_core_usage_total = vec![4, 5];
        stats.cpu.throttling.periods = 6;
        stats.cpu.throttling.throttled_periods = 7;
        stats.cpu.throttling.throttled_time = 8;
        stats.memory.memory = lib::MemoryData {
            usage: 9,
            max_usage: 10,
            fail_count: 11,
            limit: 12,
        };
        stats.memory.memswap.usage = 13;
        stats.memory.kernel.limit = 14;
        stats.memory.cache = 15;
        stats.memory.hierarchy = true;
        stats.memory.stats.insert("anon".into(), 16);
        stats.pids.current = 17;
        stats.pids.limit = 18;
        let entry = |value| lib::BlkioDeviceStat {
            major: 254,
            minor: 1,
            op_type: Some("Read".into()),
            value,
        };
        stats.blkio.service_bytes = vec![entry(19)];
        stats.blkio.serviced = vec![entry(20)];
        stats.blkio.queued = vec![entry(21)];
        stats.blkio.service_time = vec![entry(22)];
        stats.blkio.wait_time = vec![entry(23)];
        stats.blkio.merged = vec![entry(24)];
        stats.blkio.time = vec![entry(25)];
        stats.blkio.sectors = vec![lib::BlkioDeviceStat {
            op_type: None,
            ..entry(26)
        }];
        stats.hugetlb.insert(
            "2MB".into(),
            lib::HugeTlbStats {
                usage: 27,
                max_usage: 28,
                fail_count: 29,
            },
        );

        let hull = from_library(stats);
        assert_eq!(
            hull.cpu,
            CpuStats {
                // Microseconds from cgroup v2, nanoseconds in hull's figures.
                total_ns: 1_000,
                user_ns: 2_000,
                kernel_ns: 3_000,
                per_cpu_ns: vec![4, 5],
                throttling: CpuThrottling {
                    periods: 6,
                    throttled_periods: 7,
                    throttled_ns: 8_000,
                },
            }
        );
        assert_eq!(
            hull.memory.usage,
            MemoryCounter {
                usage: 9,
                max_usage: 10,
                fail_count: 11,
                limit: 12,
            }
        );
        assert_eq!(hull.memory.swap.usage, 13);
        assert_eq!(hull.memory.kernel.limit, 14);
        assert_eq!(hull.memory.cache, 15);
        assert!(hull.memory.hierarchy);
        assert_eq!(hull.memory.stats["anon"], 16);
        assert_eq!(
            hull.pids,
            PidsStats {
                current: 17,
                limit: 18,
            }
        );
        let values = |list: &[BlkioEntry]| list.iter().map(|e| e.value).collect::<Vec<_>>();
        let b = &hull.blkio;
        assert_eq!(values(&b.service_bytes), vec![19]);
        assert_eq!(values(&b.serviced), vec![20]);
        assert_eq!(values(&b.queued), vec![21]);
        assert_eq!(values(&b.service_time), vec![22]);
        assert_eq!(values(&b.wait_time), vec![23]);
        assert_eq!(values(&b.merged), vec![24]);
        assert_eq!(values(&b.time), vec![25]);
        assert_eq!(
            b.service_bytes[0],
            BlkioEntry {
                major: 254,
                minor: 1,
                op: "Read".into(),
                value: 19,
            }
        );
        assert_eq!(b.sectors[0].op, "");
        assert_eq!(
            hull.hugetlb["2MB"],
            HugetlbStats {
                usage: 27,
                max_usage: 28,
                fail_count: 29,
            }
        );
    }

    #[test]
    fn oom_kill_is_read_from_memory_events() {
        let text = "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(text), 2);
        assert_eq!(oom_kill_count("oom 1\n"), 0);
    }

    #[tokio::test]
    async fn a_growing_oom_kill_counter_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "oom 0\noom_kill 0\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(watch_oom(
            Arc::new(OomCounter::new(events.clone())),
            move || {
                let _ = tx.send(());
            },
        ));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // A change that is not an OOM kill is not reported.
        std::fs::write(&events, "oom 1\noom_kill 0\n").unwrap();
        std::fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("an OOM event")
            .unwrap();
        assert!(rx.try_recv().is_err(), "one kill, one event");
        task.abort();
    }

    #[tokio::test]
    async fn a_kill_before_the_watch_starts_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "oom 0\noom_kill 0\n").unwrap();
        let counter = Arc::new(OomCounter::new(events.clone()));
        // The kill lands after the baseline but before the watcher's task first runs.
        std::fs::write(&events, "oom 1\noom_kill 1\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(watch_oom(counter.clone(), move || {
            let _ = tx.send(());
        }));
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("an OOM event for the early kill")
            .unwrap();
        // The last look before removal finds nothing new: the kill was reported once.
        assert_eq!(counter.grew(), Some(false));
        task.abort();
    }

    #[test]
    fn the_last_look_reports_a_kill_the_watcher_did_not_see() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "oom_kill 2\n").unwrap();
        let counter = OomCounter::new(events.clone());
        assert_eq!(counter.grew(), Some(false), "the baseline is not a kill");
        std::fs::write(&events, "oom_kill 3\n").unwrap();
        assert_eq!(counter.grew(), Some(true));
        assert_eq!(counter.grew(), Some(false));
        std::fs::remove_file(&events).unwrap();
        assert_eq!(counter.grew(), None);
    }
}

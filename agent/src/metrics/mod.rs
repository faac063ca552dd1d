//! `GetMetrics`: the guest's and the agent's figures in the Prometheus text format, under
//! the names kata-agent gives them, so kata-monitor (which scrapes every sandbox's agent
//! through the runtime and adds the sandbox's labels) and dashboards made for Kata read
//! hull's the same way.
//!
//! | family | labels | what, from where |
//! | --- | --- | --- |
//! | `kata_agent_scrape_count` (counter) | | `GetMetrics` calls answered |
//! | `kata_agent_threads` | | the agent's threads (`/proc/self/stat`) |
//! | `kata_agent_total_time` | | its user + system CPU time, seconds |
//! | `kata_agent_total_vm` | | its virtual memory, bytes |
//! | `kata_agent_total_rss` | | its resident set, bytes |
//! | `kata_agent_proc_status` | `item` | `/proc/self/status` memory figures (kB) and context switches |
//! | `kata_agent_io_stat` | `item` | `/proc/self/io` (when the kernel keeps I/O accounting) |
//! | `kata_agent_proc_stat` | `item` | `utime`, `stime`, `cutime`, `cstime` in clock ticks |
//! | `kata_guest_load` | `item` | `load1`, `load5`, `load15` (`/proc/loadavg`) |
//! | `kata_guest_tasks` | `item` | `cur` runnable, `max` existing tasks (`/proc/loadavg`) |
//! | `kata_guest_cpu_time` | `cpu`, `item` | per CPU and `total`: user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice, ms (`/proc/stat`) |
//! | `kata_guest_vm_stat` | `item` | every `/proc/vmstat` counter |
//! | `kata_guest_netdev_stat` | `interface`, `item` | `/proc/net/dev`: recv_* and sent_* |
//! | `kata_guest_diskstat` | `disk`, `item` | `/proc/diskstats` |
//! | `kata_guest_meminfo` | `item` | `/proc/meminfo`, bytes (page counts as they are) |
//! | `kata_guest_filesystem_bytes` | `mount`, `device`, `item` | writable ext4, xfs, btrfs, vfat and overlay mounts: total, used, available |
//! | `kata_guest_filesystem_inodes` | `mount`, `device`, `item` | the same in inodes |
//!
//! Every family is a gauge but the scrape count. Items and units are kata-agent's: the
//! meminfo items are its fixed list (0 where this kernel has no such line), a filesystem's
//! `available` is its free blocks (`f_bfree`), as kata-agent reports it. A `/proc` file
//! that cannot be read leaves its families out (logged), as kata-agent does; nothing fails
//! the call. Every call reads `/proc` afresh: a disk or interface that went away is gone
//! from the next answer.

pub mod exposition;
pub mod proc;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hull_common::mountinfo;
use nix::unistd::{SysconfVar, sysconf};

use exposition::{Family, Kind, Value};

/// kata-agent's `/proc/meminfo` items, each with the line it comes from.
pub const MEMINFO_ITEMS: &[(&str, &str)] = &[
    ("mem_total", "MemTotal"),
    ("mem_free", "MemFree"),
    ("mem_available", "MemAvailable"),
    ("buffers", "Buffers"),
    ("cached", "Cached"),
    ("swap_cached", "SwapCached"),
    ("active", "Active"),
    ("inactive", "Inactive"),
    ("active_anon", "Active(anon)"),
    ("inactive_anon", "Inactive(anon)"),
    ("active_file", "Active(file)"),
    ("inactive_file", "Inactive(file)"),
    ("unevictable", "Unevictable"),
    ("mlocked", "Mlocked"),
    ("high_total", "HighTotal"),
    ("high_free", "HighFree"),
    ("low_total", "LowTotal"),
    ("low_free", "LowFree"),
    ("mmap_copy", "MmapCopy"),
    ("swap_total", "SwapTotal"),
    ("swap_free", "SwapFree"),
    ("dirty", "Dirty"),
    ("writeback", "Writeback"),
    ("anon_pages", "AnonPages"),
    ("mapped", "Mapped"),
    ("shmem", "Shmem"),
    ("slab", "Slab"),
    ("s_reclaimable", "SReclaimable"),
    ("s_unreclaim", "SUnreclaim"),
    ("kernel_stack", "KernelStack"),
    ("page_tables", "PageTables"),
    ("quicklists", "Quicklists"),
    ("nfs_unstable", "NFS_Unstable"),
    ("bounce", "Bounce"),
    ("writeback_tmp", "WritebackTmp"),
    ("commit_limit", "CommitLimit"),
    ("committed_as", "Committed_AS"),
    ("vmalloc_total", "VmallocTotal"),
    ("vmalloc_used", "VmallocUsed"),
    ("vmalloc_chunk", "VmallocChunk"),
    ("hardware_corrupted", "HardwareCorrupted"),
    ("anon_hugepages", "AnonHugePages"),
    ("shmem_hugepages", "ShmemHugePages"),
    ("shmem_pmd_mapped", "ShmemPmdMapped"),
    ("cma_total", "CmaTotal"),
    ("cma_free", "CmaFree"),
    ("hugepages_total", "HugePages_Total"),
    ("hugepages_free", "HugePages_Free"),
    ("hugepages_rsvd", "HugePages_Rsvd"),
    ("hugepages_surp", "HugePages_Surp"),
    ("hugepagesize", "Hugepagesize"),
    ("direct_map_4k", "DirectMap4k"),
    ("direct_map_4M", "DirectMap4M"),
    ("direct_map_2M", "DirectMap2M"),
    ("direct_map_1G", "DirectMap1G"),
    ("hugetlb", "Hugetlb"),
    ("per_cpu", "Percpu"),
    ("k_reclaimable", "KReclaimable"),
];

/// The `cpu` items, in `/proc/stat`'s order.
const CPU_ITEMS: [&str; proc::CPU_FIELDS] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
];

/// The disk items, in `/proc/diskstats`' order.
const DISK_ITEMS: [&str; proc::DISK_FIELDS] = [
    "reads",
    "merged",
    "sectors_read",
    "time_reading",
    "writes",
    "writes_merged",
    "sectors_written",
    "time_writing",
    "in_progress",
    "time_in_progress",
    "weighted_time_in_progress",
    "discards",
    "discards_merged",
    "sectors_discarded",
    "time_discarding",
    "flushes",
    "time_flushing",
];

/// The interface items, in `/proc/net/dev`'s order.
const NETDEV_ITEMS: [&str; proc::NETDEV_FIELDS] = [
    "recv_bytes",
    "recv_packets",
    "recv_errs",
    "recv_drop",
    "recv_fifo",
    "recv_frame",
    "recv_compressed",
    "recv_multicast",
    "sent_bytes",
    "sent_packets",
    "sent_errs",
    "sent_drop",
    "sent_fifo",
    "sent_colls",
    "sent_carrier",
    "sent_compressed",
];

/// The agent's `/proc/self/status` lines reported, as kata-agent names them.
const STATUS_ITEMS: &[(&str, &str)] = &[
    ("vmpeak", "VmPeak"),
    ("vmsize", "VmSize"),
    ("vmlck", "VmLck"),
    ("vmpin", "VmPin"),
    ("vmhwm", "VmHWM"),
    ("vmrss", "VmRSS"),
    ("rssanon", "RssAnon"),
    ("rssfile", "RssFile"),
    ("rssshmem", "RssShmem"),
    ("vmdata", "VmData"),
    ("vmstk", "VmStk"),
    ("vmexe", "VmExe"),
    ("vmlib", "VmLib"),
    ("vmpte", "VmPTE"),
    ("vmswap", "VmSwap"),
    ("hugetlbpages", "HugetlbPages"),
    ("voluntary_ctxt_switches", "voluntary_ctxt_switches"),
    ("nonvoluntary_ctxt_switches", "nonvoluntary_ctxt_switches"),
];

/// The agent's `/proc/self/io` lines reported.
const IO_ITEMS: &[&str] = &[
    "rchar",
    "wchar",
    "syscr",
    "syscw",
    "read_bytes",
    "write_bytes",
    "cancelled_write_bytes",
];

/// File systems whose space is reported (kata-agent's list).
const FILESYSTEM_TYPES: &[&str] = &["ext4", "xfs", "btrfs", "vfat", "overlay"];

/// The metrics source: where `/proc` is, and the scrape counter.
#[derive(Debug)]
pub struct Metrics {
    proc_root: &'static Path,
    scrapes: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Reads the system's `/proc`.
    pub fn new() -> Self {
        Self {
            proc_root: Path::new("/proc"),
            scrapes: AtomicU64::new(0),
        }
    }

    /// Counts a scrape and returns every figure in the text format.
    pub fn gather(&self) -> String {
        let scrapes = self.scrapes.fetch_add(1, Ordering::Relaxed) + 1;
        exposition::encode(&self.families(scrapes))
    }

    /// The families of one scrape, in name order.
    pub fn families(&self, scrapes: u64) -> Vec<Family> {
        let mut scrape_count = Family::new(
            "kata_agent_scrape_count",
            "GetMetrics calls this agent has answered.",
            Kind::Counter,
            &[],
        );
        scrape_count.push(&[], Value::Int(scrapes));
        let mut families = vec![scrape_count];
        families.extend(self.agent_families());
        families.extend(self.guest_families());
        families.sort_by_key(Family::name);
        families
    }

    fn read(&self, relative: &str) -> Option<String> {
        let path = self.proc_root.join(relative);
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "metrics: cannot read");
                None
            }
        }
    }

    fn agent_families(&self) -> Vec<Family> {
        let mut families = Vec::new();
        if let Some(stat) = self
            .read("self/stat")
            .as_deref()
            .and_then(proc::process_stat)
        {
            let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
            let page = sysconf(SysconfVar::PAGE_SIZE)
                .ok()
                .flatten()
                .unwrap_or(4096);
            let single = |name, help, value| {
                let mut family = Family::new(name, help, Kind::Gauge, &[]);
                family.push(&[], value);
                family
            };
            families.push(single(
                "kata_agent_threads",
                "Threads of the agent process.",
                Value::Int(stat.num_threads),
            ));
            families.push(single(
                "kata_agent_total_time",
                "CPU time of the agent process, user and system, in seconds.",
                Value::Float((stat.utime + stat.stime) as f64 / ticks.max(1) as f64),
            ));
            families.push(single(
                "kata_agent_total_vm",
                "Virtual memory size of the agent process, in bytes.",
                Value::Int(stat.vsize),
            ));
            families.push(single(
                "kata_agent_total_rss",
                "Resident set size of the agent process, in bytes.",
                Value::Int(stat.rss.saturating_mul(u64::try_from(page).unwrap_or(4096))),
            ));
            let mut times = Family::new(
                "kata_agent_proc_stat",
                "CPU times of the agent process and its waited-for children, in clock ticks.",
                Kind::Gauge,
                &["item"],
            );
            for (item, value) in [
                ("utime", stat.utime),
                ("stime", stat.stime),
                ("cutime", stat.cutime),
                ("cstime", stat.cstime),
            ] {
                times.push(&[item], Value::Int(value));
            }
            families.push(times);
        }
        if let Some(text) = self.read("self/status") {
            let found = proc::process_status(&text);
            let mut status = Family::new(
                "kata_agent_proc_status",
                "Memory figures (kB) and context switches of the agent process, from its status.",
                Kind::Gauge,
                &["item"],
            );
            for (item, key) in STATUS_ITEMS {
                status.push(&[item], Value::Int(lookup(&found, key)));
            }
            families.push(status);
        }
        if let Some(text) = self.read("self/io") {
            let found = proc::key_values(&text);
            let mut io = Family::new(
                "kata_agent_io_stat",
                "I/O counters of the agent process.",
                Kind::Gauge,
                &["item"],
            );
            for item in IO_ITEMS {
                io.push(&[item], Value::Int(lookup(&found, item)));
            }
            families.push(io);
        }
        families
    }

    fn guest_families(&self) -> Vec<Family> {
        let mut families = Vec::new();
        if let Some(load) = self.read("loadavg").as_deref().and_then(proc::loadavg) {
            let mut averages = Family::new(
                "kata_guest_load",
                "Load averages of the guest over 1, 5 and 15 minutes.",
                Kind::Gauge,
                &["item"],
            );
            for (item, value) in ["load1", "load5", "load15"].iter().zip(load.averages) {
                averages.push(&[item], Value::Float(value));
            }
            families.push(averages);
            let mut tasks = Family::new(
                "kata_guest_tasks",
                "Tasks of the guest: runnable now (cur) and existing (max).",
                Kind::Gauge,
                &["item"],
            );
            tasks.push(&["cur"], Value::Int(load.running));
            tasks.push(&["max"], Value::Int(load.total));
            families.push(tasks);
        }
        if let Some(text) = self.read("stat") {
            let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100);
            let ticks = u64::try_from(ticks).unwrap_or(100).max(1);
            let mut cpu = Family::new(
                "kata_guest_cpu_time",
                "CPU time of the guest per CPU and in total, in milliseconds.",
                Kind::Gauge,
                &["cpu", "item"],
            );
            for times in proc::cpu_times(&text) {
                for (item, value) in CPU_ITEMS.iter().zip(times.ticks) {
                    let ms = u128::from(value) * 1000 / u128::from(ticks);
                    cpu.push(
                        &[times.cpu, item],
                        Value::Int(u64::try_from(ms).unwrap_or(u64::MAX)),
                    );
                }
            }
            families.push(cpu);
        }
        if let Some(text) = self.read("vmstat") {
            let mut vmstat = Family::new(
                "kata_guest_vm_stat",
                "Virtual memory counters of the guest (/proc/vmstat).",
                Kind::Gauge,
                &["item"],
            );
            for (item, value) in proc::key_values(&text) {
                vmstat.push(&[item], Value::Int(value));
            }
            families.push(vmstat);
        }
        if let Some(text) = self.read("net/dev") {
            let mut netdev = Family::new(
                "kata_guest_netdev_stat",
                "Network interface counters of the guest.",
                Kind::Gauge,
                &["interface", "item"],
            );
            for dev in proc::net_dev(&text) {
                for (item, value) in NETDEV_ITEMS.iter().zip(dev.fields) {
                    netdev.push(&[dev.name, item], Value::Int(value));
                }
            }
            families.push(netdev);
        }
        if let Some(text) = self.read("diskstats") {
            let mut disks = Family::new(
                "kata_guest_diskstat",
                "Block device counters of the guest (/proc/diskstats).",
                Kind::Gauge,
                &["disk", "item"],
            );
            for disk in proc::diskstats(&text) {
                for (item, value) in DISK_ITEMS.iter().zip(disk.fields) {
                    disks.push(&[disk.name, item], Value::Int(value));
                }
            }
            families.push(disks);
        }
        if let Some(text) = self.read("meminfo") {
            let found = proc::meminfo(&text);
            let mut meminfo = Family::new(
                "kata_guest_meminfo",
                "Memory of the guest (/proc/meminfo), in bytes; page counts as they are.",
                Kind::Gauge,
                &["item"],
            );
            for (item, key) in MEMINFO_ITEMS {
                meminfo.push(&[item], Value::Int(lookup(&found, key)));
            }
            families.push(meminfo);
        }
        families.extend(self.filesystem_families());
        families
    }

    fn filesystem_families(&self) -> [Family; 2] {
        let mut bytes = Family::new(
            "kata_guest_filesystem_bytes",
            "Space of the guest's writable file systems, in bytes.",
            Kind::Gauge,
            &["mount", "device", "item"],
        );
        let mut inodes = Family::new(
            "kata_guest_filesystem_inodes",
            "Inodes of the guest's writable file systems.",
            Kind::Gauge,
            &["mount", "device", "item"],
        );
        let Some(text) = self.read("self/mountinfo") else {
            return [bytes, inodes];
        };
        let mut seen = HashSet::new();
        for entry in mountinfo::parse_lenient(text.as_bytes()) {
            if !FILESYSTEM_TYPES.contains(&entry.fstype.as_str())
                || entry.super_options.split(',').any(|o| o == "ro")
                || !seen.insert((entry.major, entry.minor))
            {
                continue;
            }
            let mount_point = entry.mount_point_path();
            let stat = match nix::sys::statfs::statfs(&mount_point) {
                Ok(stat) => stat,
                Err(errno) => {
                    tracing::debug!(mount = %mount_point.display(), %errno, "metrics: statfs");
                    continue;
                }
            };
            let device = match entry.source.rsplit('/').next() {
                Some(last) if !last.is_empty() => last.to_owned(),
                _ => entry.device(),
            };
            let mount = mount_point.to_string_lossy();
            let block = u64::try_from(stat.block_size()).unwrap_or(0);
            let total = stat.blocks().saturating_mul(block);
            let free = stat.blocks_free().saturating_mul(block);
            for (item, value) in [
                ("total", total),
                ("used", total.saturating_sub(free)),
                ("available", free),
            ] {
                bytes.push(&[&mount, &device, item], Value::Int(value));
            }
            let (files, files_free) = (stat.files(), stat.files_free());
            for (item, value) in [
                ("total", files),
                ("used", files.saturating_sub(files_free)),
                ("available", files_free),
            ] {
                inodes.push(&[&mount, &device, item], Value::Int(value));
            }
        }
        [bytes, inodes]
    }
}

/// The value of `key`, 0 when this kernel has no such line.
fn lookup(found: &[(&str, u64)], key: &str) -> u64 {
    found
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(0, |(_, value)| *value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The families kata-agent answers on any Linux guest (`kata_agent_io_stat` needs
    /// the kernel's I/O accounting, the filesystem ones a writable disk).
    const ALWAYS: &[&str] = &[
        "kata_agent_proc_stat",
        "kata_agent_proc_status",
        "kata_agent_scrape_count",
        "kata_agent_threads",
        "kata_agent_total_rss",
        "kata_agent_total_time",
        "kata_agent_total_vm",
        "kata_guest_cpu_time",
        "kata_guest_diskstat",
        "kata_guest_load",
        "kata_guest_meminfo",
        "kata_guest_netdev_stat",
        "kata_guest_tasks",
        "kata_guest_vm_stat",
    ];

    #[test]
    fn this_machines_proc_gives_every_family_in_name_order() {
        let metrics = Metrics::new();
        let families = metrics.families(1);
        let names: Vec<&str> = families
            .iter()
            .filter(|f| !f.is_empty())
            .map(Family::name)
            .collect();
        for wanted in ALWAYS {
            assert!(names.contains(wanted), "{wanted} missing from {names:?}");
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        for family in &families {
            assert!(
                exposition::is_valid_name(family.name()),
                "{}",
                family.name()
            );
        }
        let meminfo = families
            .iter()
            .find(|f| f.name() == "kata_guest_meminfo")
            .unwrap();
        assert_eq!(meminfo.len(), MEMINFO_ITEMS.len());
    }

    #[test]
    fn the_text_is_well_formed_and_the_scrapes_are_counted() {
        let metrics = Metrics::new();
        metrics.gather();
        let text = metrics.gather();
        assert!(text.contains("\nkata_agent_scrape_count 2\n"), "{text}");
        assert!(text.contains("# TYPE kata_agent_scrape_count counter\n"));
        assert!(text.contains("# TYPE kata_guest_meminfo gauge\n"));
        assert!(text.contains("kata_guest_meminfo{item=\"mem_total\"} "));
        assert!(text.contains("kata_guest_cpu_time{cpu=\"total\",item=\"user\"} "));
        assert!(text.contains("kata_guest_netdev_stat{interface=\"lo\",item=\"recv_bytes\"} "));
        // Every line: a comment, or `name{labels} value` with a number for a value.
        let mut typed = HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(matches!(kind, "gauge" | "counter"), "{line}");
                assert!(typed.insert(name.to_owned()), "TYPE twice: {line}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap();
            assert!(typed.contains(name), "sample before its TYPE: {line}");
        }
    }

    #[test]
    fn meminfo_items_are_kata_agents() {
        let items: HashSet<&str> = MEMINFO_ITEMS.iter().map(|(item, _)| *item).collect();
        assert_eq!(items.len(), MEMINFO_ITEMS.len(), "an item twice");
        for item in [
            "mem_total",
            "mem_available",
            "direct_map_4M",
            "k_reclaimable",
        ] {
            assert!(items.contains(item), "{item}");
        }
        assert_eq!(MEMINFO_ITEMS.len(), 58);
    }
}

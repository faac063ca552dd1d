//! Parsers of the `/proc` files the metrics come from, on their text (formats in
//! proc(5) and the kernel's Documentation/admin-guide/iostats.rst). Each is lenient the
//! way a scraper must be: a line it cannot read is skipped, a field a kernel does not
//! have yet is 0, and fields a newer kernel adds are ignored.

/// `/proc/meminfo`: `(key, value)`, values with a `kB` unit in bytes, others (page
/// counts such as `HugePages_Total`) as they are.
pub fn meminfo(text: &str) -> Vec<(&str, u64)> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let mut words = rest.split_whitespace();
            let value: u64 = words.next()?.parse().ok()?;
            let value = match words.next() {
                Some("kB") => value.saturating_mul(1024),
                _ => value,
            };
            Some((key.trim(), value))
        })
        .collect()
}

/// `/proc/vmstat` and other `key value` files (`/proc/self/io` has `key: value`).
pub fn key_values(text: &str) -> Vec<(&str, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let key = words.next()?.trim_end_matches(':');
            let value = words.next()?.parse().ok()?;
            Some((key, value))
        })
        .collect()
}

/// The fields of a `cpu` line of `/proc/stat`, in clock ticks, in the kernel's order:
/// user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice.
pub const CPU_FIELDS: usize = 10;

/// One `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuTimes<'a> {
    /// `total` for the first line (all CPUs), else the CPU's number (`0` of `cpu0`).
    pub cpu: &'a str,
    /// Ticks per field, see [`CPU_FIELDS`].
    pub ticks: [u64; CPU_FIELDS],
}

/// The `cpu` lines of `/proc/stat`.
pub fn cpu_times(text: &str) -> Vec<CpuTimes<'_>> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let cpu = match words.next()?.strip_prefix("cpu")? {
                "" => "total",
                n if n.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return None,
            };
            Some(CpuTimes {
                cpu,
                ticks: numbers(words)?,
            })
        })
        .collect()
}

/// The statistics of a line of `/proc/diskstats`, in the kernel's order: reads, reads
/// merged, sectors read, ms reading, writes, writes merged, sectors written, ms writing,
/// I/Os in progress, ms doing I/O, weighted ms doing I/O; discards, discards merged,
/// sectors discarded, ms discarding (4.18+); flushes, ms flushing (5.5+).
pub const DISK_FIELDS: usize = 17;

/// One line of `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStats<'a> {
    /// The device's name, e.g. `vda`.
    pub name: &'a str,
    /// See [`DISK_FIELDS`].
    pub fields: [u64; DISK_FIELDS],
}

/// The lines of `/proc/diskstats`.
pub fn diskstats(text: &str) -> Vec<DiskStats<'_>> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let _major = words.next()?;
            let _minor = words.next()?;
            let name = words.next()?;
            Some(DiskStats {
                name,
                fields: numbers(words)?,
            })
        })
        .collect()
}

/// Received then sent counters of `/proc/net/dev`, in the kernel's order: bytes, packets,
/// errs, drop, fifo, frame, compressed, multicast; bytes, packets, errs, drop, fifo,
/// colls, carrier, compressed.
pub const NETDEV_FIELDS: usize = 16;

/// One interface of `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDev<'a> {
    /// The interface's name.
    pub name: &'a str,
    /// See [`NETDEV_FIELDS`].
    pub fields: [u64; NETDEV_FIELDS],
}

/// The interfaces of `/proc/net/dev` (after its two header lines; an interface name
/// cannot hold a `:`).
pub fn net_dev(text: &str) -> Vec<NetDev<'_>> {
    text.lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name.is_empty() || name.contains('|') {
                return None;
            }
            Some(NetDev {
                name,
                fields: numbers(counters.split_whitespace())?,
            })
        })
        .collect()
}

/// `/proc/loadavg`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAverage {
    /// Over 1, 5 and 15 minutes.
    pub averages: [f64; 3],
    /// Runnable tasks now.
    pub running: u64,
    /// Tasks (threads) in the system.
    pub total: u64,
}

/// `/proc/loadavg`: `0.00 0.01 0.05 1/123 456`.
pub fn loadavg(text: &str) -> Option<LoadAverage> {
    let mut words = text.split_whitespace();
    let mut averages = [0.0; 3];
    for average in &mut averages {
        *average = words.next()?.parse().ok()?;
    }
    let (running, total) = words.next()?.split_once('/')?;
    Some(LoadAverage {
        averages,
        running: running.parse().ok()?,
        total: total.parse().ok()?,
    })
}

/// What the metrics take from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessStat {
    /// User and system time, and those of waited-for children, in clock ticks.
    pub utime: u64,
    /// See `utime`.
    pub stime: u64,
    /// See `utime`.
    pub cutime: u64,
    /// See `utime`.
    pub cstime: u64,
    /// Threads.
    pub num_threads: u64,
    /// Virtual memory size, bytes.
    pub vsize: u64,
    /// Resident set, pages.
    pub rss: u64,
}

/// `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses: the
/// fields are counted from the last `)`.
pub fn process_stat(text: &str) -> Option<ProcessStat> {
    let (_, rest) = text.rsplit_once(')')?;
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> {
        let word = fields.get(n.checked_sub(3)?)?;
        // cutime and cstime are signed in the kernel's format; negative reads as 0.
        word.parse::<u64>()
            .ok()
            .or_else(|| word.parse::<i64>().ok().map(|_| 0))
    };
    Some(ProcessStat {
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
        num_threads: field(20)?,
        vsize: field(23)?,
        rss: field(24)?,
    })
}

/// `/proc/PID/status`: the numeric `Key:\tvalue [kB]` lines, values as printed (kB for
/// the memory figures).
pub fn process_status(text: &str) -> Vec<(&str, u64)> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((key, value))
        })
        .collect()
}

/// The first `N` numbers of `words`; missing ones are 0, a word that is not a number
/// makes the line unreadable.
fn numbers<'a, const N: usize>(words: impl Iterator<Item = &'a str>) -> Option<[u64; N]> {
    let mut values = [0; N];
    for (value, word) in values.iter_mut().zip(words) {
        *value = word.parse().ok()?;
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:         123456 kB\nMemFree:           1000 kB\n\
        Active(anon):        12 kB\nHugePages_Total:       3\nHugepagesize:       2048 kB\n\
        garbage line\nDirectMap4k:       8192 kB\n";

    #[test]
    fn meminfo_in_bytes_and_counts() {
        assert_eq!(
            meminfo(MEMINFO),
            [
                ("MemTotal", 123_456 * 1024),
                ("MemFree", 1_024_000),
                ("Active(anon)", 12 * 1024),
                ("HugePages_Total", 3),
                ("Hugepagesize", 2048 * 1024),
                ("DirectMap4k", 8192 * 1024),
            ]
        );
    }

    #[test]
    fn vmstat_and_io_lines() {
        let vmstat = "nr_free_pages 12345\nnr_zone_inactive_anon 0\npgfault 99\nbroken\n";
        assert_eq!(
            key_values(vmstat),
            [
                ("nr_free_pages", 12345),
                ("nr_zone_inactive_anon", 0),
                ("pgfault", 99)
            ]
        );
        let io = "rchar: 1948\nwchar: 0\nsyscr: 7\nsyscw: 0\nread_bytes: 4096\n\
                  write_bytes: 0\ncancelled_write_bytes: 0\n";
        let parsed = key_values(io);
        assert_eq!(parsed.len(), 7);
        assert_eq!(parsed[0], ("rchar", 1948));
        assert_eq!(parsed[4], ("read_bytes", 4096));
    }

    #[test]
    fn cpu_lines_of_proc_stat() {
        let stat = "cpu  10 1 20 300 4 0 5 0 0 0\ncpu0 5 1 10 150 2 0 3 0 0 0\n\
                    cpu1 5 0 10 150 2 0 2 0\nintr 1234 0 0\nctxt 999\ncpufreq 1\nbtime 1700000000\n";
        let cpus = cpu_times(stat);
        assert_eq!(cpus.len(), 3);
        assert_eq!(cpus[0].cpu, "total");
        assert_eq!(cpus[0].ticks, [10, 1, 20, 300, 4, 0, 5, 0, 0, 0]);
        assert_eq!(cpus[1].cpu, "0");
        // An old kernel without guest and guest_nice: 0.
        assert_eq!(cpus[2].cpu, "1");
        assert_eq!(cpus[2].ticks[8..], [0, 0]);
    }

    #[test]
    fn diskstats_of_old_and_new_kernels() {
        let text = " 254       0 vda 388 0 20842 146 5 1 48 8 0 172 155 0 0 0 0 2 4\n\
                    \x20  7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n\
                    \x20  1       0 ram0 x 0 0\n";
        let disks = diskstats(text);
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].name, "vda");
        assert_eq!(disks[0].fields[0], 388);
        assert_eq!(disks[0].fields[2], 20842);
        assert_eq!(disks[0].fields[15..], [2, 4]);
        assert_eq!(disks[1].name, "loop0");
        assert_eq!(disks[1].fields[11..], [0; 6]);
    }

    #[test]
    fn net_dev_interfaces() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0\n  \
                    eth0:1234567  890    1    2    3     4          5         6  7654321     98    7    8    9    10      11         12\n";
        let devs = net_dev(text);
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[0].name, "lo");
        assert_eq!(devs[0].fields[0], 140);
        assert_eq!(devs[1].name, "eth0");
        assert_eq!(
            devs[1].fields,
            [
                1234567, 890, 1, 2, 3, 4, 5, 6, 7654321, 98, 7, 8, 9, 10, 11, 12
            ]
        );
    }

    #[test]
    fn load_averages() {
        let load = loadavg("0.15 1.00 2.50 3/123 4567\n").unwrap();
        assert_eq!(load.averages, [0.15, 1.0, 2.5]);
        assert_eq!((load.running, load.total), (3, 123));
        assert!(loadavg("0.15 1.00\n").is_none());
        assert!(loadavg("a b c 1/2 3").is_none());
    }

    #[test]
    fn process_stat_with_a_hostile_name() {
        // Field 2 is "(a) b) c)": spaces and parentheses in the command name.
        let text = "42 (a) b) c) S 1 42 42 0 -1 4194560 500 0 0 0 7 3 -2 0 20 0 6 0 100 \
                    12345678 900 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        let stat = process_stat(text).unwrap();
        assert_eq!(
            stat,
            ProcessStat {
                utime: 7,
                stime: 3,
                cutime: 0,
                cstime: 0,
                num_threads: 6,
                vsize: 12_345_678,
                rss: 900,
            }
        );
        assert!(process_stat("42 (x) S 1 2").is_none());
        assert!(process_stat("no parenthesis").is_none());
    }

    #[test]
    fn process_status_numbers() {
        let text = "Name:\thull-agent\nState:\tS (sleeping)\nVmPeak:\t   12345 kB\n\
                    VmRSS:\t    4000 kB\nThreads:\t6\nSigQ:\t0/1000\n\
                    voluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(
            process_status(text),
            [
                ("VmPeak", 12345),
                ("VmRSS", 4000),
                ("Threads", 6),
                ("voluntary_ctxt_switches", 150),
                ("nonvoluntary_ctxt_switches", 3),
            ]
        );
    }
}

//! A container's resource figures, read from its cgroup (`Cgroup::stats` in the `cgroup`
//! module, which builds on these types).
//!
//! These are hull's own types, so that users of the container layer (the agent's
//! `StatsContainer`, tools) do not depend on the cgroup library behind it. They hold what
//! Kata's `CgroupStats` message carries, in the units the kernel reports: CPU time in
//! nanoseconds, memory in bytes. A figure whose controller is not enabled reads 0.
//! Network figures are not here: containers share the sandbox's network namespace, so
//! there is nothing per container to count.

use std::collections::HashMap;

/// Everything [`crate::Containers::stats`] answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// CPU time and throttling (`cpu.stat`).
    pub cpu: CpuStats,
    /// Memory and swap use and limits (`memory.*`).
    pub memory: MemoryStats,
    /// Task count and limit (`pids.*`).
    pub pids: PidsStats,
    /// Block I/O per device (`io.stat`).
    pub blkio: BlkioStats,
    /// By page size (`2MB`, `1GB`).
    pub hugetlb: HashMap<String, HugetlbStats>,
}

/// CPU time used by the container's processes, and how often its quota held them back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// CPU time used in all, user and kernel (`usage_usec`).
    pub total_ns: u64,
    /// CPU time used in user mode (`user_usec`).
    pub user_ns: u64,
    /// CPU time used in kernel mode (`system_usec`).
    pub kernel_ns: u64,
    /// Per CPU, when the kernel reports it (cgroup v2 does not).
    pub per_cpu_ns: Vec<u64>,
    /// How often the CPU quota (`cpu.max`) held the processes back.
    pub throttling: CpuThrottling,
}

/// `cpu.stat`'s throttling counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuThrottling {
    /// Enforcement periods that have elapsed (`nr_periods`).
    pub periods: u64,
    /// Periods in which the quota ran out (`nr_throttled`).
    pub throttled_periods: u64,
    /// Time the processes spent held back (`throttled_usec`).
    pub throttled_ns: u64,
}

/// Memory in use and its limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Memory: current use, peak, failures and limit.
    pub usage: MemoryCounter,
    /// Swap.
    pub swap: MemoryCounter,
    /// Kernel memory (cgroup v1 only).
    pub kernel: MemoryCounter,
    /// Page cache.
    pub cache: u64,
    /// Whether usage counts the descendants (always on cgroup v2).
    pub hierarchy: bool,
    /// `memory.stat`, key by key.
    pub stats: HashMap<String, u64>,
}

/// One kind of memory: in bytes, `u64::MAX` for no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryCounter {
    /// Current use (`*.current`).
    pub usage: u64,
    /// Highest use seen (`*.peak`; 0 on kernels without it).
    pub max_usage: u64,
    /// How often the limit was hit: OOM events for memory, failed allocations for swap
    /// (from `*.events`).
    pub fail_count: u64,
    /// The limit (`*.max`).
    pub limit: u64,
}

/// Processes and threads in the cgroup and their limit (`u64::MAX`: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    /// Tasks now in the cgroup and its descendants (`pids.current`).
    pub current: u64,
    /// The most allowed (`pids.max`).
    pub limit: u64,
}

/// Block I/O, per device and operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioStats {
    /// Bytes read and written (`rbytes`, `wbytes` of `io.stat`).
    pub service_bytes: Vec<BlkioEntry>,
    /// Read and write operations completed (`rios`, `wios`).
    pub serviced: Vec<BlkioEntry>,
    /// Operations queued (cgroup v1 only: empty on v2).
    pub queued: Vec<BlkioEntry>,
    /// Time spent servicing operations, in nanoseconds (cgroup v1 only).
    pub service_time: Vec<BlkioEntry>,
    /// Time operations spent waiting in queues, in nanoseconds (cgroup v1 only).
    pub wait_time: Vec<BlkioEntry>,
    /// Operations merged into others (cgroup v1 only).
    pub merged: Vec<BlkioEntry>,
    /// Disk time allotted, in milliseconds (cgroup v1 only).
    pub time: Vec<BlkioEntry>,
    /// Sectors transferred (cgroup v1 only).
    pub sectors: Vec<BlkioEntry>,
}

/// One figure of one block device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    /// Major number of the device.
    pub major: u64,
    /// Minor number of the device.
    pub minor: u64,
    /// `read`, `write`, ...; empty when the figure is not per operation.
    pub op: String,
    /// The figure, in the unit of the list it is in.
    pub value: u64,
}

/// Huge pages of one size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HugetlbStats {
    /// Bytes of huge pages in use (`hugetlb.<size>.current`).
    pub usage: u64,
    /// Highest use seen, in bytes (cgroup v1 only: 0 on v2).
    pub max_usage: u64,
    /// Allocations refused by the limit (`max` of `hugetlb.<size>.events`).
    pub fail_count: u64,
}

//! A container's resource figures, read from its cgroup ([`crate::cgroup::Cgroup::stats`]).
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
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    /// By page size (`2MB`, `1GB`).
    pub hugetlb: HashMap<String, HugetlbStats>,
}

/// CPU time used by the container's processes, and how often its quota held them back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub total_ns: u64,
    pub user_ns: u64,
    pub kernel_ns: u64,
    /// Per CPU, when the kernel reports it (cgroup v2 does not).
    pub per_cpu_ns: Vec<u64>,
    pub throttling: CpuThrottling,
}

/// `cpu.stat`'s throttling counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuThrottling {
    pub periods: u64,
    pub throttled_periods: u64,
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
    pub usage: u64,
    pub max_usage: u64,
    pub fail_count: u64,
    pub limit: u64,
}

/// Processes and threads in the cgroup and their limit (`u64::MAX`: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    pub limit: u64,
}

/// Block I/O, per device and operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioStats {
    pub service_bytes: Vec<BlkioEntry>,
    pub serviced: Vec<BlkioEntry>,
    pub queued: Vec<BlkioEntry>,
    pub service_time: Vec<BlkioEntry>,
    pub wait_time: Vec<BlkioEntry>,
    pub merged: Vec<BlkioEntry>,
    pub time: Vec<BlkioEntry>,
    pub sectors: Vec<BlkioEntry>,
}

/// One figure of one block device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// `Read`, `Write`, ...; empty when the figure is not per operation.
    pub op: String,
    pub value: u64,
}

/// Huge pages of one size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HugetlbStats {
    pub usage: u64,
    pub max_usage: u64,
    pub fail_count: u64,
}

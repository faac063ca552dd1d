//! Hot-plugged vCPUs and memory: bringing them online (`OnlineCPUMem`) and adding memory
//! the kernel was not told about through the probe file (`MemHotplugByProbe`).
//!
//! A VMM hot-plugs a vCPU or a memory device (QEMU's `device_add`); with ACPI the guest
//! kernel registers it, offline. The runtime then asks the agent to online it:
//!
//! - vCPUs: `devices/system/cpu/cpuN/online` ← `1` for offline CPUs until as many CPUs
//!   are online as the runtime asked for (its `nb_cpus` is the total it wants online, as
//!   Kata's runtime sends it: the new vCPU count). A CPU may register a little after the
//!   VMM answered, so the agent looks again every [`POLL_INTERVAL`] up to its wait bound.
//! - memory: `devices/system/memory/memoryN/state` ← `online` for every offline block.
//! - without ACPI memory hot-plug the runtime writes each new block's physical address to
//!   `devices/system/memory/probe` (the kernel needs `CONFIG_ARCH_MEMORY_PROBE`), which
//!   adds the block; the agent then onlines it.
//!
//! cgroup v2 needs nothing more: a cgroup's `cpuset.cpus` keeps what was asked (CPUs not
//! yet plugged included) and the kernel recomputes `cpuset.cpus.effective` as CPUs come
//! and go, so containers' cpusets follow without rewriting them (Kata's agent rewrites
//! them for cgroup v1, which drops offline CPUs from cpusets for good).
//!
//! The code takes a sysfs root (`/sys` in a guest, a fake tree in tests).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// How often the agent looks again for vCPUs to online while waiting for them.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The least time the agent waits for the CPUs asked for (Kata's agent: 100 × 50 ms);
/// a longer `agent.hotplug_timeout` raises it.
pub const MIN_CPU_WAIT: Duration = Duration::from_secs(5);

/// Relative to the sysfs root.
const CPU_DIR: &str = "devices/system/cpu";
const MEMORY_DIR: &str = "devices/system/memory";

/// What can go wrong onlining or probing.
#[derive(Debug, thiserror::Error)]
pub enum CpuMemError {
    /// Fewer CPUs than asked for were online when the wait ran out.
    #[error(
        "{online} CPU(s) online, {wanted} asked for, after waiting {waited:?} for hot-plugged \
         CPUs to register and come online{}",
        last_error.as_ref().map(|e| format!(" (last failure: {e})")).unwrap_or_default()
    )]
    CpusTimeout {
        /// CPUs asked to be online.
        wanted: u32,
        /// CPUs online at the end.
        online: u32,
        /// How long the agent waited.
        waited: Duration,
        /// The last error onlining a CPU, if one failed.
        last_error: Option<String>,
    },
    /// The kernel refused to online a CPU or a memory block.
    #[error("onlining {what} ({}): {source}", path.display())]
    Online {
        /// `cpu3`, `memory40`.
        what: String,
        /// The sysfs file written.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// The kernel has no memory probe file (no `CONFIG_ARCH_MEMORY_PROBE`, or no memory
    /// hot-plug at all).
    #[error(
        "{} does not exist: this guest kernel cannot add memory by probe \
         (CONFIG_ARCH_MEMORY_PROBE); use ACPI memory hot-plug",
        path.display()
    )]
    NoProbeFile {
        /// The probe file looked for.
        path: PathBuf,
    },
    /// A probe address is not the start of a memory block.
    #[error("probe address {addr:#x} is not a multiple of the memory block size {block_size:#x}")]
    UnalignedProbe {
        /// The address given.
        addr: u64,
        /// The guest's memory block size.
        block_size: u64,
    },
    /// The kernel refused a probe address: `EEXIST` (memory is there already), `E2BIG`
    /// (beyond what the kernel can address), `EINVAL`.
    #[error("probing memory at {addr:#x}: {source}")]
    Probe {
        /// The address written.
        addr: u64,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// A sysfs file could not be read, or holds something unexpected.
    #[error("{}: {reason}", path.display())]
    Sysfs {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl CpuMemError {
    fn sysfs(path: &Path, reason: impl std::fmt::Display) -> Self {
        Self::Sysfs {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// `OnlineCPUMem` as the host asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnlineRequest {
    /// How many CPUs should be online in all; 0 leaves CPUs alone.
    pub cpus: u32,
    /// Leave memory alone.
    pub cpu_only: bool,
}

/// What an online request or a probe did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Onlined {
    /// CPUs brought online, by number.
    pub cpus: Vec<u32>,
    /// Memory blocks brought online, by number.
    pub memory_blocks: Vec<u32>,
    /// CPUs online afterwards (0 when CPUs were not looked at).
    pub cpus_online: u32,
}

/// Onlines hot-plugged vCPUs and memory under one sysfs root.
#[derive(Debug, Clone)]
pub struct CpuMem {
    sysfs: PathBuf,
    /// How long to wait for the CPUs asked for.
    cpu_wait: Duration,
}

impl CpuMem {
    /// The guest's `/sys`, waiting up to `cpu_wait` for hot-plugged CPUs.
    pub fn guest(cpu_wait: Duration) -> Self {
        Self::new("/sys", cpu_wait)
    }

    /// Works under `sysfs`.
    pub fn new(sysfs: impl Into<PathBuf>, cpu_wait: Duration) -> Self {
        Self {
            sysfs: sysfs.into(),
            cpu_wait,
        }
    }

    /// `OnlineCPUMem`: waits (bounded) until `request.cpus` CPUs are online, onlining
    /// offline ones as they register; then, unless `cpu_only`, onlines every offline
    /// memory block.
    pub async fn online(&self, request: OnlineRequest) -> Result<Onlined, CpuMemError> {
        let mut done = Onlined::default();
        if request.cpus > 0 {
            let (cpus, online) = self.online_cpus(request.cpus).await?;
            done.cpus = cpus;
            done.cpus_online = online;
        }
        if !request.cpu_only {
            done.memory_blocks = self.online_memory()?;
        }
        tracing::info!(?done, "onlined hot-plugged resources");
        Ok(done)
    }

    /// `MemHotplugByProbe`: adds the memory block at each address through the probe file
    /// (all addresses are checked to be block-aligned first), then onlines every offline
    /// block.
    pub fn probe(&self, addrs: &[u64]) -> Result<Onlined, CpuMemError> {
        let memory = self.sysfs.join(MEMORY_DIR);
        let probe = memory.join("probe");
        if !probe.exists() {
            return Err(CpuMemError::NoProbeFile { path: probe });
        }
        let block_size = self.memory_block_size()?;
        if let Some(&addr) = addrs.iter().find(|&&a| a % block_size != 0) {
            return Err(CpuMemError::UnalignedProbe { addr, block_size });
        }
        for &addr in addrs {
            std::fs::write(&probe, format!("{addr:#x}"))
                .map_err(|source| CpuMemError::Probe { addr, source })?;
            tracing::info!(addr = format_args!("{addr:#x}"), "memory probed");
        }
        Ok(Onlined {
            memory_blocks: self.online_memory()?,
            ..Onlined::default()
        })
    }

    /// The memory block size (`block_size_bytes`, hex).
    pub fn memory_block_size(&self) -> Result<u64, CpuMemError> {
        let path = self.sysfs.join(MEMORY_DIR).join("block_size_bytes");
        let text = std::fs::read_to_string(&path).map_err(|e| CpuMemError::sysfs(&path, e))?;
        let digits = text.trim();
        let digits = digits.strip_prefix("0x").unwrap_or(digits);
        match u64::from_str_radix(digits, 16) {
            Ok(size) if size > 0 => Ok(size),
            _ => Err(CpuMemError::sysfs(
                &path,
                format!("not a block size: {:?}", text.trim()),
            )),
        }
    }

    /// Onlines offline CPUs until `wanted` are online; returns the CPUs it onlined and
    /// the count online.
    async fn online_cpus(&self, wanted: u32) -> Result<(Vec<u32>, u32), CpuMemError> {
        let start = Instant::now();
        let mut onlined = Vec::new();
        let mut last_error = None;
        loop {
            let mut online = self.online_cpu_count()?;
            if online < wanted {
                for (n, path) in self.offline(CPU_DIR, "cpu", "online", "0")? {
                    if online >= wanted {
                        break;
                    }
                    match std::fs::write(&path, "1") {
                        Ok(()) => {
                            onlined.push(n);
                            online += 1;
                        }
                        Err(e) => {
                            tracing::warn!(cpu = n, error = %e, "onlining a CPU failed");
                            last_error = Some(format!("cpu{n}: {e}"));
                        }
                    }
                }
                // A successful write onlined the CPU: the list says so at once in a
                // kernel; the count may not lag behind what was written.
                online = online.max(self.online_cpu_count()?);
            }
            if online >= wanted {
                return Ok((onlined, online));
            }
            if start.elapsed() >= self.cpu_wait {
                return Err(CpuMemError::CpusTimeout {
                    wanted,
                    online,
                    waited: start.elapsed(),
                    last_error,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The number of CPUs in `cpu/online` (a CPU list such as `0-2,4`).
    fn online_cpu_count(&self) -> Result<u32, CpuMemError> {
        let path = self.sysfs.join(CPU_DIR).join("online");
        let text = std::fs::read_to_string(&path).map_err(|e| CpuMemError::sysfs(&path, e))?;
        count_cpu_list(text.trim())
            .ok_or_else(|| CpuMemError::sysfs(&path, format!("not a CPU list: {:?}", text.trim())))
    }

    /// Onlines every offline memory block; returns their numbers.
    fn online_memory(&self) -> Result<Vec<u32>, CpuMemError> {
        let mut onlined = Vec::new();
        for (n, path) in self.offline(MEMORY_DIR, "memory", "state", "offline")? {
            if let Err(source) = std::fs::write(&path, "online") {
                // The kernel (or a udev rule) may have onlined it meanwhile: the write
                // then fails with EINVAL, and the block is what was wanted.
                if read_trimmed(&path).as_deref() == Some("online") {
                    continue;
                }
                return Err(CpuMemError::Online {
                    what: format!("memory{n}"),
                    path,
                    source,
                });
            }
            onlined.push(n);
        }
        Ok(onlined)
    }

    /// The `{prefix}N/{file}` files under `dir` that read `offline_value`, by N.
    fn offline(
        &self,
        dir: &str,
        prefix: &str,
        file: &str,
        offline_value: &str,
    ) -> Result<Vec<(u32, PathBuf)>, CpuMemError> {
        let dir = self.sysfs.join(dir);
        let entries = std::fs::read_dir(&dir).map_err(|e| CpuMemError::sysfs(&dir, e))?;
        let mut found: Vec<(u32, PathBuf)> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name();
                let n = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
                let path = entry.path().join(file);
                (read_trimmed(&path)? == offline_value).then_some((n, path))
            })
            .collect();
        found.sort_by_key(|(n, _)| *n);
        Ok(found)
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}

/// How many CPUs a kernel CPU list (`0-2,4`; empty for none) names.
fn count_cpu_list(list: &str) -> Option<u32> {
    if list.is_empty() {
        return Some(0);
    }
    list.split(',').try_fold(0u32, |count, part| {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let n = part.trim().parse::<u32>().ok()?;
                (n, n)
            }
        };
        (last >= first).then(|| count + (last - first + 1))
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A fake sysfs: CPUs with their `online` values (`None`: no file, as for cpu0),
    /// memory blocks with their states, `cpu/online` listing the online CPUs.
    struct FakeSysfs {
        dir: tempfile::TempDir,
    }

    impl FakeSysfs {
        fn new(cpus: &[Option<&str>], blocks: &[&str], probe: bool) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let fake = Self { dir };
            for (n, online) in cpus.iter().enumerate() {
                fake.add_cpu(n as u32, *online);
            }
            let memory = fake.root().join(MEMORY_DIR);
            fs::create_dir_all(&memory).unwrap();
            fs::write(memory.join("block_size_bytes"), "8000000\n").unwrap();
            for (n, state) in blocks.iter().enumerate() {
                let block = memory.join(format!("memory{n}"));
                fs::create_dir_all(&block).unwrap();
                fs::write(block.join("state"), format!("{state}\n")).unwrap();
            }
            if probe {
                fs::write(memory.join("probe"), "").unwrap();
            }
            fake.sync_online_list();
            fake
        }

        fn root(&self) -> &Path {
            self.dir.path()
        }

        fn add_cpu(&self, n: u32, online: Option<&str>) {
            let cpu = self.root().join(CPU_DIR).join(format!("cpu{n}"));
            fs::create_dir_all(&cpu).unwrap();
            if let Some(value) = online {
                fs::write(cpu.join("online"), format!("{value}\n")).unwrap();
            }
        }

        fn sync_online_list(&self) {
            sync_online_list(self.root());
        }

        fn state(&self, block: u32) -> String {
            read_trimmed(
                &self
                    .root()
                    .join(MEMORY_DIR)
                    .join(format!("memory{block}/state")),
            )
            .unwrap()
        }
    }

    /// Writes `cpu/online` from the per-CPU `online` files (none: online, as cpu0), as
    /// the kernel keeps it.
    fn sync_online_list(root: &Path) {
        let cpus = root.join(CPU_DIR);
        let Ok(entries) = fs::read_dir(&cpus) else {
            return;
        };
        let mut online: Vec<u32> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let n: u32 = e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok()?;
                let value = read_trimmed(&e.path().join("online")).unwrap_or("1".into());
                (value == "1").then_some(n)
            })
            .collect();
        online.sort();
        let list: Vec<String> = online.iter().map(u32::to_string).collect();
        let _ = fs::write(cpus.join("online"), list.join(",") + "\n");
    }

    /// A plain file does not follow the per-CPU writes as the kernel's list does: this
    /// task keeps it in step while the code under test waits.
    fn keep_online_list_in_step(fake: &FakeSysfs) -> tokio::task::JoinHandle<()> {
        let root = fake.root().to_path_buf();
        tokio::spawn(async move {
            loop {
                sync_online_list(&root);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    }

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpu_list(""), Some(0));
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3"), Some(4));
        assert_eq!(count_cpu_list("0-1,3,5-6"), Some(5));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[tokio::test]
    async fn offline_cpus_are_onlined_up_to_the_count_asked_for() {
        let fake = FakeSysfs::new(&[None, Some("0"), Some("0"), Some("0")], &[], false);
        let sync = keep_online_list_in_step(&fake);
        let cpu_mem = CpuMem::new(fake.root(), Duration::from_secs(5));
        let done = cpu_mem
            .online(OnlineRequest {
                cpus: 3,
                cpu_only: true,
            })
            .await
            .unwrap();
        sync.abort();
        assert_eq!(done.cpus, [1, 2]);
        assert!(done.cpus_online >= 3, "{done:?}");
        let cpu3 = fake.root().join(CPU_DIR).join("cpu3/online");
        assert_eq!(read_trimmed(&cpu3).unwrap(), "0", "one more than asked");
    }

    #[tokio::test]
    async fn a_cpu_that_registers_late_is_waited_for() {
        let fake = FakeSysfs::new(&[None], &[], false);
        let sync = keep_online_list_in_step(&fake);
        let root = fake.root().to_path_buf();
        let late = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let cpu = root.join(CPU_DIR).join("cpu1");
            fs::create_dir_all(&cpu).unwrap();
            fs::write(cpu.join("online"), "0\n").unwrap();
        });
        let cpu_mem = CpuMem::new(fake.root(), Duration::from_secs(5));
        let done = cpu_mem
            .online(OnlineRequest {
                cpus: 2,
                cpu_only: true,
            })
            .await
            .unwrap();
        late.await.unwrap();
        sync.abort();
        assert_eq!(done.cpus, [1]);
    }

    #[tokio::test]
    async fn missing_cpus_time_out_saying_how_many_are_online() {
        let fake = FakeSysfs::new(&[None, Some("0")], &[], false);
        let sync = keep_online_list_in_step(&fake);
        let cpu_mem = CpuMem::new(fake.root(), Duration::from_millis(200));
        let err = cpu_mem
            .online(OnlineRequest {
                cpus: 4,
                cpu_only: true,
            })
            .await
            .unwrap_err();
        sync.abort();
        assert!(
            matches!(
                err,
                CpuMemError::CpusTimeout {
                    wanted: 4,
                    online: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("2 CPU(s) online, 4 asked for"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn enough_cpus_online_already_is_success_and_memory_is_onlined() {
        let fake = FakeSysfs::new(&[None, Some("1")], &["online", "offline", "offline"], false);
        let cpu_mem = CpuMem::new(fake.root(), Duration::from_millis(100));
        let done = cpu_mem
            .online(OnlineRequest {
                cpus: 2,
                cpu_only: false,
            })
            .await
            .unwrap();
        assert!(done.cpus.is_empty());
        assert_eq!(done.cpus_online, 2);
        assert_eq!(done.memory_blocks, [1, 2]);
        assert_eq!(fake.state(1), "online");
        assert_eq!(fake.state(2), "online");
    }

    #[tokio::test]
    async fn cpu_only_and_zero_cpus_leave_the_rest_alone() {
        let fake = FakeSysfs::new(&[None, Some("0")], &["offline"], false);
        let cpu_mem = CpuMem::new(fake.root(), Duration::from_millis(100));
        let done = cpu_mem
            .online(OnlineRequest {
                cpus: 0,
                cpu_only: true,
            })
            .await
            .unwrap();
        assert_eq!(done, Onlined::default());
        assert_eq!(fake.state(0), "offline");
        let cpu1 = fake.root().join(CPU_DIR).join("cpu1/online");
        assert_eq!(read_trimmed(&cpu1).unwrap(), "0");
    }

    #[test]
    fn probe_writes_each_address_then_onlines() {
        let fake = FakeSysfs::new(&[None], &["online", "offline"], true);
        let cpu_mem = CpuMem::new(fake.root(), Duration::from_millis(100));
        let done = cpu_mem.probe(&[0x1_0000_0000, 0x1_0800_0000]).unwrap();
        assert_eq!(done.memory_blocks, [1]);
        // A plain file keeps the last write: the kernel reads each one.
        let probe = fake.root().join(MEMORY_DIR).join("probe");
        assert_eq!(fs::read_to_string(probe).unwrap(), "0x108000000");
    }

    #[test]
    fn probe_refuses_unaligned_addresses_before_writing_any() {
        let fake = FakeSysfs::new(&[None], &[], true);
        let cpu_mem = CpuMem::new(fake.root(), Duration::from_millis(100));
        let err = cpu_mem.probe(&[0x1_0000_0000, 0x1_0000_1000]).unwrap_err();
        assert!(
            matches!(
                err,
                CpuMemError::UnalignedProbe {
                    addr: 0x1_0000_1000,
                    block_size: 0x800_0000
                }
            ),
            "{err:?}"
        );
        let probe = fake.root().join(MEMORY_DIR).join("probe");
        assert_eq!(fs::read_to_string(probe).unwrap(), "");
    }

    #[test]
    fn probe_without_the_probe_file_says_what_the_kernel_lacks() {
        let fake = FakeSysfs::new(&[None], &[], false);
        let cpu_mem = CpuMem::new(fake.root(), Duration::from_millis(100));
        let err = cpu_mem.probe(&[0x1_0000_0000]).unwrap_err();
        assert!(matches!(err, CpuMemError::NoProbeFile { .. }), "{err:?}");
        assert!(
            err.to_string().contains("CONFIG_ARCH_MEMORY_PROBE"),
            "{err}"
        );
    }
}

//! Memory figures of a guest with the agent ready and idle: MemTotal − MemAvailable, and
//! the agent's and init's RSS and PSS from `/proc/<pid>/smaps_rollup` (`VmRSS` reads low
//! on this kernel); then the same after a container ran and was removed; then the
//! smallest `-m` that still boots and runs a busybox container. The figures are taken for
//! each boot medium: the initramfs, whose files (the agent among them) are held in the
//! guest's RAM, and a rootfs image on an NVDIMM mapped with DAX (Kata's default), whose
//! files are read from host memory and take no page cache in the guest.
//!
//! The guest is read from inside: an inspector container in the guest's PID namespace
//! (a busybox shell reading `/proc`, with `CAP_SYS_PTRACE` added to Docker's default
//! capabilities: reading another process's `smaps_rollup` needs it), which needs no
//! agent change. Its own shell is counted in MemTotal − MemAvailable, so its PSS is
//! printed beside.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hull_e2e::bundle::{ContainerSpec, guest_rootfs};
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::VmConfig;
use hull_protocols::oci_json;

use super::table::{Table, kib};

/// The guest size of the idle figures.
pub const IDLE_GUEST_MIB: u32 = 128;

/// The `-m` sizes tried for the smallest guest, smallest first; the last one must work.
const SIZES_MIB: [u32; 8] = [32, 40, 48, 56, 64, 80, 96, 128];

/// How long one small-guest attempt may take (boot, a container, power-off).
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(90);

const INSPECT: &str = "echo @meminfo; cat /proc/meminfo; \
    echo @init; cat /proc/1/smaps_rollup; \
    for p in /proc/[0-9]*; do \
      if [ \"$(cat $p/comm 2>/dev/null)\" = hull-agent ]; then \
        echo @agent; cat $p/smaps_rollup; echo @agent-maps; cat $p/smaps; fi; \
    done; \
    echo @inspector; cat /proc/$$/smaps_rollup";

/// What one inspection read, in kB as /proc reports it.
#[derive(Debug)]
pub struct Snapshot {
    pub used_kib: u64,
    /// Where the used memory is, from `/proc/meminfo` (KiB): see [`USED_PARTS`].
    pub used_parts: Vec<(&'static str, u64)>,
    /// (Rss, Pss) per process: `init`, `agent`, `inspector`.
    pub processes: HashMap<String, (u64, u64)>,
    /// The agent's Rss by mapping (its binary, `[heap]`, `[stack]`, `anonymous`), largest
    /// first.
    pub agent_maps: Vec<(String, u64)>,
}

/// The `/proc/meminfo` fields that make up most of MemTotal − MemAvailable, with what
/// they hold: files kept in RAM (the initramfs the guest runs from, tmpfs), processes'
/// anonymous memory, and the kernel's own allocations.
pub const USED_PARTS: [(&str, &str); 6] = [
    ("Shmem", "files in RAM (Shmem: initramfs, tmpfs)"),
    ("AnonPages", "processes' anonymous memory"),
    ("SUnreclaim", "kernel slab, unreclaimable"),
    ("PageTables", "page tables"),
    ("KernelStack", "kernel stacks"),
    ("Percpu", "per-CPU areas"),
];

/// Sums `Rss` of `/proc/<pid>/smaps` by what is mapped.
pub fn rss_by_mapping(smaps: &str) -> Vec<(String, u64)> {
    let mut sums: HashMap<String, u64> = HashMap::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut tokens = line.split_whitespace();
        let first = tokens.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let path = tokens.nth(4).unwrap_or("anonymous");
            current = path.rsplit('/').next().unwrap_or(path).to_string();
        } else if first == "Rss:" {
            let kib: u64 = tokens.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *sums.entry(current.clone()).or_default() += kib;
        }
    }
    let mut sums: Vec<(String, u64)> = sums.into_iter().filter(|(_, kib)| *kib > 0).collect();
    sums.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    sums
}

/// `Field:   123 kB` lines of one section.
fn fields(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((name.trim().to_string(), value))
        })
        .collect()
}

/// Parses the inspector's output (sections headed `@name`).
pub fn parse(text: &str) -> Result<Snapshot> {
    let sections: HashMap<&str, &str> = text
        .split('@')
        .filter_map(|s| s.split_once('\n'))
        .map(|(name, body)| (name.trim(), body))
        .collect();
    let meminfo = fields(sections.get("meminfo").context("no /proc/meminfo")?);
    let total = meminfo.get("MemTotal").context("no MemTotal")?;
    let available = meminfo.get("MemAvailable").context("no MemAvailable")?;
    let mut processes = HashMap::new();
    for name in ["init", "agent", "inspector"] {
        let rollup = fields(
            sections
                .get(name)
                .with_context(|| format!("no smaps_rollup of {name}"))?,
        );
        let rss = *rollup
            .get("Rss")
            .with_context(|| format!("{name}: no Rss in smaps_rollup"))?;
        let pss = *rollup
            .get("Pss")
            .with_context(|| format!("{name}: no Pss in smaps_rollup"))?;
        processes.insert(name.to_string(), (rss, pss));
    }
    let used_parts = USED_PARTS
        .iter()
        .filter_map(|(field, _)| Some((*field, *meminfo.get(*field)?)))
        .collect();
    Ok(Snapshot {
        used_kib: total.saturating_sub(*available),
        used_parts,
        processes,
        agent_maps: rss_by_mapping(sections.get("agent-maps").copied().unwrap_or_default()),
    })
}

async fn inspect(guest: &SandboxGuest, id: &str) -> Result<Snapshot> {
    guest.busybox_rootfs(id)?;
    let mut config = ContainerSpec::shell(INSPECT)
        .in_guest_pid_namespace()
        .config_json(&guest_rootfs(id));
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set]
            .as_array_mut()
            .context("the spec's capability sets")?
            .push("CAP_SYS_PTRACE".into());
    }
    let spec = oci_json::spec_to_proto(&oci_json::spec_from_config_json(
        config.to_string().as_bytes(),
    )?)?;
    let run = Container::run(&guest.client, id, spec).await?;
    ensure!(
        run.status == 0,
        "inspector {id} exited {}: {}",
        run.status,
        run.stderr.text()
    );
    parse(&run.stdout.text()).with_context(|| format!("inspector {id}: {}", run.stderr.text()))
}

fn rows(table: &mut Table, when: &str, s: &Snapshot) {
    table.push(
        format!("guest memory used (MemTotal − MemAvailable), {when}"),
        kib(s.used_kib),
    );
    if !s.used_parts.is_empty() {
        let parts: Vec<String> = s
            .used_parts
            .iter()
            .map(|(field, size)| {
                let label = USED_PARTS
                    .iter()
                    .find(|(f, _)| f == field)
                    .map_or(*field, |(_, label)| label);
                format!("{label} {}", kib(*size))
            })
            .collect();
        let named: u64 = s.used_parts.iter().map(|(_, size)| size).sum();
        table.push(
            "  of which (/proc/meminfo)",
            format!(
                "{}; the rest (vmalloc, caches not counted available, ...) {}",
                parts.join(", "),
                kib(s.used_kib.saturating_sub(named))
            ),
        );
    }
    for (name, label) in [
        ("agent", "hull-agent"),
        ("init", "hull-init"),
        ("inspector", "the inspector's shell (counted above)"),
    ] {
        if let Some((rss, pss)) = s.processes.get(name) {
            table.push(
                format!("  {label} RSS / PSS (smaps_rollup)"),
                format!("{} / {}", kib(*rss), kib(*pss)),
            );
        }
        if name == "agent" && !s.agent_maps.is_empty() {
            let maps: Vec<String> = s
                .agent_maps
                .iter()
                .take(4)
                .map(|(what, size)| format!("{what} {}", kib(*size)))
                .collect();
            table.push("    hull-agent RSS by mapping", maps.join(", "));
        }
    }
}

/// The idle and after-a-container figures in a [`IDLE_GUEST_MIB`] guest booted as
/// `config` says; `medium` names the boot medium in the rows.
pub async fn figures(config: &VmConfig, medium: &str, table: &mut Table) -> Result<()> {
    let mut config = config.clone();
    config.memory_mib = IDLE_GUEST_MIB;
    let guest = SandboxGuest::boot(config).await?;
    let idle = inspect(&guest, "inspect-idle").await?;
    rows(
        table,
        &format!("{IDLE_GUEST_MIB} MiB guest from {medium}, agent idle"),
        &idle,
    );
    guest.busybox_rootfs("one-container")?;
    let run = Container::run(
        &guest.client,
        "one-container",
        ContainerSpec::new(["echo", "hi"]).to_proto("one-container")?,
    )
    .await?;
    ensure!(
        run.status == 0,
        "the busybox container exited {}",
        run.status
    );
    let after = inspect(&guest, "inspect-after").await?;
    rows(
        table,
        &format!("{medium}, after one container ran and was removed"),
        &after,
    );
    guest.power_off().await?;
    Ok(())
}

/// Boots a `mib` guest and runs `echo hi` in a busybox container.
async fn runs_a_container(config: &VmConfig, mib: u32) -> Result<()> {
    let mut config = config.clone();
    config.memory_mib = mib;
    let attempt = async {
        let guest = SandboxGuest::boot(config).await?;
        guest.busybox_rootfs("small")?;
        let run = Container::run(
            &guest.client,
            "small",
            ContainerSpec::new(["echo", "hi"]).to_proto("small")?,
        )
        .await?;
        ensure!(
            run.status == 0 && run.stdout.text() == "hi\n",
            "the container exited {} with {:?}",
            run.status,
            run.stdout.text()
        );
        guest.power_off().await?;
        Ok(())
    };
    tokio::time::timeout(ATTEMPT_DEADLINE, attempt)
        .await
        .with_context(|| format!("no answer within {ATTEMPT_DEADLINE:?}"))?
}

/// Bisects [`SIZES_MIB`] for the smallest guest that runs a container.
pub async fn smallest_guest(config: &VmConfig, table: &mut Table) -> Result<()> {
    // Invariant: SIZES_MIB[hi] works (the largest is the idle figures' size); every index
    // at or below `lo` failed (`None`: none tried yet).
    let mut hi = SIZES_MIB.len() - 1;
    let mut lo: Option<usize> = None;
    let mut failure = String::new();
    while lo.map_or(0, |l| l + 1) < hi {
        let mid = (lo.map_or(0, |l| l + 1) + hi) / 2;
        let mib = SIZES_MIB[mid];
        match runs_a_container(config, mib).await {
            Ok(()) => {
                eprintln!("smallest guest: {mib} MiB runs a container");
                hi = mid;
            }
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("smallest guest: {mib} MiB failed: {why}");
                failure = format!(
                    "{mib} MiB failed: {}",
                    why.chars().take(60).collect::<String>()
                );
                lo = Some(mid);
            }
        }
    }
    table.push_versus(
        format!("smallest -m that boots and runs a busybox container (of {SIZES_MIB:?} MiB)"),
        format!("{} MiB", SIZES_MIB[hi]),
        if failure.is_empty() {
            format!("{} MiB is the smallest tried", SIZES_MIB[0])
        } else {
            failure
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_inspectors_sections() {
        let text = "@meminfo\nMemTotal:  100000 kB\nMemFree: 1 kB\nMemAvailable:  80000 kB\n\
            Shmem: 6000 kB\nSUnreclaim: 3000 kB\n\
            @init\n00400000-7ff [rollup]\nRss:  1000 kB\nPss:  900 kB\n\
            @agent\nRss:  3000 kB\nPss:  2500 kB\n@inspector\nRss: 300 kB\nPss: 100 kB\n";
        let s = parse(text).unwrap();
        assert_eq!(s.used_kib, 20000);
        assert_eq!(s.used_parts, [("Shmem", 6000), ("SUnreclaim", 3000)]);
        assert_eq!(s.processes["agent"], (3000, 2500));
        assert_eq!(s.processes["init"], (1000, 900));
        assert!(parse("@meminfo\nMemTotal: 1 kB\n").is_err());
    }

    #[test]
    fn sums_rss_by_mapping() {
        let smaps = "00400000-00500000 r-xp 00000000 00:02 12 /usr/bin/hull-agent\nRss: 1500 kB\n\
            00600000-00700000 rw-p 00000000 00:00 0 \nRss: 200 kB\n\
            00800000-00900000 rw-p 00000000 00:00 0 [heap]\nRss: 700 kB\n\
            00a00000-00b00000 r--p 00100000 00:02 12 /usr/bin/hull-agent\nRss: 100 kB\n";
        assert_eq!(
            rss_by_mapping(smaps),
            [
                ("hull-agent".to_string(), 1600),
                ("[heap]".to_string(), 700),
                ("anonymous".to_string(), 200)
            ]
        );
    }
}

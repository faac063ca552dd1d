//! The guest seen from inside, without any agent change: an inspector container in the
//! guest's PID namespace, the cgroup tree bound read-only at `/sys/fs/cgroup` and
//! `CAP_SYS_PTRACE` added (reading another process's `smaps_rollup` and `fd/` needs it),
//! lists the guest's mounts, cgroup directories and processes, the agent's and init's
//! memory (`smaps_rollup`: `VmRSS` reads low on this kernel), open fds and threads, and
//! `MemAvailable`. Used to check that removal leaves nothing behind, and by the soak.

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};

use crate::bundle::ContainerSpec;
use crate::guest::SandboxGuest;

/// The agent's command line as `/proc/<pid>/cmdline` spells it (NULs as spaces); its
/// helpers carry an argument, so only the agent matches exactly.
const AGENT_CMDLINE: &str = "/usr/bin/hull-agent ";

/// One process's figures, from `/proc/<pid>/{smaps_rollup,status,fd}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessFigures {
    /// The process id in the guest.
    pub pid: u32,
    /// `Rss` of `smaps_rollup`, KiB.
    pub rss_kib: u64,
    /// `Pss` of `smaps_rollup`, KiB.
    pub pss_kib: u64,
    /// `Anonymous` of `smaps_rollup` (heap, stacks, anonymous maps), KiB.
    pub anonymous_kib: u64,
    /// Entries of `/proc/<pid>/fd`.
    pub fds: u64,
    /// `Threads` of `status`.
    pub threads: u64,
}

/// What an inspector container saw of the guest.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// `mount point, fstype, source` of each line of PID 1's mountinfo, sorted.
    pub mounts: Vec<String>,
    /// cgroup directories, the inspector's own left out, sorted.
    pub cgroups: Vec<String>,
    /// Command lines of the guest's processes (kernel threads and the inspector's shell
    /// left out).
    pub processes: Vec<String>,
    /// hull-agent (the process whose command line is exactly [`AGENT_CMDLINE`]).
    pub agent: ProcessFigures,
    /// hull-init, PID 1.
    pub init: ProcessFigures,
    /// `MemAvailable` of `/proc/meminfo`, KiB.
    pub mem_available_kib: u64,
}

/// The inspector's script: sections headed by lines `@name`.
fn script() -> String {
    // The figures of the process whose /proc directory is in `$p`.
    let figures = "echo Pid: ${p#/proc/}; grep -E '^(Rss|Pss|Anonymous):' $p/smaps_rollup; \
         echo Fds: $(ls $p/fd | wc -l); grep '^Threads:' $p/status";
    format!(
        "echo @mounts; while read -r _ _ _ _ point _ rest; do \
           echo \"$point ${{rest#*- }}\"; done < /proc/1/mountinfo; \
         echo @cgroups; find /sys/fs/cgroup -type d; \
         echo @processes; for p in /proc/[0-9]*; do [ \"${{p#/proc/}}\" = \"$$\" ] && continue; \
           [ -r $p/cmdline ] && tr '\\0' ' ' < $p/cmdline && echo; done; \
         for p in /proc/[0-9]*; do \
           [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = '{AGENT_CMDLINE}' ] || continue; \
           echo @agent; {agent}; done; \
         echo @init; p=/proc/1; {init}; \
         echo @meminfo; grep '^MemAvailable:' /proc/meminfo; true",
        agent = figures,
        init = figures,
    )
}

/// The spec of an inspector container.
pub fn inspector_spec() -> ContainerSpec {
    ContainerSpec::shell(&script())
        .in_guest_pid_namespace()
        .bind_read_only("/sys/fs/cgroup", "/sys/fs/cgroup")
        .with_capability("CAP_SYS_PTRACE")
}

/// Runs an inspector container `id` to its end and parses what it saw.
pub async fn inspect(guest: &SandboxGuest, id: &str) -> Result<Inspection> {
    let out = guest.run_container(id, &inspector_spec()).await?;
    ensure!(
        out.status == 0,
        "inspector {id} exited {}: {}",
        out.status,
        out.stderr.text()
    );
    parse(&out.stdout.text(), id).with_context(|| format!("inspector {id}: {}", out.stderr.text()))
}

/// The `@name` sections of `text`, each as its trimmed, non-empty lines.
fn sections(text: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('@') {
            current = Some(name.trim().to_string());
            out.entry(name.trim().to_string()).or_default();
        } else if let Some(name) = &current {
            let line = line.trim();
            if !line.is_empty() {
                out.entry(name.clone()).or_default().push(line.to_string());
            }
        }
    }
    out
}

/// `Name: value ...` lines as numbers.
fn fields(lines: &[String]) -> HashMap<String, u64> {
    lines
        .iter()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((name.trim().to_string(), value))
        })
        .collect()
}

fn figures(lines: &[String], what: &str) -> Result<ProcessFigures> {
    let fields = fields(lines);
    let get = |name: &str| {
        fields
            .get(name)
            .copied()
            .with_context(|| format!("{what}: no {name} in {lines:?}"))
    };
    Ok(ProcessFigures {
        pid: u32::try_from(get("Pid")?).context("a pid beyond u32")?,
        rss_kib: get("Rss")?,
        pss_kib: get("Pss")?,
        anonymous_kib: get("Anonymous")?,
        fds: get("Fds")?,
        threads: get("Threads")?,
    })
}

/// Parses an inspector's output; `id` is the inspector's container id (its cgroup, the
/// directory whose name ends with it, is left out).
pub fn parse(text: &str, id: &str) -> Result<Inspection> {
    let sections = sections(text);
    let section = |name: &str| sections.get(name).cloned().unwrap_or_default();
    let mut mounts = section("mounts");
    mounts.sort();
    let mut cgroups: Vec<String> = section("cgroups")
        .into_iter()
        .filter(|c| !c.ends_with(id))
        .collect();
    cgroups.sort();
    let agent = figures(
        sections
            .get("agent")
            .context("no process with the agent's command line")?,
        "agent",
    )?;
    let init = figures(&section("init"), "init")?;
    let mem_available_kib = *fields(&section("meminfo"))
        .get("MemAvailable")
        .context("no MemAvailable")?;
    Ok(Inspection {
        mounts,
        cgroups,
        processes: section("processes"),
        agent,
        init,
        mem_available_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "@mounts\n/ rootfs rootfs rw\n/proc proc proc rw\n\
        @cgroups\n/sys/fs/cgroup\n/sys/fs/cgroup/hull/inspect-3\n/sys/fs/cgroup/hull\n\
        @processes\n/sbin/init \n\n/usr/bin/hull-agent \nsleep 7777 \n\
        @agent\nPid: 42\nRss:                4096 kB\nPss:                3000 kB\nAnonymous: 2000 kB\n\
        Fds: 17\nThreads:\t3\n\
        @init\nPid: 1\nRss: 1040 kB\nPss: 900 kB\nAnonymous: 300 kB\nFds: 5\nThreads:\t1\n\
        @meminfo\nMemAvailable:     200000 kB\n";

    #[test]
    fn parses_every_section_and_leaves_the_inspector_out() {
        let seen = parse(SAMPLE, "inspect-3").unwrap();
        assert_eq!(seen.mounts, ["/ rootfs rootfs rw", "/proc proc proc rw"]);
        assert_eq!(seen.cgroups, ["/sys/fs/cgroup", "/sys/fs/cgroup/hull"]);
        assert_eq!(
            seen.processes,
            ["/sbin/init", "/usr/bin/hull-agent", "sleep 7777"]
        );
        assert_eq!(
            seen.agent,
            ProcessFigures {
                pid: 42,
                rss_kib: 4096,
                pss_kib: 3000,
                anonymous_kib: 2000,
                fds: 17,
                threads: 3
            }
        );
        assert_eq!(seen.init.pid, 1);
        assert_eq!(seen.init.rss_kib, 1040);
        assert_eq!(seen.mem_available_kib, 200_000);
    }

    #[test]
    fn a_missing_agent_is_an_error() {
        let text = SAMPLE.replace("@agent", "@other");
        let err = parse(&text, "inspect-3").unwrap_err().to_string();
        assert!(err.contains("agent"), "{err}");
    }

    #[test]
    fn the_script_runs_in_a_busybox_shell() {
        // The host's /proc stands in for the guest's; only the shell syntax is checked.
        let busybox = crate::bundle::busybox().unwrap();
        let out = std::process::Command::new(busybox)
            .args(["sh", "-c", &script()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("syntax error"), "{stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("@init\nPid: 1\n"), "{stdout}");
        assert!(stdout.contains("MemAvailable:"), "{stdout}");
    }

    #[test]
    fn the_script_asks_for_every_figure() {
        let script = script();
        for needle in [
            "smaps_rollup",
            "/fd",
            "Threads",
            "MemAvailable",
            "mountinfo",
            AGENT_CMDLINE,
        ] {
            assert!(script.contains(needle), "{needle} missing from {script}");
        }
    }
}

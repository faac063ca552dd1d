//! Boot figures: QEMU start to the agent's first `Health.Check` answer from the initrd,
//! next to the bare baseline (same kernel, same QEMU line, an initrd whose `/init` only
//! powers off), the guest's share broken down by its own clocks, the slowest kernel
//! initcalls, and the same ready time from each disk-image attachment.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hull_e2e::vm::{Vm, VmConfig};

use super::baseline::BARE_INIT_LINE;
use super::table::{Table, median, ratio, spread};

const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);

/// One boot of a hull guest.
#[derive(Debug, Default)]
pub struct HullBoot {
    /// QEMU start to the agent's first answer (host clock).
    pub ready: Duration,
    /// Guest uptime when the kernel ran `/init` (its console timestamp).
    pub kernel_to_init: Option<Duration>,
    /// Guest uptime when init started the agent (init's `agent started ... uptime_ms=`).
    pub agent_started: Option<Duration>,
    /// Agent start to `agent serving`, by the agent's own log clock.
    pub agent_to_serving: Option<Duration>,
    /// DestroySandbox to QEMU's exit.
    pub power_off: Duration,
}

/// Boots `config` once, waits for the agent and powers it off through the agent.
pub async fn boot_hull(config: &VmConfig) -> Result<(HullBoot, String)> {
    let mut vm = Vm::boot(config)?;
    let (client, ready) = vm.wait_for_agent(BOOT_DEADLINE).await?;
    let agent_started = vm.guest_uptime_at_agent_start();
    let power_off = vm
        .power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    let console = vm.console();
    vm.finish();
    Ok((
        HullBoot {
            ready,
            kernel_to_init: kernel_ran_init(&console),
            agent_started,
            agent_to_serving: agent_serving(&console),
            power_off,
        },
        console,
    ))
}

/// One boot of the bare baseline: QEMU start to its `/init`'s line, and to QEMU's exit.
pub struct BareBoot {
    pub init_line: Duration,
    pub exited: Duration,
    pub kernel_to_init: Option<Duration>,
}

/// Boots the bare initrd with `config`'s kernel and QEMU line.
pub fn boot_bare(config: &VmConfig) -> Result<BareBoot> {
    let mut vm = Vm::boot(config)?;
    // `Vm::boot` returns right after QEMU's exec: the clock starts a little after the
    // one `wait_for_agent` uses, which flatters the baseline (by the spawn, ~1 ms).
    let started = Instant::now();
    let init_line = loop {
        if vm.console().contains(BARE_INIT_LINE) {
            break started.elapsed();
        }
        if started.elapsed() > BOOT_DEADLINE {
            bail!("the bare /init printed nothing within {BOOT_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let status = vm.wait_for_exit(POWER_OFF_DEADLINE)?;
    let exited = started.elapsed();
    if !status.success() {
        bail!("QEMU exited with {status} after the bare /init powered off");
    }
    let kernel_to_init = kernel_ran_init(&vm.console());
    vm.finish();
    Ok(BareBoot {
        init_line,
        exited,
        kernel_to_init,
    })
}

/// The timestamp of the kernel's `Run /init as init process` line.
pub fn kernel_ran_init(console: &str) -> Option<Duration> {
    console
        .lines()
        .find(|l| l.contains("Run ") && l.contains(" as init process"))
        .and_then(kernel_timestamp)
}

/// `[    1.234567] ...` → 1.234567 s.
pub fn kernel_timestamp(line: &str) -> Option<Duration> {
    let inside = line.trim_start().strip_prefix('[')?.split(']').next()?;
    inside.trim().parse().ok().map(Duration::from_secs_f64)
}

/// The agent's own clock (time since its logging started) on its `agent serving` line:
/// `   0.012345678s  INFO agent serving ...`.
pub fn agent_serving(console: &str) -> Option<Duration> {
    console
        .lines()
        .find(|l| l.contains("agent serving"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|t| t.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs_f64)
}

/// `initcall NAME+0x0/0x20 returned 0 after 1234 usecs` → (NAME, µs), slowest first.
pub fn initcalls(console: &str) -> Vec<(String, u64)> {
    let mut calls: Vec<(String, u64)> = console
        .lines()
        .filter_map(|line| {
            let rest = line.split("] ").nth(1).unwrap_or(line);
            let rest = rest.strip_prefix("initcall ")?;
            let name = rest.split_whitespace().next()?;
            let name = name.split('+').next().unwrap_or(name).to_string();
            let usecs = rest
                .split(" after ")
                .nth(1)?
                .strip_suffix(" usecs")?
                .trim()
                .parse()
                .ok()?;
            Some((name, usecs))
        })
        .collect();
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    calls
}

fn collect(samples: impl Iterator<Item = Option<Duration>>) -> Vec<Duration> {
    samples.flatten().collect()
}

/// The initrd boot against the bare baseline, booted alternately so both see the same
/// load; then the breakdown and one boot with `initcall_debug`.
pub async fn initrd_figures(
    config: &VmConfig,
    bare_config: &VmConfig,
    boots: u32,
    power_offs: &mut Vec<Duration>,
    table: &mut Table,
) -> Result<()> {
    let mut hull = Vec::new();
    let mut bare = Vec::new();
    for boot in 1..=boots {
        let b = boot_bare(bare_config).context("booting the bare baseline")?;
        eprintln!(
            "bare baseline: boot {boot}/{boots}: /init ran at {:.3} s",
            b.init_line.as_secs_f64()
        );
        bare.push(b);
        let (h, _) = boot_hull(config).await.context("booting the initrd")?;
        eprintln!(
            "initrd: boot {boot}/{boots}: agent ready in {:.3} s",
            h.ready.as_secs_f64()
        );
        power_offs.push(h.power_off);
        hull.push(h);
    }
    let ready: Vec<Duration> = hull.iter().map(|h| h.ready).collect();
    let bare_line: Vec<Duration> = bare.iter().map(|b| b.init_line).collect();
    table.push_versus(
        format!("boot to agent ready, initrd, {boots} boots"),
        spread(&ready),
        ratio(
            median(&ready).as_secs_f64(),
            median(&bare_line).as_secs_f64(),
            "bare",
        ),
    );
    table.push(
        "  bare baseline: QEMU start to its /init's line (\"bare\")",
        spread(&bare_line),
    );
    table.push(
        "  bare baseline: QEMU start to exit (power-off)",
        spread(&bare.iter().map(|b| b.exited).collect::<Vec<_>>()),
    );
    let hull_kernel = collect(hull.iter().map(|h| h.kernel_to_init));
    let bare_kernel = collect(bare.iter().map(|b| b.kernel_to_init));
    table.push_versus(
        "  guest clock: kernel start to /init",
        spread(&hull_kernel),
        ratio(
            median(&hull_kernel).as_secs_f64(),
            median(&bare_kernel).as_secs_f64(),
            "bare's",
        ),
    );
    table.push(
        "  guest clock: kernel start to /init, bare",
        spread(&bare_kernel),
    );
    let init_to_agent = collect(
        hull.iter()
            .map(|h| Some(h.agent_started? - h.kernel_to_init?)),
    );
    table.push(
        "  guest clock: /init to agent start",
        spread(&init_to_agent),
    );
    let serving = collect(hull.iter().map(|h| h.agent_to_serving));
    table.push(
        "  agent clock: agent start to serving ttRPC",
        spread(&serving),
    );
    let host_share = collect(
        hull.iter()
            .map(|h| h.ready.checked_sub(h.agent_started? + h.agent_to_serving?)),
    );
    table.push(
        "  the rest: QEMU, firmware, kernel decompression, first Health.Check",
        spread(&host_share),
    );

    let mut traced = config.clone();
    traced
        .extra_cmdline
        .extend(["initcall_debug".to_string(), "ignore_loglevel".to_string()]);
    let (_, console) = boot_hull(&traced)
        .await
        .context("booting with initcall_debug")?;
    let calls = initcalls(&console);
    let total: u64 = calls.iter().map(|(_, us)| us).sum();
    table.push(
        format!(
            "kernel initcalls (initcall_debug boot): {} calls, sum",
            calls.len()
        ),
        format!("{:.1} ms", total as f64 / 1e3),
    );
    for (name, usecs) in calls.iter().take(10) {
        table.push(
            format!("  initcall {name}"),
            format!("{:.1} ms", *usecs as f64 / 1e3),
        );
    }
    Ok(())
}

/// Boots `config` `boots` times for an image attachment's row.
pub async fn series_row(
    label: &str,
    config: &VmConfig,
    boots: u32,
    power_offs: &mut Vec<Duration>,
    table: &mut Table,
) -> Result<()> {
    let mut ready = Vec::new();
    let mut kernel_to_agent = Vec::new();
    for boot in 1..=boots {
        let (h, _) = boot_hull(config)
            .await
            .with_context(|| format!("booting {label}"))?;
        eprintln!(
            "{label}: boot {boot}/{boots}: agent ready in {:.3} s",
            h.ready.as_secs_f64()
        );
        ready.push(h.ready);
        kernel_to_agent.extend(h.agent_started);
        power_offs.push(h.power_off);
    }
    table.push(
        format!("boot to agent ready, {label}, {boots} boots"),
        spread(&ready),
    );
    table.push(
        "  guest clock: kernel start to agent start",
        spread(&kernel_to_agent),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    0.000000] Linux version 6.1
[    0.412000] initcall pci_init+0x0/0x30 returned 0 after 1500 usecs
[    0.413000] initcall foo_init+0x0/0x10 returned -19 after 20 usecs
[    0.812345] Run /init as init process
init: INFO agent started pid=42 path=/usr/bin/hull-agent uptime_ms=900
   0.012500000s  INFO agent serving addr=vsock://-1:1024 version=0.1.0
";

    #[test]
    fn reads_the_guest_clocks() {
        assert_eq!(
            kernel_ran_init(CONSOLE),
            Some(Duration::from_secs_f64(0.812345))
        );
        assert_eq!(
            agent_serving(CONSOLE),
            Some(Duration::from_secs_f64(0.0125))
        );
        assert_eq!(kernel_timestamp("no stamp"), None);
    }

    #[test]
    fn initcalls_slowest_first() {
        assert_eq!(
            initcalls(CONSOLE),
            [("pci_init".to_string(), 1500), ("foo_init".to_string(), 20)]
        );
    }
}

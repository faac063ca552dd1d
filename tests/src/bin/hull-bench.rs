//! `just bench`: sizes of what hull ships and how fast a guest boots to a serving agent.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use hull_e2e::artifacts::{GuestArtifacts, guest_binary};
use hull_e2e::vm::{Vm, VmConfig};

#[derive(Parser)]
#[command(about = "Prints hull's size and boot-time figures")]
struct Args {
    /// How many guests to boot for the boot-time figures.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    boots: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let config = VmConfig::new(GuestArtifacts::locate()?);

    let mut rows: Vec<(String, String)> = Vec::new();
    for name in ["hull-agent", "hull-init"] {
        rows.push((
            format!("{name} binary (static, stripped)"),
            size_of(&guest_binary(name))?,
        ));
    }
    rows.push((
        "initrd (gzip cpio)".into(),
        size_of(&config.artifacts.initrd)?,
    ));
    rows.push(("kernel bzImage".into(), size_of(&config.artifacts.kernel)?));
    let vmlinux = config.artifacts.kernel.with_file_name("vmlinux");
    if vmlinux.is_file() {
        rows.push(("kernel vmlinux".into(), size_of(&vmlinux)?));
    }

    let mut ready = Vec::new();
    let mut guest_side = Vec::new();
    let mut off = Vec::new();
    for boot in 1..=args.boots {
        let mut vm = Vm::boot(&config)?;
        let (client, took) = vm.wait_for_agent(Duration::from_secs(120)).await?;
        guest_side.push(
            vm.guest_uptime_at_agent_start()
                .context("init's `agent started` line is missing from the console")?,
        );
        off.push(
            vm.power_off_through_agent(&client, Duration::from_secs(30))
                .await?,
        );
        vm.finish();
        eprintln!(
            "boot {boot}/{}: agent ready in {:.3} s",
            args.boots,
            took.as_secs_f64()
        );
        ready.push(took);
    }
    rows.push((
        format!("boot to agent ready, {} boots", args.boots),
        spread(&mut ready),
    ));
    rows.push((
        "  of which guest kernel start to agent start".into(),
        spread(&mut guest_side),
    ));
    rows.push(("DestroySandbox to VMM exit".into(), spread(&mut off)));

    println!("hull benchmark — accelerator: {}", config.accel);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("| {:width$} | value |", "what");
    println!("|-{}-|-------|", "-".repeat(width));
    for (what, value) in rows {
        println!("| {what:width$} | {value} |");
    }
    Ok(())
}

fn size_of(path: &Path) -> Result<String> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("{} (run `just artifacts`)", path.display()))?
        .len();
    Ok(format!(
        "{:.2} MiB ({bytes} bytes)",
        bytes as f64 / (1 << 20) as f64
    ))
}

/// min / median / max in seconds.
fn spread(samples: &mut [Duration]) -> String {
    samples.sort();
    let secs = |d: Duration| d.as_secs_f64();
    match (samples.first(), samples.last()) {
        (Some(min), Some(max)) => format!(
            "min {:.3} s / median {:.3} s / max {:.3} s",
            secs(*min),
            secs(samples[samples.len() / 2]),
            secs(*max)
        ),
        _ => "no samples".into(),
    }
}

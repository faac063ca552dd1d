//! `just bench`: sizes of what hull ships, how long an image takes to build, and how fast a
//! guest boots to a serving agent, from the initrd and from the disk images (DAX on
//! NVDIMM and virtio-pmem, virtio-blk without DAX).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hull_e2e::artifacts::{self, GuestArtifacts, guest_binary, workspace_root};
use hull_e2e::vm::{Attachment, ImageBoot, Vm, VmConfig};

#[derive(Parser)]
#[command(about = "Prints hull's size and boot-time figures")]
struct Args {
    /// How many guests to boot for each boot-time figure.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    boots: u32,
    /// How many times to build each image for the build-time figure.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    builds: u32,
    /// The hull-image binary [default: <workspace>/target/release/hull-image].
    #[arg(long)]
    hull_image: Option<PathBuf>,
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
    let images = [
        ("ext4", artifacts::image("ext4")?),
        ("erofs", artifacts::image("erofs")?),
    ];
    for (fs, path) in &images {
        rows.push((format!("image, {fs} (DAX header)"), size_of(path)?));
    }
    let verity = workspace_root().join("build/rootfs.ext4-verity.img");
    if verity.is_file() {
        rows.push(("image, ext4 + dm-verity tree".into(), size_of(&verity)?));
    }

    let hull_image = args
        .hull_image
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/release/hull-image"));
    for fs in ["ext4", "erofs"] {
        let mut times = Vec::new();
        for _ in 0..args.builds {
            times.push(build_image(&hull_image, fs)?);
        }
        rows.push((
            format!("image build time, {fs}, {} builds", args.builds),
            spread(&mut times),
        ));
    }

    let mut off = Vec::new();
    let initrd = boot_series("initrd", &config, args.boots, &mut off).await?;
    initrd.rows("initrd", args.boots, &mut rows);
    for (fs, path) in &images {
        for attachment in Attachment::ALL {
            if *fs == "erofs" && attachment == Attachment::VirtioPmem {
                continue; // ext4 shows the virtio-pmem figure; keep the run short
            }
            let boot = ImageBoot::new(path.clone(), fs, attachment)?;
            let label = format!(
                "{fs} on {attachment}{}",
                if attachment.dax() { " (DAX)" } else { "" }
            );
            let image_config = config.clone().with_image(boot);
            let series = boot_series(&label, &image_config, args.boots, &mut off).await?;
            series.rows(&label, args.boots, &mut rows);
        }
    }
    rows.push((
        "DestroySandbox to VMM exit, all boots".into(),
        spread(&mut off),
    ));

    println!("hull benchmark — accelerator: {}", config.accel);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("| {:width$} | value |", "what");
    println!("|-{}-|-------|", "-".repeat(width));
    for (what, value) in rows {
        println!("| {what:width$} | {value} |");
    }
    Ok(())
}

/// The boot-time figures of one series of boots.
struct Series {
    /// QEMU start to the agent's first answer.
    ready: String,
    /// The guest's own share: kernel start to init starting the agent.
    guest: String,
}

impl Series {
    fn rows(&self, label: &str, boots: u32, rows: &mut Vec<(String, String)>) {
        rows.push((
            format!("boot to agent ready, {label}, {boots} boots"),
            self.ready.clone(),
        ));
        rows.push((
            "  of which guest kernel start to agent start".into(),
            self.guest.clone(),
        ));
    }
}

/// Boots `config` `boots` times; returns its figures and appends the power-off times
/// to `off`.
async fn boot_series(
    label: &str,
    config: &VmConfig,
    boots: u32,
    off: &mut Vec<Duration>,
) -> Result<Series> {
    let mut ready = Vec::new();
    let mut guest = Vec::new();
    for boot in 1..=boots {
        let mut vm = Vm::boot(config)?;
        let (client, took) = vm
            .wait_for_agent(Duration::from_secs(120))
            .await
            .with_context(|| format!("booting {label}"))?;
        guest.push(
            vm.guest_uptime_at_agent_start()
                .context("init's `agent started` line is missing from the console")?,
        );
        off.push(
            vm.power_off_through_agent(&client, Duration::from_secs(30))
                .await?,
        );
        vm.finish();
        eprintln!(
            "{label}: boot {boot}/{boots}: agent ready in {:.3} s",
            took.as_secs_f64()
        );
        ready.push(took);
    }
    Ok(Series {
        ready: spread(&mut ready),
        guest: spread(&mut guest),
    })
}

/// Times one `hull-image image` build of the guest binaries into a scratch directory.
fn build_image(hull_image: &Path, fs: &str) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let start = Instant::now();
    let out = Command::new(hull_image)
        .args(["-q", "image", "--fs", fs, "-o"])
        .arg(dir.path().join(format!("rootfs.{fs}.img")))
        .arg("--init")
        .arg(guest_binary("hull-init"))
        .arg("--agent")
        .arg(guest_binary("hull-agent"))
        .output()
        .with_context(|| format!("running {} (run `just image`)", hull_image.display()))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "hull-image image --fs {fs} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
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

//! `just bench`: sizes of what hull ships, how long an image takes to build, and how fast a
//! guest boots to a serving agent, from the initrd and from the disk images (DAX on
//! NVDIMM and virtio-pmem, virtio-blk without DAX); then, in one guest with a virtio-fs
//! share, containers: CreateContainer+StartContainer to the first byte of output, an exec
//! round trip, and stdout throughput through ReadStdout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hull_e2e::artifacts::{self, GuestArtifacts, guest_binary, workspace_root};
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
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
    /// How many times to measure each container figure.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Only the container figures (no sizes, image builds or boot series).
    #[arg(long)]
    containers_only: bool,
    /// MiB a container writes to stdout for the throughput figure.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    stdout_mib: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let config = VmConfig::new(GuestArtifacts::locate()?);

    let mut rows: Vec<(String, String)> = Vec::new();
    if !args.containers_only {
        boot_figures(&args, &config, &mut rows).await?;
    }
    container_figures(&config, args.runs, args.stdout_mib, &mut rows).await?;

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

/// Sizes, image build times and boot series.
async fn boot_figures(
    args: &Args,
    config: &VmConfig,
    rows: &mut Vec<(String, String)>,
) -> Result<()> {
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
    let initrd = boot_series("initrd", config, args.boots, &mut off).await?;
    initrd.rows("initrd", args.boots, rows);
    for (fs, path) in &images {
        for attachment in Attachment::ALL {
            if *fs == "erofs" && attachment == Attachment::VirtioPmem {
                continue; // ext4 shows the virtio-pmem figure; keep the run short
            }
            let boot = ImageBoot::new(path.clone(), fs, attachment)?;
            let label = format!(
                "{fs} on {attachment}{}",
                if boot.dax() { " (DAX)" } else { "" }
            );
            let image_config = config.clone().with_image(boot);
            let series = boot_series(&label, &image_config, args.boots, &mut off).await?;
            series.rows(&label, args.boots, rows);
        }
    }
    rows.push((
        "DestroySandbox to VMM exit, all boots".into(),
        spread(&mut off),
    ));
    Ok(())
}

/// The container figures, in one guest: each measured `runs` times.
async fn container_figures(
    config: &VmConfig,
    runs: u32,
    stdout_mib: u32,
    rows: &mut Vec<(String, String)>,
) -> Result<()> {
    let guest = SandboxGuest::boot(config.clone()).await?;
    let client = guest.client.clone();

    let mut first_byte = Vec::new();
    for run in 1..=runs {
        let id = format!("first-byte-{run}");
        guest.busybox_rootfs(&id)?;
        let spec = ContainerSpec::new(["echo", "hi"]).to_proto(&id)?;
        let done = Container::run(&client, &id, spec).await?;
        let took = done
            .create_to_first_byte
            .with_context(|| format!("{id} printed nothing"))?;
        eprintln!(
            "container {run}/{runs}: first byte {:.3} s",
            took.as_secs_f64()
        );
        first_byte.push(took);
    }
    rows.push((
        format!("CreateContainer+StartContainer to first stdout byte, {runs} runs"),
        spread(&mut first_byte),
    ));

    guest.busybox_rootfs("exec-target")?;
    let target = Container::create(
        &client,
        "exec-target",
        ContainerSpec::new(["sleep", "3600"]).to_proto("exec-target")?,
    )
    .await?;
    target.start().await?;
    let probe = ContainerSpec::new(["true"]).process_proto()?;
    let mut round_trips = Vec::new();
    for run in 1..=runs {
        let exec_id = format!("exec-{run}");
        let asked = Instant::now();
        target.exec(&exec_id, probe.clone()).await?;
        let readers = target.readers(&exec_id, false);
        let status = target.wait(&exec_id).await?;
        readers.finish().await?;
        let took = asked.elapsed();
        if status != 0 {
            bail!("exec of `true` exited {status}");
        }
        eprintln!("exec {run}/{runs}: {:.3} s", took.as_secs_f64());
        round_trips.push(took);
    }
    target.signal("", 9).await?;
    target.wait("").await?;
    target.remove().await?;
    rows.push((
        format!("exec round trip (ExecProcess of `true` to WaitProcess and EOF), {runs} runs"),
        spread(&mut round_trips),
    ));

    let bytes = u64::from(stdout_mib) << 20;
    let mut rates = Vec::new();
    for run in 1..=runs {
        let id = format!("throughput-{run}");
        guest.busybox_rootfs(&id)?;
        let spec = ContainerSpec::new(["head", "-c", &bytes.to_string(), "/dev/zero"]);
        let container = Container::create(&client, &id, spec.to_proto(&id)?).await?;
        let readers = container.readers("", false);
        container.start().await?;
        let status = container.wait("").await?;
        let (out, _) = readers.finish().await?;
        let ended = Instant::now();
        container.remove().await?;
        if status != 0 || out.bytes.len() as u64 != bytes {
            bail!(
                "{id}: status {status}, {} bytes of {bytes}",
                out.bytes.len()
            );
        }
        let first = out.first_byte_at.context("no output")?;
        let rate = bytes as f64 / 1e6 / (ended - first).as_secs_f64();
        eprintln!(
            "stdout {run}/{runs}: {rate:.1} MB/s in {} reads of ReadStdout",
            out.reads
        );
        rates.push(rate);
    }
    rows.push((
        format!("stdout throughput (ReadStdout), {stdout_mib} MiB, {runs} runs"),
        spread_rate(&mut rates),
    ));
    guest.power_off().await?;
    Ok(())
}

/// min / median / max in MB/s.
fn spread_rate(samples: &mut [f64]) -> String {
    samples.sort_by(f64::total_cmp);
    match (samples.first(), samples.last()) {
        (Some(min), Some(max)) => format!(
            "min {min:.1} MB/s / median {:.1} MB/s / max {max:.1} MB/s",
            samples[samples.len() / 2]
        ),
        _ => "no samples".into(),
    }
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

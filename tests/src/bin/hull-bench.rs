//! `./run bench`: hull's figures, each speed figure next to a baseline measured in the same
//! run, printed as one Markdown table.
//!
//! - sizes of what hull ships and how long an image takes to build;
//! - boot: QEMU start to the agent's first answer from the initrd, against a bare initrd
//!   whose `/init` only powers off (same kernel, same QEMU line), the guest's share by its
//!   own clocks, the ten slowest kernel initcalls, and each disk-image attachment;
//! - memory of a 128 MiB guest with the agent idle, and after a container, booted from the
//!   initrd and from an erofs image on an NVDIMM with DAX; the smallest `-m` that runs a
//!   container;
//! - stdio: ReadStdout throughput (32 KiB and 1 MiB reads) against raw vsock;
//! - containers: CreateContainer+StartContainer to the first byte, against ExecProcess in
//!   a running container and a plain fork+exec in the guest;
//! - the agent policy: the same call with and without a policy in force, in a guest
//!   booted from the initrd whose agent has the policy engine (`build/initrd-policy.img`).
//!
//! Times are min / median / max; a ratio compares medians.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hull_e2e::artifacts::{self, GuestArtifacts, POLICY_AGENT, guest_binary, workspace_root};
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::{Attachment, ImageBoot, VmConfig};

#[path = "../bench/mod.rs"]
mod bench;

use bench::baseline::Baselines;
use bench::table::{Table, bytes, spread};

#[derive(Parser)]
#[command(about = "Prints hull's size, boot, memory, stdio and container figures")]
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
    /// How many times to measure each container and stdio figure.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Only the memory, stdio and container figures (no sizes, image builds or boots).
    #[arg(long)]
    containers_only: bool,
    /// Only the agent policy figures (the check in-process, and one guest).
    #[arg(long)]
    policy_only: bool,
    /// Only the stdio figures (one guest: raw vsock, ReadStdout, stdout_port).
    #[arg(long)]
    stdio_only: bool,
    /// Only the memory figures (both boot media and the smallest guest).
    #[arg(long)]
    memory_only: bool,
    /// Leave out the search for the smallest guest (several extra boots).
    #[arg(long)]
    no_min_memory: bool,
    /// MiB a container writes for the throughput figures.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    stdout_mib: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let config = VmConfig::new(GuestArtifacts::locate()?);
    let baselines = Baselines::build()?;

    let mut table = Table::default();
    if args.policy_only {
        policy_figures(&config, args.runs, &mut table).await?;
        print!("{}", table.render());
        return Ok(());
    }
    if args.stdio_only {
        let guest = SandboxGuest::boot(stdio_guest(&config)).await?;
        stdio_figures(&guest, &baselines, &args, &mut table).await?;
        guest.power_off().await?;
        print!("{}", table.render());
        return Ok(());
    }
    if !args.containers_only && !args.memory_only {
        size_figures(&args, &config, &mut table)?;
        boot_figures(&args, &config, &baselines, &mut table).await?;
    }
    memory_figures(&args, &config, &mut table).await?;
    if args.memory_only {
        print!("{}", table.render());
        return Ok(());
    }
    let guest = SandboxGuest::boot(stdio_guest(&config)).await?;
    bench::containers::figures(&guest, &baselines.guest_helper, args.runs, &mut table).await?;
    stdio_figures(&guest, &baselines, &args, &mut table).await?;
    guest.power_off().await?;
    policy_figures(&config, args.runs, &mut table).await?;

    println!(
        "hull benchmark — accelerator: {}; guests: {} vCPU, {} MiB unless said; \
         times min / median / max, ratios of medians",
        config.accel, config.cpus, config.memory_mib
    );
    print!("{}", table.render());
    Ok(())
}

/// Memory from the initrd and from the erofs image on an NVDIMM with DAX, and the
/// smallest guest (from the initrd).
async fn memory_figures(args: &Args, config: &VmConfig, table: &mut Table) -> Result<()> {
    bench::memory::figures(config, "the initrd", table).await?;
    let image = ImageBoot::new(artifacts::image("erofs")?, "erofs", Attachment::Nvdimm)?;
    let from_image = config.clone().with_image(image);
    bench::memory::figures(&from_image, "erofs on an NVDIMM with DAX", table).await?;
    if !args.no_min_memory {
        bench::memory::smallest_guest(config, table).await?;
    }
    Ok(())
}

/// The agent policy: the check in-process, then one guest booted from the initrd whose
/// agent has the engine (the default agent answers SetPolicy UNIMPLEMENTED).
async fn policy_figures(config: &VmConfig, runs: u32, table: &mut Table) -> Result<()> {
    bench::policy::check_figures(runs, table)?;
    let mut with_engine = config.clone();
    with_engine.artifacts = GuestArtifacts::locate_with_policy_engine()?;
    let guest = SandboxGuest::boot(with_engine).await?;
    bench::policy::figures(&guest, runs, table).await?;
    guest.power_off().await?;
    Ok(())
}

/// The stdio rows, in a guest booted with [`stdio_guest`].
async fn stdio_figures(
    guest: &SandboxGuest,
    baselines: &Baselines,
    args: &Args,
    table: &mut Table,
) -> Result<()> {
    bench::stdio::figures(
        guest,
        &baselines.guest_helper,
        args.runs,
        args.stdout_mib,
        table,
    )
    .await
}

/// The guest with the stdio listener, for the stdio-port figure (Kata's passfd io).
fn stdio_guest(config: &VmConfig) -> VmConfig {
    let mut config = config.clone();
    config
        .extra_cmdline
        .push(hull_e2e::stdio_ports::listener_cmdline());
    config
}

/// Sizes and image build times.
fn size_figures(args: &Args, config: &VmConfig, table: &mut Table) -> Result<()> {
    for (name, label) in [
        ("hull-agent", "hull-agent binary (static, stripped)"),
        (
            POLICY_AGENT,
            "hull-agent with the policy engine (hull-agent-policy)",
        ),
        ("hull-init", "hull-init binary (static, stripped)"),
    ] {
        table.push(label, size_of(&guest_binary(name))?);
    }
    table.push("initrd (gzip cpio)", size_of(&config.artifacts.initrd)?);
    table.push(
        "initrd with the policy-enabled agent (gzip cpio)",
        size_of(&GuestArtifacts::locate_with_policy_engine()?.initrd)?,
    );
    table.push("kernel bzImage", size_of(&config.artifacts.kernel)?);
    let vmlinux = config.artifacts.kernel.with_file_name("vmlinux");
    if vmlinux.is_file() {
        table.push("kernel vmlinux", size_of(&vmlinux)?);
    }
    for fs in ["ext4", "erofs"] {
        table.push(
            format!("image, {fs} (DAX header)"),
            size_of(&artifacts::image(fs)?)?,
        );
    }
    let verity = workspace_root().join("build/rootfs.ext4-verity.img");
    if verity.is_file() {
        table.push("image, ext4 + dm-verity tree", size_of(&verity)?);
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
        table.push(
            format!("image build time, {fs}, {} builds", args.builds),
            spread(&times),
        );
    }
    Ok(())
}

/// The initrd against the bare baseline, then every image attachment.
async fn boot_figures(
    args: &Args,
    config: &VmConfig,
    baselines: &Baselines,
    table: &mut Table,
) -> Result<()> {
    let mut bare = config.clone();
    bare.artifacts.initrd = baselines.bare_initrd.clone();
    let mut power_offs = Vec::new();
    bench::boot::initrd_figures(config, &bare, args.boots, &mut power_offs, table).await?;
    for fs in ["ext4", "erofs"] {
        let path = artifacts::image(fs)?;
        for attachment in Attachment::ALL {
            if fs == "erofs" && attachment == Attachment::VirtioPmem {
                continue; // ext4 shows the virtio-pmem figure; keep the run short
            }
            let boot = ImageBoot::new(path.clone(), fs, attachment)?;
            let label = format!(
                "{fs} on {attachment}{}",
                if boot.dax() { " (DAX)" } else { "" }
            );
            let image = config.clone().with_image(boot);
            bench::boot::series_row(&label, &image, args.boots, &mut power_offs, table).await?;
        }
    }
    table.push("DestroySandbox to VMM exit, all boots", spread(&power_offs));
    Ok(())
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
    let count = std::fs::metadata(path)
        .with_context(|| format!("{} (run `just artifacts`)", path.display()))?
        .len();
    Ok(bytes(count))
}

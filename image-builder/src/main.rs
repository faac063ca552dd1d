//! `hull-image`: builds hull's guest kernel and initramfs. See the library for the work.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use hull_image::cache::Cache;
use hull_image::initrd::{self, Extra, InitrdRequest};
use hull_image::kernel::{self, KernelRequest};
use hull_image::progress::{Progress, fmt_duration, fmt_size};
use hull_image::{Arch, workspace};

#[derive(Debug, Parser)]
#[command(
    name = "hull-image",
    version,
    about = "Build hull's guest kernel and initramfs"
)]
struct Cli {
    /// More logging on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No progress lines on stderr (errors and the final summary still print).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the guest kernel (allnoconfig + kernel-config fragments), cached by content.
    Kernel(KernelArgs),
    /// Build the gzip-compressed newc initramfs with hull-init and hull-agent.
    Initrd(InitrdArgs),
}

#[derive(Debug, clap::Args)]
struct KernelArgs {
    /// Output directory: receives bzImage, vmlinux and config.
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Kernel source tarball.
    #[arg(long, value_name = "PATH", default_value = kernel::DEFAULT_SOURCE)]
    source: PathBuf,
    /// Folder of config fragments [default: <workspace>/kernel-config].
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Guest architecture.
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
    /// Also apply debug.conf.opt (sysrq, /proc/config.gz, early printk).
    #[arg(long)]
    debug: bool,
    /// Parallel make jobs [default: number of CPUs].
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Rebuild even if the cache holds this kernel (the new build replaces the entry).
    #[arg(long)]
    no_cache: bool,
    /// Keep the work directory (extracted and built tree, ~1.5 GB) after a successful build.
    #[arg(long)]
    keep_build_dir: bool,
}

#[derive(Debug, clap::Args)]
struct InitrdArgs {
    /// Output file (written atomically).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Static init binary, installed as /init
    /// [default: <workspace>/target/x86_64-unknown-linux-gnu/guest/hull-init].
    #[arg(long, value_name = "PATH")]
    init: Option<PathBuf>,
    /// Static agent binary, installed as /usr/bin/hull-agent
    /// [default: <workspace>/target/x86_64-unknown-linux-gnu/guest/hull-agent].
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
    /// Extra host file SRC copied to absolute path DST in the initrd (repeatable).
    #[arg(long, value_name = "SRC:DST")]
    extra: Vec<Extra>,
    /// Guest architecture (the binaries must be built for it).
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

fn run_kernel(args: KernelArgs, progress: &Progress) -> anyhow::Result<()> {
    let jobs = match args.jobs {
        Some(n) => usize::from(n),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let req = KernelRequest {
        source: args.source,
        config_dir: args
            .config_dir
            .unwrap_or_else(workspace::default_config_dir),
        arch: args.arch,
        debug: args.debug,
        jobs,
        no_cache: args.no_cache,
        keep_build_dir: args.keep_build_dir,
    };
    let cache = Cache::from_env().context("cannot locate the hull cache")?;
    let built = kernel::ensure_built(&req, &cache, progress).context("kernel build failed")?;
    let phase = progress.phase("copying", format!("into {}", args.output.display()));
    let installed = kernel::install(&built, &args.output)
        .with_context(|| format!("cannot install the kernel into {}", args.output.display()))?;
    phase.done("");
    let how = if built.hit {
        "from the cache".to_string()
    } else {
        format!("built in {}", fmt_duration(progress.elapsed()))
    };
    println!(
        "kernel {} ({how}, key {}): {}: {}",
        built
            .record
            .as_ref()
            .map_or("?", |r| r.kernel_release.as_str()),
        &built.key[..16],
        args.output.display(),
        kernel::describe(&installed)
    );
    Ok(())
}

fn run_initrd(args: InitrdArgs, progress: &Progress) -> anyhow::Result<()> {
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let req = InitrdRequest {
        init: args
            .init
            .unwrap_or_else(|| workspace::default_guest_binary(args.arch, "hull-init")),
        agent: args
            .agent
            .unwrap_or_else(|| workspace::default_guest_binary(args.arch, "hull-agent")),
        extras: args.extra,
        arch: args.arch,
        mtime: initrd::mtime_from_source_date_epoch(sde.as_deref())?,
    };
    let phase = progress.phase("initrd", format!("{}", args.output.display()));
    let summary = initrd::build(&req, &args.output)
        .with_context(|| format!("cannot build the initrd {}", args.output.display()))?;
    phase.done(format!(
        "{} entries, cpio {}",
        summary.entries,
        fmt_size(summary.cpio_bytes)
    ));
    println!(
        "{} {} bytes sha256:{}",
        summary.path.display(),
        summary.bytes,
        summary.sha256
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let progress = Progress::new(!cli.quiet);
    let result = match cli.command {
        Command::Kernel(args) => run_kernel(args, &progress),
        Command::Initrd(args) => run_initrd(args, &progress),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hull-image: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

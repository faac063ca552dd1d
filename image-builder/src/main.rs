//! `hull-image`: builds hull's guest kernel, initramfs, root tree and disk images. See the
//! library for the work.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use hull_image::agent_check;
use hull_image::cache::Cache;
use hull_image::image::{self, ImageRequest};
use hull_image::initrd::{self, Extra, InitrdRequest};
use hull_image::kernel::{self, KernelRequest};
use hull_image::manifest::{self, Manifest};
use hull_image::mkfs::FsType;
use hull_image::progress::{Progress, fmt_duration, fmt_size};
use hull_image::rootfs::{self, RootfsRequest};
use hull_image::{Arch, guide, workspace};

#[derive(Debug, Parser)]
#[command(
    name = "hull-image",
    version,
    about = "Build hull's guest kernel, initramfs, root tree and disk images (rootless, reproducible)"
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
    /// Write the guest root tree (init, agent, mount points, /etc) into a directory.
    Rootfs(RootfsArgs),
    /// Build a raw disk image (ext4 or erofs) that boots from an NVDIMM/virtio-pmem with
    /// DAX and from virtio-blk, with its manifest; prints how to attach it.
    Image(ImageArgs),
    /// Print the attach guide (QEMU, cloud-hypervisor, Firecracker, vmm-lite, Kata) of a built image.
    Attach(AttachArgs),
}

/// What goes into the root tree (shared by `rootfs` and `image`).
#[derive(Debug, clap::Args)]
struct TreeArgs {
    /// Static init binary, installed as /sbin/init
    /// [default: <workspace>/target/x86_64-unknown-linux-gnu/guest/hull-init].
    #[arg(long, value_name = "PATH")]
    init: Option<PathBuf>,
    /// Static agent binary, installed as /usr/bin/hull-agent
    /// [default: <workspace>/target/x86_64-unknown-linux-gnu/guest/hull-agent].
    #[arg(long, value_name = "PATH")]
    agent: Option<PathBuf>,
    /// Add busybox (Debian's busybox-static) as /bin/busybox with a link per applet, for a
    /// debug console.
    #[arg(long)]
    debug_tools: bool,
    /// The static busybox used by --debug-tools.
    #[arg(long, value_name = "PATH", default_value = rootfs::DEFAULT_BUSYBOX, requires = "debug_tools")]
    busybox: PathBuf,
    /// A Rego agent policy (package agent_policy) installed as
    /// /etc/kata-opa/default-policy.rego: the agent enforces it from its start, until a
    /// SetPolicy that it allows replaces it. Without one, every request is allowed.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Extra host file SRC copied to absolute path DST in the tree (repeatable).
    #[arg(long, value_name = "SRC:DST")]
    extra: Vec<Extra>,
    /// Add Debian's iptables tools from this host (legacy backend, with their libraries
    /// and plugins) for the agent's GetIPTables/SetIPTables.
    #[arg(long)]
    with_iptables: bool,
    /// Guest architecture (the binaries must be built for it).
    #[arg(long, value_enum, default_value_t = Arch::X86_64)]
    arch: Arch,
}

impl TreeArgs {
    fn request(self) -> RootfsRequest {
        RootfsRequest {
            init: self
                .init
                .unwrap_or_else(|| workspace::default_guest_binary(self.arch, "hull-init")),
            agent: self
                .agent
                .unwrap_or_else(|| workspace::default_guest_binary(self.arch, "hull-agent")),
            busybox: self.debug_tools.then_some(self.busybox),
            extras: with_policy(self.extra, self.policy),
            with_iptables: self.with_iptables,
            arch: self.arch,
        }
    }
}

#[derive(Debug, clap::Args)]
struct RootfsArgs {
    /// Output directory (must not exist, or be empty; see --force).
    #[arg(short, long, value_name = "DIR")]
    output: PathBuf,
    /// Replace an existing, non-empty output directory.
    #[arg(long)]
    force: bool,
    /// Manifest path [default: <DIR>.manifest.json].
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    tree: TreeArgs,
}

#[derive(Debug, clap::Args)]
struct ImageArgs {
    /// Output image file (written atomically).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Root filesystem.
    #[arg(long = "fs", value_enum, default_value_t = FsType::Ext4)]
    fs: FsType,
    /// Write a plain partitioned image: no NVDIMM pfn block (no DAX), filesystem at 1 MiB.
    #[arg(long)]
    no_dax_header: bool,
    /// Append a dm-verity hash tree to the filesystem and print the root hash.
    #[arg(long)]
    verity: bool,
    /// Fixed image size, a multiple of 2 MiB (e.g. 64M, 1G) [default: content plus a small
    /// margin, rounded up to 2 MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    size: Option<u64>,
    /// A `hull-image kernel -o DIR` directory: recorded in the manifest and the attach guide.
    #[arg(long, value_name = "DIR")]
    kernel: Option<PathBuf>,
    /// Manifest path [default: <FILE>.manifest.json].
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    tree: TreeArgs,
}

#[derive(Debug, clap::Args)]
struct AttachArgs {
    /// The image's manifest (`<image>.manifest.json`).
    #[arg(value_name = "MANIFEST")]
    manifest: PathBuf,
}

/// The `--extra` files and the `--policy` file, which goes where the agent reads it.
fn with_policy(mut extras: Vec<Extra>, policy: Option<PathBuf>) -> Vec<Extra> {
    extras.extend(policy.map(Extra::agent_policy));
    extras
}

/// An image that carries an agent policy needs the agent with the policy engine: refuses
/// an agent that says it lacks it, warns when the agent cannot be asked (a missing agent
/// is left to the build's own error).
fn check_agent_for_policy(agent: &Path, arch: Arch, extras: &[Extra]) -> anyhow::Result<()> {
    if !agent_check::carries_policy(extras) || !agent.is_file() {
        return Ok(());
    }
    if let Some(warning) = agent_check::check_policy_engine(agent, arch)? {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// Parses `123`, `64M`, `64MiB`, `1G`, `512K` (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 64M or 1G"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(format!("unknown unit in `{s}`: use K, M or G")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
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
    /// A Rego agent policy (package agent_policy) installed as
    /// /etc/kata-opa/default-policy.rego: the agent enforces it from its start, until a
    /// SetPolicy that it allows replaces it. Without one, every request is allowed.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Extra host file SRC copied to absolute path DST in the initrd (repeatable).
    #[arg(long, value_name = "SRC:DST")]
    extra: Vec<Extra>,
    /// Add Debian's iptables tools from this host (iptables-save/-restore and the ip6
    /// ones, legacy backend, with their libraries and plugins) for the agent's
    /// GetIPTables/SetIPTables.
    #[arg(long)]
    with_iptables: bool,
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
        extras: with_policy(args.extra, args.policy),
        with_iptables: args.with_iptables,
        arch: args.arch,
        mtime: initrd::mtime_from_source_date_epoch(sde.as_deref())?,
    };
    check_agent_for_policy(&req.agent, req.arch, &req.extras)?;
    let phase = progress.phase("initrd", format!("{}", args.output.display()));
    let summary = initrd::build(&req, &args.output)
        .with_context(|| format!("cannot build the initrd {}", args.output.display()))?;
    let manifest_path = manifest::default_path(&args.output);
    let mut m = Manifest::new("initrd", req.arch.name(), req.mtime);
    m.artifacts.push(manifest::artifact(
        "initrd",
        &args.output,
        &manifest::dir_of(&manifest_path),
    )?);
    m.write(&manifest_path)?;
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

fn epoch() -> anyhow::Result<u32> {
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    Ok(initrd::mtime_from_source_date_epoch(sde.as_deref())?)
}

fn run_rootfs(args: RootfsArgs, progress: &Progress) -> anyhow::Result<()> {
    let epoch = epoch()?;
    let manifest_path = args
        .manifest
        .unwrap_or_else(|| manifest::default_path(&args.output));
    let req = args.tree.request();
    check_agent_for_policy(&req.agent, req.arch, &req.extras)?;
    let phase = progress.phase("rootfs", args.output.display().to_string());
    let tree = image::build_rootfs(&req, &args.output, &manifest_path, epoch, args.force)
        .with_context(|| format!("cannot build the root tree {}", args.output.display()))?;
    phase.done(format!("{} entries", tree.entries.len()));
    println!(
        "{} {} entries {} bytes tree-sha256:{} manifest {}",
        args.output.display(),
        tree.entries.len(),
        tree.file_bytes,
        tree.digest,
        manifest_path.display()
    );
    Ok(())
}

fn run_image(args: ImageArgs, progress: &Progress) -> anyhow::Result<()> {
    let rootfs = args.tree.request();
    check_agent_for_policy(&rootfs.agent, rootfs.arch, &rootfs.extras)?;
    let req = ImageRequest {
        rootfs,
        fs: args.fs,
        dax_header: !args.no_dax_header,
        verity: args.verity,
        size: args.size,
        kernel_dir: args.kernel,
        epoch: epoch()?,
        manifest: args
            .manifest
            .unwrap_or_else(|| manifest::default_path(&args.output)),
    };
    let summary = image::build(&req, &args.output, progress)
        .with_context(|| format!("cannot build the image {}", args.output.display()))?;
    let verity = summary
        .manifest
        .image
        .as_ref()
        .and_then(|i| i.verity.as_ref())
        .map(|v| format!(" verity-root-hash:{}", v.root_hash))
        .unwrap_or_default();
    if progress.enabled() {
        let input = image::guide_input(&summary.manifest, &summary.manifest_path)?;
        eprintln!("\n{}", guide::guide(&input));
    }
    println!(
        "{} {} bytes sha256:{}{verity} manifest {}",
        summary.path.display(),
        summary.bytes,
        summary.sha256,
        summary.manifest_path.display()
    );
    Ok(())
}

fn run_attach(args: AttachArgs) -> anyhow::Result<()> {
    let m = Manifest::read(&args.manifest)?;
    let input = image::guide_input(&m, &args.manifest)?;
    print!("{}", guide::guide(&input));
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let progress = Progress::new(!cli.quiet);
    let result = match cli.command {
        Command::Kernel(args) => run_kernel(args, &progress),
        Command::Initrd(args) => run_initrd(args, &progress),
        Command::Rootfs(args) => run_rootfs(args, &progress),
        Command::Image(args) => run_image(args, &progress),
        Command::Attach(args) => run_attach(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hull-image: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

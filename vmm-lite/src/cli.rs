//! Command line: flags → [`VmConfig`], run, and the exit status (0 when the guest powered
//! off or rebooted; 1 with a message on any error).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use vmm_lite::config::{Console, DiskConfig, FsConfig, NetConfig, PmemConfig, VsockConfig};
use vmm_lite::{ExitReason, Vm, VmConfig};

/// A small VMM on the rust-vmm crates that boots hull guests.
#[derive(Debug, Parser)]
#[command(name = "vmm-lite", version)]
struct Args {
    /// Kernel: bzImage or ELF vmlinux (PVH entry used when the ELF has the note).
    #[arg(long)]
    kernel: PathBuf,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Raw disk image on virtio-blk, `IMG` or `IMG,ro`; repeat for more disks.
    #[arg(long, value_name = "IMG[,ro]", value_parser = parse_disk)]
    disk: Vec<DiskConfig>,
    /// File mapped read-only as virtio-pmem (size a multiple of 2 MiB); repeatable.
    #[arg(long, value_name = "IMG")]
    pmem: Vec<PathBuf>,
    /// Kernel command line (vmm-lite adds reboot=k and the virtio_mmio.device= words).
    #[arg(long, default_value = "")]
    append: String,
    /// Guest memory, with a K, M or G suffix (bytes without); a multiple of 2 MiB.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    mem: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u8,
    /// virtio-vsock as a hybrid-vsock Unix socket: `uds=PATH[,cid=N]` (cid 3 by default).
    #[arg(long, value_name = "uds=PATH[,cid=N]", value_parser = parse_vsock)]
    vsock: Option<VsockConfig>,
    /// vhost-user-fs device: `tag=TAG,socket=PATH` (virtiofsd's socket); repeatable.
    #[arg(long, value_name = "tag=TAG,socket=PATH", value_parser = parse_fs)]
    fs: Vec<FsConfig>,
    /// virtio-net on a host tap: `tap=NAME[,mac=02:00:00:00:00:01]`; repeatable.
    #[arg(long, value_name = "tap=NAME[,mac=MAC]", value_parser = parse_net)]
    net: Vec<NetConfig>,
    /// Write the serial console to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    console: Option<PathBuf>,
    /// Stop the guest (exit status 1) if it has not ended after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Register the test "done" port 0xf4 (payloads end by writing their code there; the
    /// code becomes the exit status).
    #[arg(long)]
    debug_exit: bool,
}

pub fn main() -> ExitCode {
    init_logging();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmm-lite: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = std::env::var("VMM_LITE_LOG").unwrap_or_else(|_| "warn".into());
    let level = filter.parse().unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let config = config_from(args)?;
    let vm = Vm::build(config).context("building the VM")?;
    tracing::info!(cmdline = vm.cmdline(), "starting the guest");
    match vm.run().context("running the guest")? {
        ExitReason::Reset => Ok(ExitCode::SUCCESS),
        ExitReason::Done(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))),
        other => bail!("the guest ended unexpectedly: {other:?}"),
    }
}

fn config_from(args: Args) -> anyhow::Result<VmConfig> {
    let timeout = match args.timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => bail!("--timeout must be a positive number of seconds, not {secs}"),
        None => None,
    };
    let mut config = VmConfig::new(args.kernel);
    config.initrd = args.initrd;
    config.cmdline = args.append;
    config.mem_bytes = args.mem;
    config.vcpus = args.vcpus;
    config.console = args.console.map_or(Console::Stdout, Console::File);
    config.disks = args.disk;
    config.pmems = args
        .pmem
        .into_iter()
        .map(|path| PmemConfig { path })
        .collect();
    config.vsock = args.vsock;
    config.fs = args.fs;
    config.net = args.net;
    config.debug_exit = args.debug_exit;
    config.watchdog = timeout;
    Ok(config)
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 256M, 1G or 16777216"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `key=value` pairs separated by commas.
fn pairs(s: &str) -> Result<Vec<(&str, &str)>, String> {
    s.split(',')
        .map(|part| {
            part.split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))
        })
        .collect()
}

fn parse_disk(s: &str) -> Result<DiskConfig, String> {
    let (path, read_only) = match s.rsplit_once(',') {
        Some((path, "ro")) => (path, true),
        Some((path, "rw")) => (path, false),
        Some((_, other)) => return Err(format!("unknown disk option {other:?} (ro or rw)")),
        None => (s, false),
    };
    if path.is_empty() {
        return Err("empty disk path".into());
    }
    Ok(DiskConfig {
        path: path.into(),
        read_only,
    })
}

fn parse_vsock(s: &str) -> Result<VsockConfig, String> {
    let mut uds = None;
    let mut cid = 3;
    for (key, value) in pairs(s)? {
        match key {
            "uds" => uds = Some(PathBuf::from(value)),
            "cid" => {
                cid = value
                    .parse()
                    .ok()
                    .filter(|&c: &u64| c >= 3 && c < u64::from(u32::MAX))
                    .ok_or_else(|| format!("cid {value:?} is not a number from 3 up"))?;
            }
            other => return Err(format!("unknown vsock option {other:?} (uds, cid)")),
        }
    }
    Ok(VsockConfig {
        uds: uds.ok_or("vsock needs uds=PATH")?,
        cid,
    })
}

fn parse_fs(s: &str) -> Result<FsConfig, String> {
    let mut tag = None;
    let mut socket = None;
    for (key, value) in pairs(s)? {
        match key {
            "tag" => tag = Some(value.to_string()),
            "socket" => socket = Some(PathBuf::from(value)),
            other => return Err(format!("unknown fs option {other:?} (tag, socket)")),
        }
    }
    let tag = tag.ok_or("fs needs tag=TAG")?;
    if tag.is_empty() || tag.len() > 36 {
        return Err(format!("fs tag {tag:?} must be 1 to 36 bytes"));
    }
    Ok(FsConfig {
        tag,
        socket: socket.ok_or("fs needs socket=PATH")?,
    })
}

fn parse_net(s: &str) -> Result<NetConfig, String> {
    let mut tap = None;
    // Locally administered, unicast.
    let mut mac = [0x02, 0, 0, 0, 0, 0x01];
    for (key, value) in pairs(s)? {
        match key {
            "tap" => tap = Some(value.to_string()),
            "mac" => {
                let bytes: Vec<u8> = value
                    .split(':')
                    .map(|b| u8::from_str_radix(b, 16))
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("mac {value:?} is not like 02:00:00:00:00:01"))?;
                mac = bytes
                    .try_into()
                    .map_err(|_| format!("mac {value:?} needs six bytes"))?;
                if mac[0] & 1 != 0 {
                    return Err(format!("mac {value:?} is a multicast address"));
                }
            }
            other => return Err(format!("unknown net option {other:?} (tap, mac)")),
        }
    }
    Ok(NetConfig {
        tap: tap.ok_or("net needs tap=NAME")?,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_reject_garbage() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn device_options_parse() {
        assert_eq!(
            parse_disk("a.img,ro"),
            Ok(DiskConfig {
                path: "a.img".into(),
                read_only: true
            })
        );
        assert!(!parse_disk("a.img").unwrap().read_only);
        assert!(parse_disk("a.img,bogus").is_err());
        let v = parse_vsock("uds=/tmp/v.sock,cid=7").unwrap();
        assert_eq!((v.uds.to_str(), v.cid), (Some("/tmp/v.sock"), 7));
        assert_eq!(parse_vsock("uds=/x").unwrap().cid, 3);
        assert!(parse_vsock("cid=3").is_err());
        assert!(parse_vsock("uds=/x,cid=2").is_err());
        let f = parse_fs("tag=kataShared,socket=/tmp/fs.sock").unwrap();
        assert_eq!(f.tag, "kataShared");
        assert!(parse_fs("socket=/x").is_err());
        let n = parse_net("tap=tap0,mac=02:aa:bb:cc:dd:ee").unwrap();
        assert_eq!(
            (n.tap.as_str(), n.mac),
            ("tap0", [2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee])
        );
        assert!(parse_net("tap=t,mac=01:00:00:00:00:00").is_err());
        assert!(parse_net("tap=t,mac=02:00").is_err());
        assert!(parse_net("mac=02:00:00:00:00:01").is_err());
    }

    #[test]
    fn flags_build_the_config() {
        let args = Args::try_parse_from([
            "vmm-lite",
            "--kernel",
            "k",
            "--mem",
            "512M",
            "--vcpus",
            "2",
            "--disk",
            "d,ro",
            "--pmem",
            "p",
            "--console",
            "c.log",
            "--append",
            "console=ttyS0",
        ])
        .unwrap();
        let config = config_from(args).unwrap();
        assert_eq!(config.mem_bytes, 512 << 20);
        assert_eq!(config.vcpus, 2);
        assert_eq!(config.disks.len(), 1);
        assert_eq!(config.pmems.len(), 1);
        assert_eq!(config.cmdline, "console=ttyS0");
        assert!(matches!(config.console, Console::File(_)));
        assert!(Args::try_parse_from(["vmm-lite"]).is_err());
    }
}

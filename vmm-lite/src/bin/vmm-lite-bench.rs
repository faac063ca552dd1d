//! `./run bench`'s vmm-lite part: binary size, time from process start to a payload's first
//! serial byte, and RSS while the payload runs, for vmm-lite (on /dev/kvm) next to QEMU
//! (TCG) booting the same payload: an ELF with a PVH note whose 32-bit code prints a line
//! on COM1 and spins. Each figure is the median of `--runs` boots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use iced_x86::code_asm::{CodeAssembler, al, dx};
use vmm_lite::payload::{self, TempFile};

#[derive(Parser)]
#[command(about = "vmm-lite's size, first-serial-byte time and RSS, next to QEMU's")]
struct Args {
    /// Boots per figure.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The vmm-lite binary [default: next to this one].
    #[arg(long)]
    vmm_lite: Option<PathBuf>,
}

const LINE: &str = "payload up\n";
const DEADLINE: Duration = Duration::from_secs(30);

/// 32-bit PVH payload: print [`LINE`], spin.
fn payload() -> Result<Vec<u8>> {
    let mut a = CodeAssembler::new(32)?;
    a.mov(dx, u32::from(payload::SERIAL_PORT))?;
    for b in LINE.bytes() {
        a.mov(al, u32::from(b))?;
        a.out(dx, al)?;
    }
    let mut spin = a.create_label();
    a.set_label(&mut spin)?;
    a.jmp(spin)?;
    Ok(payload::elf_pvh(&a.assemble(payload::LOAD_ADDR)?))
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// RSS in KiB from /proc/PID/smaps_rollup.
fn rss_kib(pid: u32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no Rss line in smaps_rollup")
}

/// One boot: time to the first console byte, then RSS 200 ms later.
fn measure(mut cmd: Command, console: &Path) -> Result<(Duration, u64)> {
    let _ = std::fs::remove_file(console);
    let start = Instant::now();
    // The VMM's stderr, removed on every way out.
    let log = TempFile::with_bytes("bench.stderr", b"")?;
    let mut child = Killed(
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log.0)?)
            .spawn()
            .context("starting the VMM")?,
    );
    let stderr = || std::fs::read_to_string(&log.0).unwrap_or_default();
    let first = loop {
        if std::fs::metadata(console).is_ok_and(|m| m.len() > 0) {
            break start.elapsed();
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("the VMM exited ({status}) before printing: {}", stderr());
        }
        if start.elapsed() > DEADLINE {
            bail!("no console byte within {DEADLINE:?}: {}", stderr());
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    std::thread::sleep(Duration::from_millis(200));
    let rss = rss_kib(child.0.id())?;
    let text = std::fs::read_to_string(console).unwrap_or_default();
    if !text.starts_with(LINE.trim_end()) {
        bail!("unexpected console output {text:?}");
    }
    Ok((first, rss))
}

fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

fn series(runs: u32, make: impl Fn() -> Command, console: &Path) -> Result<(Duration, u64)> {
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..runs {
        let (t, r) = measure(make(), console)?;
        times.push(t);
        rss.push(r);
    }
    Ok((median(times), median(rss)))
}

fn size_mib(path: &Path) -> String {
    std::fs::metadata(path).map_or_else(
        |e| format!("? ({e})"),
        |m| format!("{:.1} MiB", m.len() as f64 / (1 << 20) as f64),
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    let vmm_lite = match args.vmm_lite {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("no directory for this binary")?
            .join("vmm-lite"),
    };
    if !vmm_lite.is_file() {
        bail!(
            "{} not found: cargo build --release -p vmm-lite",
            vmm_lite.display()
        );
    }
    let elf = TempFile::with_bytes("bench.elf", &payload()?)?;
    let console = TempFile::with_bytes("bench-console.log", b"")?;
    let mut rows: Vec<(String, String, String)> = Vec::new();

    let lite = series(
        args.runs,
        || {
            let mut c = Command::new(&vmm_lite);
            c.arg("--kernel").arg(&elf.0).args(["--mem", "64M"]);
            c.arg("--console").arg(&console.0).args(["--timeout", "60"]);
            c
        },
        &console.0,
    )
    .context("vmm-lite")?;

    let qemu_bin = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file());
    let qemu = match &qemu_bin {
        Some(bin) => Some(
            series(
                args.runs,
                || {
                    let mut c = Command::new(bin);
                    c.args(["-machine", "pc,accel=tcg", "-m", "64", "-nodefaults"])
                        .args(["-no-user-config", "-display", "none", "-serial"])
                        .arg(format!("file:{}", console.0.display()))
                        .arg("-kernel")
                        .arg(&elf.0);
                    c
                },
                &console.0,
            )
            .context("QEMU")?,
        ),
        None => None,
    };

    let na = || "not installed".to_string();
    rows.push((
        "binary size".into(),
        size_mib(&vmm_lite),
        qemu_bin.as_deref().map_or_else(na, size_mib),
    ));
    rows.push((
        "process start → first serial byte (median)".into(),
        format!("{:.1} ms", lite.0.as_secs_f64() * 1e3),
        qemu.map_or_else(na, |q| format!("{:.1} ms", q.0.as_secs_f64() * 1e3)),
    ));
    rows.push((
        "RSS while the payload runs (median)".into(),
        format!("{:.1} MiB", lite.1 as f64 / 1024.0),
        qemu.map_or_else(na, |q| format!("{:.1} MiB", q.1 as f64 / 1024.0)),
    ));

    println!(
        "vmm-lite benchmark — a PVH payload printing one line, {} runs; vmm-lite on /dev/kvm{}, QEMU with TCG",
        args.runs,
        if Path::new("/sys/module/kvm_pvm").exists() {
            " (PVM)"
        } else {
            ""
        }
    );
    println!("| what | vmm-lite | QEMU |");
    println!("|---|---|---|");
    for (what, a, b) in rows {
        println!("| {what} | {a} | {b} |");
    }
    Ok(())
}

//! Stdio throughput: a container's `head -c N /dev/zero` read through `ReadStdout` with the
//! read length Kata's runtime uses (32 KiB) and with a large one (1 MiB), and carried on a
//! vsock stdio port (Kata's passfd io: `stdout_port`, the agent copying the pipe into the
//! connection), next to the raw vsock path of the same guest: a process in a container
//! writing N bytes to a host Unix socket through hybrid vsock (guest connection to host
//! port P → `<uds>_P`). Each rate is N over the time from the first byte to the end of
//! the stream.
//!
//! Two more figures separate the writer from the path: `head` alone writing into
//! `/dev/null` (busybox's `head` copies in small pieces: under TCG it is slower than the
//! vsock path), and `ReadStdout` of the raw vsock run's own writer (`guest-helper
//! stdout-write N`, 64 KiB writes of zeros), so that ReadStdout and raw vsock carry the
//! same writer's bytes (and on the stdio port).

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::stdio_ports::StdioPortDialer;
use hull_protocols::agent::CreateContainerRequest;
use hull_protocols::client::Stream;

use super::table::{Table, median_of, ratio, spread_of};

/// Kata's runtime reads stdout 32 KiB at a time.
pub const KATA_READ_LEN: u32 = 32 << 10;
/// The large read length (the agent's maximum).
pub const LARGE_READ_LEN: u32 = 1 << 20;
/// First host vsock port the raw-vsock runs listen on.
const VSOCK_PORT: u32 = 5100;
const ACCEPT_DEADLINE: Duration = Duration::from_secs(60);

/// The process whose stdout is read.
#[derive(Clone, Copy)]
enum Writer {
    /// `head -c N /dev/zero` (busybox: small writes, and its own copy loop).
    Head,
    /// `guest-helper stdout-write N`: 64 KiB writes of zeros, the raw vsock run's writer.
    Helper,
}

impl Writer {
    /// The container's command; puts the helper into `rootfs` when it is the writer.
    fn command(self, rootfs: &Path, helper: &Path, bytes: u64) -> Result<Vec<String>> {
        Ok(match self {
            Self::Head => vec![
                "head".into(),
                "-c".into(),
                bytes.to_string(),
                "/dev/zero".into(),
            ],
            Self::Helper => {
                std::fs::copy(helper, rootfs.join("bin/guest-helper"))
                    .context("copying guest-helper")?;
                vec![
                    "/bin/guest-helper".into(),
                    "stdout-write".into(),
                    bytes.to_string(),
                ]
            }
        })
    }
}

/// The agent's page faults (minor) and CPU time (user + system clock ticks) so far, read
/// by a container in the guest's PID namespace: what one read costs the guest beyond
/// its wall time, which a loaded host blurs.
async fn agent_costs(guest: &SandboxGuest, id: &str) -> Result<(u64, u64)> {
    let script = "for p in /proc/[0-9]*; do \
         if [ \"$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\" = '/usr/bin/hull-agent ' ]; then \
         cut -d' ' -f10,14,15 $p/stat; fi; done";
    let spec = ContainerSpec::shell(script)
        .in_guest_pid_namespace()
        .with_capability("CAP_SYS_PTRACE");
    let out = guest.run_container(id, &spec).await?;
    let text = out.stdout.text();
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{id}: agent stat {text:?}"))?;
    let [faults, user, system] = fields[..] else {
        bail!("{id}: agent stat {text:?} ({})", out.stderr.text());
    };
    Ok((faults, user + system))
}

/// One `ReadStdout` run: MB/s and how many reads answered data.
struct ReadRun {
    rate: f64,
    reads: u64,
}

/// One `ReadStdout` run with `read_len` of `writer`'s output.
async fn read_stdout_rate(
    guest: &SandboxGuest,
    (writer, helper): (Writer, &Path),
    id: &str,
    bytes: u64,
    read_len: u32,
) -> Result<ReadRun> {
    let rootfs = guest.busybox_rootfs(id)?;
    let spec = ContainerSpec::new(writer.command(&rootfs, helper, bytes)?);
    let container = Container::create(&guest.client, id, spec.to_proto(id)?).await?;
    let blocking = guest.client.clone().with_timeout(Duration::ZERO);
    let (client, cid) = (blocking.clone(), id.to_string());
    let stderr = tokio::spawn(async move { client.read_to_end(&cid, "", Stream::Stderr).await });
    let (client, cid) = (blocking, id.to_string());
    let stdout = tokio::spawn(async move {
        let (mut total, mut reads) = (0u64, 0u64);
        let mut first = None;
        loop {
            let chunk = client.read_stdout(&cid, "", read_len).await?;
            if chunk.is_empty() {
                return Ok::<_, anyhow::Error>((total, reads, first, Instant::now()));
            }
            first.get_or_insert_with(Instant::now);
            total += chunk.len() as u64;
            reads += 1;
        }
    });
    container.start().await?;
    let status = container.wait("").await?;
    let (total, reads, first, end) = stdout.await.context("the stdout reader")??;
    stderr.await.context("the stderr reader")??;
    container.remove().await?;
    ensure!(
        status == 0 && total == bytes,
        "{id}: status {status}, {total} bytes of {bytes}"
    );
    let first = first.context("no output")?;
    Ok(ReadRun {
        rate: bytes as f64 / 1e6 / (end - first).as_secs_f64(),
        reads,
    })
}

/// MB/s of the writer alone: `head -c N /dev/zero` into `/dev/null` in a container, timed
/// by the guest's clock (`/proc/uptime`, 10 ms steps): the most any stdio path can carry.
async fn writer_alone_rate(guest: &SandboxGuest, id: &str, bytes: u64) -> Result<f64> {
    guest.busybox_rootfs(id)?;
    let script = format!(
        "cut -d' ' -f1 /proc/uptime; head -c {bytes} /dev/zero >/dev/null; cut -d' ' -f1 /proc/uptime"
    );
    let run = Container::run(
        &guest.client,
        id,
        ContainerSpec::shell(&script).to_proto(id)?,
    )
    .await?;
    ensure!(run.status == 0, "{id}: exited {}", run.status);
    let out = run.stdout.text();
    let times: Vec<f64> = out
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{id}: uptimes {out:?}"))?;
    let [start, end] = times[..] else {
        bail!("{id}: uptimes {out:?}");
    };
    Ok(bytes as f64 / 1e6 / (end - start).max(0.01))
}

/// MB/s of one run with stdout on a vsock stdio port, read from the host's connection.
async fn stdout_port_rate(
    guest: &SandboxGuest,
    dialer: &StdioPortDialer,
    (writer, helper): (Writer, &Path),
    id: &str,
    bytes: u64,
) -> Result<f64> {
    let rootfs = guest.busybox_rootfs(id)?;
    let (mut stream, stdout_port) = dialer.connect().await?;
    let spec = ContainerSpec::new(writer.command(&rootfs, helper, bytes)?);
    let req = CreateContainerRequest {
        container_id: id.into(),
        exec_id: id.into(),
        OCI: Some(spec.to_proto(id)?).into(),
        stdout_port,
        ..Default::default()
    };
    guest.client.create_container(&req).await?;
    let container = Container::attach(&guest.client, id);
    let reader = std::thread::spawn(move || -> Result<(u64, Option<Instant>, Instant)> {
        count_to_eof(&mut stream)
    });
    let blocking = guest.client.clone().with_timeout(Duration::ZERO);
    let cid = id.to_string();
    let stderr = tokio::spawn(async move { blocking.read_to_end(&cid, "", Stream::Stderr).await });
    container.start().await?;
    let status = container.wait("").await?;
    let (total, first, end) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))??;
    stderr.await.context("the stderr reader")??;
    container.remove().await?;
    ensure!(
        status == 0 && total == bytes,
        "{id}: status {status}, {total} bytes of {bytes}"
    );
    let first = first.context("no output")?;
    Ok(bytes as f64 / 1e6 / (end - first).as_secs_f64())
}

/// Reads `stream` to its end: the bytes, when the first arrived, when it ended.
fn count_to_eof(stream: &mut impl Read) -> Result<(u64, Option<Instant>, Instant)> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut total, mut first) = (0u64, None);
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok((total, first, Instant::now()));
        }
        first.get_or_insert_with(Instant::now);
        total += n as u64;
    }
}

/// MB/s of one raw vsock run: `guest-helper vsock-write` in a container to a host socket.
async fn vsock_rate(
    guest: &SandboxGuest,
    helper: &Path,
    id: &str,
    bytes: u64,
    port: u32,
) -> Result<f64> {
    let rootfs = guest.busybox_rootfs(id)?;
    std::fs::copy(helper, rootfs.join("bin/guest-helper")).context("copying guest-helper")?;
    let path = guest.vm().host_vsock_listener_path(port);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    listener.set_nonblocking(true)?;
    let reader = std::thread::spawn(move || -> Result<(u64, Option<Instant>, Instant)> {
        let asked = Instant::now();
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if asked.elapsed() > ACCEPT_DEADLINE {
                        bail!("the guest did not connect within {ACCEPT_DEADLINE:?}");
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e.into()),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(ACCEPT_DEADLINE))?;
        count_to_eof(&mut stream)
    });
    let spec = ContainerSpec::new([
        "/bin/guest-helper".to_string(),
        "vsock-write".to_string(),
        port.to_string(),
        bytes.to_string(),
    ]);
    let run = Container::run(&guest.client, id, spec.to_proto(id)?).await?;
    let read = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the vsock reader panicked"));
    let _ = std::fs::remove_file(&path);
    ensure!(
        run.status == 0,
        "{id}: guest-helper exited {}: {}",
        run.status,
        run.stderr.text()
    );
    let (total, first, end) = read??;
    ensure!(total == bytes, "{id}: {total} bytes of {bytes} arrived");
    let first = first.context("no bytes")?;
    Ok(bytes as f64 / 1e6 / (end - first).as_secs_f64())
}

/// The `ReadStdout` runs: (writer, read length, row name, log name).
const READ_SERIES: [(Writer, u32, &str, &str); 4] = [
    (
        Writer::Head,
        KATA_READ_LEN,
        "32 KiB reads (Kata's)",
        "head 32 KiB",
    ),
    (Writer::Head, LARGE_READ_LEN, "1 MiB reads", "head 1 MiB"),
    (
        Writer::Helper,
        KATA_READ_LEN,
        "32 KiB reads, the vsock run's writer (64 KiB writes)",
        "64 KiB writes 32 KiB",
    ),
    (
        Writer::Helper,
        LARGE_READ_LEN,
        "1 MiB reads, the vsock run's writer (64 KiB writes)",
        "64 KiB writes 1 MiB",
    ),
];

/// The throughput figures, `runs` each, interleaved: raw vsock, the writer alone,
/// `ReadStdout` (two writers, two read lengths) and the stdout port.
pub async fn figures(
    guest: &SandboxGuest,
    helper: &Path,
    runs: u32,
    mib: u32,
    table: &mut Table,
) -> Result<()> {
    let bytes = u64::from(mib) << 20;
    let (mut raw, mut alone) = (Vec::new(), Vec::new());
    let (mut port, mut port_helper) = (Vec::new(), Vec::new());
    let mut reads: Vec<Vec<f64>> = vec![Vec::new(); READ_SERIES.len()];
    let dialer = StdioPortDialer::start(guest, helper, "stdio-probe").await?;
    for run in 1..=runs {
        let id = VSOCK_PORT + run;
        raw.push(vsock_rate(guest, helper, &format!("vsock-{run}"), bytes, id).await?);
        alone.push(writer_alone_rate(guest, &format!("writer-{run}"), bytes).await?);
        let mut line = format!(
            "stdio {run}/{runs}: raw vsock {:.1} MB/s, head alone {:.1} MB/s",
            raw[raw.len() - 1],
            alone[alone.len() - 1]
        );
        for (series, (writer, len, _, name)) in READ_SERIES.iter().enumerate() {
            let id = format!("stdout-{series}-{run}");
            let before = agent_costs(guest, &format!("{id}-costs-before")).await?;
            let got = read_stdout_rate(guest, (*writer, helper), &id, bytes, *len).await?;
            let after = agent_costs(guest, &format!("{id}-costs-after")).await?;
            let per_read = bytes as f64 / 1024.0 / got.reads.max(1) as f64;
            let per_mib = |a: u64, b: u64| a.saturating_sub(b) as f64 / f64::from(mib);
            line += &format!(
                ", ReadStdout {name} {:.1} MB/s ({} reads, {per_read:.1} KiB each; \
                 agent {:.0} faults and {:.1} ticks per MiB)",
                got.rate,
                got.reads,
                per_mib(after.0, before.0),
                per_mib(after.1, before.1)
            );
            reads[series].push(got.rate);
        }
        let id = format!("stdout-port-{run}");
        port.push(stdout_port_rate(guest, &dialer, (Writer::Head, helper), &id, bytes).await?);
        let id = format!("stdout-port-helper-{run}");
        port_helper
            .push(stdout_port_rate(guest, &dialer, (Writer::Helper, helper), &id, bytes).await?);
        eprintln!(
            "{line}, stdout_port head {:.1} MB/s, 64 KiB writes {:.1} MB/s",
            port[port.len() - 1],
            port_helper[port_helper.len() - 1]
        );
    }
    dialer.stop().await?;
    let base = median_of(&raw);
    table.push(
        format!("raw vsock, guest process to host socket, {mib} MiB, {runs} runs (\"vsock\")"),
        spread_of(&raw, "MB/s", 1),
    );
    table.push_versus(
        format!("head -c {mib}M /dev/zero alone, into /dev/null (the guest's clock)"),
        spread_of(&alone, "MB/s", 1),
        ratio(median_of(&alone), base, "vsock"),
    );
    for ((_, _, what, _), rates) in READ_SERIES.iter().zip(&reads) {
        table.push_versus(
            format!("stdout through ReadStdout, {what}, {mib} MiB"),
            spread_of(rates, "MB/s", 1),
            ratio(median_of(rates), base, "vsock"),
        );
    }
    table.push_versus(
        format!("stdout on a vsock stdio port (stdout_port), {mib} MiB"),
        spread_of(&port, "MB/s", 1),
        format!(
            "{}; {}",
            ratio(median_of(&port), base, "vsock"),
            ratio(median_of(&port), median_of(&reads[0]), "ReadStdout 32 KiB")
        ),
    );
    table.push_versus(
        format!("stdout on a vsock stdio port, the vsock run's writer (64 KiB writes), {mib} MiB"),
        spread_of(&port_helper, "MB/s", 1),
        ratio(median_of(&port_helper), base, "vsock"),
    );
    Ok(())
}

//! Stdio throughput: a container's `head -c N /dev/zero` read through `ReadStdout` with the
//! read length Kata's runtime uses (32 KiB) and with a large one (1 MiB), and carried on a
//! vsock stdio port (Kata's passfd io: `stdout_port`, the agent copying the pipe into the
//! connection), next to the raw vsock path of the same guest: a process in a container
//! writing N bytes to a host Unix socket through hybrid vsock (guest connection to host
//! port P → `<uds>_P`). Each rate is N over the time from the first byte to the end of
//! the stream.

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

/// MB/s of one `ReadStdout` run with `read_len`.
async fn read_stdout_rate(
    guest: &SandboxGuest,
    id: &str,
    bytes: u64,
    read_len: u32,
) -> Result<f64> {
    guest.busybox_rootfs(id)?;
    let spec = ContainerSpec::new(["head", "-c", &bytes.to_string(), "/dev/zero"]);
    let container = Container::create(&guest.client, id, spec.to_proto(id)?).await?;
    let blocking = guest.client.clone().with_timeout(Duration::ZERO);
    let (client, cid) = (blocking.clone(), id.to_string());
    let stderr = tokio::spawn(async move { client.read_to_end(&cid, "", Stream::Stderr).await });
    let (client, cid) = (blocking, id.to_string());
    let stdout = tokio::spawn(async move {
        let mut total = 0u64;
        let mut first = None;
        loop {
            let chunk = client.read_stdout(&cid, "", read_len).await?;
            if chunk.is_empty() {
                return Ok::<_, anyhow::Error>((total, first, Instant::now()));
            }
            first.get_or_insert_with(Instant::now);
            total += chunk.len() as u64;
        }
    });
    container.start().await?;
    let status = container.wait("").await?;
    let (total, first, end) = stdout.await.context("the stdout reader")??;
    stderr.await.context("the stderr reader")??;
    container.remove().await?;
    ensure!(
        status == 0 && total == bytes,
        "{id}: status {status}, {total} bytes of {bytes}"
    );
    let first = first.context("no output")?;
    Ok(bytes as f64 / 1e6 / (end - first).as_secs_f64())
}

/// MB/s of one run with stdout on a vsock stdio port, read from the host's connection.
async fn stdout_port_rate(
    guest: &SandboxGuest,
    dialer: &StdioPortDialer,
    id: &str,
    bytes: u64,
) -> Result<f64> {
    guest.busybox_rootfs(id)?;
    let (mut stream, stdout_port) = dialer.connect().await?;
    let spec = ContainerSpec::new(["head", "-c", &bytes.to_string(), "/dev/zero"]);
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

/// The four throughput figures, `runs` each, interleaved.
pub async fn figures(
    guest: &SandboxGuest,
    helper: &Path,
    runs: u32,
    mib: u32,
    table: &mut Table,
) -> Result<()> {
    let bytes = u64::from(mib) << 20;
    let (mut kata, mut large, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let mut port = Vec::new();
    let dialer = StdioPortDialer::start(guest, helper, "stdio-probe").await?;
    for run in 1..=runs {
        raw.push(
            vsock_rate(
                guest,
                helper,
                &format!("vsock-{run}"),
                bytes,
                VSOCK_PORT + run,
            )
            .await?,
        );
        kata.push(
            read_stdout_rate(guest, &format!("stdout-32k-{run}"), bytes, KATA_READ_LEN).await?,
        );
        large.push(
            read_stdout_rate(guest, &format!("stdout-1m-{run}"), bytes, LARGE_READ_LEN).await?,
        );
        port.push(stdout_port_rate(guest, &dialer, &format!("stdout-port-{run}"), bytes).await?);
        eprintln!(
            "stdio {run}/{runs}: raw vsock {:.1} MB/s, ReadStdout 32 KiB {:.1} MB/s, 1 MiB {:.1} MB/s, stdout_port {:.1} MB/s",
            raw[raw.len() - 1],
            kata[kata.len() - 1],
            large[large.len() - 1],
            port[port.len() - 1]
        );
    }
    dialer.stop().await?;
    let base = median_of(&raw);
    table.push(
        format!("raw vsock, guest process to host socket, {mib} MiB, {runs} runs (\"vsock\")"),
        spread_of(&raw, "MB/s", 1),
    );
    table.push_versus(
        format!("stdout through ReadStdout, 32 KiB reads (Kata's), {mib} MiB"),
        spread_of(&kata, "MB/s", 1),
        ratio(median_of(&kata), base, "vsock"),
    );
    table.push_versus(
        format!("stdout through ReadStdout, 1 MiB reads, {mib} MiB"),
        spread_of(&large, "MB/s", 1),
        ratio(median_of(&large), base, "vsock"),
    );
    table.push_versus(
        format!("stdout on a vsock stdio port (stdout_port), {mib} MiB"),
        spread_of(&port, "MB/s", 1),
        format!(
            "{}; {}",
            ratio(median_of(&port), base, "vsock"),
            ratio(median_of(&port), median_of(&kata), "ReadStdout 32 KiB")
        ),
    );
    Ok(())
}

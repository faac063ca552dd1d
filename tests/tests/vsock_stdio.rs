//! Stdio over vsock ports (Kata's passfd io) in a real guest: the agent listens on
//! `agent.passfd_listener_port`, the host opens one hybrid-vsock connection per stream
//! and names each by its host port in `CreateContainer`/`ExecProcess`. Bytes arrive
//! whole and in order both ways, the output streams are closed by the time `WaitProcess`
//! answers, the RPC stdio of such a process answers as documented, and a port nobody
//! connected from is refused in bounded time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::guest_helper::GuestHelper;
use hull_e2e::stdio_ports::{self, StdioPortDialer};
use hull_e2e::vm::VmConfig;
use hull_protocols::agent::{CreateContainerRequest, ExecProcessRequest};
use hull_protocols::ttrpc::Code;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a stream to its end on a thread: (bytes, their sha256, when the end came).
fn hash_to_end(mut stream: UnixStream) -> std::thread::JoinHandle<Result<(u64, String, Instant)>> {
    std::thread::spawn(move || {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buf).context("reading a stdio stream")?;
            if n == 0 {
                return Ok((total, hex(&hasher.finalize()), Instant::now()));
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
    })
}

fn text_to_end(mut stream: UnixStream) -> std::thread::JoinHandle<Result<String>> {
    std::thread::spawn(move || {
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .context("reading a stdio stream")?;
        Ok(text)
    })
}

/// Pseudo-random bytes (xorshift), so reordering or loss changes the hash.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_over_vsock_ports() -> Result<()> {
    let artifacts = GuestArtifacts::locate()?;
    let helper = GuestHelper::build()?;
    let mut config = VmConfig::new(artifacts);
    config.extra_cmdline.push(stdio_ports::listener_cmdline());
    let guest = SandboxGuest::boot(config).await?;
    let client = guest.client.clone();
    let dialer = StdioPortDialer::start(&guest, &helper.path, "probe").await?;

    // 256 MiB of random bytes out through stdout_port; the container hashes what it
    // writes and sends the hash through stderr_port.
    let size: u64 = 256 << 20;
    let (stdout, stdout_port) = dialer.connect().await?;
    let (stderr, stderr_port) = dialer.connect().await?;
    eprintln!("stdout from host port {stdout_port}, stderr from {stderr_port}");
    let id = "big";
    guest.busybox_rootfs(id)?;
    let script = format!(
        "mkfifo /dev/shm/tap; sha256sum < /dev/shm/tap >&2 & \
         head -c {size} /dev/urandom | tee /dev/shm/tap; wait"
    );
    let req = CreateContainerRequest {
        container_id: id.into(),
        exec_id: id.into(),
        OCI: Some(ContainerSpec::shell(&script).to_proto(id)?).into(),
        stdout_port,
        stderr_port,
        ..Default::default()
    };
    client
        .create_container(&req)
        .await
        .context("CreateContainer")?;
    let big = Container::attach(&client, id);
    let out = hash_to_end(stdout);
    let err = text_to_end(stderr);
    let started = Instant::now();
    big.start().await?;
    // The streams are the connections': ReadStdout answers the end of the stream at once.
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_stdout(id, "", 4096));
    let read = read.await.context("ReadStdout of a carried stdout")??;
    ensure!(read.is_empty(), "ReadStdout answered {} bytes", read.len());
    let status = big.wait("").await.context("WaitProcess")?;
    let waited = Instant::now();
    let (total, ours, out_end) = out.join().expect("stdout reader")?;
    let theirs = err.join().expect("stderr reader")?;
    let took = out_end - started;
    ensure!(status == 0, "the container exited {status}: {theirs}");
    ensure!(total == size, "{total} bytes arrived of {size}");
    ensure!(
        theirs.split_whitespace().next() == Some(ours.as_str()),
        "sha256 in the guest {theirs:?}, of what arrived {ours}"
    );
    // The agent closed the stream before answering WaitProcess: its end is here at most
    // a moment after the answer (the two travel different connections).
    ensure!(
        out_end <= waited + Duration::from_secs(2),
        "stdout ended {:?} after WaitProcess answered",
        out_end - waited
    );
    eprintln!(
        "256 MiB through stdout_port in {took:?} ({:.1} MB/s)",
        size as f64 / 1e6 / took.as_secs_f64()
    );
    big.remove().await?;

    // An exec'd process with stdin and stdout on ports: 32 MiB in, its sha256 out; and
    // WriteStdin to it is refused.
    let worker = guest
        .start_container("worker", &ContainerSpec::shell("exec sleep 600"))
        .await?;
    let (mut stdin, stdin_port) = dialer.connect().await?;
    let (stdout, stdout_port) = dialer.connect().await?;
    let exec = |exec_id: &str, script: &str, stdin_port: u32, stdout_port: u32| {
        Ok::<_, anyhow::Error>(ExecProcessRequest {
            container_id: "worker".into(),
            exec_id: exec_id.into(),
            process: Some(ContainerSpec::shell(script).process_proto()?).into(),
            stdin_port,
            stdout_port,
            ..Default::default()
        })
    };
    client
        .exec_process(&exec("hash", "sha256sum", stdin_port, stdout_port)?)
        .await
        .context("ExecProcess with stdin and stdout ports")?;
    let out = text_to_end(stdout);
    let data = noise(32 << 20);
    let expected = hex(&Sha256::digest(&data));
    let writer = std::thread::spawn(move || -> Result<()> {
        stdin.write_all(&data)?;
        stdin.shutdown(std::net::Shutdown::Write)?;
        Ok(())
    });
    let refused = client
        .write_stdin("worker", "hash", b"x")
        .await
        .unwrap_err();
    ensure!(
        refused.rpc_code() == Some(Code::FAILED_PRECONDITION),
        "WriteStdin of a carried stdin: {refused}"
    );
    writer.join().expect("stdin writer")?;
    let status = worker.wait("hash").await?;
    let said = out.join().expect("stdout reader")?;
    ensure!(status == 0, "sha256sum exited {status}");
    ensure!(
        said.split_whitespace().next() == Some(expected.as_str()),
        "sha256 of stdin in the guest {said:?}, sent {expected}"
    );

    // Order and the end: 100000 numbered lines arrive in order, then the end of the
    // stream, before WaitProcess answers; nothing stays behind on the RPCs.
    let (stdout, stdout_port) = dialer.connect().await?;
    client
        .exec_process(&exec("count", "seq 1 100000", 0, stdout_port)?)
        .await?;
    let out = text_to_end(stdout);
    let status = worker.wait("count").await?;
    let text = out.join().expect("stdout reader")?;
    ensure!(status == 0, "seq exited {status}");
    let expected: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    ensure!(text == expected, "seq's lines arrived lost or out of order");

    // The transport alone: 64 MiB written 1 MiB at a time (`head -c` writes in small
    // pieces, which the bench's figure includes).
    let (stdout, stdout_port) = dialer.connect().await?;
    client
        .exec_process(&exec(
            "dd",
            "dd if=/dev/zero bs=1048576 count=64 2>/dev/null",
            0,
            stdout_port,
        )?)
        .await?;
    let asked = Instant::now();
    let out = hash_to_end(stdout);
    let status = worker.wait("dd").await?;
    let (total, _, end) = out.join().expect("stdout reader")?;
    ensure!(
        status == 0 && total == 64 << 20,
        "dd: status {status}, {total} bytes"
    );
    eprintln!(
        "64 MiB from dd bs=1M through stdout_port: {:.1} MB/s",
        total as f64 / 1e6 / (end - asked).as_secs_f64()
    );

    // Bad input: a port no connection came from is refused, naming it, in bounded time;
    // the process is not started, and the exec id is free afterwards.
    let asked = Instant::now();
    let err = client
        .exec_process(&exec("ghost", "echo never", 0, 1)?)
        .await
        .unwrap_err();
    let took = asked.elapsed();
    ensure!(
        err.rpc_code() == Some(Code::DEADLINE_EXCEEDED),
        "an unknown stdout_port: {err}"
    );
    ensure!(
        err.rpc_message()
            .is_some_and(|m| m.contains("stdout_port 1")),
        "the message names the port: {err}"
    );
    ensure!(took < Duration::from_secs(10), "refused after {took:?}");
    let missing = worker.wait("ghost").await.unwrap_err();
    ensure!(
        missing.rpc_code() == Some(Code::NOT_FOUND),
        "the refused process exists: {missing}"
    );
    client
        .exec_process(&exec("ghost", "true", 0, 0)?)
        .await
        .context("the exec id after the refusal")?;
    ensure!(worker.wait("ghost").await? == 0);

    worker.remove().await?;
    dialer.stop().await?;
    guest.power_off().await?;
    Ok(())
}

//! Reliability you can measure, in one real guest each:
//!
//! - the soak: `HULL_SOAK_CYCLES` (50 unless told; `./run soak 1000`) container lifecycles
//!   (create → start → stream → wait → remove), every tenth cycle also an exec, a signal,
//!   a pause/resume or an OOM kill, while 16 other clients call StatsContainer,
//!   ListInterfaces and GetGuestDetails at once. At fixed points it prints cycle times, the
//!   agent's memory (`smaps_rollup`), fds and threads and the guest's mounts, cgroups,
//!   processes and `MemAvailable`; it fails on a leaked fd, mount, cgroup or process, on
//!   agent growth, on cycles getting slower, on a lost OOM event or on any failed call;
//! - stdio at scale: `HULL_STDIO_MIB` (32 unless told; `./run stdio 1024`) through
//!   ReadStdout and through WriteStdin with sha256 on both ends and the client
//!   reconnecting mid-stream, a read in flight when its client goes away, and a slow
//!   reader (the container blocks on its full pipe, the agent does not grow).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::container::{Container, read_until};
use hull_e2e::guest::SandboxGuest;
use hull_e2e::inspect::{Inspection, inspect};
use hull_e2e::vm::{BackendState, PROBE_PORT, PROBE_TIMEOUT, VmConfig, probe_backend};
use hull_protocols::client::{AgentClient, Stream};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;
/// Concurrent clients beside the soak's cycles.
const CLIENTS: usize = 16;
/// Pause between two calls of one concurrent client.
const CLIENT_PAUSE: Duration = Duration::from_millis(200);
/// The long-lived container the concurrent clients ask StatsContainer about.
const STEADY: &str = "steady";

/// A fixed piece of host work (sha256 of 2 MiB in this unoptimised test build, tens of
/// milliseconds), timed: the machine's speed at that moment, to set cycle times against.
fn yardstick() -> Duration {
    let data = vec![0x5au8; 2 << 20];
    let started = Instant::now();
    std::hint::black_box(Sha256::digest(std::hint::black_box(&data)));
    started.elapsed()
}

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value
            .parse()
            .with_context(|| format!("{name}={value:?} is not a number")),
        _ => Ok(default),
    }
}

/// What a cycle does besides create → start → wait → remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 64 KiB through ReadStdout.
    Stream,
    /// An exec into the running container.
    Exec,
    /// SIGTERM to a process that traps it.
    Signal,
    /// PauseContainer, StatsContainer, ResumeContainer.
    PauseResume,
    /// Over its memory limit: the OOM killer ends it.
    Oom,
}

fn kind(cycle: usize) -> Kind {
    match cycle % 10 {
        3 => Kind::Exec,
        5 => Kind::Signal,
        7 => Kind::PauseResume,
        9 => Kind::Oom,
        _ => Kind::Stream,
    }
}

/// One cycle as container `id`.
async fn cycle(guest: &SandboxGuest, id: &str, kind: Kind) -> Result<()> {
    let client = &guest.client;
    match kind {
        Kind::Stream => {
            let run = guest
                .run_container(
                    id,
                    &ContainerSpec::new(["head", "-c", "65536", "/dev/zero"]),
                )
                .await?;
            ensure!(
                run.status == 0 && run.stdout.bytes.len() == 65536,
                "{id}: status {}, {} bytes",
                run.status,
                run.stdout.bytes.len()
            );
        }
        Kind::Exec => {
            let container = guest
                .start_container(id, &ContainerSpec::new(["sleep", "600"]))
                .await?;
            let exec = ContainerSpec::new(["echo", id]).process_proto()?;
            container.exec("e", exec).await?;
            let readers = container.readers("e", false);
            let status = container.wait("e").await?;
            let (out, _) = readers.finish().await?;
            ensure!(
                status == 0 && out.text().trim() == id,
                "{id}: exec ended {status} with {:?}",
                out.text()
            );
            container.signal("", SIGKILL).await?;
            let status = container.wait("").await?;
            ensure!(
                status == 128 + SIGKILL,
                "{id}: SIGKILL ended it with {status}"
            );
            container.remove().await?;
        }
        Kind::Signal => {
            let spec = ContainerSpec::shell(
                "trap 'exit 42' TERM; echo waiting; while :; do sleep 1; done",
            );
            let container = guest.start_container(id, &spec).await?;
            read_until(client, id, "", "waiting").await?;
            container.signal(id, SIGTERM).await?;
            let status = container.wait("").await?;
            ensure!(status == 42, "{id}: SIGTERM ended it with {status}");
            container.remove().await?;
        }
        Kind::PauseResume => {
            let container = guest
                .start_container(id, &ContainerSpec::new(["sleep", "600"]))
                .await?;
            client.pause_container(id).await?;
            let stats = container.stats().await?;
            ensure!(
                stats.cgroup_stats.pids_stats.current >= 1,
                "{id}: paused, its cgroup counts no process"
            );
            client.resume_container(id).await?;
            container.signal("", SIGKILL).await?;
            let status = container.wait("").await?;
            ensure!(
                status == 128 + SIGKILL,
                "{id}: SIGKILL ended it with {status}"
            );
            container.remove().await?;
        }
        Kind::Oom => {
            let hog = ContainerSpec {
                memory_limit: Some(16 << 20),
                ..ContainerSpec::new(["dd", "if=/dev/zero", "of=/dev/null", "bs=32M", "count=1"])
            };
            let run = guest.run_container(id, &hog).await?;
            ensure!(
                run.status == 128 + SIGKILL,
                "{id}: the hog ended with {} ({})",
                run.status,
                run.stderr.text()
            );
        }
    }
    // The bundle's host side goes too: a long soak would fill the share.
    std::fs::remove_dir_all(guest.share().join(id))
        .with_context(|| format!("removing {id}'s bundle"))?;
    Ok(())
}

/// The `q` quantile (0..=1) of `values`, sorted in place.
fn quantile(values: &mut [Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index.min(values.len() - 1)]
}

fn print_checkpoint(cycle: usize, window: &[Duration], seen: &Inspection) {
    let mut window = window.to_vec();
    let (p50, p99) = (quantile(&mut window, 0.5), quantile(&mut window, 0.99));
    eprintln!(
        "soak: cycle {cycle:>5}: cycle time median {p50:>7.1?} p99 {p99:>7.1?}; agent Rss {} KiB \
         (anonymous {} KiB) Pss {} KiB, {} fds, {} threads; guest: {} mounts, {} cgroups, {} processes, \
         MemAvailable {} KiB",
        seen.agent.rss_kib,
        seen.agent.anonymous_kib,
        seen.agent.pss_kib,
        seen.agent.fds,
        seen.agent.threads,
        seen.mounts.len(),
        seen.cgroups.len(),
        seen.processes.len(),
        seen.mem_available_kib
    );
}

/// What the concurrent clients saw.
#[derive(Default)]
struct ClientLoad {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

/// The running concurrent clients.
struct Clients {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<ClientLoad>>,
}

impl Clients {
    /// Stops them; adds what they saw to `load`.
    async fn stop(self, load: &mut ClientLoad) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let done = task.await.context("a concurrent client")?;
            load.latencies.extend(done.latencies);
            load.errors.extend(done.errors);
        }
        Ok(())
    }
}

/// Starts [`CLIENTS`] clients, each on its own connection, calling until stopped.
async fn start_clients(guest: &SandboxGuest) -> Result<Clients> {
    let stop = Arc::new(AtomicBool::new(false));
    let address = guest.vm().agent_address();
    let mut tasks = Vec::new();
    for index in 0..CLIENTS {
        let client = AgentClient::connect(&address, Duration::from_secs(30))
            .await
            .with_context(|| format!("concurrent client {index}"))?;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut load = ClientLoad::default();
            let mut call = index;
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let result = match call % 3 {
                    0 => client.stats_container(STEADY).await.map(drop),
                    1 => client.list_interfaces().await.map(drop),
                    _ => client.guest_details().await.map(drop),
                };
                load.latencies.push(asked.elapsed());
                if let Err(e) = result {
                    load.errors.push(format!("client {index}: {e}"));
                }
                call += 1;
                tokio::time::sleep(CLIENT_PAUSE).await;
            }
            load
        }));
    }
    Ok(Clients { stop, tasks })
}

/// Collects every GetOOMEvent answer until aborted.
fn collect_oom_events(
    client: &AgentClient,
) -> (JoinHandle<()>, Arc<std::sync::Mutex<Vec<String>>>) {
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = client.clone().with_timeout(Duration::ZERO);
    let sink = events.clone();
    let task = tokio::spawn(async move {
        while let Ok(id) = client.get_oom_event().await {
            sink.lock().unwrap().push(id);
        }
    });
    (task, events)
}

#[tokio::test(flavor = "multi_thread")]
async fn soak_of_container_lifecycles() -> Result<()> {
    let cycles = usize::try_from(env_number("HULL_SOAK_CYCLES", 50)?)?;
    ensure!(cycles >= 20, "HULL_SOAK_CYCLES={cycles}: at least 20");
    let guest = SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate()?)).await?;
    eprintln!(
        "soak: {cycles} cycles, agent ready after {:?}",
        guest.agent_ready
    );

    // A working vsock backend answers a CONNECT to a port nobody listens on (the
    // harness's wedged-backend probe relies on it).
    let probe = probe_backend(&guest.vm().hybrid_vsock_socket(), PROBE_PORT, PROBE_TIMEOUT).await;
    ensure!(probe == BackendState::Answers, "the vsock backend {probe}");

    let _steady = guest
        .start_container(STEADY, &ContainerSpec::new(["sleep", "86400"]))
        .await?;
    let (oom_task, oom_events) = collect_oom_events(&guest.client);
    // One cycle of each kind warms the agent up (its sealed copy of itself, the OOM
    // watch) before the baseline is read.
    for (i, warm) in [
        Kind::Stream,
        Kind::Exec,
        Kind::Signal,
        Kind::PauseResume,
        Kind::Oom,
    ]
    .into_iter()
    .enumerate()
    {
        cycle(&guest, &format!("warm-{i}"), warm).await?;
    }
    let baseline = inspect(&guest, "inspect-base").await?;
    print_checkpoint(0, &[], &baseline);

    let mut clients = start_clients(&guest).await?;
    let mut load = ClientLoad::default();

    let window = (cycles / 10).max(10);
    let mut times: Vec<(Kind, Duration)> = Vec::with_capacity(cycles);
    // The host's speed right after each streaming cycle (cycle index, time): the machine
    // is shared, and the guest (TCG) slows with its load.
    let mut yardsticks: Vec<(usize, Duration)> = Vec::with_capacity(cycles);
    let mut since_checkpoint = Vec::new();
    let mut rss_reference: Option<(usize, u64)> = None;
    let reference_cycle = if cycles >= 200 { 100 } else { 10 };
    let mut oom_cycles = Vec::new();
    for n in 1..=cycles {
        let id = format!("c{n}");
        let kind = kind(n);
        let started = Instant::now();
        cycle(&guest, &id, kind)
            .await
            .with_context(|| format!("soak cycle {n} ({kind:?})"))?;
        let took = started.elapsed();
        if kind == Kind::Stream {
            yardsticks.push((times.len(), yardstick()));
        }
        times.push((kind, took));
        since_checkpoint.push(took);
        if kind == Kind::Oom {
            oom_cycles.push(id);
        }
        if n == 1 || n == 10 || n % 100 == 0 || n == cycles || n == reference_cycle {
            let seen = inspect(&guest, &format!("inspect-{n}")).await?;
            print_checkpoint(n, &since_checkpoint, &seen);
            since_checkpoint.clear();
            if n == reference_cycle {
                // The reference is read as the end is: the clients' connections gone.
                clients.stop(&mut load).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let quiet = inspect(&guest, &format!("inspect-{n}-quiet")).await?;
                eprintln!(
                    "soak: cycle {n:>5}, the clients stopped: agent Rss {} KiB (anonymous \
                     {} KiB), {} fds",
                    quiet.agent.rss_kib, quiet.agent.anonymous_kib, quiet.agent.fds
                );
                rss_reference = Some((n, quiet.agent.rss_kib));
                clients = start_clients(&guest).await?;
            }
        }
    }

    clients.stop(&mut load).await?;
    let calls = load.latencies.len();
    let (p50, p99) = (
        quantile(&mut load.latencies, 0.5),
        quantile(&mut load.latencies, 0.99),
    );
    eprintln!(
        "soak: {CLIENTS} concurrent clients made {calls} calls (StatsContainer, \
         ListInterfaces, GetGuestDetails): p50 {p50:.1?}, p99 {p99:.1?}, {} errors",
        load.errors.len()
    );
    ensure!(load.errors.is_empty(), "calls failed: {:#?}", load.errors);
    ensure!(
        calls >= CLIENTS,
        "the concurrent clients made only {calls} calls"
    );

    // The clients' connections are gone: the guest is as it was at the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let end = inspect(&guest, "inspect-end").await?;
    print_checkpoint(cycles, &[], &end);
    ensure!(
        end.agent.pid == baseline.agent.pid,
        "the agent was restarted: pid {} → {}",
        baseline.agent.pid,
        end.agent.pid
    );
    ensure!(
        end.agent.fds == baseline.agent.fds,
        "the agent holds {} fds, {} at the baseline",
        end.agent.fds,
        baseline.agent.fds
    );
    ensure!(
        end.mounts == baseline.mounts,
        "mounts at the baseline {:#?}\nat the end {:#?}",
        baseline.mounts,
        end.mounts
    );
    ensure!(
        end.cgroups == baseline.cgroups,
        "cgroups at the baseline {:#?}\nat the end {:#?}",
        baseline.cgroups,
        end.cgroups
    );
    let mut before = baseline.processes.clone();
    let mut after = end.processes.clone();
    before.sort();
    after.sort();
    ensure!(
        before == after,
        "processes at the baseline {before:#?}\nat the end {after:#?}"
    );
    let (at, reference) = rss_reference.context("no RSS reference point")?;
    let allowed_kib = if cycles >= 200 { 1024 } else { 2048 };
    let grown = end.agent.rss_kib.saturating_sub(reference);
    eprintln!(
        "soak: agent Rss {reference} KiB after cycle {at}, {} KiB after cycle {cycles} \
         (+{grown} KiB, allowed +{allowed_kib} KiB)",
        end.agent.rss_kib
    );
    ensure!(
        grown <= allowed_kib,
        "the agent grew by {grown} KiB between cycle {at} and cycle {cycles}"
    );

    for (i, chunk) in times.chunks(10).enumerate() {
        let mut plain: Vec<Duration> = chunk
            .iter()
            .filter(|(k, _)| *k == Kind::Stream)
            .map(|(_, t)| *t)
            .collect();
        eprintln!(
            "soak: cycles {:>5}..={:<5} streaming median {:.1?}",
            i * 10 + 1,
            i * 10 + chunk.len(),
            quantile(&mut plain, 0.5)
        );
    }
    // Cycles do not get slower: medians of the plain streaming cycles in the first
    // window (cycle 1, the first after the baseline, left out) and in the last, in raw
    // time and each against the median yardstick of its window (the host's speed in the
    // same minutes). On a shared machine the raw times follow the neighbours' load, and
    // a short yardstick is noisy in its own way: slower on both counts is a slowdown.
    let window_median = |range: std::ops::Range<usize>| {
        let mut plain: Vec<Duration> = times[range.clone()]
            .iter()
            .filter(|(k, _)| *k == Kind::Stream)
            .map(|(_, t)| *t)
            .collect();
        let mut yards: Vec<Duration> = yardsticks
            .iter()
            .filter(|(i, _)| range.contains(i))
            .map(|(_, t)| *t)
            .collect();
        (quantile(&mut plain, 0.5), quantile(&mut yards, 0.5))
    };
    let (first, first_yard) = window_median(1..window + 1);
    let (last, last_yard) = window_median(cycles - window..cycles);
    let relative = |cycle: Duration, yard: Duration| {
        cycle.as_secs_f64() / yard.as_secs_f64().max(f64::MIN_POSITIVE)
    };
    let (first_relative, last_relative) = (relative(first, first_yard), relative(last, last_yard));
    let factor = if cycles >= 200 { 1.2 } else { 3.0 };
    let raw = last.as_secs_f64() / first.as_secs_f64().max(f64::MIN_POSITIVE);
    let against_yardstick = last_relative / first_relative.max(f64::MIN_POSITIVE);
    eprintln!(
        "soak: streaming cycle median {first:.1?} in cycles 2..={} (host yardstick \
         {first_yard:.1?}), {last:.1?} in the last {window} (yardstick {last_yard:.1?}): \
         {raw:.2}x raw, {against_yardstick:.2}x against the yardstick (allowed {factor}x)",
        window + 1,
    );
    ensure!(
        raw <= factor || against_yardstick <= factor,
        "cycles got slower: median {first:?} at the start, {last:?} at the end ({raw:.2}x), \
         {against_yardstick:.2}x against the host's yardstick ({first_yard:?}, {last_yard:?})"
    );

    // Every OOM kill was announced by GetOOMEvent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = oom_events.lock().unwrap().clone();
        let missing: Vec<&String> = oom_cycles.iter().filter(|id| !seen.contains(id)).collect();
        if missing.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "GetOOMEvent never named {missing:?} (it named {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    oom_task.abort();
    guest.power_off().await?;
    Ok(())
}

/// A reproducible stream of pseudo-random bytes (xorshift64*), so the host needs not
/// keep what it sends.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let word = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn connect(guest: &SandboxGuest) -> Result<AgentClient> {
    Ok(
        AgentClient::connect(&guest.vm().agent_address(), Duration::from_secs(30))
            .await?
            .with_timeout(Duration::ZERO),
    )
}

/// `bytes` of urandom through ReadStdout, the client replaced by a new connection half
/// way; the container hashes what it writes.
async fn read_with_reconnect(guest: &SandboxGuest, bytes: u64) -> Result<()> {
    let id = "stdout-big";
    let script = format!(
        "mkfifo /dev/shm/tap; sha256sum < /dev/shm/tap >&2 & \
         head -c {bytes} /dev/urandom | tee /dev/shm/tap; wait"
    );
    guest.busybox_rootfs(id)?;
    let container = Container::create(
        &guest.client,
        id,
        ContainerSpec::shell(&script).to_proto(id)?,
    )
    .await?;
    let blocking = guest.client.clone().with_timeout(Duration::ZERO);
    let stderr = tokio::spawn(async move { blocking.read_to_end(id, "", Stream::Stderr).await });
    container.start().await?;
    let started = Instant::now();
    let mut hash = Sha256::new();
    let mut total = 0u64;
    let mut reader = connect(guest).await?;
    let mut reconnected = false;
    loop {
        if !reconnected && total >= bytes / 2 {
            // The first client goes away between two reads; a new connection goes on.
            drop(reader);
            reader = connect(guest).await?;
            reconnected = true;
            eprintln!("stdio: ReadStdout client replaced after {total} bytes");
        }
        let chunk = reader.read_stdout(id, "", 1 << 20).await?;
        if chunk.is_empty() {
            break;
        }
        total += chunk.len() as u64;
        hash.update(&chunk);
    }
    let took = started.elapsed();
    let status = container.wait("").await?;
    let theirs = stderr.await??.text();
    container.remove().await?;
    let ours = hex(&hash.finalize());
    ensure!(status == 0, "{id} exited {status}: {theirs}");
    ensure!(total == bytes, "{total} bytes arrived of {bytes}");
    ensure!(
        theirs.split_whitespace().next() == Some(ours.as_str()),
        "sha256 in the guest {theirs:?}, of what arrived {ours}"
    );
    eprintln!(
        "stdio: {} MiB through ReadStdout with a reconnect: {took:.1?} ({:.1} MB/s), sha256 equal",
        bytes >> 20,
        bytes as f64 / 1e6 / took.as_secs_f64()
    );
    Ok(())
}

/// `bytes` of noise through WriteStdin into `sha256sum`, the client replaced half way.
async fn write_with_reconnect(guest: &SandboxGuest, bytes: u64) -> Result<()> {
    const CHUNK: usize = 512 << 10;
    let id = "stdin-big";
    guest.busybox_rootfs(id)?;
    let container = Container::create(
        &guest.client,
        id,
        ContainerSpec::new(["sha256sum"]).to_proto(id)?,
    )
    .await?;
    let readers = container.readers("", false);
    container.start().await?;
    let started = Instant::now();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    let mut writer = connect(guest).await?;
    let mut reconnected = false;
    while sent < bytes {
        let len = usize::try_from((bytes - sent).min(CHUNK as u64))?;
        noise.fill(&mut buf[..len]);
        hash.update(&buf[..len]);
        let mut offset = 0;
        while offset < len {
            let written = writer.write_stdin(id, "", &buf[offset..len]).await?;
            ensure!(written > 0, "WriteStdin wrote nothing at byte {sent}");
            offset += written as usize;
        }
        sent += len as u64;
        if !reconnected && sent >= bytes / 2 {
            drop(writer);
            writer = connect(guest).await?;
            reconnected = true;
            eprintln!("stdio: WriteStdin client replaced after {sent} bytes");
        }
    }
    writer.close_stdin(id, "").await?;
    let status = container.wait("").await?;
    let took = started.elapsed();
    let (out, err) = readers.finish().await?;
    container.remove().await?;
    let ours = hex(&hash.finalize());
    ensure!(status == 0, "{id} exited {status}: {}", err.text());
    ensure!(
        out.text().split_whitespace().next() == Some(ours.as_str()),
        "sha256 in the guest {:?}, of what was sent {ours}",
        out.text()
    );
    eprintln!(
        "stdio: {} MiB through WriteStdin with a reconnect: {took:.1?} ({:.1} MB/s), sha256 equal",
        bytes >> 20,
        bytes as f64 / 1e6 / took.as_secs_f64()
    );
    Ok(())
}

/// A ReadStdout waiting when its connection goes away must not eat what the container
/// writes next: the next reader gets it.
async fn read_in_flight_when_the_client_leaves(guest: &SandboxGuest) -> Result<()> {
    let id = "stdout-inflight";
    let container = guest
        .start_container(id, &ContainerSpec::shell("echo one; sleep 4; echo two"))
        .await?;
    let first = connect(guest).await?;
    read_until(&first, id, "", "one").await?;
    let pending = tokio::spawn(async move {
        let chunk = first.read_stdout(id, "", 4096).await;
        drop(first);
        chunk
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    ensure!(
        !pending.is_finished(),
        "a read returned before the container wrote"
    );
    pending.abort();
    let _ = pending.await;
    let second = connect(guest).await?;
    let rest = tokio::time::timeout(
        Duration::from_secs(60),
        second.read_to_end(id, "", Stream::Stdout),
    )
    .await
    .context("the second reader")??;
    let status = container.wait("").await?;
    container.remove().await?;
    ensure!(status == 0, "{id} exited {status}");
    ensure!(
        rest.text() == "two\n",
        "the reader after the one that left got {:?}, not \"two\\n\"",
        rest.text()
    );
    eprintln!("stdio: a read in flight when its client left took nothing from the next reader");
    Ok(())
}

/// A container writing far more than anybody reads blocks on its full pipe; the agent
/// does not buffer it.
async fn slow_reader(guest: &SandboxGuest, bytes: u64) -> Result<()> {
    let id = "stdout-slow";
    let before = inspect(guest, "inspect-slow-0").await?;
    let size = bytes.to_string();
    let command = format!("head -c {size} /dev/zero");
    let container = guest
        .start_container(id, &ContainerSpec::new(["head", "-c", &size, "/dev/zero"]))
        .await?;
    let reader = connect(guest).await?;
    let mut total = 0u64;
    // 64 KiB every 100 ms for 3 s: far slower than the container writes.
    let slow_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < slow_until {
        total += reader.read_stdout(id, "", 64 << 10).await?.len() as u64;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = inspect(guest, "inspect-slow-1").await?;
    ensure!(
        during.processes.contains(&command),
        "the writer is not blocked on its pipe (read {total} of {bytes} bytes): {:?}",
        during.processes
    );
    let grown = during.agent.rss_kib.saturating_sub(before.agent.rss_kib);
    eprintln!(
        "stdio: slow reader ({total} of {bytes} bytes read): the writer blocks; agent Rss \
         {} KiB before, {} KiB while it blocks (+{grown} KiB)",
        before.agent.rss_kib, during.agent.rss_kib
    );
    ensure!(
        grown < 4096,
        "the agent grew by {grown} KiB behind a slow reader"
    );
    loop {
        let chunk = reader.read_stdout(id, "", 1 << 20).await?;
        if chunk.is_empty() {
            break;
        }
        total += chunk.len() as u64;
    }
    let status = container.wait("").await?;
    container.remove().await?;
    ensure!(
        status == 0 && total == bytes,
        "{id}: status {status}, {total} bytes of {bytes}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_at_scale() -> Result<()> {
    let mib = env_number("HULL_STDIO_MIB", 32)?;
    ensure!(mib >= 1, "HULL_STDIO_MIB={mib}: at least 1");
    let bytes = mib << 20;
    let guest = SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate()?)).await?;
    read_with_reconnect(&guest, bytes).await?;
    write_with_reconnect(&guest, bytes).await?;
    read_in_flight_when_the_client_leaves(&guest).await?;
    slow_reader(&guest, bytes.min(64 << 20)).await?;
    guest
        .client
        .check()
        .await
        .context("Health.Check after the stdio runs")?;
    guest.power_off().await?;
    Ok(())
}

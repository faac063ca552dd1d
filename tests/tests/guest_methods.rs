//! The guest services a Kata runtime calls beside containers, in one real guest, through
//! the agent API: `CopyFile` (chunks, a directory, a symlink, hostile paths),
//! `SetGuestDateTime` (the guest's `date` moves), `ReseedRandomDev`, and `GetMetrics`
//! read by a Prometheus text parser. Bad requests answer precise codes and the agent
//! keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::{ContainerSpec, GUEST_SHARED_DIR};
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::{Disk, VmConfig};
use hull_protocols::agent::CopyFileRequest;
use hull_protocols::client::{COPY_CHUNK, copy_file_requests};
use hull_protocols::health::health_check_response::ServingStatus;
use hull_protocols::ttrpc::Code;
use hull_testkit::check_refused;
use sha2::{Digest, Sha256};

/// The owner the copied file has on the host, so the guest must apply it.
const OWNER: (u32, u32) = (1234, 4321);

#[tokio::test(flavor = "multi_thread")]
async fn copy_file_clock_entropy_and_metrics_work_in_a_guest() -> Result<()> {
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    // A disk, so the guest has block device statistics to report.
    let disk_dir = tempfile::tempdir()?;
    let disk = disk_dir.path().join("blank.img");
    std::fs::write(&disk, vec![0u8; 1 << 20])?;
    config.disks.push(Disk::virtio_blk(disk.clone(), 0x10));
    let guest = SandboxGuest::boot(config).await?;
    copy_file(&guest).await.context("CopyFile")?;
    clock(&guest).await.context("SetGuestDateTime")?;
    entropy(&guest).await.context("ReseedRandomDev")?;
    metrics(&guest).await.context("GetMetrics")?;
    let health = guest.client.check().await?;
    ensure!(health.status.enum_value() == Ok(ServingStatus::SERVING));
    guest.power_off().await?;
    Ok(())
}

/// Runs `script` in a busybox container, seeing the guest's `dir` at `/mnt` (read-only)
/// if given; returns its stdout.
async fn in_container(
    guest: &SandboxGuest,
    id: &str,
    dir: Option<&str>,
    script: &str,
) -> Result<String> {
    let mut spec = ContainerSpec::shell(script);
    if let Some(dir) = dir {
        spec = spec.bind_read_only(dir, "/mnt");
    }
    let run = guest.run_container(id, &spec).await?;
    ensure!(
        run.status == 0,
        "{id}: `{script}` exited with {}: {}",
        run.status,
        run.stderr.text()
    );
    Ok(run.stdout.text().to_string())
}

fn refused(
    what: &str,
    answer: Result<(), hull_protocols::client::ClientError>,
    code: Code,
    needle: &str,
) -> Result<()> {
    check_refused(what, answer, code, needle).map_err(anyhow::Error::msg)
}

async fn copy_file(guest: &SandboxGuest) -> Result<()> {
    let client = &guest.client;
    let host = tempfile::tempdir()?;
    // 2.5 chunks of a pattern no chunk repeats.
    let content: Vec<u8> = (0..COPY_CHUNK * 5 / 2)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect();
    let local = host.path().join("data.bin");
    std::fs::write(&local, &content)?;
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o640))?;
    std::os::unix::fs::chown(&local, Some(OWNER.0), Some(OWNER.1))?;
    let guest_dir = format!("{GUEST_SHARED_DIR}/copied");
    let target = format!("{guest_dir}/sub/data.bin");
    let requests = copy_file_requests(&local, &target)?;
    ensure!(requests.len() == 3, "{} requests", requests.len());

    // The share is the guest's shared directory: the host sees what CopyFile made.
    let on_host = guest.share().join("copied/sub/data.bin");
    client.copy_file(&requests[0]).await?;
    ensure!(
        !on_host.exists(),
        "a partial file is visible at the destination after the first chunk"
    );
    for req in &requests[1..] {
        client.copy_file(req).await?;
    }
    ensure!(std::fs::read(&on_host)? == content, "the copy differs");
    let meta = std::fs::metadata(&on_host)?;
    ensure!(meta.mode() & 0o7777 == 0o640, "mode {:o}", meta.mode());
    ensure!(
        (meta.uid(), meta.gid()) == OWNER,
        "owner {}:{}",
        meta.uid(),
        meta.gid()
    );
    // The parent made on the way: dir_mode (0750) and the owner.
    let parent = std::fs::metadata(guest.share().join("copied/sub"))?;
    ensure!(
        parent.mode() & 0o7777 == 0o750,
        "parent mode {:o}",
        parent.mode()
    );
    ensure!((parent.uid(), parent.gid()) == OWNER, "parent owner");
    let leftovers: Vec<_> = std::fs::read_dir(guest.share().join("copied/sub"))?
        .map(|e| e.unwrap().file_name())
        .collect();
    ensure!(leftovers.len() == 1, "left in the directory: {leftovers:?}");

    // A directory with setgid, and a symlink (relative, as Kubernetes' ..data links).
    client
        .copy_file(&CopyFileRequest {
            path: format!("{guest_dir}/dir"),
            file_mode: libc::S_IFDIR | 0o2750,
            dir_mode: 0o755,
            uid: -1,
            gid: -1,
            ..Default::default()
        })
        .await?;
    let dir = std::fs::metadata(guest.share().join("copied/dir"))?;
    ensure!(
        dir.is_dir() && dir.mode() & 0o7777 == 0o2750,
        "dir mode {:o}",
        dir.mode()
    );
    let link_local = host.path().join("link");
    std::os::unix::fs::symlink("sub/data.bin", &link_local)?;
    for req in copy_file_requests(&link_local, &format!("{guest_dir}/link"))? {
        client.copy_file(&req).await?;
    }
    ensure!(
        std::fs::read_link(guest.share().join("copied/link"))? == Path::new("sub/data.bin"),
        "the symlink's target"
    );

    // What a container in the guest reads.
    let seen = in_container(
        guest,
        "copy-reader",
        Some(&guest_dir),
        "sha256sum /mnt/link | cut -d' ' -f1; stat -c '%a %u %g' /mnt/sub/data.bin; \
         readlink /mnt/link; stat -c '%a' /mnt/dir",
    )
    .await?;
    let sha = format!("{:x}", Sha256::digest(&content));
    let expected = format!("{sha}\n640 {} {}\nsub/data.bin\n2750\n", OWNER.0, OWNER.1);
    ensure!(
        seen == expected,
        "the container read {seen:?}, wanted {expected:?}"
    );

    // Hostile paths: refused by name, nothing written.
    std::os::unix::fs::symlink("/", guest.share().join("planted"))?;
    client
        .copy_file(&CopyFileRequest {
            path: format!("{guest_dir}/out"),
            file_mode: libc::S_IFLNK | 0o777,
            data: b"/etc".to_vec(),
            ..Default::default()
        })
        .await?;
    let file = |path: String| CopyFileRequest {
        path,
        file_mode: libc::S_IFREG | 0o644,
        file_size: 4,
        data: b"evil".to_vec(),
        ..Default::default()
    };
    for (path, needle) in [
        (format!("{GUEST_SHARED_DIR}/../evil"), "'..' is not allowed"),
        ("/etc/hull-evil".to_string(), "must be under"),
        ("/run/kata-containers/evil".to_string(), "must be under"),
        (
            format!("{GUEST_SHARED_DIR}/planted/etc/evil"),
            "resolves outside",
        ),
        (format!("{guest_dir}/out/evil"), "resolves outside"),
        (format!("{guest_dir}/sub/data.bin/evil"), "not a directory"),
        (GUEST_SHARED_DIR.to_string(), "not the directory itself"),
    ] {
        let answer = client.copy_file(&file(path.clone())).await;
        let message = answer.as_ref().err().map(ToString::to_string);
        refused(&path, answer, Code::INVALID_ARGUMENT, needle)?;
        let message = message.unwrap_or_default();
        ensure!(message.contains(&path), "{path}: not named in {message:?}");
    }
    ensure!(!host.path().join("evil").exists());
    // A chunk that does not fit its file, and a kind of file that cannot be copied.
    let mut bad = file(format!("{guest_dir}/bad"));
    bad.offset = 2;
    refused(
        "a chunk past file_size",
        client.copy_file(&bad).await,
        Code::INVALID_ARGUMENT,
        "past file_size",
    )?;
    let fifo = CopyFileRequest {
        file_mode: libc::S_IFIFO | 0o644,
        ..file(format!("{guest_dir}/fifo"))
    };
    refused(
        "a FIFO",
        client.copy_file(&fifo).await,
        Code::INVALID_ARGUMENT,
        "only those can be copied",
    )?;
    ensure!(!guest.share().join("copied/bad").exists());
    Ok(())
}

async fn guest_seconds(guest: &SandboxGuest, id: &str) -> Result<i64> {
    let out = in_container(guest, id, None, "date +%s").await?;
    out.trim()
        .parse()
        .with_context(|| format!("`date +%s` said {out:?}"))
}

async fn clock(guest: &SandboxGuest) -> Result<()> {
    let client = &guest.client;
    // 2033-05-18: far from any real clock, so the move is unmistakable.
    let target: i64 = 2_000_000_000;
    client.set_guest_date_time(target, 250_000).await?;
    let seen = guest_seconds(guest, "date-after").await?;
    ensure!(
        (target..target + 120).contains(&seen),
        "the guest's date is {seen}, set to {target}"
    );
    refused(
        "usec out of range",
        client.set_guest_date_time(target, 1_000_000).await,
        Code::INVALID_ARGUMENT,
        "usec must be in 0..1000000",
    )?;
    refused(
        "before the epoch",
        client.set_guest_date_time(-5, 0).await,
        Code::INVALID_ARGUMENT,
        "before the epoch",
    )?;
    // Back to the host's time, as a runtime does after a resume.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    client
        .set_guest_date_time(now.as_secs() as i64, i64::from(now.subsec_micros()))
        .await?;
    let seen = guest_seconds(guest, "date-now").await?;
    let host = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64;
    ensure!((seen - host).abs() < 120, "guest {seen}, host {host}");
    Ok(())
}

async fn entropy(guest: &SandboxGuest) -> Result<()> {
    let client = &guest.client;
    let seed: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    client.reseed_random_dev(&seed).await?;
    let avail = in_container(
        guest,
        "entropy",
        None,
        "cat /proc/sys/kernel/random/entropy_avail; head -c 16 /dev/urandom | wc -c",
    )
    .await?;
    let mut lines = avail.lines();
    let bits: u32 = lines
        .next()
        .unwrap_or("")
        .trim()
        .parse()
        .with_context(|| format!("{avail:?}"))?;
    ensure!(bits <= 4096, "entropy_avail {bits}");
    ensure!(
        lines.next().map(str::trim) == Some("16"),
        "reading /dev/urandom: {avail:?}"
    );
    refused(
        "empty entropy data",
        client.reseed_random_dev(&[]).await,
        Code::INVALID_ARGUMENT,
        "at least one byte",
    )?;
    client.reseed_random_dev(b"again").await?;
    Ok(())
}

async fn metrics(guest: &SandboxGuest) -> Result<()> {
    let client = &guest.client;
    let first = client.get_metrics().await?;
    let text = client.get_metrics().await?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.iter().cloned().map(Ok))?;
    // The parser skips what it cannot read: every sample line must have become a sample.
    let sample_lines = lines
        .iter()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    ensure!(
        scrape.samples.len() == sample_lines,
        "{} of {sample_lines} sample lines parsed",
        scrape.samples.len()
    );
    let names: HashSet<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for wanted in [
        "kata_agent_scrape_count",
        "kata_agent_threads",
        "kata_agent_total_time",
        "kata_agent_total_vm",
        "kata_agent_total_rss",
        "kata_agent_proc_status",
        "kata_agent_proc_stat",
        "kata_guest_load",
        "kata_guest_tasks",
        "kata_guest_cpu_time",
        "kata_guest_vm_stat",
        "kata_guest_netdev_stat",
        "kata_guest_diskstat",
        "kata_guest_meminfo",
    ] {
        ensure!(names.contains(wanted), "{wanted} missing; have {names:?}");
        ensure!(scrape.docs.contains_key(wanted), "{wanted} has no HELP");
    }
    let value = |metric: &str, labels: &[(&str, &str)]| -> Result<prometheus_parse::Value> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| s.value.clone())
            .with_context(|| format!("no {metric}{labels:?}"))
    };
    use prometheus_parse::Value::{Counter, Gauge};
    ensure!(
        value("kata_agent_scrape_count", &[])? == Counter(2.0),
        "scrape count"
    );
    let Gauge(total) = value("kata_guest_meminfo", &[("item", "mem_total")])? else {
        anyhow::bail!("meminfo is not a gauge")
    };
    // The guest has 256 MiB (the harness's default), minus what the kernel keeps.
    ensure!((64e6..=300e6).contains(&total), "mem_total {total}");
    let Gauge(rss) = value("kata_agent_total_rss", &[])? else {
        anyhow::bail!("rss is not a gauge")
    };
    ensure!((1e6..=100e6).contains(&rss), "agent rss {rss}");
    ensure!(
        matches!(value("kata_guest_cpu_time", &[("cpu", "total"), ("item", "idle")])?, Gauge(ms) if ms > 0.0)
    );
    ensure!(matches!(
        value("kata_guest_cpu_time", &[("cpu", "0"), ("item", "user")])?,
        Gauge(_)
    ));
    ensure!(matches!(
        value(
            "kata_guest_netdev_stat",
            &[("interface", "lo"), ("item", "recv_bytes")]
        )?,
        Gauge(_)
    ));
    ensure!(matches!(
        value("kata_guest_load", &[("item", "load1")])?,
        Gauge(_)
    ));
    ensure!(matches!(value("kata_guest_tasks", &[("item", "max")])?, Gauge(n) if n >= 1.0));
    ensure!(
        first.contains("kata_agent_scrape_count 1\n"),
        "the first scrape"
    );
    Ok(())
}

//! Containers in a real guest, through the agent API only (vsock) and bundles in the
//! sandbox's virtio-fs share: what runs, what it prints, how it ends, what limits hold,
//! what removal leaves, and how bad requests are answered.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::{ContainerSpec, kernel_release};
use hull_e2e::container::{Container, read_until};
use hull_e2e::guest::SandboxGuest;
use hull_e2e::inspect::inspect;
use hull_e2e::vm::VmConfig;
use hull_protocols::agent::{CreateContainerRequest, ExecProcessRequest};
use hull_protocols::ttrpc::Code;
use hull_testkit::{Refusal, check_all, refusal};
use sha2::{Digest, Sha256};

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

#[tokio::test(flavor = "multi_thread")]
async fn containers_run_stream_exec_and_end_by_signal() -> Result<()> {
    let artifacts = GuestArtifacts::locate()?;
    let guest_release = kernel_release(&artifacts.kernel)?;
    let mut config = VmConfig::new(artifacts);
    // The agent says at debug level which way its helpers' binary is kept unwritable.
    config.extra_cmdline.push("agent.log=debug".into());
    let guest = SandboxGuest::boot(config).await?;
    let client = guest.client.clone();

    // The guest's kernel, not the host's.
    let uname = guest
        .run_container("uname", &ContainerSpec::new(["uname", "-r"]))
        .await?;
    ensure!(uname.status == 0, "uname: {uname:?}");
    let reported = uname.stdout.text().trim().to_string();
    let host_release = host_release()?;
    ensure!(
        reported == guest_release,
        "the container reports {reported:?}, the guest kernel is {guest_release:?}"
    );
    ensure!(
        reported != host_release,
        "the container reports the host's release {host_release:?}"
    );
    // The initramfs root is writable: helpers run from a detached read-only bind of the
    // agent (no memfd copy of it in the guest's memory).
    let console = guest.vm().console();
    ensure!(
        console.contains("sealing=ReadOnlyBind"),
        "the helpers did not run from a read-only bind of the agent; console:\n{console}"
    );
    eprintln!(
        "uname -r: {reported}; CreateContainer to first byte {:?}",
        uname.create_to_first_byte
    );

    // 64 MiB through ReadStdout arrive intact: the container hashes what it writes.
    let size = 64 << 20;
    let script = format!(
        "mkfifo /dev/shm/tap; sha256sum < /dev/shm/tap >&2 & \
         head -c {size} /dev/urandom | tee /dev/shm/tap; wait"
    );
    let started = Instant::now();
    let big = guest
        .run_container("stream", &ContainerSpec::shell(&script))
        .await?;
    let took = started.elapsed();
    ensure!(
        big.status == 0,
        "stream exited {}: {}",
        big.status,
        big.stderr.text()
    );
    ensure!(
        big.stdout.bytes.len() == size,
        "{} bytes arrived of {size}",
        big.stdout.bytes.len()
    );
    let theirs = big.stderr.text();
    let ours = hex(&Sha256::digest(&big.stdout.bytes));
    ensure!(
        theirs.split_whitespace().next() == Some(ours.as_str()),
        "sha256 in the guest {theirs:?}, of what arrived {ours}"
    );
    eprintln!(
        "64 MiB in {took:?} ({:.1} MB/s, {} reads)",
        size as f64 / 1e6 / took.as_secs_f64(),
        big.stdout.reads
    );

    // Exec into a running container: it sees the container's PID namespace.
    let worker = guest
        .start_container(
            "worker",
            &ContainerSpec::shell("echo ready; exec sleep 600"),
        )
        .await?;
    read_until(&client, "worker", "", "ready").await?;
    let probe =
        ContainerSpec::shell("tr '\\0' ' ' < /proc/1/cmdline; echo; echo to-stderr >&2; exit 3");
    worker.exec("probe", probe.process_proto()?).await?;
    let readers = worker.readers("probe", false);
    let status = worker.wait("probe").await?;
    let (out, err) = readers.finish().await?;
    ensure!(status == 3, "exec exited {status}");
    ensure!(
        out.text().trim() == "sleep 600",
        "the exec'd process sees PID 1 as {:?}",
        out.text()
    );
    ensure!(err.text() == "to-stderr\n", "stderr {:?}", err.text());
    let again = probe.process_proto()?;
    refused(vec![refusal(
        "an exec id used twice",
        worker.exec("probe", again),
        Code::ALREADY_EXISTS,
        "probe",
    )])
    .await?;

    // SIGKILL ends it with 128+9.
    let readers = worker.readers("", false);
    worker.signal("", SIGKILL).await?;
    let status = worker.wait("").await?;
    ensure!(status == 128 + SIGKILL, "SIGKILL: status {status}");
    readers.finish().await?;
    worker.remove().await?;

    // SIGTERM reaches a process that handles it.
    let term = guest
        .start_container(
            "term",
            &ContainerSpec::shell(
                "trap 'echo got-TERM; exit 42' TERM; echo waiting; while :; do sleep 1; done",
            ),
        )
        .await?;
    read_until(&client, "term", "", "waiting").await?;
    term.signal("term", SIGTERM).await?;
    let tail = read_until(&client, "term", "", "got-TERM").await?;
    let status = term.wait("").await?;
    ensure!(status == 42, "SIGTERM: status {status} (output {tail:?})");
    term.remove().await?;

    bad_requests_are_answered_precisely(&guest).await?;

    // Still serving, still running containers.
    client
        .check()
        .await
        .context("Health.Check after bad input")?;
    let after = guest
        .run_container("after", &ContainerSpec::new(["echo", "still here"]))
        .await?;
    ensure!(after.stdout.text() == "still here\n", "{after:?}");

    // DestroySandbox with a container still running: the VM powers off.
    guest
        .start_container("left-running", &ContainerSpec::new(["sleep", "600"]))
        .await?;
    let off = guest.power_off().await?;
    eprintln!("powered off {off:?} after DestroySandbox, a container still running");
    Ok(())
}

/// Checks a bad-input table's rows in order.
async fn refused(rows: Vec<Refusal<'_>>) -> Result<()> {
    check_all(rows).await.map_err(anyhow::Error::msg)
}

async fn bad_requests_are_answered_precisely(guest: &SandboxGuest) -> Result<()> {
    let client = &guest.client;
    let spec = ContainerSpec::new(["sleep", "600"]);
    let create = |id: &str, oci: Option<hull_protocols::oci::Spec>| CreateContainerRequest {
        container_id: id.into(),
        exec_id: id.into(),
        OCI: oci.into(),
        ..Default::default()
    };
    let exec = |container_id: &str, exec_id: &str, process| ExecProcessRequest {
        container_id: container_id.into(),
        exec_id: exec_id.into(),
        process: Some(process).into(),
        ..Default::default()
    };

    // Every call about a container that does not exist.
    let exec_in_nope = exec("nope", "e", spec.process_proto()?);
    refused(vec![
        refusal(
            "StartContainer of an unknown container",
            client.start_container("nope"),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "WaitProcess of an unknown container",
            client.wait_process("nope", ""),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "ReadStdout of an unknown container",
            client.read_stdout("nope", "", 10),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "StatsContainer of an unknown container",
            client.stats_container("nope"),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "RemoveContainer of an unknown container",
            client.remove_container("nope", 0),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "ReadStderr of an unknown container",
            client.read_stderr("nope", "", 10),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "WriteStdin of an unknown container",
            client.write_stdin("nope", "", b"x"),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "CloseStdin of an unknown container",
            client.close_stdin("nope", ""),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "PauseContainer of an unknown container",
            client.pause_container("nope"),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "ResumeContainer of an unknown container",
            client.resume_container("nope"),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "UpdateContainer of an unknown container",
            client.update_container("nope", Default::default()),
            Code::NOT_FOUND,
            "nope",
        ),
        refusal(
            "ExecProcess in an unknown container",
            client.exec_process(&exec_in_nope),
            Code::NOT_FOUND,
            "nope",
        ),
    ])
    .await?;

    // CreateContainer requests that are wrong in themselves.
    let no_rootfs = create("no-rootfs", Some(spec.to_proto("no-rootfs")?));
    refused(vec![refusal(
        "a missing rootfs",
        client.create_container(&no_rootfs),
        Code::INVALID_ARGUMENT,
        "/run/kata-containers/shared/containers/no-rootfs/rootfs",
    )])
    .await?;
    guest.busybox_rootfs("bad")?;
    let no_spec = create("bad", None);
    let mut bogus = spec.to_proto("bad")?;
    bogus.Linux.mut_or_insert_default().Namespaces[0].Type = "bogus".into();
    let bogus = create("bad", Some(bogus));
    let mut no_args = spec.to_proto("bad")?;
    no_args.Process.mut_or_insert_default().Args.clear();
    let no_args = create("bad", Some(no_args));
    let escape = create("../escape", Some(spec.to_proto("bad")?));
    refused(vec![
        refusal(
            "no OCI spec",
            client.create_container(&no_spec),
            Code::INVALID_ARGUMENT,
            "OCI",
        ),
        refusal(
            "an unknown namespace type",
            client.create_container(&bogus),
            Code::INVALID_ARGUMENT,
            "bogus",
        ),
        refusal(
            "a process without args",
            client.create_container(&no_args),
            Code::INVALID_ARGUMENT,
            "args",
        ),
        refusal(
            "an id that is a path",
            client.create_container(&escape),
            Code::INVALID_ARGUMENT,
            "escape",
        ),
    ])
    .await?;

    // Requests about a live container that it cannot take: refused, the container
    // untouched.
    let first = guest.start_container("dup", &spec).await?;
    let duplicate = create("dup", Some(spec.to_proto("dup")?));
    let relative_cwd = exec(
        "dup",
        "bad",
        ContainerSpec::new(["true"]).process_proto().map(|mut p| {
            p.Cwd = "relative".into();
            p
        })?,
    );
    refused(vec![
        refusal(
            "a duplicate container id",
            client.create_container(&duplicate),
            Code::ALREADY_EXISTS,
            "dup",
        ),
        refusal(
            "a signal number that is none",
            client.signal_process("dup", "", 999),
            Code::INVALID_ARGUMENT,
            "999",
        ),
        refusal(
            "StartContainer twice",
            first.start(),
            Code::FAILED_PRECONDITION,
            "dup",
        ),
        refusal(
            "WaitProcess of an unknown exec id",
            client.wait_process("dup", "nobody"),
            Code::NOT_FOUND,
            "nobody",
        ),
        refusal(
            "TtyWinResize of a process without a terminal",
            client.tty_win_resize("dup", "", 24, 80),
            Code::FAILED_PRECONDITION,
            "terminal",
        ),
        refusal(
            "ExecProcess of a process with a relative cwd",
            client.exec_process(&relative_cwd),
            Code::INVALID_ARGUMENT,
            "cwd",
        ),
    ])
    .await?;
    let stats = first.stats().await.context("StatsContainer of dup")?;
    ensure!(
        stats.cgroup_stats.pids_stats.current >= 1,
        "dup's cgroup counts no process: {stats:?}"
    );
    first.signal("", SIGKILL).await?;
    first.wait("").await?;
    first.remove().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_hold_and_removal_leaves_nothing_behind() -> Result<()> {
    let guest = SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate()?)).await?;
    let client = guest.client.clone();

    // Over its memory limit: the OOM killer ends it, and GetOOMEvent names it.
    let oom_events = tokio::spawn({
        let client = client.clone().with_timeout(Duration::ZERO);
        async move { client.get_oom_event().await }
    });
    let hog = ContainerSpec {
        memory_limit: Some(24 << 20),
        ..ContainerSpec::new(["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
    };
    let oom = guest.run_container("hog", &hog).await?;
    ensure!(
        oom.status == 128 + SIGKILL,
        "the hog ended with {} ({})",
        oom.status,
        oom.stderr.text()
    );
    let event = tokio::time::timeout(Duration::from_secs(30), oom_events)
        .await
        .context("no OOM event within 30 s")???;
    ensure!(event == "hog", "the OOM event names {event:?}");

    // The pids limit: the shell and 7 children fill 8; the next fork fails.
    let limit = 8;
    let forker = ContainerSpec {
        pids_limit: Some(limit),
        ..ContainerSpec::shell(
            "i=0; while [ $i -lt 20 ]; do i=$((i+1)); sleep 600 & echo forked; done",
        )
    };
    guest.busybox_rootfs("forker")?;
    let container = Container::create(&client, "forker", forker.to_proto("forker")?).await?;
    let readers = container.readers("", false);
    container.start().await?;
    let status = container.wait("").await?;
    let (out, err) = readers.finish().await?;
    let forked = out.text().lines().filter(|l| *l == "forked").count() as i64;
    ensure!(
        (1..limit).contains(&forked),
        "{forked} forks succeeded under pids.max {limit} (status {status}, stderr {:?})",
        err.text()
    );
    ensure!(
        err.text().contains("fork"),
        "no failed fork reported: {:?}",
        err.text()
    );
    container.remove().await?;

    // RemoveContainer leaves no mount, cgroup or process: an inspector in the guest's PID
    // namespace, the cgroup tree bound read-only, looks before, during and after.
    let baseline = inspect(&guest, "inspect-0").await?;
    ensure!(
        baseline
            .mounts
            .iter()
            .any(|m| m.starts_with("/run/kata-containers/shared/containers virtiofs kataShared")),
        "the inspector does not see the guest's mounts: {:#?}",
        baseline.mounts
    );
    eprintln!(
        "inspector: {} mounts, {} cgroups, {} processes in the guest",
        baseline.mounts.len(),
        baseline.cgroups.len(),
        baseline.processes.len()
    );
    let victim = guest
        .start_container(
            "victim",
            &ContainerSpec::new(["sleep", "7777"]).bind_read_only("/sys/fs/cgroup", "/mnt"),
        )
        .await?;
    let during = inspect(&guest, "inspect-1").await?;
    ensure!(
        during.processes.iter().any(|p| p == "sleep 7777"),
        "the inspector cannot see the victim's process: {:?}",
        during.processes
    );
    ensure!(
        during.cgroups.iter().any(|c| c.contains("victim")),
        "the inspector cannot see the victim's cgroup: {:?}",
        during.cgroups
    );
    victim
        .remove()
        .await
        .context("RemoveContainer of a running container")?;
    let after = inspect(&guest, "inspect-2").await?;
    ensure!(
        !after.processes.iter().any(|p| p.contains("7777")),
        "a process survived RemoveContainer: {:?}",
        after.processes
    );
    ensure!(
        after.cgroups == baseline.cgroups,
        "cgroups before {:?}\nafter {:?}",
        baseline.cgroups,
        after.cgroups
    );
    ensure!(
        after.mounts == baseline.mounts,
        "the guest's mounts changed:\nbefore {:#?}\nafter {:#?}",
        baseline.mounts,
        after.mounts
    );
    refused(vec![refusal(
        "StartContainer of a removed container",
        client.start_container("victim"),
        Code::NOT_FOUND,
        "victim",
    )])
    .await?;

    guest.power_off().await?;
    Ok(())
}

fn host_release() -> Result<String> {
    let out = std::process::Command::new("uname").arg("-r").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

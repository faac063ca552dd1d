//! Container figures in one guest: CreateContainer+StartContainer to the first byte of
//! output, next to ExecProcess to the first byte in a running container and a plain
//! fork+exec in the guest (`guest-helper spawn`, timed inside the guest); and the exec
//! round trip (ExecProcess of `true` to WaitProcess and the end of its output).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;

use super::table::{Table, median, ratio, spread};

/// How many spawns one fork+exec sample averages.
const SPAWNS: u32 = 50;

pub async fn figures(
    guest: &SandboxGuest,
    helper: &Path,
    runs: u32,
    table: &mut Table,
) -> Result<()> {
    let client = &guest.client;
    let mut create_start = Vec::new();
    for run in 1..=runs {
        let id = format!("first-byte-{run}");
        guest.busybox_rootfs(&id)?;
        let spec = ContainerSpec::new(["echo", "hi"]).to_proto(&id)?;
        let done = Container::run(client, &id, spec).await?;
        let took = done
            .create_to_first_byte
            .with_context(|| format!("{id} printed nothing"))?;
        eprintln!(
            "container {run}/{runs}: first byte {:.1} ms",
            took.as_secs_f64() * 1e3
        );
        create_start.push(took);
    }

    let rootfs = guest.busybox_rootfs("exec-target")?;
    std::fs::copy(helper, rootfs.join("bin/guest-helper")).context("copying guest-helper")?;
    let target = Container::create(
        client,
        "exec-target",
        ContainerSpec::new(["sleep", "3600"]).to_proto("exec-target")?,
    )
    .await?;
    target.start().await?;

    let echo = ContainerSpec::new(["echo", "hi"]).process_proto()?;
    let truth = ContainerSpec::new(["true"]).process_proto()?;
    let spawn = ContainerSpec::new([
        "/bin/guest-helper".to_string(),
        "spawn".to_string(),
        SPAWNS.to_string(),
        "/bin/true".to_string(),
    ])
    .process_proto()?;
    let (mut exec_first, mut round_trips, mut fork_exec) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=runs {
        let exec_id = format!("echo-{run}");
        let asked = Instant::now();
        target.exec(&exec_id, echo.clone()).await?;
        let readers = target.readers(&exec_id, false);
        let status = target.wait(&exec_id).await?;
        let (out, _) = readers.finish().await?;
        ensure!(
            status == 0 && out.text() == "hi\n",
            "exec of echo: {status} {:?}",
            out.text()
        );
        exec_first.push(out.first_byte_at.context("echo printed nothing")? - asked);

        let exec_id = format!("true-{run}");
        let asked = Instant::now();
        target.exec(&exec_id, truth.clone()).await?;
        let readers = target.readers(&exec_id, false);
        let status = target.wait(&exec_id).await?;
        readers.finish().await?;
        round_trips.push(asked.elapsed());
        if status != 0 {
            bail!("exec of `true` exited {status}");
        }

        let exec_id = format!("spawn-{run}");
        target.exec(&exec_id, spawn.clone()).await?;
        let readers = target.readers(&exec_id, false);
        let status = target.wait(&exec_id).await?;
        let (out, err) = readers.finish().await?;
        ensure!(
            status == 0,
            "guest-helper spawn exited {status}: {}",
            err.text()
        );
        let ns: u64 = out
            .text()
            .trim()
            .parse()
            .with_context(|| format!("guest-helper said {:?}", out.text()))?;
        fork_exec.push(Duration::from_nanos(ns));
        eprintln!(
            "exec {run}/{runs}: first byte {:.1} ms, round trip {:.1} ms, fork+exec {:.2} ms",
            exec_first[exec_first.len() - 1].as_secs_f64() * 1e3,
            round_trips[round_trips.len() - 1].as_secs_f64() * 1e3,
            ns as f64 / 1e6
        );
    }
    target.signal("", 9).await?;
    target.wait("").await?;
    target.remove().await?;

    let fork_exec_ms = median(&fork_exec).as_secs_f64();
    table.push_versus(
        format!("CreateContainer+StartContainer to first stdout byte, {runs} runs"),
        spread(&create_start),
        format!(
            "{}; {}",
            ratio(
                median(&create_start).as_secs_f64(),
                median(&exec_first).as_secs_f64(),
                "exec"
            ),
            ratio(
                median(&create_start).as_secs_f64(),
                fork_exec_ms,
                "fork+exec"
            )
        ),
    );
    table.push_versus(
        format!("ExecProcess to first stdout byte in a running container (\"exec\"), {runs} runs"),
        spread(&exec_first),
        ratio(median(&exec_first).as_secs_f64(), fork_exec_ms, "fork+exec"),
    );
    table.push(
        format!("fork+exec+wait of /bin/true in the guest (\"fork+exec\"), mean of {SPAWNS}, {runs} runs"),
        spread(&fork_exec),
    );
    table.push(
        format!("exec round trip (ExecProcess of `true` to WaitProcess and EOF), {runs} runs"),
        spread(&round_trips),
    );
    Ok(())
}

//! The walking skeleton, in a real VM: boot a hull guest, talk to its agent over hybrid
//! vsock, and power it off through the agent API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::vm::{Vm, VmConfig};
use hull_protocols::health::health_check_response::ServingStatus;

/// Under TCG a boot takes about a second; leave room for a loaded CI machine.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
/// From DestroySandbox's answer to QEMU's exit: agent exit, init shutdown, ACPI power-off.
const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn guest_boots_answers_the_agent_api_and_powers_off() -> Result<()> {
    let config = VmConfig::new(GuestArtifacts::locate()?);
    let mut vm = Vm::boot(&config)?;
    let (client, ready) = vm.wait_for_agent(BOOT_DEADLINE).await?;
    eprintln!("agent ready {ready:?} after QEMU start ({})", vm.accel());

    let health = client.check().await.context("Health.Check")?;
    ensure!(
        health.status.enum_value() == Ok(ServingStatus::SERVING),
        "not serving: {health:?}"
    );
    let version = client.version().await.context("Health.Version")?;
    ensure!(
        version.agent_version == env!("CARGO_PKG_VERSION"),
        "{version:?}"
    );

    // Values only the guest can give: hull-init is PID 1 there, and the guest kernel
    // (256 MiB of RAM, x86_64) has 128 MiB memory blocks.
    let details = client.guest_details().await.context("GetGuestDetails")?;
    let agent = details
        .agent_details
        .clone()
        .into_option()
        .context("no agent details")?;
    ensure!(
        agent.init_daemon,
        "the agent does not see hull-init as its parent: {details:?}"
    );
    ensure!(details.mem_block_size_bytes == 128 << 20, "{details:?}");
    ensure!(
        vm.console().contains("init: agent started"),
        "init did not log the agent start"
    );

    // Every AgentService method is implemented: each one, called with an empty request,
    // answers something other than UNIMPLEMENTED (DestroySandbox comes last, below).
    let raw = hull_protocols::dial::connect(&vm.agent_address(), Duration::from_secs(30))
        .await
        .context("a raw ttRPC connection")?;
    let mut probed = 0;
    for method in agent_methods() {
        if method == "DestroySandbox" {
            continue;
        }
        let mut req = hull_protocols::ttrpc::Request::new();
        req.service = "grpc.AgentService".into();
        req.method = method.clone();
        // GetOOMEvent waits for an event: it answers nothing within the bound.
        req.timeout_nano = Duration::from_secs(3).as_nanos() as i64;
        if let Ok(resp) = raw.request(req).await {
            let code = resp.status.as_ref().map(|s| s.code.value()).unwrap_or(0);
            ensure!(
                code != hull_protocols::ttrpc::Code::UNIMPLEMENTED as i32,
                "{method} answers UNIMPLEMENTED: {:?}",
                resp.status
            );
        }
        probed += 1;
    }
    ensure!(
        probed == 41,
        "{probed} methods probed, not 41 and DestroySandbox"
    );

    let took = vm
        .power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    eprintln!("QEMU exited cleanly {took:?} after DestroySandbox");
    ensure!(
        vm.console().contains("init: powering off"),
        "no orderly power-off on the console"
    );
    vm.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_logs_reach_the_host_through_the_log_vport() -> Result<()> {
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    config
        .extra_cmdline
        .extend(["agent.log_vport=1025".into(), "agent.log=debug".into()]);
    let mut vm = Vm::boot(&config)?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;

    let mut reader = BufReader::new(vm.connect_guest_port(1025).await?);
    let mut line = String::new();

    client.guest_details().await.context("GetGuestDetails")?;
    let mut seen = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("log stream ended; lines so far:\n{}", seen.join(""));
        }
        seen.push(line.clone());
        if line.contains("agent serving") {
            break;
        }
    }
    ensure!(
        !vm.console().contains("agent serving"),
        "logs went to the console too"
    );
    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}

/// The AgentService methods of hull's protocol, by name.
fn agent_methods() -> Vec<String> {
    hull_protocols::agent::file_descriptor()
        .services()
        .flat_map(|service| {
            service
                .methods()
                .map(|m| m.proto().name().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

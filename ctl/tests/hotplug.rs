//! `hull-ctl online-cpu-mem` and `mem-hotplug-probe` against a real guest: a vCPU
//! hot-plugged through QEMU's QMP is onlined by hand, and a probe the guest kernel refuses
//! fails with the agent's reason. The guest comes from the e2e harness (needs `just
//! artifacts`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::process::Output;

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::guest::BOOT_DEADLINE;
use hull_e2e::vm::{Hotplug, Vm, VmConfig};
use hull_testkit::cli::{self, text};
use serde_json::json;

/// hull-ctl `--addr address` with `args`.
async fn hull_ctl(address: &str, args: &[&str]) -> Output {
    let all = [&["--addr", address][..], args].concat();
    cli::run_async(env!("CARGO_BIN_EXE_hull-ctl"), &all).await
}

#[tokio::test(flavor = "multi_thread")]
async fn hull_ctl_onlines_a_hot_plugged_vcpu_and_reports_a_refused_probe() -> Result<()> {
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    config.hotplug = Some(Hotplug {
        max_cpus: 2,
        memory_slots: 1,
        max_memory_mib: 1024,
        root_ports: 0,
    });
    let mut vm = Vm::boot(&config)?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;
    let addr = vm.agent_address().to_string();

    let qmp = vm.qmp()?;
    let cpus = qmp.execute("query-hotpluggable-cpus", None)?;
    let free = cpus
        .as_array()
        .and_then(|all| all.iter().find(|c| c.get("qom-path").is_none()))
        .with_context(|| format!("no free vCPU slot in {cpus}"))?;
    let mut args = json!({ "driver": free["type"], "id": "cpu1" });
    for (key, value) in free["props"].as_object().into_iter().flatten() {
        args[key] = value.clone();
    }
    qmp.execute("device_add", Some(args))?;

    let out = hull_ctl(
        &addr,
        &["--json", "online-cpu-mem", "--cpus", "2", "--cpu-only"],
    )
    .await;
    ensure!(
        out.status.success(),
        "online-cpu-mem: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&text(&out.stdout))?;
    ensure!(report == json!({"cpus": 2, "memory": false}), "{report}");

    // Not a memory block's start: refused by the agent before the kernel sees it.
    let out = hull_ctl(&addr, &["mem-hotplug-probe", "0x100001000"]).await;
    let stderr = text(&out.stderr);
    ensure!(
        out.status.code() == Some(1)
            && stderr.contains("INVALID_ARGUMENT")
            && stderr.contains("not a multiple of the memory block size"),
        "mem-hotplug-probe exited {:?}: {stderr}",
        out.status.code()
    );

    vm.power_off_through_agent(&client, std::time::Duration::from_secs(30))
        .await?;
    vm.finish();
    Ok(())
}

//! The README's demo: boot a hull guest, print what its agent reports, power it off.

use std::time::Duration;

use anyhow::{Context, Result};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::vm::{Vm, VmConfig};

#[tokio::main]
async fn main() -> Result<()> {
    let config = VmConfig::new(GuestArtifacts::locate()?);
    println!("booting a hull guest ({})", config.accel);
    println!("  kernel  {}", config.artifacts.kernel.display());
    println!("  initrd  {}", config.artifacts.initrd.display());
    let mut vm = Vm::boot(&config)?;
    let (client, ready) = vm.wait_for_agent(Duration::from_secs(120)).await?;
    println!(
        "agent ready {:.3} s after the VMM started",
        ready.as_secs_f64()
    );

    let version = client.version().await.context("Health.Version")?;
    let details = client.guest_details().await.context("GetGuestDetails")?;
    let agent = details
        .agent_details
        .clone()
        .into_option()
        .unwrap_or_default();
    println!("guest details (GetGuestDetails, answered from inside the guest):");
    println!(
        "  agent version         {} (API {})",
        version.agent_version, version.grpc_version
    );
    println!("  agent under hull-init {}", agent.init_daemon);
    println!(
        "  memory block size     {} MiB",
        details.mem_block_size_bytes >> 20
    );
    println!(
        "  memory hotplug probe  {}",
        details.support_mem_hotplug_probe
    );
    println!("  storage handlers      {:?}", agent.storage_handlers);
    println!("  seccomp               {}", agent.supports_seccomp);

    let off = vm
        .power_off_through_agent(&client, Duration::from_secs(30))
        .await?;
    println!(
        "DestroySandbox: guest powered off {:.3} s later",
        off.as_secs_f64()
    );
    vm.finish();
    Ok(())
}

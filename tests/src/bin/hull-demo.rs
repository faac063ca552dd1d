//! The README's demo: boot a hull guest, share a busybox bundle with it over virtio-fs,
//! run `uname -a` in a container and print what it says and how long it took from
//! CreateContainer to the first byte of output. `--web` also serves a page from a
//! container with busybox httpd, fetched by this host through a forwarded loopback port.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::bundle::{ContainerSpec, GUEST_SHARED_DIR};
use hull_e2e::container::Container;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::http;
use hull_e2e::nic::{GUEST_ADDRESS, NicConfig};
use hull_e2e::vm::VmConfig;

#[derive(Parser)]
#[command(about = "Boots a hull guest and runs a container in it")]
struct Args {
    /// Also serve a page from a container (busybox httpd on port 80 in the guest) and
    /// fetch it from this host through a port of 127.0.0.1 forwarded into the guest.
    #[arg(long)]
    web: bool,
}

const NIC_MAC: &str = "52:54:00:12:34:56";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    let nic = if args.web {
        let nic = NicConfig::new(NIC_MAC).forward_tcp(80)?;
        config.nic = Some(nic.clone());
        Some(nic)
    } else {
        None
    };
    println!("booting a hull guest ({})", config.accel);
    println!("  kernel  {}", config.artifacts.kernel.display());
    println!("  initrd  {}", config.artifacts.initrd.display());
    let guest = SandboxGuest::boot(config).await?;
    let client = guest.client.clone();
    let version = client.version().await.context("Health.Version")?;
    println!(
        "agent {} ready {:.3} s after the VMM started; CreateSandbox mounted the virtio-fs \
         share at {GUEST_SHARED_DIR} in {:.3} s",
        version.agent_version,
        guest.agent_ready.as_secs_f64(),
        guest.create_sandbox.as_secs_f64()
    );

    let rootfs = guest.busybox_rootfs("demo")?;
    println!(
        "container demo: busybox bundle at {} (the guest sees {GUEST_SHARED_DIR}/demo/rootfs)",
        rootfs.display()
    );
    let spec = ContainerSpec::new(["uname", "-a"]);
    let run = Container::run(&client, "demo", spec.to_proto("demo")?).await?;
    println!("$ uname -a   # in the container");
    print!("{}", run.stdout.text());
    eprint!("{}", run.stderr.text());
    ensure!(run.status == 0, "uname exited with {}", run.status);
    match run.create_to_first_byte {
        Some(took) => println!(
            "CreateContainer to the first byte of output: {:.3} s",
            took.as_secs_f64()
        ),
        None => println!("the container printed nothing"),
    }

    if let Some(nic) = nic {
        serve_a_page(&guest, &nic).await?;
    }

    let off = guest.power_off().await?;
    println!(
        "DestroySandbox: guest powered off {:.3} s later",
        off.as_secs_f64()
    );
    Ok(())
}

/// Like running nginx under Kata: the NIC configured through the agent, a web server in a
/// container of the sandbox's network namespace, a page fetched from the host.
async fn serve_a_page(guest: &SandboxGuest, nic: &NicConfig) -> Result<()> {
    let client = &guest.client;
    nic.configure_through_agent(client).await?;
    let port = nic.host_port(80).context("no forwarded port")?;
    println!(
        "guest eth0 at {GUEST_ADDRESS}; 127.0.0.1:{port} on this host is port 80 in the guest"
    );
    guest.busybox_rootfs("web")?;
    let spec = ContainerSpec::new(["httpd", "-f", "-p", "80", "-h", "/www"]);
    let web = Container::create(client, "web", spec.to_proto("web")?).await?;
    web.start().await?;
    println!("container web: busybox httpd -f -p 80 -h /www");
    let response = tokio::task::spawn_blocking(move || {
        http::get_from_loopback(port, "/index.html", Duration::from_secs(60))
    })
    .await??;
    println!("$ GET http://127.0.0.1:{port}/index.html   # on this host");
    print!("{}", http::body(&response));
    web.signal("", 15).await?;
    web.wait("").await?;
    web.remove().await?;
    Ok(())
}

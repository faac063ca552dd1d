//! Guest networking in a real VM: a virtio-net NIC on QEMU user networking, configured
//! only through the agent API (UpdateInterface, UpdateRoutes, AddARPNeighbors), checked
//! through it (ListInterfaces, ListRoutes), then fed bad requests that must be refused
//! precisely while the configuration stays and the agent keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::GuestArtifacts;
use hull_e2e::nic::{GATEWAY, GUEST_ADDRESS, GUEST_PREFIX_LEN, NicConfig};
use hull_e2e::vm::{Vm, VmConfig};
use hull_protocols::ttrpc::Code;
use hull_protocols::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use hull_testkit::interfaces::{IFF_UP, configured};
use hull_testkit::{check_all, check_refused, refusal};

/// Under TCG a boot takes about a second; leave room for a loaded CI machine.
const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);
const MAC: &str = "52:54:00:12:34:56";
/// Slirp's router answers ARP with this MAC.
const GATEWAY_MAC: &str = "52:55:0a:00:02:02";
fn ipv4(address: &str, mask: u8) -> IPAddress {
    IPAddress {
        family: IPFamily::v4.into(),
        address: address.into(),
        mask: mask.to_string(),
        ..Default::default()
    }
}

fn default_route() -> Route {
    Route {
        dest: String::new(),
        gateway: GATEWAY.to_string(),
        device: "eth0".into(),
        family: IPFamily::v4.into(),
        ..Default::default()
    }
}

/// The listed interface carrying `mac`.
fn by_mac<'a>(list: &'a [Interface], mac: &str) -> Result<&'a Interface> {
    list.iter()
        .find(|i| i.hwAddr == mac)
        .with_context(|| format!("no interface with MAC {mac} in {list:#?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_nic_is_configured_and_reported_through_the_agent_api() -> Result<()> {
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    let nic = NicConfig::new(MAC).forward_tcp(8080)?;
    let pci_path = nic.pci_path();
    config.nic = Some(nic);
    let mut vm = Vm::boot(&config)?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;
    ensure!(
        vm.console().contains("loopback lo is up"),
        "the agent did not log bringing loopback up"
    );

    // Before: loopback up, the NIC present but untouched.
    let before = client.list_interfaces().await?;
    let lo = before
        .iter()
        .find(|i| i.name == "lo")
        .context("no lo listed")?;
    ensure!(lo.raw_flags & IFF_UP != 0, "lo is down: {lo:?}");
    ensure!(lo.IPAddresses.contains(&ipv4("127.0.0.1", 8)), "{lo:?}");
    let nic = by_mac(&before, MAC)?;
    ensure!(
        nic.IPAddresses.is_empty(),
        "the NIC has addresses already: {nic:?}"
    );
    ensure!(
        client.list_routes().await?.is_empty(),
        "routes before any were set"
    );

    // Configure it by MAC, the way Kata's runtime does.
    let wanted = Interface {
        name: "eth0".into(),
        hwAddr: MAC.into(),
        mtu: 1500,
        IPAddresses: vec![ipv4(&GUEST_ADDRESS.to_string(), GUEST_PREFIX_LEN)],
        ..Default::default()
    };
    let answered = client
        .update_interface(wanted.clone())
        .await
        .context("UpdateInterface")?;
    let listed = configured(client.list_interfaces().await?);
    let eth0 = by_mac(&listed, MAC)?;
    let answered = configured(vec![answered]).remove(0);
    ensure!(eth0 == &answered, "listed {eth0:?}\nanswered {answered:?}");
    ensure!(eth0.name == "eth0" && eth0.mtu == 1500, "{eth0:?}");
    ensure!(
        eth0.IPAddresses == wanted.IPAddresses,
        "addresses: {:?}",
        eth0.IPAddresses
    );
    ensure!(eth0.raw_flags & IFF_UP != 0, "eth0 is down: {eth0:?}");
    ensure!(
        eth0.type_.is_empty(),
        "virtio-net has no link kind: {eth0:?}"
    );

    let routes = client
        .update_routes(vec![default_route()])
        .await
        .context("UpdateRoutes")?;
    ensure!(
        routes == [default_route()],
        "UpdateRoutes answered {routes:#?}"
    );
    ensure!(client.list_routes().await? == routes, "ListRoutes differs");

    let neighbor = ARPNeighbor {
        toIPAddress: Some(ipv4(&GATEWAY.to_string(), 32)).into(),
        device: "eth0".into(),
        lladdr: GATEWAY_MAC.into(),
        ..Default::default()
    };
    client
        .add_arp_neighbors(vec![neighbor])
        .await
        .context("AddARPNeighbors")?;

    // The same NIC found by its PCI path, as for a hot-plugged one: a new MTU.
    let by_path = Interface {
        hwAddr: String::new(),
        devicePath: pci_path.clone(),
        mtu: 1400,
        ..wanted.clone()
    };
    let answered = client
        .update_interface(by_path.clone())
        .await
        .with_context(|| format!("UpdateInterface by PCI path {pci_path}"))?;
    ensure!(
        answered.mtu == 1400 && answered.hwAddr == MAC,
        "{answered:?}"
    );
    ensure!(
        client.list_routes().await? == routes,
        "an MTU change lost the routes"
    );

    // Bad requests: refused precisely, nothing changed, the agent still serving.
    let interfaces = configured(client.list_interfaces().await?);
    let c = &client;
    check_all(vec![
        refusal(
            "unknown MAC",
            c.update_interface(Interface {
                hwAddr: "52:54:00:00:00:99".into(),
                ..wanted.clone()
            }),
            Code::NOT_FOUND,
            "52:54:00:00:00:99",
        ),
        refusal(
            "bad address",
            c.update_interface(Interface {
                IPAddresses: vec![ipv4("10.0.2.256", 24)],
                ..wanted.clone()
            }),
            Code::INVALID_ARGUMENT,
            "interface.IPAddresses[0].address",
        ),
        refusal(
            "an MTU the NIC refuses, after a rename",
            c.update_interface(Interface {
                name: "wan0".into(),
                mtu: 70000,
                ..wanted.clone()
            }),
            Code::INVALID_ARGUMENT,
            "70000",
        ),
        refusal(
            "bad route",
            c.update_routes(vec![Route {
                dest: "10.0.2.1/24".into(),
                gateway: String::new(),
                ..default_route()
            }]),
            Code::INVALID_ARGUMENT,
            "routes[0].dest",
        ),
        refusal(
            "unreachable gateway",
            c.update_routes(vec![Route {
                gateway: "192.0.2.1".into(),
                ..default_route()
            }]),
            Code::INVALID_ARGUMENT,
            "192.0.2.1",
        ),
        refusal(
            "route on an unknown link",
            c.update_routes(vec![Route {
                device: "nosuch0".into(),
                ..default_route()
            }]),
            Code::NOT_FOUND,
            "nosuch0",
        ),
    ])
    .await
    .map_err(anyhow::Error::msg)?;
    ensure!(
        configured(client.list_interfaces().await?) == interfaces,
        "a refused request changed the interfaces"
    );
    ensure!(
        client.list_routes().await? == routes,
        "a refused request changed the routes"
    );
    client
        .check()
        .await
        .context("Health.Check after bad input")?;

    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_share_the_sandbox_network_serving_and_fetching_through_the_host_loopback()
-> Result<()> {
    use hull_e2e::bundle::ContainerSpec;
    use hull_e2e::container::Container;
    use hull_e2e::guest::SandboxGuest;

    const BODY: &str = "hello from the host's loopback\n";
    let (host_port, server) = hull_e2e::http::serve_on_loopback(BODY, 1)?;
    let mut config = VmConfig::new(GuestArtifacts::locate()?);
    let nic = NicConfig {
        reach_host: true,
        ..NicConfig::new(MAC).forward_tcp(80)?
    };
    let forwarded = nic.host_port(80).context("no forward for port 80")?;
    config.nic = Some(nic.clone());
    let guest = SandboxGuest::boot(config).await?;
    let client = guest.client.clone();
    nic.configure_through_agent(&client).await?;

    // A web server in a container, its spec asking for a network namespace as `runc spec`
    // writes it: the agent keeps the container in the sandbox's, where eth0 and the
    // forwarded port are.
    guest.busybox_rootfs("web")?;
    let mut web = ContainerSpec::new(["httpd", "-f", "-v", "-p", "80", "-h", "/www"]);
    web.namespaces.push("network".into());
    let server_container = Container::create(&client, "web", web.to_proto("web")?)
        .await
        .context("CreateContainer web (with a network namespace entry)")?;
    let web_output = server_container.readers("", false);
    server_container.start().await?;
    let page = tokio::task::spawn_blocking(move || {
        hull_e2e::http::get_from_loopback(forwarded, "/index.html", Duration::from_secs(60))
    })
    .await??;
    ensure!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    ensure!(
        page.contains("served by busybox httpd in container web"),
        "{page}"
    );

    // A container fetches a page from the host's loopback through the guest's gateway.
    let fetch = ContainerSpec::new([
        "wget".to_string(),
        "-q".into(),
        "-O".into(),
        "-".into(),
        format!("http://{GATEWAY}:{host_port}/page"),
    ]);
    guest.busybox_rootfs("fetch")?;
    let fetched = Container::run(&client, "fetch", fetch.to_proto("fetch")?).await?;
    ensure!(
        fetched.status == 0 && fetched.stdout.text() == BODY,
        "wget: status {}, stdout {:?}, stderr {:?}",
        fetched.status,
        fetched.stdout.text(),
        fetched.stderr.text()
    );
    let served = tokio::task::spawn_blocking(move || server.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the host's server panicked"))?;
    ensure!(served == 1, "the host served {served} requests");

    // A network namespace the guest cannot join is refused, saying why.
    let mut elsewhere = ContainerSpec::new(["true"]).to_proto("web")?;
    elsewhere
        .Linux
        .mut_or_insert_default()
        .Namespaces
        .push(hull_protocols::oci::LinuxNamespace {
            Type: "network".into(),
            Path: "/var/run/netns/cni-1234".into(),
            ..Default::default()
        });
    let req = hull_protocols::agent::CreateContainerRequest {
        container_id: "elsewhere".into(),
        exec_id: "elsewhere".into(),
        OCI: Some(elsewhere).into(),
        ..Default::default()
    };
    check_refused(
        "a network namespace path",
        client.create_container(&req).await,
        Code::INVALID_ARGUMENT,
        "sandbox's network namespace",
    )
    .map_err(anyhow::Error::msg)?;

    server_container.signal("", 9).await?;
    server_container.wait("").await?;
    let (_, log) = web_output.finish().await?;
    eprintln!("httpd's log: {}", log.text().trim());
    server_container.remove().await?;
    guest.power_off().await?;
    Ok(())
}

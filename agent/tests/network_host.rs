//! The network RPCs end to end on the host: the real `hull-agent` binary, started in a
//! fresh network namespace that holds a veth pair (the test kit's
//! [`Isolation::NetworkNamespace`], root needed), driven over its Unix socket by the
//! typed client. The host's own network is never touched; the namespace ends with the
//! agent.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use hull_protocols::agent::UpdateInterfaceRequest;
use hull_protocols::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use hull_testkit::agent::{Isolation, assert_serving};
use hull_testkit::interfaces::{IFF_UP, configured};
use hull_testkit::{HostAgent, refusal};
use ttrpc::Code;

fn address(address: &str, mask: &str) -> IPAddress {
    IPAddress {
        family: if address.contains(':') {
            IPFamily::v6
        } else {
            IPFamily::v4
        }
        .into(),
        address: address.into(),
        mask: mask.into(),
        ..Default::default()
    }
}

fn route(dest: &str, gateway: &str, device: &str, scope: u32) -> Route {
    Route {
        dest: dest.into(),
        gateway: gateway.into(),
        device: device.into(),
        scope,
        family: IPFamily::v4.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn network_rpcs_configure_report_and_refuse_bad_input() {
    let agent = HostAgent::builder(env!("CARGO_BIN_EXE_hull-agent"))
        .isolation(Isolation::NetworkNamespace)
        .start();
    let client = agent.client().await;
    let mac = agent.veth().mac.clone();

    // The agent brought loopback up when it started.
    let interfaces = client.list_interfaces().await.expect("ListInterfaces");
    let lo = interfaces.iter().find(|i| i.name == "lo").expect("lo");
    assert_ne!(lo.raw_flags & IFF_UP, 0, "lo is down: {lo:?}");

    let wanted = Interface {
        name: "eth0".into(),
        hwAddr: mac.to_uppercase(),
        mtu: 1400,
        IPAddresses: vec![address("10.1.0.2", "24"), address("2001:db8::2", "64")],
        ..Default::default()
    };
    let answered = client
        .update_interface(wanted.clone())
        .await
        .expect("UpdateInterface");
    assert_eq!(answered.name, "eth0");
    assert_eq!(answered.hwAddr, mac, "MACs are reported in lower case");
    assert_eq!(answered.mtu, 1400);
    assert_eq!(answered.IPAddresses, wanted.IPAddresses);
    assert_ne!(answered.raw_flags & IFF_UP, 0);
    let listed = configured(client.list_interfaces().await.expect("ListInterfaces"));
    assert_eq!(
        listed.iter().find(|i| i.name == "eth0"),
        configured(vec![answered]).first(),
        "{listed:#?}"
    );

    let routes = vec![
        route("", "10.1.0.1", "eth0", 0),
        route("10.7.0.0/24", "", "eth0", 253),
    ];
    let answered = client
        .update_routes(routes.clone())
        .await
        .expect("UpdateRoutes");
    let mut sorted = answered.clone();
    sorted.sort_by(|a, b| a.dest.cmp(&b.dest));
    assert_eq!(sorted, routes, "routes as set");
    assert_eq!(client.list_routes().await.expect("ListRoutes"), answered);

    client
        .add_arp_neighbors(vec![ARPNeighbor {
            toIPAddress: Some(address("10.1.0.1", "32")).into(),
            device: "eth0".into(),
            lladdr: "02:00:00:00:00:01".into(),
            ..Default::default()
        }])
        .await
        .expect("AddARPNeighbors");

    // Bad input: each answered precisely, nothing changed, the agent still serving.
    let before_interfaces = configured(client.list_interfaces().await.expect("ListInterfaces"));
    let before_routes = client.list_routes().await.expect("ListRoutes");
    let c = &client;
    let rows = vec![
        refusal(
            "unknown MAC",
            c.update_interface(Interface {
                hwAddr: "02:00:00:00:00:99".into(),
                ..wanted.clone()
            }),
            Code::NOT_FOUND,
            "02:00:00:00:00:99",
        ),
        refusal(
            "bad address",
            c.update_interface(Interface {
                IPAddresses: vec![address("10.1.0.300", "24")],
                ..wanted.clone()
            }),
            Code::INVALID_ARGUMENT,
            "interface.IPAddresses[0].address",
        ),
        refusal(
            "MTU the link refuses",
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
            c.update_routes(vec![route("10.0.0.1/8", "", "eth0", 253)]),
            Code::INVALID_ARGUMENT,
            "routes[0].dest",
        ),
        refusal(
            "unreachable gateway",
            c.update_routes(vec![route("", "10.99.0.1", "eth0", 0)]),
            Code::INVALID_ARGUMENT,
            "10.99.0.1",
        ),
        refusal(
            "route on an unknown link",
            c.update_routes(vec![route("", "10.1.0.1", "nosuch0", 0)]),
            Code::NOT_FOUND,
            "nosuch0",
        ),
        refusal(
            "bad neighbour",
            c.add_arp_neighbors(vec![ARPNeighbor {
                toIPAddress: Some(address("10.1.0.5", "32")).into(),
                device: "eth0".into(),
                lladdr: "not-a-mac".into(),
                ..Default::default()
            }]),
            Code::INVALID_ARGUMENT,
            "neighbors[0].lladdr",
        ),
        refusal(
            "a request without an interface",
            c.update_interface(UpdateInterfaceRequest::new()),
            Code::INVALID_ARGUMENT,
            "",
        ),
    ];
    for row in rows {
        let what = row.what.clone();
        row.assert().await;
        assert_eq!(
            configured(client.list_interfaces().await.expect("ListInterfaces")),
            before_interfaces,
            "{what}"
        );
        assert_eq!(
            client.list_routes().await.expect("ListRoutes"),
            before_routes,
            "{what}"
        );
        assert_serving(&client).await;
    }
}

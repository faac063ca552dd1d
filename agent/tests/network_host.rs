//! The network RPCs end to end on the host: the real `hull-agent` binary, started in a
//! fresh network namespace that holds a veth pair, driven over its Unix socket by the
//! typed client. The host's own network is never touched: a dedicated thread unshares a
//! network namespace (root needed), creates the links there through rtnetlink and spawns
//! the agent, which inherits that thread's namespace; the namespace ends with the agent.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hull_protocols::agent::{
    ARPNeighbors, AddARPNeighborsRequest, ListInterfacesRequest, ListRoutesRequest, Routes,
    UpdateInterfaceRequest, UpdateRoutesRequest,
};
use hull_protocols::client::{AgentClient, ClientError};
use hull_protocols::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use ttrpc::Code;

const IFF_UP: u32 = 0x1;
/// IFF_RUNNING, IFF_LOWER_UP, IFF_DORMANT: operational state, which the kernel updates
/// shortly after a link comes up (a rollback may bounce the link).
const OPERATIONAL: u32 = 0x40 | 0x10000 | 0x20000;

/// The configuration of `list`, without the operational flags.
fn configured(mut list: Vec<Interface>) -> Vec<Interface> {
    for i in &mut list {
        i.raw_flags &= !OPERATIONAL;
    }
    list
}

/// `hull-agent` in its own network namespace with the veth pair `v0`/`v1`.
struct NetnsAgent {
    child: Child,
    socket: PathBuf,
    /// The MAC of `v0`.
    mac: String,
    _dir: tempfile::TempDir,
}

impl NetnsAgent {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let addr = format!("unix://{}", socket.display());
        let (child, mac) = std::thread::spawn(move || {
            // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only this thread
            // (and the children it spawns) into a new network namespace.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                panic!(
                    "cannot create a network namespace (this test needs root): {}",
                    std::io::Error::last_os_error()
                );
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let mac = runtime.block_on(make_veth_pair());
            let child = Command::new(env!("CARGO_BIN_EXE_hull-agent"))
                .env("HULL_AGENT_SERVER_ADDR", addr)
                .env("HULL_AGENT_LOG", "debug")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn hull-agent");
            (child, mac)
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let start = Instant::now();
        while !socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "agent socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            child,
            socket,
            mac,
            _dir: dir,
        }
    }

    async fn client(&self) -> AgentClient {
        AgentClient::connect(
            &hull_protocols::address::AgentAddress::Unix(self.socket.clone()),
            Duration::from_secs(5),
        )
        .await
        .expect("connect to the agent")
    }
}

impl Drop for NetnsAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `v0`/`v1` in the current thread's namespace, `v1` up; returns `v0`'s MAC.
async fn make_veth_pair() -> String {
    use futures_util::TryStreamExt;
    use rtnetlink::packet_route::link::LinkAttribute;

    let (connection, handle, _) = rtnetlink::new_connection().expect("netlink");
    tokio::spawn(connection);
    handle
        .link()
        .add(rtnetlink::LinkVeth::new("v0", "v1").build())
        .execute()
        .await
        .expect("creating the veth pair");
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .expect("links");
    let name = |m: &rtnetlink::packet_route::link::LinkMessage| {
        m.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
    };
    let v1 = links
        .iter()
        .find(|m| name(m).as_deref() == Some("v1"))
        .expect("v1");
    handle
        .link()
        .set(
            rtnetlink::LinkUnspec::new_with_index(v1.header.index)
                .up()
                .build(),
        )
        .execute()
        .await
        .expect("v1 up");
    let v0 = links
        .iter()
        .find(|m| name(m).as_deref() == Some("v0"))
        .expect("v0");
    let bytes = v0
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(b.clone()),
            _ => None,
        })
        .expect("v0 has a MAC");
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

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

async fn update_interface(
    client: &AgentClient,
    interface: Interface,
) -> Result<Interface, ClientError> {
    let req = UpdateInterfaceRequest {
        interface: Some(interface).into(),
        ..Default::default()
    };
    client
        .call_agent("AgentService.UpdateInterface", |agent, ctx| {
            agent.update_interface(ctx, &req)
        })
        .await
}

async fn update_routes(client: &AgentClient, routes: Vec<Route>) -> Result<Routes, ClientError> {
    let req = UpdateRoutesRequest {
        routes: Some(Routes {
            Routes: routes,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    client
        .call_agent("AgentService.UpdateRoutes", |agent, ctx| {
            agent.update_routes(ctx, &req)
        })
        .await
}

async fn list_interfaces(client: &AgentClient) -> Vec<Interface> {
    let req = ListInterfacesRequest::new();
    client
        .call_agent("AgentService.ListInterfaces", |agent, ctx| {
            agent.list_interfaces(ctx, &req)
        })
        .await
        .expect("ListInterfaces")
        .Interfaces
}

async fn list_routes(client: &AgentClient) -> Vec<Route> {
    let req = ListRoutesRequest::new();
    client
        .call_agent("AgentService.ListRoutes", |agent, ctx| {
            agent.list_routes(ctx, &req)
        })
        .await
        .expect("ListRoutes")
        .Routes
}

async fn add_neighbors(client: &AgentClient, list: Vec<ARPNeighbor>) -> Result<(), ClientError> {
    let req = AddARPNeighborsRequest {
        neighbors: Some(ARPNeighbors {
            ARPNeighbors: list,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    client
        .call_agent("AgentService.AddARPNeighbors", |agent, ctx| {
            agent.add_arp_neighbors(ctx, &req)
        })
        .await
        .map(|_| ())
}

/// A call's result reduced to what the bad-input checks compare: its code and message.
type Answer = Result<(), (Code, String)>;

trait Outcome {
    fn outcome(self) -> Answer;
}

impl<T> Outcome for Result<T, ClientError> {
    fn outcome(self) -> Answer {
        self.map(drop)
            .map_err(|e| (e.rpc_code().unwrap_or(Code::UNKNOWN), e.to_string()))
    }
}

async fn assert_serving(client: &AgentClient) {
    client
        .check()
        .await
        .expect("the agent still answers Health.Check");
}

#[tokio::test]
async fn network_rpcs_configure_report_and_refuse_bad_input() {
    let agent = NetnsAgent::start();
    let client = agent.client().await;

    // The agent brought loopback up when it started.
    let interfaces = list_interfaces(&client).await;
    let lo = interfaces.iter().find(|i| i.name == "lo").expect("lo");
    assert_ne!(lo.raw_flags & IFF_UP, 0, "lo is down: {lo:?}");

    let wanted = Interface {
        name: "eth0".into(),
        hwAddr: agent.mac.to_uppercase(),
        mtu: 1400,
        IPAddresses: vec![address("10.1.0.2", "24"), address("2001:db8::2", "64")],
        ..Default::default()
    };
    let answered = update_interface(&client, wanted.clone())
        .await
        .expect("UpdateInterface");
    assert_eq!(answered.name, "eth0");
    assert_eq!(
        answered.hwAddr, agent.mac,
        "MACs are reported in lower case"
    );
    assert_eq!(answered.mtu, 1400);
    assert_eq!(answered.IPAddresses, wanted.IPAddresses);
    assert_ne!(answered.raw_flags & IFF_UP, 0);
    let listed = configured(list_interfaces(&client).await);
    assert_eq!(
        listed.iter().find(|i| i.name == "eth0"),
        configured(vec![answered]).first(),
        "{listed:#?}"
    );

    let routes = vec![
        route("", "10.1.0.1", "eth0", 0),
        route("10.7.0.0/24", "", "eth0", 253),
    ];
    let answered = update_routes(&client, routes.clone())
        .await
        .expect("UpdateRoutes");
    let mut sorted = answered.Routes.clone();
    sorted.sort_by(|a, b| a.dest.cmp(&b.dest));
    assert_eq!(sorted, routes, "routes as set");
    assert_eq!(list_routes(&client).await, answered.Routes);

    add_neighbors(
        &client,
        vec![ARPNeighbor {
            toIPAddress: Some(address("10.1.0.1", "32")).into(),
            device: "eth0".into(),
            lladdr: "02:00:00:00:00:01".into(),
            ..Default::default()
        }],
    )
    .await
    .expect("AddARPNeighbors");

    // Bad input: each answered precisely, nothing changed, the agent still serving.
    let before_interfaces = configured(list_interfaces(&client).await);
    let before_routes = list_routes(&client).await;
    let cases: Vec<(&str, Answer)> = vec![
        (
            "unknown MAC",
            update_interface(
                &client,
                Interface {
                    hwAddr: "02:00:00:00:00:99".into(),
                    ..wanted.clone()
                },
            )
            .await
            .outcome(),
        ),
        (
            "bad address",
            update_interface(
                &client,
                Interface {
                    IPAddresses: vec![address("10.1.0.300", "24")],
                    ..wanted.clone()
                },
            )
            .await
            .outcome(),
        ),
        (
            "MTU the link refuses",
            update_interface(
                &client,
                Interface {
                    name: "wan0".into(),
                    mtu: 70000,
                    ..wanted.clone()
                },
            )
            .await
            .outcome(),
        ),
        (
            "bad route",
            update_routes(&client, vec![route("10.0.0.1/8", "", "eth0", 253)])
                .await
                .outcome(),
        ),
        (
            "unreachable gateway",
            update_routes(&client, vec![route("", "10.99.0.1", "eth0", 0)])
                .await
                .outcome(),
        ),
        (
            "route on an unknown link",
            update_routes(&client, vec![route("", "10.1.0.1", "nosuch0", 0)])
                .await
                .outcome(),
        ),
        (
            "bad neighbour",
            add_neighbors(
                &client,
                vec![ARPNeighbor {
                    toIPAddress: Some(address("10.1.0.5", "32")).into(),
                    device: "eth0".into(),
                    lladdr: "not-a-mac".into(),
                    ..Default::default()
                }],
            )
            .await
            .outcome(),
        ),
    ];
    let expected = [
        (Code::NOT_FOUND, "02:00:00:00:00:99"),
        (Code::INVALID_ARGUMENT, "interface.IPAddresses[0].address"),
        (Code::INVALID_ARGUMENT, "70000"),
        (Code::INVALID_ARGUMENT, "routes[0].dest"),
        (Code::INVALID_ARGUMENT, "10.99.0.1"),
        (Code::NOT_FOUND, "nosuch0"),
        (Code::INVALID_ARGUMENT, "neighbors[0].lladdr"),
    ];
    for ((what, outcome), (code, text)) in cases.into_iter().zip(expected) {
        let (got, message) = outcome.expect_err(what);
        assert_eq!(got, code, "{what}: {message}");
        assert!(message.contains(text), "{what}: {message}");
        assert_eq!(
            configured(list_interfaces(&client).await),
            before_interfaces,
            "{what}"
        );
        assert_eq!(list_routes(&client).await, before_routes, "{what}");
        assert_serving(&client).await;
    }
    let empty = UpdateInterfaceRequest::new();
    let (got, _) = client
        .call_agent("AgentService.UpdateInterface", |agent, ctx| {
            agent.update_interface(ctx, &empty)
        })
        .await
        .outcome()
        .expect_err("a request without an interface");
    assert_eq!(
        got,
        Code::INVALID_ARGUMENT,
        "a request without an interface"
    );
    assert_serving(&client).await;
}

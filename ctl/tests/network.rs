//! The network commands of `hull-ctl` against the real agent, served in-process on a
//! thread moved into a fresh network namespace (root needed) that holds a veth pair: the
//! host's network is never touched.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use hull_agent::config::AgentConfig;
use hull_agent::network::Network;
use hull_agent::sandbox::Sandbox;
use hull_agent::server;
use hull_protocols::AgentAddress;
use rtnetlink::packet_route::link::LinkAttribute;

struct Agent {
    addr: String,
    /// The MAC of `v0`.
    mac: String,
    _dir: tempfile::TempDir,
}

/// Serves the agent on a thread of its own in a new network namespace with `v0`/`v1`.
/// The thread ends with the test process.
fn start_agent_in_netns() -> Agent {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket: PathBuf = dir.path().join("agent.sock");
    let config = AgentConfig {
        server_addr: AgentAddress::Unix(socket.clone()),
        ..AgentConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only this thread into a
        // new network namespace, where its netlink sockets are then opened.
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
        runtime.block_on(async move {
            let mac = make_veth_pair().await;
            let network = Network::default();
            network.start().await.expect("loopback up");
            let sandbox = Arc::new(Sandbox::new().with_network(network));
            tx.send(mac).expect("send the MAC");
            let _ = server::serve(&config, sandbox).await;
        });
    });
    let mac = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the agent thread started");
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "agent socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Agent {
        addr: format!("unix://{}", socket.display()),
        mac,
        _dir: dir,
    }
}

/// Creates `v0`/`v1` with `v1` up; returns `v0`'s MAC.
async fn make_veth_pair() -> String {
    let (connection, handle, _) = rtnetlink::new_connection().expect("netlink");
    tokio::spawn(connection);
    handle
        .link()
        .add(rtnetlink::LinkVeth::new("v0", "v1").build())
        .execute()
        .await
        .expect("veth pair");
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .expect("links");
    let named = |name: &str| {
        links
            .iter()
            .find(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::IfName(n) if n == name))
            })
            .expect("link")
    };
    handle
        .link()
        .set(
            rtnetlink::LinkUnspec::new_with_index(named("v1").header.index)
                .up()
                .build(),
        )
        .execute()
        .await
        .expect("v1 up");
    let mac = named("v0")
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(b.clone()),
            _ => None,
        })
        .expect("a MAC");
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn hull_ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hull-ctl"))
        .args(args)
        .env_remove("HULL_AGENT_ADDR")
        .output()
        .expect("run hull-ctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn configure_and_list_the_network_with_flags_and_json() {
    let agent = start_agent_in_netns();
    let addr = agent.addr.as_str();

    let out = hull_ctl(&[
        "--addr",
        addr,
        "update-interface",
        "--mac",
        &agent.mac,
        "--name",
        "eth0",
        "--mtu",
        "1400",
        "--address",
        "10.1.0.2/24",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("eth0 {} mtu 1400 <UP", agent.mac)),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).trim_end().ends_with("veth 10.1.0.2/24"),
        "{}",
        stdout(&out)
    );

    let out = hull_ctl(&[
        "--addr",
        addr,
        "update-routes",
        "--route",
        "default via 10.1.0.1 dev eth0",
        "--route",
        "10.7.0.0/24 dev eth0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = hull_ctl(&["--addr", addr, "list-routes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "10.7.0.0/24 dev eth0 scope link",
            "default via 10.1.0.1 dev eth0"
        ]
    );

    // `--json` output is the input of `--file`.
    let out = hull_ctl(&["--addr", addr, "--json", "list-routes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let routes: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(
        routes["Routes"].as_array().map(Vec::len),
        Some(2),
        "{routes}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.json");
    std::fs::write(&file, stdout(&out)).expect("write");
    let out = hull_ctl(&[
        "--addr",
        addr,
        "--json",
        "update-routes",
        "--file",
        file.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(again, routes);

    let out = hull_ctl(&[
        "--addr",
        addr,
        "add-arp-neighbors",
        "--neighbor",
        "10.1.0.1 lladdr 02:00:00:00:00:01 dev eth0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "1 neighbour(s) added\n");

    let out = hull_ctl(&["--addr", addr, "--json", "list-interfaces"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let eth0 = list["Interfaces"]
        .as_array()
        .expect("Interfaces")
        .iter()
        .find(|i| i["name"] == "eth0")
        .expect("eth0");
    assert_eq!(eth0["hwAddr"], agent.mac.as_str());
    assert_eq!(eth0["mtu"], 1400);
    assert_eq!(
        eth0["IPAddresses"],
        serde_json::json!([{"family": 0, "address": "10.1.0.2", "mask": "24"}])
    );

    // Errors name the RPC, the code and the field; the exit status is 1.
    let out = hull_ctl(&[
        "--addr",
        addr,
        "update-interface",
        "--mac",
        "02:00:00:00:00:99",
        "--name",
        "eth9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NOT_FOUND"), "{}", stderr(&out));
    let out = hull_ctl(&[
        "--addr",
        addr,
        "update-routes",
        "--route",
        "10.0.0.1/8 dev eth0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("INVALID_ARGUMENT") && stderr(&out).contains("routes[0].dest"),
        "{}",
        stderr(&out)
    );
    let out = hull_ctl(&["--addr", addr, "list-routes"]);
    assert_eq!(stdout(&out).lines().count(), 2, "the routes stayed");
}

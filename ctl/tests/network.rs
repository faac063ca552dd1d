//! The network commands of `hull-ctl` against the real agent, served in-process on a
//! thread moved into a fresh network namespace (root needed) that holds a veth pair: the
//! host's network is never touched.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::process::Output;

use hull_testkit::InProcessAgent;
use hull_testkit::cli::{self, stderr, stdout};

fn hull_ctl(args: &[&str]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_hull-ctl"), args)
}

#[test]
fn configure_and_list_the_network_with_flags_and_json() {
    let agent = InProcessAgent::start_in_network_namespace();
    let addr = agent.address().to_string();
    let addr = addr.as_str();
    let mac = agent.veth().mac.clone();

    let out = hull_ctl(&[
        "--addr",
        addr,
        "update-interface",
        "--mac",
        &mac,
        "--name",
        "eth0",
        "--mtu",
        "1400",
        "--address",
        "10.1.0.2/24",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("eth0 {} mtu 1400 <UP", mac)),
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
    assert_eq!(eth0["hwAddr"], mac.as_str());
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

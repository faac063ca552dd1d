//! The in-process agent's own checks, in a test binary of their own: starting one starts
//! the process's reaper, which must not race the unit tests' own children.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use hull_testkit::InProcessAgent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_until_dropped_and_leaves_nothing() {
    let agent = InProcessAgent::start().await;
    hull_testkit::agent::assert_serving(&agent.client().await).await;
    let dir = agent.dir().to_path_buf();
    drop(agent);
    assert!(!dir.exists(), "the directory is removed");
}

#[test]
fn serves_in_a_network_namespace_with_a_veth_pair() {
    let agent = InProcessAgent::start_in_network_namespace();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let names: Vec<String> = runtime.block_on(async {
        let client = agent.client().await;
        let list = client.list_interfaces().await.expect("ListInterfaces");
        list.into_iter().map(|i| i.name).collect()
    });
    assert!(names.contains(&"v0".to_string()), "{names:?}");
    assert_eq!(agent.veth().name, "v0");
    let dir = agent.dir().to_path_buf();
    drop(agent);
    assert!(!dir.exists(), "the directory is removed");
}

//! The agent policy's cost per call, in one guest: ExecProcess of a Kata-style process
//! (into a container that does not exist, so the agent answers NOT_FOUND at once and the
//! call is all RPC and check) with no policy, then the same calls once a policy is in
//! force whose rule compares the request's command with an allow-list in its data, as
//! genpolicy's rules do. A sample is the mean of [`CALLS`] calls.
//!
//! Run last on its guest: the policy stays in force (SetPolicy cannot go back to none);
//! it allows what powering off needs.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::guest::SandboxGuest;
use hull_protocols::agent::ExecProcessRequest;
use hull_protocols::client::AgentClient;
use hull_protocols::ttrpc::Code;

use super::table::{Table, median, ratio, spread};

/// Calls averaged by one sample.
const CALLS: u32 = 50;

/// ExecProcess only for listed commands; what the rest of a run needs is allowed.
const POLICY: &str = r#"package agent_policy
policy_data := {"commands": [["sh", "-c", "exit 7"], ["echo", "hi"], ["true"]]}
default ExecProcessRequest := false
ExecProcessRequest if {
    some command in policy_data.commands
    input.process.Args == command
}
default DestroySandboxRequest := true
default RemoveContainerRequest := true
default SignalProcessRequest := true
default WaitProcessRequest := true
default ReadStreamRequest := true
default GetOOMEventRequest := true
default SetPolicyRequest := true
"#;

pub async fn figures(guest: &SandboxGuest, runs: u32, table: &mut Table) -> Result<()> {
    let client = &guest.client;
    let request = ExecProcessRequest {
        container_id: "no-such-container".into(),
        exec_id: "e1".into(),
        process: Some(ContainerSpec::new(["echo", "hi"]).process_proto()?).into(),
        ..Default::default()
    };
    let without = samples(client, &request, runs).await?;
    client.set_policy(POLICY).await?;
    let with = samples(client, &request, runs).await?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (base, checked) = (median(&without), median(&with));
    table.push(
        format!("ExecProcess answer, no policy (mean of {CALLS} calls)"),
        spread(&without),
    );
    table.push_versus(
        format!("ExecProcess answer, allow-list policy in force (mean of {CALLS} calls)"),
        spread(&with),
        ratio(us(checked), us(base), "no policy"),
    );
    table.push(
        "  policy check's share of a call (median difference)",
        format!("{:.0} µs", us(checked) - us(base)),
    );
    Ok(())
}

/// `runs` samples, each the mean of [`CALLS`] calls answered NOT_FOUND.
async fn samples(
    client: &AgentClient,
    request: &ExecProcessRequest,
    runs: u32,
) -> Result<Vec<Duration>> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        for _ in 0..CALLS {
            match client.exec_process(request).await {
                Err(e) if e.rpc_code() == Some(Code::NOT_FOUND) => {}
                other => bail!("ExecProcess into no container: expected NOT_FOUND, got {other:?}"),
            }
        }
        out.push(start.elapsed() / CALLS);
    }
    Ok(out)
}

//! The agent policy's cost per call, in one guest: ExecProcess of a Kata-style process
//! (into a container that does not exist, so the agent answers NOT_FOUND at once and the
//! call is all RPC and check) with no policy, then the same calls once a policy is in
//! force whose rule compares the request's command with an allow-list in its data, as
//! genpolicy's rules do. A sample is the mean of [`CALLS`] calls.
//!
//! The guest's agent must have the engine (`build/initrd-policy.img`). Run last on its
//! guest: the policy stays in force (SetPolicy cannot go back to none); it allows what
//! powering off needs.
//!
//! [`check_figures`] times the check alone on this host, in-process: the request turned
//! into the policy's input and evaluated, against the same with no policy loaded.

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

/// Checks timed by one in-process sample.
const CHECKS: u32 = 2000;

/// The check alone: hull-agent's own input conversion and engine, in this process (built
/// with the engine: `./run bench` passes `--features hull-agent/policy`).
pub fn check_figures(runs: u32, table: &mut Table) -> Result<()> {
    use hull_agent::policy::{ENGINE_BUILT_IN, Policy, PolicyGate};
    use hull_agent::rpc::policy::input;

    if !ENGINE_BUILT_IN {
        bail!(
            "hull-bench was built without the agent's policy engine: build it with \
             `--features hull-agent/policy` (as `./run bench` does)"
        );
    }
    let request = ExecProcessRequest {
        container_id: "c1".into(),
        exec_id: "e1".into(),
        process: Some(ContainerSpec::new(["echo", "hi"]).process_proto()?).into(),
        ..Default::default()
    };
    let time = |gate: &PolicyGate| -> Result<Vec<Duration>> {
        let mut out = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            for _ in 0..CHECKS {
                // What the rpc layer does per request (the conversion only when enforcing).
                if gate.is_enforcing() {
                    gate.check("ExecProcessRequest", &input(&request)?)?;
                }
            }
            out.push(start.elapsed() / CHECKS);
        }
        Ok(out)
    };
    let none = time(&PolicyGate::new(Policy::allow_all()))?;
    let with = time(&PolicyGate::new(Policy::from_rego(POLICY)?))?;
    let ns = |d: Duration| d.as_secs_f64() * 1e9;
    table.push(
        format!("policy check on this host, no policy (mean of {CHECKS})"),
        spread_ns(&none),
    );
    table.push_versus(
        format!("policy check on this host, allow-list policy (mean of {CHECKS})"),
        spread_ns(&with),
        ratio(ns(median(&with)), ns(median(&none)), "no policy"),
    );
    Ok(())
}

fn spread_ns(samples: &[Duration]) -> String {
    let us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    super::table::spread_of(&us, "µs", 3)
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

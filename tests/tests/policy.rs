//! The agent policy in real guests: `SetPolicy` over vsock (a policy denying ExecProcess,
//! then a malformed one that must leave it in force; one allowing everything, then one
//! allowing CreateContainer only for listed commands), and a policy baked into the initrd
//! with `hull-image initrd --policy`, in force from the agent's first request. These boot
//! the policy-enabled agent (`build/initrd-policy.img`, `hull-agent-policy`); the default
//! agent, built without the engine, answers `SetPolicy` UNIMPLEMENTED and refuses to serve
//! an image that carries a policy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use hull_e2e::artifacts::{GuestArtifacts, POLICY_AGENT, guest_binary};
use hull_e2e::bundle::ContainerSpec;
use hull_e2e::guest::SandboxGuest;
use hull_e2e::vm::{Vm, VmConfig};
use hull_image::Arch;
use hull_image::initrd::{self, Extra, InitrdRequest};
use hull_protocols::agent::ExecProcessRequest;
use hull_protocols::client::{AgentClient, ClientError};
use hull_protocols::oci;
use hull_protocols::ttrpc::Code;

const BOOT_DEADLINE: Duration = Duration::from_secs(120);
const POWER_OFF_DEADLINE: Duration = Duration::from_secs(30);

/// Denies ExecProcess; allows what the test and powering off need.
const DENY_EXEC: &str = r#"package agent_policy
default ExecProcessRequest := false
default GuestDetailsRequest := true
default SetPolicyRequest := true
default DestroySandboxRequest := true
"#;

/// The same, and SetPolicy denied: the image's policy cannot be replaced.
const BAKED: &str = r#"package agent_policy
default ExecProcessRequest := false
default GuestDetailsRequest := true
default SetPolicyRequest := false
default DestroySandboxRequest := true
"#;

/// Every request allowed, rule by rule, as Kata's allow-all policy does it: one
/// `default <Request> := true` per method's request message.
fn allow_all() -> String {
    let mut rego = String::from("package agent_policy\n");
    for service in hull_protocols::agent::file_descriptor().services() {
        for method in service.methods() {
            let request = method.input_type();
            let line = format!("default {} := true\n", request.name());
            if !rego.contains(&line) {
                rego.push_str(&line);
            }
        }
    }
    rego
}

/// The allow-all policy with CreateContainer allowed only for the listed commands (the
/// policy's data document).
fn allow_listed_commands() -> String {
    allow_all().replace(
        "default CreateContainerRequest := true\n",
        r#"policy_data := {"commands": [["echo", "listed"]]}
default CreateContainerRequest := false
CreateContainerRequest if {
    some command in policy_data.commands
    input.OCI.Process.Args == command
}
"#,
    )
}

/// An exec into a container that does not exist: NOT_FOUND when the policy lets it
/// through, PERMISSION_DENIED when it does not.
async fn exec(client: &AgentClient) -> Result<(), ClientError> {
    let req = ExecProcessRequest {
        container_id: "nosuch".into(),
        exec_id: "e1".into(),
        process: Some(oci::Process {
            Args: vec!["/bin/true".into()],
            Cwd: "/".into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    client.exec_process(&req).await
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Result<Code> {
    match result {
        Ok(v) => anyhow::bail!("expected an error status, got {v:?}"),
        Err(e) => e.rpc_code().with_context(|| format!("not a status: {e}")),
    }
}

async fn assert_exec_denied(client: &AgentClient) -> Result<()> {
    let err = exec(client).await.expect_err("ExecProcess went through");
    ensure!(
        err.rpc_code() == Some(Code::PERMISSION_DENIED)
            && err.to_string().contains("ExecProcessRequest"),
        "ExecProcess: {err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn set_policy_denies_exec_and_a_malformed_policy_changes_nothing() -> Result<()> {
    let config = VmConfig::new(GuestArtifacts::locate_with_policy_engine()?);
    let mut vm = Vm::boot(&config)?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;

    // No policy in the image: everything goes through.
    ensure!(code(exec(&client).await)? == Code::NOT_FOUND);
    client.set_policy(DENY_EXEC).await.context("SetPolicy")?;
    assert_exec_denied(&client).await?;
    client.guest_details().await.context("GetGuestDetails")?;

    let malformed = client
        .set_policy("package agent_policy\nExecProcessRequest if {")
        .await
        .expect_err("a malformed policy was taken");
    ensure!(
        malformed.rpc_code() == Some(Code::INVALID_ARGUMENT),
        "malformed policy: {malformed}"
    );
    assert_exec_denied(&client).await?;

    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allow_all_policy_then_an_allow_list_of_commands() -> Result<()> {
    let guest =
        SandboxGuest::boot(VmConfig::new(GuestArtifacts::locate_with_policy_engine()?)).await?;

    // Everything allowed, rule by rule: a container runs, and exec reaches the sandbox.
    guest
        .client
        .set_policy(&allow_all())
        .await
        .context("SetPolicy allow-all")?;
    let run = guest
        .run_container("free", &ContainerSpec::new(["echo", "unlisted"]))
        .await?;
    ensure!(
        run.status == 0 && run.stdout.text() == "unlisted\n",
        "{}",
        run.stdout.text()
    );
    ensure!(code(exec(&guest.client).await)? == Code::NOT_FOUND);

    // CreateContainer only for the commands in the policy's data.
    guest
        .client
        .set_policy(&allow_listed_commands())
        .await
        .context("SetPolicy allow-list")?;
    let denied = guest
        .run_container("unlisted", &ContainerSpec::new(["echo", "unlisted"]))
        .await
        .expect_err("a command outside the list ran");
    ensure!(
        format!("{denied:#}").contains("CreateContainerRequest"),
        "unlisted command: {denied:#}"
    );
    let run = guest
        .run_container("listed", &ContainerSpec::new(["echo", "listed"]))
        .await?;
    ensure!(
        run.status == 0 && run.stdout.text() == "listed\n",
        "{}",
        run.stdout.text()
    );

    guest.power_off().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_baked_into_the_initrd_is_in_force_from_the_start() -> Result<()> {
    let mut artifacts = GuestArtifacts::locate()?;
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, BAKED)?;
    let initrd = dir.path().join("initrd-with-policy.img");
    let request = InitrdRequest {
        init: guest_binary("hull-init"),
        agent: guest_binary(POLICY_AGENT),
        extras: vec![Extra::agent_policy(policy)],
        with_iptables: false,
        arch: Arch::X86_64,
        mtime: 0,
    };
    initrd::build(&request, &initrd).context("building the initrd with --policy")?;
    artifacts.initrd = initrd;
    let mut vm = Vm::boot(&VmConfig::new(artifacts))?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;

    assert_exec_denied(&client).await?;
    client.guest_details().await.context("GetGuestDetails")?;
    let err = client
        .set_policy("package agent_policy\ndefault ExecProcessRequest := true")
        .await
        .expect_err("the baked policy was replaced");
    ensure!(
        err.rpc_code() == Some(Code::PERMISSION_DENIED),
        "SetPolicy: {err}"
    );
    assert_exec_denied(&client).await?;

    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_agent_answers_set_policy_unimplemented() -> Result<()> {
    let mut vm = Vm::boot(&VmConfig::new(GuestArtifacts::locate()?))?;
    let (client, _) = vm.wait_for_agent(BOOT_DEADLINE).await?;

    let err = client
        .set_policy(DENY_EXEC)
        .await
        .expect_err("the default agent took a policy");
    let message = err.rpc_message().unwrap_or_default().to_string();
    ensure!(
        err.rpc_code() == Some(Code::UNIMPLEMENTED)
            && message.contains("/grpc.AgentService/SetPolicy")
            && message.contains(POLICY_AGENT),
        "SetPolicy: {err}"
    );
    // Nothing is enforced.
    ensure!(code(exec(&client).await)? == Code::NOT_FOUND);

    vm.power_off_through_agent(&client, POWER_OFF_DEADLINE)
        .await?;
    vm.finish();
    Ok(())
}

/// The default agent in an image that carries a policy (built through the library:
/// `hull-image --policy` refuses an agent without the engine) says why on the console and
/// never serves; with no restarts allowed, hull-init then powers the guest off.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_agent_refuses_an_image_policy_and_the_guest_powers_off() -> Result<()> {
    let mut artifacts = GuestArtifacts::locate()?;
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, BAKED)?;
    let initrd = dir.path().join("initrd-default-agent-with-policy.img");
    let request = InitrdRequest {
        init: guest_binary("hull-init"),
        agent: guest_binary("hull-agent"),
        extras: vec![Extra::agent_policy(policy)],
        with_iptables: false,
        arch: Arch::X86_64,
        mtime: 0,
    };
    initrd::build(&request, &initrd).context("building the initrd")?;
    artifacts.initrd = initrd;
    let mut config = VmConfig::new(artifacts);
    config.extra_cmdline.push("hull.agent_restarts=0".into());
    let mut vm = Vm::boot(&config)?;
    let status = vm.wait_for_exit(BOOT_DEADLINE)?;
    let console = vm.console();
    ensure!(status.success(), "the VMM exited with {status}:\n{console}");
    for needed in [
        "/etc/kata-opa/default-policy.rego",
        "refusing to serve without the image's agent policy",
        "built without the policy engine",
        POLICY_AGENT,
    ] {
        ensure!(
            console.contains(needed),
            "no `{needed}` on the console:\n{console}"
        );
    }
    ensure!(
        !console.contains("agent serving"),
        "the agent served:\n{console}"
    );
    vm.finish();
    Ok(())
}

//! Whether the agent going into an image can enforce the image's agent policy
//! (`--policy`, or any file put at [`AGENT_POLICY_PATH`]).
//!
//! hull-agent has its policy engine only when built with the cargo feature `policy`
//! (`just guest` builds it as `hull-agent-policy`); the default agent refuses to start in
//! an image that carries a policy, so the guest would never serve. hull-image asks the
//! agent what it was built with, `hull-agent --version` (its `features:` line, see
//! [`hull_common::agent_build`]), run on this host: the guest's architecture must be the
//! host's. An agent that says it lacks the engine is an error; one that cannot be run or
//! does not answer (another architecture, an older agent) is only a warning.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hull_common::agent_build::{self, POLICY_FEATURE, VERSION_FLAG};

use crate::arch::Arch;
use crate::initrd::{AGENT_POLICY_PATH, Extra};

/// How long `hull-agent --version` may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The agent says it was built without the policy engine.
#[derive(Debug, thiserror::Error)]
#[error(
    "the image carries an agent policy ({AGENT_POLICY_PATH}), but the agent {} was built \
     without the policy engine (its `--version` lists features: {features}) and would refuse \
     to start: pass the policy-enabled agent, `--agent \
     target/x86_64-unknown-linux-gnu/guest/hull-agent-policy` (`just guest` builds it; \
     `cargo build -p hull-agent --features policy`)",
    agent.display()
)]
pub struct NoPolicyEngine {
    /// The agent binary.
    pub agent: PathBuf,
    /// The features it listed (`none`).
    pub features: String,
}

/// What the agent says of its policy engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEngine {
    /// Listed among its features.
    BuiltIn,
    /// Not listed: `features` is what it listed.
    Missing {
        /// The features it listed, space-separated (`none` for none).
        features: String,
    },
    /// It could not be asked: why.
    Unknown(String),
}

/// Whether `extras` put a file where the agent reads its default policy.
pub fn carries_policy(extras: &[Extra]) -> bool {
    extras
        .iter()
        .any(|extra| Path::new(&extra.dst) == Path::new(AGENT_POLICY_PATH))
}

/// Checks that `agent` can enforce the policy an image carries. `Ok(None)`: it can;
/// `Ok(Some(warning))`: it could not be asked; `Err`: it says it cannot.
pub fn check_policy_engine(agent: &Path, arch: Arch) -> Result<Option<String>, NoPolicyEngine> {
    match policy_engine(agent, arch) {
        PolicyEngine::BuiltIn => Ok(None),
        PolicyEngine::Missing { features } => Err(NoPolicyEngine {
            agent: agent.to_path_buf(),
            features,
        }),
        PolicyEngine::Unknown(why) => Ok(Some(format!(
            "cannot tell whether the agent {} has the policy engine the image's policy needs \
             ({why}); without it the agent refuses to start (use \
             target/x86_64-unknown-linux-gnu/guest/hull-agent-policy)",
            agent.display()
        ))),
    }
}

/// Runs `agent --version` on this host and reads its features line.
pub fn policy_engine(agent: &Path, arch: Arch) -> PolicyEngine {
    policy_engine_within(agent, arch, ANSWER_TIMEOUT)
}

fn policy_engine_within(agent: &Path, arch: Arch, timeout: Duration) -> PolicyEngine {
    let host = std::env::consts::ARCH;
    if arch.name() != host {
        return PolicyEngine::Unknown(format!(
            "it is built for {arch}, this host is {host}: it cannot run here"
        ));
    }
    let text = match version_text(agent, timeout) {
        Ok(text) => text,
        Err(why) => return PolicyEngine::Unknown(why),
    };
    match agent_build::features_of(&text) {
        Some(features) if features.iter().any(|f| f == POLICY_FEATURE) => PolicyEngine::BuiltIn,
        Some(features) if features.is_empty() => PolicyEngine::Missing {
            features: "none".into(),
        },
        Some(features) => PolicyEngine::Missing {
            features: features.join(" "),
        },
        None => PolicyEngine::Unknown(format!(
            "`{} {VERSION_FLAG}` printed no features line",
            agent.display()
        )),
    }
}

/// `agent --version`'s standard output. An agent older than the flag would start
/// serving: an unusable server address makes it stop on a configuration error instead,
/// and it is killed if it runs past `timeout`.
fn version_text(agent: &Path, timeout: Duration) -> Result<String, String> {
    let mut command = Command::new(agent);
    command
        .arg(VERSION_FLAG)
        .env_clear()
        .env("HULL_AGENT_SERVER_ADDR", "none")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let deadline = Instant::now() + timeout;
    // A file just written may still be open for writing in a child forked meanwhile
    // (until that child execs): exec fails with ETXTBSY for a moment.
    let mut child = loop {
        match command.spawn() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.map_err(|e| format!("running it: {e}"))?,
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{VERSION_FLAG}` did not answer within {timeout:?}"
                ));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for it: {e}"));
            }
        }
    };
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut text)
            .map_err(|e| format!("reading its answer: {e}"))?;
    }
    if !status.success() {
        return Err(format!("`{VERSION_FLAG}` exited with {status}"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("agent");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_agent_s_features_line_decides() {
        let dir = tempfile::tempdir().unwrap();
        let with = script(
            dir.path(),
            "printf 'hull-agent 0.1.0\\nfeatures: policy\\n'",
        );
        assert_eq!(policy_engine(&with, Arch::X86_64), PolicyEngine::BuiltIn);
        assert!(check_policy_engine(&with, Arch::X86_64).unwrap().is_none());

        let without = script(dir.path(), "printf 'hull-agent 0.1.0\\nfeatures: none\\n'");
        assert_eq!(
            policy_engine(&without, Arch::X86_64),
            PolicyEngine::Missing {
                features: "none".into()
            }
        );
        let err = check_policy_engine(&without, Arch::X86_64).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("hull-agent-policy") && message.contains("features: none"),
            "{message}"
        );
    }

    #[test]
    fn an_agent_that_cannot_say_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        // `exec`: the process killed at the timeout is the sleep itself.
        for body in ["echo kata-agent 3.2", "exit 2", "exec sleep 1000"] {
            let agent = script(dir.path(), body);
            let started = Instant::now();
            let engine = policy_engine_within(&agent, Arch::X86_64, Duration::from_millis(500));
            assert!(
                matches!(engine, PolicyEngine::Unknown(_)),
                "{body}: {engine:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(5), "{body}");
        }
        let warning = check_policy_engine(&script(dir.path(), "exit 2"), Arch::X86_64)
            .unwrap()
            .expect("a warning");
        assert!(warning.contains("cannot tell"), "{warning}");
        let missing = dir.path().join("no-such-agent");
        assert!(matches!(
            policy_engine(&missing, Arch::X86_64),
            PolicyEngine::Unknown(_)
        ));
    }

    #[test]
    fn only_a_file_at_the_policy_path_counts() {
        let at = |dst: &str| Extra {
            src: PathBuf::from("x"),
            dst: dst.to_string(),
        };
        assert!(carries_policy(&[at("/etc/motd"), at(AGENT_POLICY_PATH)]));
        assert!(carries_policy(&[at("/etc/kata-opa//default-policy.rego")]));
        assert!(!carries_policy(&[at("/etc/motd")]));
    }
}

//! A container's OCI hooks (`hooks` of its spec), as Kata's agent runs them in the guest.
//!
//! | kind | where it runs | when |
//! |---|---|---|
//! | `prestart`, `createRuntime` | the caller's namespaces (the agent's) | once the container exists, before `CreateContainer` answers |
//! | `createContainer` | the container's namespaces, before `pivot_root` (the path is the agent's view) | while the rootfs is built |
//! | `startContainer` | the container, after `pivot_root` | at `StartContainer`, right before the process is executed |
//! | `poststart` | the caller's namespaces | after `StartContainer` started the process |
//! | `poststop` | the caller's namespaces | after `RemoveContainer` |
//!
//! Each hook gets the container's OCI state ([`OciState`]) as JSON on its standard input,
//! its own `args` (`args[0]` is its `argv[0]`; the path when none) and only its own `env`;
//! its standard output is discarded and the start of its standard error kept for the
//! error. It has its `timeout` (Kata's default, [`DEFAULT_TIMEOUT`], when unset or 0) to
//! finish, or it is killed. Hooks of a kind run in the spec's order; the first failure
//! stops them.
//!
//! [`HookPlan`]s are checked at planning (an absolute path, `KEY=VALUE` env entries).
//! The helper runs the in-container kinds with [`run_blocking`]; the agent runs the rest
//! under its reaper.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Spec};
use serde::{Deserialize, Serialize};

use super::ContainerError;

/// Kata's default, for a hook without a timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a failing hook's standard error is kept for its error.
pub const STDERR_KEPT: usize = 4096;

/// When a hook runs (OCI's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookKind {
    /// Deprecated by OCI, still sent: the caller's namespaces, before the start.
    Prestart,
    /// The caller's namespaces, once the container exists.
    CreateRuntime,
    /// The container's namespaces, before `pivot_root`.
    CreateContainer,
    /// Inside the container, right before its process.
    StartContainer,
    /// After the start; a failure is only logged.
    Poststart,
    /// After the removal; a failure is only logged.
    Poststop,
}

impl HookKind {
    /// OCI's name of the kind (`createContainer`, ...).
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Prestart => "prestart",
            HookKind::CreateRuntime => "createRuntime",
            HookKind::CreateContainer => "createContainer",
            HookKind::StartContainer => "startContainer",
            HookKind::Poststart => "poststart",
            HookKind::Poststop => "poststop",
        }
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One hook, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookPlan {
    /// The executable, absolute.
    pub path: PathBuf,
    /// Its whole argv (`args[0]` first); the path alone when the spec gave none.
    pub args: Vec<String>,
    /// Its whole environment (`KEY=VALUE`).
    pub env: Vec<(String, String)>,
    /// How long it may run.
    pub timeout: Duration,
}

impl HookPlan {
    /// A hook with no arguments, no environment and the default timeout (a guest hook
    /// found in a folder).
    pub fn executable(path: PathBuf) -> Self {
        Self {
            args: vec![path.display().to_string()],
            path,
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn from_spec(kind: HookKind, index: usize, hook: &Hook) -> Result<Self, ContainerError> {
        let invalid = |reason: String| {
            ContainerError::InvalidSpec(format!("hooks.{}[{index}]: {reason}", kind.name()))
        };
        let path = hook.path().clone();
        if !path.is_absolute() {
            return Err(invalid(format!("path {} is not absolute", path.display())));
        }
        let args = match hook.args() {
            Some(args) if !args.is_empty() => args.clone(),
            _ => vec![path.display().to_string()],
        };
        let env = hook
            .env()
            .iter()
            .flatten()
            .map(|entry| match entry.split_once('=') {
                Some((key, value)) if !key.is_empty() => Ok((key.into(), value.into())),
                _ => Err(invalid(format!("env entry {entry:?} is not KEY=VALUE"))),
            })
            .collect::<Result<_, _>>()?;
        let timeout = match hook.timeout() {
            Some(secs) if secs < 0 => return Err(invalid(format!("negative timeout {secs}"))),
            Some(secs) if secs > 0 => Duration::from_secs(secs.unsigned_abs()),
            _ => DEFAULT_TIMEOUT,
        };
        Ok(Self {
            path,
            args,
            env,
            timeout,
        })
    }
}

/// Every hook of a spec, by kind, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecHooks {
    /// `prestart`.
    pub prestart: Vec<HookPlan>,
    /// `createRuntime`.
    pub create_runtime: Vec<HookPlan>,
    /// `createContainer`.
    pub create_container: Vec<HookPlan>,
    /// `startContainer`.
    pub start_container: Vec<HookPlan>,
    /// `poststart`.
    pub poststart: Vec<HookPlan>,
    /// `poststop`.
    pub poststop: Vec<HookPlan>,
}

impl SpecHooks {
    /// The spec's hooks; a relative path, a bad env entry or a negative timeout is an
    /// invalid spec naming the hook.
    pub fn from_spec(spec: &Spec) -> Result<Self, ContainerError> {
        let Some(hooks) = spec.hooks() else {
            return Ok(Self::default());
        };
        let plan = |kind, list: &Option<Vec<Hook>>| {
            list.iter()
                .flatten()
                .enumerate()
                .map(|(i, hook)| HookPlan::from_spec(kind, i, hook))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            prestart: plan(HookKind::Prestart, hooks.prestart())?,
            create_runtime: plan(HookKind::CreateRuntime, hooks.create_runtime())?,
            create_container: plan(HookKind::CreateContainer, hooks.create_container())?,
            start_container: plan(HookKind::StartContainer, hooks.start_container())?,
            poststart: plan(HookKind::Poststart, hooks.poststart())?,
            poststop: plan(HookKind::Poststop, hooks.poststop())?,
        })
    }

    /// The hooks of `kind`.
    pub fn of(&self, kind: HookKind) -> &[HookPlan] {
        match kind {
            HookKind::Prestart => &self.prestart,
            HookKind::CreateRuntime => &self.create_runtime,
            HookKind::CreateContainer => &self.create_container,
            HookKind::StartContainer => &self.start_container,
            HookKind::Poststart => &self.poststart,
            HookKind::Poststop => &self.poststop,
        }
    }
}

/// The OCI state a hook reads on its standard input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciState {
    /// The runtime-spec version the state follows.
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    /// The container's id.
    pub id: String,
    /// `creating`, `created`, `running` or `stopped`.
    pub status: String,
    /// The container's init process (0 once it is gone).
    pub pid: i32,
    /// The container's bundle directory.
    pub bundle: PathBuf,
    /// The spec's annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Why a hook did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum HookFailure {
    /// It could not be started (missing, not executable, ...).
    #[error("could not be started: {0}")]
    Spawn(String),
    /// It exited unsuccessfully: its code (128 + the signal's number when killed), and
    /// the start of its standard error, trimmed.
    #[error("failed with exit status {code}: {stderr}")]
    Exited {
        /// The exit code.
        code: i32,
        /// The start of its standard error.
        stderr: String,
    },
    /// It ran past its timeout and was killed.
    #[error("did not finish within {0:?} and was killed")]
    Timeout(Duration),
}

/// Runs one hook in this (single-threaded) process, waiting for it itself: the helper's
/// way. `state` is written to its standard input.
pub fn run_blocking(hook: &HookPlan, state: &OciState) -> Result<(), HookFailure> {
    let input = serde_json::to_vec(state).map_err(|e| HookFailure::Spawn(e.to_string()))?;
    let mut command = command(hook);
    let mut child = command
        .spawn()
        .map_err(|e| HookFailure::Spawn(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input gets EPIPE: its business.
        let _ = stdin.write_all(&input);
    }
    let mut stderr = child.stderr.take();
    if let Some(pipe) = &stderr {
        // SAFETY: fcntl on a pipe this process owns.
        unsafe {
            let flags = libc::fcntl(pipe.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(pipe.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    let mut kept = Vec::new();
    let mut drain = |stderr: &mut Option<std::process::ChildStderr>| {
        let mut buf = [0u8; 4096];
        while let Some(pipe) = stderr.as_mut() {
            match pipe.read(&mut buf) {
                Ok(0) => *stderr = None,
                Ok(n) => {
                    let room = STDERR_KEPT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(_) => break,
            }
        }
    };
    let started = Instant::now();
    let status = loop {
        drain(&mut stderr);
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= hook.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookFailure::Timeout(hook.timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(HookFailure::Spawn(format!("waiting: {e}"))),
        }
    };
    drain(&mut stderr);
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1);
    Err(HookFailure::Exited {
        code,
        stderr: String::from_utf8_lossy(&kept).trim().to_string(),
    })
}

/// The command of `hook`: its argv and environment, the state to come on a pipe,
/// standard output discarded, standard error piped, in `/`.
pub fn command(hook: &HookPlan) -> Command {
    let mut command = Command::new(&hook.path);
    if let Some((arg0, rest)) = hook.args.split_first() {
        command.arg0(arg0).args(rest);
    }
    command
        .env_clear()
        .envs(hook.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .current_dir("/");
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> OciState {
        OciState {
            oci_version: "1.0.2".into(),
            id: "c1".into(),
            status: "created".into(),
            pid: 7,
            bundle: "/run/kata-containers/c1".into(),
            annotations: BTreeMap::from([("k".into(), "v".into())]),
        }
    }

    fn sh(script: &str, timeout: Duration) -> HookPlan {
        HookPlan {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![("WHO".into(), "hook".into())],
            timeout,
        }
    }

    #[test]
    fn a_hook_reads_the_state_with_only_its_own_env() {
        let dir = tempfile::tempdir().unwrap();
        let (json, env) = (dir.path().join("state.json"), dir.path().join("env"));
        let script = format!(
            "cat > {}; echo \"$WHO:${{HOME:-none}}\" > {}",
            json.display(),
            env.display()
        );
        run_blocking(&sh(&script, DEFAULT_TIMEOUT), &state()).unwrap();
        let seen: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(seen["ociVersion"], "1.0.2");
        assert_eq!(seen["id"], "c1");
        assert_eq!(seen["status"], "created");
        assert_eq!(seen["pid"], 7);
        assert_eq!(seen["annotations"]["k"], "v");
        let env = std::fs::read_to_string(&env).unwrap();
        assert_eq!(env.trim(), "hook:none", "WHO given, HOME not");
    }

    #[test]
    fn failures_and_timeouts_are_named() {
        let err = run_blocking(&sh("echo broken >&2; exit 4", DEFAULT_TIMEOUT), &state());
        assert_eq!(
            err,
            Err(HookFailure::Exited {
                code: 4,
                stderr: "broken".into()
            })
        );
        let started = Instant::now();
        let err = run_blocking(&sh("sleep 30", Duration::from_millis(300)), &state());
        assert_eq!(err, Err(HookFailure::Timeout(Duration::from_millis(300))));
        assert!(started.elapsed() < Duration::from_secs(5));
        let missing = HookPlan::executable("/nonexistent/hook".into());
        assert!(matches!(
            run_blocking(&missing, &state()),
            Err(HookFailure::Spawn(_))
        ));
    }

    #[test]
    fn spec_hooks_are_checked_and_given_defaults() {
        let spec = |hooks: serde_json::Value| -> Spec {
            serde_json::from_value(serde_json::json!({"ociVersion": "1.0.2", "hooks": hooks}))
                .unwrap()
        };
        let hooks = SpecHooks::from_spec(&spec(serde_json::json!({
            "startContainer": [{"path": "/bin/hook"}],
            "poststop": [{"path": "/bin/p", "args": ["p", "-x"], "env": ["A=1=2"], "timeout": 3}],
        })))
        .unwrap();
        assert_eq!(
            hooks.of(HookKind::StartContainer),
            [HookPlan::executable("/bin/hook".into())]
        );
        let poststop = &hooks.of(HookKind::Poststop)[0];
        assert_eq!(poststop.args, ["p", "-x"]);
        assert_eq!(poststop.env, [("A".to_string(), "1=2".to_string())]);
        assert_eq!(poststop.timeout, Duration::from_secs(3));
        assert!(hooks.of(HookKind::Prestart).is_empty());
        for (bad, needle) in [
            (
                serde_json::json!({"createContainer": [{"path": "hook"}]}),
                "hooks.createContainer[0]: path hook is not absolute",
            ),
            (
                serde_json::json!({"prestart": [{"path": "/h", "env": ["NOEQUALS"]}]}),
                "hooks.prestart[0]: env entry",
            ),
            (
                serde_json::json!({"poststart": [{"path": "/h", "timeout": -1}]}),
                "negative timeout",
            ),
        ] {
            let err = SpecHooks::from_spec(&spec(bad)).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}

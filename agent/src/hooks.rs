//! Hooks the agent runs in its own namespaces, as Kata's agent does: guest hooks, found
//! under the directory `CreateSandbox` names in `guest_hook_path`, and a container
//! spec's `prestart`, `createRuntime`, `poststart` and `poststop` hooks (its
//! `createContainer` and `startContainer` ones run inside the container:
//! [`hull_container::hooks`]).
//!
//! `<path>/prestart/`, `<path>/poststart/` and `<path>/poststop/` hold executables, run in
//! file-name order with no arguments. Every hook gets the container's OCI state
//! (`ociVersion`, `id`, `status`, `pid`, `bundle`, `annotations`) as JSON on standard
//! input:
//!
//! - prestart (guest, then the spec's) and createRuntime: after the container is
//!   created, before its process can start; a failure fails `CreateContainer` (and the
//!   container is removed);
//! - poststart: after `StartContainer`; poststop: after `RemoveContainer`. As OCI says,
//!   their failures are logged and do not change the answer.
//!
//! Each hook has its timeout (a guest hook [`HOOK_TIMEOUT`]) to finish, or it is killed;
//! hooks run under the agent's one reaper.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use hull_container::hooks::{DEFAULT_TIMEOUT, HookFailure, HookPlan, STDERR_KEPT, command};
use hull_container::process::reaper::{ExitStatus, Reaper};

pub use hull_container::hooks::{HookKind, OciState as HookState};

/// How long one guest hook may run (Kata's default for any hook).
pub const HOOK_TIMEOUT: Duration = DEFAULT_TIMEOUT;

/// A hook that could not be found or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A hook folder could not be listed.
    #[error("guest hooks in {path}: {source}")]
    Read {
        /// The folder, e.g. `<guest_hook_path>/prestart`.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A hook did not succeed.
    #[error("{kind} hook {}: {failure}", .hook.display())]
    Hook {
        /// When it ran.
        kind: HookKind,
        /// The hook's executable.
        hook: PathBuf,
        /// How it failed: not started, exited unsuccessfully, or killed at its timeout.
        failure: HookFailure,
    },
}

fn dir_name(kind: HookKind) -> Option<&'static str> {
    match kind {
        HookKind::Prestart => Some("prestart"),
        HookKind::Poststart => Some("poststart"),
        HookKind::Poststop => Some("poststop"),
        _ => None,
    }
}

/// The hooks found under a `guest_hook_path`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestHooks {
    prestart: Vec<HookPlan>,
    poststart: Vec<HookPlan>,
    poststop: Vec<HookPlan>,
}

impl GuestHooks {
    /// Finds the executables under `dir`'s three hook folders; a missing folder has none.
    pub fn load(dir: &Path) -> Result<Self, HookError> {
        let find = |kind: HookKind| -> Result<Vec<HookPlan>, HookError> {
            let Some(name) = dir_name(kind) else {
                return Ok(Vec::new());
            };
            let folder = dir.join(name);
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(source) => {
                    return Err(HookError::Read {
                        path: folder,
                        source,
                    });
                }
            };
            let mut hooks = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| HookError::Read {
                    path: folder.clone(),
                    source,
                })?;
                if is_executable_file(&entry.path()) {
                    hooks.push(entry.path());
                }
            }
            hooks.sort();
            Ok(hooks.into_iter().map(HookPlan::executable).collect())
        };
        Ok(Self {
            prestart: find(HookKind::Prestart)?,
            poststart: find(HookKind::Poststart)?,
            poststop: find(HookKind::Poststop)?,
        })
    }

    /// Whether there is no hook at all.
    pub fn is_empty(&self) -> bool {
        self.prestart.is_empty() && self.poststart.is_empty() && self.poststop.is_empty()
    }

    /// Runs the hooks of `kind` in order; stops at the first failure.
    pub async fn run(&self, kind: HookKind, state: &HookState) -> Result<(), HookError> {
        let hooks: &[HookPlan] = match kind {
            HookKind::Prestart => &self.prestart,
            HookKind::Poststart => &self.poststart,
            HookKind::Poststop => &self.poststop,
            _ => &[],
        };
        run_hooks(kind, hooks, state).await
    }
}

/// Runs `hooks` (of `kind`) in order in the agent's namespaces; stops at the first
/// failure.
pub async fn run_hooks(
    kind: HookKind,
    hooks: &[HookPlan],
    state: &HookState,
) -> Result<(), HookError> {
    for hook in hooks {
        run_one(hook, state)
            .await
            .map_err(|failure| HookError::Hook {
                kind,
                hook: hook.path.clone(),
                failure,
            })?;
        tracing::debug!(%kind, hook = %hook.path.display(), container = %state.id, "hook ran");
    }
    Ok(())
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

async fn run_one(hook: &HookPlan, state: &HookState) -> Result<(), HookFailure> {
    let spawn_error = |e: &dyn std::fmt::Display| HookFailure::Spawn(e.to_string());
    let input = serde_json::to_vec(state).map_err(|e| spawn_error(&e))?;
    let reaper = Reaper::global().map_err(|e| spawn_error(&e))?;
    let mut command = command(hook);
    let (mut child, mut exited) = reaper
        .spawn_registered(|| {
            let child = command.spawn()?;
            let pid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
            Ok((pid, child))
        })
        .map_err(|e| spawn_error(&e))?;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let stdin = child.stdin.take();
    let stderr = child.stderr.take();
    // Pipes are blocking: feed and drain them off the runtime's threads. A hook that
    // does not read its input gets EPIPE, which is its business.
    let feed = tokio::task::spawn_blocking(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&input);
        }
    });
    let drain = tokio::task::spawn_blocking(move || {
        let mut kept = String::new();
        if let Some(stderr) = stderr {
            let mut stderr = stderr;
            let _ = (&mut stderr)
                .take(STDERR_KEPT as u64)
                .read_to_string(&mut kept);
            // Read the rest so the hook never blocks on a full pipe.
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        }
        kept
    });
    let status = match tokio::time::timeout(hook.timeout, exited.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = reaper.signal(pid, Signal::SIGKILL);
            exited.wait().await;
            return Err(HookFailure::Timeout(hook.timeout));
        }
    };
    let _ = feed.await;
    let stderr = drain.await.unwrap_or_default();
    match status {
        ExitStatus::Exited(0) => Ok(()),
        other => Err(HookFailure::Exited {
            code: other.code(),
            stderr: stderr.trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, kind: &str, name: &str, body: &str) -> PathBuf {
        let folder = dir.join(kind);
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn state() -> HookState {
        HookState {
            oci_version: "1.0.2".into(),
            id: "c1".into(),
            status: "created".into(),
            pid: 42,
            bundle: "/run/kata-containers/c1".into(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn load_finds_executables_in_name_order_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let b = script(dir.path(), "prestart", "b", "true");
        let a = script(dir.path(), "prestart", "a", "true");
        std::fs::write(dir.path().join("prestart/not-executable"), "x").unwrap();
        std::fs::create_dir(dir.path().join("prestart/a-dir")).unwrap();
        let hooks = GuestHooks::load(dir.path()).unwrap();
        assert_eq!(
            hooks.prestart,
            vec![HookPlan::executable(a), HookPlan::executable(b)]
        );
        assert!(hooks.poststart.is_empty() && hooks.poststop.is_empty());
        assert!(
            GuestHooks::load(&dir.path().join("none"))
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn hooks_read_the_state_and_failures_carry_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen.json");
        script(
            dir.path(),
            "prestart",
            "10-record",
            &format!("cat > {}", seen.display()),
        );
        script(dir.path(), "poststart", "fail", "echo broken >&2; exit 3");
        let hooks = GuestHooks::load(dir.path()).unwrap();
        hooks.run(HookKind::Prestart, &state()).await.unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
        assert_eq!(json["id"], "c1");
        assert_eq!(json["status"], "created");
        assert_eq!(json["pid"], 42);
        assert_eq!(json["ociVersion"], "1.0.2");
        let err = hooks.run(HookKind::Poststart, &state()).await.unwrap_err();
        assert!(
            matches!(&err, HookError::Hook { failure: HookFailure::Exited { code: 3, stderr }, .. } if stderr == "broken"),
            "{err}"
        );
        hooks.run(HookKind::Poststop, &state()).await.unwrap();
    }
}

//! `GetIPTables` / `SetIPTables`: the guest's packet filter in `iptables-save` text, as
//! Kata's agent does it: by running `iptables-save` / `iptables-restore` (or the `ip6`
//! ones). The guest image carries them only when built with `--with-iptables`; without
//! them the methods fail naming the missing tool.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hull_container::process::reaper::{ExitStatus, Reaper};
use nix::sys::signal::Signal;

/// Where the tools are looked for, in order.
pub const TOOL_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
/// `iptables-restore --wait`: how long to wait for the xtables lock (as Kata).
const RESTORE_WAIT_SECS: u64 = 5;
/// A tool still running after this long is killed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this much of a tool's stderr is kept for the error.
const STDERR_KEPT: u64 = 4096;

/// IPv4 (`iptables`) or IPv6 (`ip6tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4: `iptables-save`, `iptables-restore`.
    V4,
    /// IPv6: `ip6tables-save`, `ip6tables-restore`.
    V6,
}

impl IpFamily {
    fn save_tool(self) -> &'static str {
        match self {
            IpFamily::V4 => "iptables-save",
            IpFamily::V6 => "ip6tables-save",
        }
    }

    fn restore_tool(self) -> &'static str {
        match self {
            IpFamily::V4 => "iptables-restore",
            IpFamily::V6 => "ip6tables-restore",
        }
    }
}

/// What can go wrong running the iptables tools.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    /// The guest has no such tool (an image built without `--with-iptables`).
    #[error("{tool} is not in this guest (looked in {}); build the image with --with-iptables", TOOL_DIRS.join(", "))]
    Missing {
        /// The tool's name.
        tool: &'static str,
    },
    /// The tool could not be started or talked to.
    #[error("running {tool}: {source}")]
    Spawn {
        /// The tool's name.
        tool: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `iptables-restore` refused the rules.
    #[error("{tool} refused the rules (status {code}): {stderr}")]
    Rejected {
        /// The tool's name.
        tool: &'static str,
        /// Its exit code.
        code: i32,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// The tool failed.
    #[error("{tool} failed with status {code}: {stderr}")]
    Failed {
        /// The tool's name.
        tool: &'static str,
        /// Its exit code (128 + signal when killed).
        code: i32,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// The tool ran past the time allowed and was killed.
    #[error("{tool} did not finish within {}s", TOOL_TIMEOUT.as_secs())]
    Timeout {
        /// The tool's name.
        tool: &'static str,
    },
}

/// The first `dirs/<name>` that exists.
pub fn find_tool(dirs: &[&str], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// `iptables-save` (`ip6tables-save`): the current rules, as text.
pub async fn save(family: IpFamily) -> Result<Vec<u8>, IptablesError> {
    let tool = family.save_tool();
    let path = find_tool(TOOL_DIRS, tool).ok_or(IptablesError::Missing { tool })?;
    run(tool, Command::new(path), Vec::new()).await
}

/// `iptables-restore` (`ip6tables-restore`) fed `rules`: answers its output.
pub async fn restore(family: IpFamily, rules: Vec<u8>) -> Result<Vec<u8>, IptablesError> {
    let tool = family.restore_tool();
    let path = find_tool(TOOL_DIRS, tool).ok_or(IptablesError::Missing { tool })?;
    let mut command = Command::new(path);
    command.args(["--wait", &RESTORE_WAIT_SECS.to_string()]);
    match run(tool, command, rules).await {
        // Killed by a signal is not a refusal.
        Err(IptablesError::Failed { tool, code, stderr }) if code < 128 => {
            Err(IptablesError::Rejected { tool, code, stderr })
        }
        other => other,
    }
}

/// Runs `command` under the agent's reaper with `input` on stdin; answers stdout.
async fn run(
    tool: &'static str,
    mut command: Command,
    input: Vec<u8>,
) -> Result<Vec<u8>, IptablesError> {
    let spawn_error = |source| IptablesError::Spawn { tool, source };
    let reaper = Reaper::global().map_err(|e| spawn_error(std::io::Error::other(e)))?;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir("/");
    let (mut child, mut exited) = reaper
        .spawn_registered(|| {
            let child = command.spawn()?;
            let pid = i32::try_from(child.id()).map_err(std::io::Error::other)?;
            Ok((pid, child))
        })
        .map_err(spawn_error)?;
    let pid = i32::try_from(child.id()).unwrap_or(0);
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    // Blocking pipes: fed and drained off the runtime's threads.
    let feed = tokio::task::spawn_blocking(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&input);
        }
    });
    let out = tokio::task::spawn_blocking(move || {
        let mut kept = Vec::new();
        if let Some(mut stdout) = stdout {
            let _ = stdout.read_to_end(&mut kept);
        }
        kept
    });
    let err = tokio::task::spawn_blocking(move || {
        let mut kept = String::new();
        if let Some(mut stderr) = stderr {
            let _ = (&mut stderr).take(STDERR_KEPT).read_to_string(&mut kept);
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        }
        kept
    });
    let status = match tokio::time::timeout(TOOL_TIMEOUT, exited.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = reaper.signal(pid, Signal::SIGKILL);
            exited.wait().await;
            return Err(IptablesError::Timeout { tool });
        }
    };
    let _ = feed.await;
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    match status {
        ExitStatus::Exited(0) => Ok(stdout),
        other => Err(IptablesError::Failed {
            tool,
            code: other.code(),
            stderr: stderr.trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn tools_are_found_in_the_first_directory_that_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("iptables-save"), "").unwrap();
        let dirs = [a.to_str().unwrap(), b.to_str().unwrap()];
        assert_eq!(
            find_tool(&dirs, "iptables-save"),
            Some(b.join("iptables-save"))
        );
        assert_eq!(find_tool(&dirs, "ip6tables-save"), None);
    }

    #[test]
    fn a_missing_tool_is_named() {
        let message = IptablesError::Missing {
            tool: "ip6tables-restore",
        }
        .to_string();
        assert!(
            message.starts_with("ip6tables-restore is not in this guest"),
            "{message}"
        );
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("tool");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn a_tool_gets_its_input_and_its_output_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let tool = script(dir.path(), "tr a-z A-Z");
        let out = run("tool", Command::new(tool), b"*filter\n".to_vec())
            .await
            .unwrap();
        assert_eq!(out, b"*FILTER\n");
    }

    #[tokio::test]
    async fn a_failing_tool_reports_its_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let tool = script(dir.path(), "echo 'line 2 failed' >&2; exit 2");
        match run("tool", Command::new(tool), Vec::new()).await {
            Err(IptablesError::Failed { code, stderr, .. }) => {
                assert_eq!(code, 2);
                assert_eq!(stderr, "line 2 failed");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

//! Host commands the build runs (`tar`, `make`, `mkfs.*`, `busybox --list`): how they are
//! shown in messages, and how they fail.

use std::io;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

/// A host command could not be started, or ran and failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A command could not be started at all.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line, as [`display_command`] renders it.
        command: String,
        /// Why the program could not be started (not found, not executable...).
        #[source]
        source: io::Error,
    },

    /// A command ran and failed.
    #[error("{}", failed_message(command, status, log.as_ref(), tail))]
    Failed {
        /// The command line, as [`display_command`] renders it.
        command: String,
        /// Its exit status (a code, or the signal that killed it).
        status: ExitStatus,
        /// Full log of the command, when it was captured to a file.
        log: Option<PathBuf>,
        /// The last lines of its output.
        tail: Vec<String>,
    },
}

fn failed_message(
    command: &str,
    status: &ExitStatus,
    log: Option<&PathBuf>,
    tail: &[String],
) -> String {
    let mut msg = format!("`{command}` failed ({status})");
    if !tail.is_empty() {
        msg.push_str(&format!("; its last {} lines:\n", tail.len()));
        for line in tail {
            msg.push_str("  | ");
            msg.push_str(line);
            msg.push('\n');
        }
    }
    if let Some(log) = log {
        if tail.is_empty() {
            msg.push_str("; ");
        }
        msg.push_str(&format!("full log: {}", log.display()));
    }
    msg
}

/// Renders a command for messages: program and arguments, space-separated.
pub fn display_command(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

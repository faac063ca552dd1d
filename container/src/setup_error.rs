//! Why the helper could not build a container process: a typed error that crosses the
//! process boundary.
//!
//! The helper runs in a process of its own ([`crate::helper`]); what it knows about a
//! failure reaches the launcher only through the helper socket. So the error is plain
//! data (serde), sent in `Report::Error` ([`crate::protocol`]) and rebuilt on the other
//! side, where [`crate::ContainerError::Setup`] carries it to the caller. The variants
//! say what a caller can act on:
//!
//! - the request's own process cannot run: [`SetupError::ExecutableNotFound`],
//!   [`SetupError::PermissionDenied`], [`SetupError::InvalidCwd`],
//!   [`SetupError::Exec`] (`execve` refused the file: `ENOEXEC` for a foreign format, ...);
//!   the messages use runc's words (`executable file not found in $PATH`, `no such file
//!   or directory`, `permission denied`), which runtimes above recognise;
//! - a step of the setup failed: [`SetupError::Namespace`], [`SetupError::Rootfs`]
//!   (mounts, devices, `pivot_root`, masked and read-only paths),
//!   [`SetupError::Credentials`] (user, groups, capabilities), [`SetupError::Process`]
//!   (rlimits, seccomp, terminal, ...), [`SetupError::Protocol`] (the conversation with
//!   the launcher, `fork`). Each names the step and the system's reason;
//! - a hook of the spec run by the helper failed: [`SetupError::Hook`], naming it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A failure of the helper, as the launcher receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SetupError {
    /// The executable does not exist: looked up in the process's own `PATH` when its name
    /// has no slash (`searched_path`), or at the path given.
    #[error("{executable}: {}", not_found(*.searched_path))]
    ExecutableNotFound {
        /// `args[0]` of the process as given, or the path found in `PATH` when `execve`
        /// itself reports it missing.
        executable: String,
        /// Whether `PATH` was searched (the name has no slash).
        searched_path: bool,
    },
    /// The executable exists but may not be executed (not a regular file, or no execute
    /// permission for the process's user).
    #[error("{executable}: permission denied")]
    PermissionDenied {
        /// The name as given, or the path found.
        executable: String,
    },
    /// The working directory cannot be created or entered.
    #[error("working directory {}: {reason}", .cwd.display())]
    InvalidCwd {
        /// The process's `cwd`, inside the container.
        cwd: PathBuf,
        /// The system's error.
        reason: String,
    },
    /// `execve` failed for another reason; `errno` is its error number.
    #[error("execve {executable}: {}", nix::errno::Errno::from_raw(*.errno))]
    Exec {
        /// The path `execve` was given.
        executable: String,
        /// The error number `execve` returned.
        errno: i32,
    },
    /// Creating, joining or configuring a namespace (hostname, sysctls) failed.
    #[error("{step}: {reason}")]
    Namespace {
        /// What was being done, e.g. `sethostname`, `mounting /proc`.
        step: String,
        /// The system's error.
        reason: String,
    },
    /// Building or entering the container's filesystem failed.
    #[error("{step}: {reason}")]
    Rootfs {
        /// What was being done, e.g. `sethostname`, `mounting /proc`.
        step: String,
        /// The system's error.
        reason: String,
    },
    /// Switching to the process's user, groups or capabilities failed.
    #[error("{step}: {reason}")]
    Credentials {
        /// What was being done, e.g. `sethostname`, `mounting /proc`.
        step: String,
        /// The system's error.
        reason: String,
    },
    /// Another setting of the process (rlimits, seccomp, terminal, ...) failed.
    #[error("{step}: {reason}")]
    Process {
        /// What was being done, e.g. `sethostname`, `mounting /proc`.
        step: String,
        /// The system's error.
        reason: String,
    },
    /// A `createContainer` or `startContainer` hook of the spec failed.
    #[error("{kind} hook {}: {failure}", .path.display())]
    Hook {
        /// When it ran.
        kind: crate::hooks::HookKind,
        /// Its executable.
        path: PathBuf,
        /// How it failed.
        failure: crate::hooks::HookFailure,
    },
    /// The helper's own machinery failed: a message, `fork`, a pipe.
    #[error("{step}: {reason}")]
    Protocol {
        /// What was being done, e.g. `sethostname`, `mounting /proc`.
        step: String,
        /// The system's error.
        reason: String,
    },
}

fn not_found(searched_path: bool) -> &'static str {
    if searched_path {
        "executable file not found in $PATH"
    } else {
        "no such file or directory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_use_runc_words() {
        let cases = [
            (
                SetupError::ExecutableNotFound {
                    executable: "sl".into(),
                    searched_path: true,
                },
                "sl: executable file not found in $PATH",
            ),
            (
                SetupError::ExecutableNotFound {
                    executable: "/bin/nope".into(),
                    searched_path: false,
                },
                "/bin/nope: no such file or directory",
            ),
            (
                SetupError::PermissionDenied {
                    executable: "/etc/passwd".into(),
                },
                "/etc/passwd: permission denied",
            ),
            (
                SetupError::InvalidCwd {
                    cwd: "/nope".into(),
                    reason: "ENOENT: No such file or directory".into(),
                },
                "working directory /nope: ENOENT: No such file or directory",
            ),
            (
                SetupError::Exec {
                    executable: "/bin/x".into(),
                    errno: libc::ENOEXEC,
                },
                "execve /bin/x: ENOEXEC: Exec format error",
            ),
            (
                SetupError::Rootfs {
                    step: "pivot_root".into(),
                    reason: "EINVAL: Invalid argument".into(),
                },
                "pivot_root: EINVAL: Invalid argument",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn an_error_survives_the_trip_over_the_helper_socket() {
        let error = SetupError::InvalidCwd {
            cwd: "/data".into(),
            reason: "EACCES".into(),
        };
        let json = serde_json::to_vec(&error).unwrap();
        assert_eq!(serde_json::from_slice::<SetupError>(&json).unwrap(), error);
    }
}

//! The one mapping from the agent's errors to ttRPC status codes.
//!
//! The request's own faults are INVALID_ARGUMENT, what names nothing that exists
//! NOT_FOUND, what the guest's state forbids FAILED_PRECONDITION, a duplicate
//! ALREADY_EXISTS, a wait that ran out DEADLINE_EXCEEDED, and what went wrong inside the
//! guest INTERNAL. The status's message is the error's `Display`.

use hull_container::process::ProcessError;
use hull_container::{ContainerError, SetupError};
use ttrpc::Code;

use crate::device::DeviceError;
use crate::error::AgentError;
use crate::fs::ConfineError;
use crate::hooks::HookError;
use crate::mount::MountError;
use crate::network::NetworkError;
use crate::stdio_ports::StdioPortError;
use crate::storage::StorageError;

/// The one mapping from domain errors to ttRPC statuses.
pub fn status(error: AgentError) -> ttrpc::Error {
    let code = match &error {
        AgentError::MissingField { .. }
        | AgentError::InvalidRequest { .. }
        | AgentError::Unsupported { .. }
        | AgentError::UserName { .. }
        | AgentError::InvalidHostname { .. }
        | AgentError::InvalidDns { .. }
        | AgentError::InvalidHookPath { .. }
        | AgentError::NoSandboxPidns
        | AgentError::PidNamespace(_)
        // Kept from the first agent: a malformed sysfs value is answered as invalid.
        | AgentError::BadSysfsValue { .. } => Code::INVALID_ARGUMENT,
        AgentError::KernelModules { .. } => Code::UNIMPLEMENTED,
        AgentError::SandboxExists { .. }
        | AgentError::SandboxDestroyed
        | AgentError::SandboxLost
        | AgentError::AlreadyDestroying
        | AgentError::SandboxPidnsEnded { .. } => Code::FAILED_PRECONDITION,
        AgentError::Hostname { .. } | AgentError::Dns { .. } | AgentError::Io { .. } => {
            Code::INTERNAL
        }
        AgentError::Container(e) => container_code(e),
        AgentError::Storage(e) => storage_code(e),
        AgentError::Network(e) => network_code(e),
        AgentError::Hook(e) => hook_code(e),
        AgentError::StdioPort(StdioPortError::NoListener) => Code::FAILED_PRECONDITION,
        AgentError::StdioPort(StdioPortError::NoConnection { .. }) => Code::DEADLINE_EXCEEDED,
    };
    tracing::debug!(?code, %error, "request failed");
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, error.to_string()))
}

fn hook_code(error: &HookError) -> Code {
    match error {
        HookError::Failed { .. } => Code::FAILED_PRECONDITION,
        HookError::Timeout { .. } => Code::DEADLINE_EXCEEDED,
        HookError::Read { .. } | HookError::Spawn { .. } => Code::INTERNAL,
    }
}

fn storage_code(error: &StorageError) -> Code {
    match error {
        StorageError::UnsupportedDriver { .. } | StorageError::Invalid { .. } => {
            Code::INVALID_ARGUMENT
        }
        StorageError::Confine(e) => confine_code(e),
        StorageError::Mount(e) => mount_code(e),
        StorageError::Device { source, .. } => device_code(source),
        StorageError::VirtioFsTag { .. } => Code::DEADLINE_EXCEEDED,
        StorageError::Conflict { .. } => Code::FAILED_PRECONDITION,
        StorageError::NotHeld { .. } => Code::NOT_FOUND,
        StorageError::Ownership { .. } | StorageError::Interrupted { .. } => Code::INTERNAL,
    }
}

fn confine_code(error: &ConfineError) -> Code {
    match error {
        ConfineError::OutsideRoot { .. }
        | ConfineError::ParentComponent { .. }
        | ConfineError::NulByte { .. }
        | ConfineError::IsRoot { .. }
        | ConfineError::Escapes { .. }
        | ConfineError::SymlinkLoop { .. }
        | ConfineError::NotADirectory { .. }
        | ConfineError::DanglingSymlink { .. }
        | ConfineError::WrongType { .. } => Code::INVALID_ARGUMENT,
        ConfineError::NotFound { .. } => Code::NOT_FOUND,
        ConfineError::Unsupported { .. } | ConfineError::Os { .. } => Code::INTERNAL,
    }
}

fn mount_code(error: &MountError) -> Code {
    use nix::errno::Errno;
    match error {
        MountError::InvalidOption { .. } => Code::INVALID_ARGUMENT,
        MountError::Confine(e) => confine_code(e),
        MountError::Mount { errno, .. } => match errno {
            Errno::EINVAL | Errno::ENODEV | Errno::ENOTBLK | Errno::ENOTDIR => {
                Code::INVALID_ARGUMENT
            }
            Errno::ENOENT | Errno::ENXIO => Code::NOT_FOUND,
            Errno::EPERM | Errno::EACCES | Errno::EROFS => Code::PERMISSION_DENIED,
            _ => Code::INTERNAL,
        },
        MountError::NotMounted { .. } => Code::NOT_FOUND,
        MountError::Unmount { .. } => Code::INTERNAL,
    }
}

fn device_code(error: &DeviceError) -> Code {
    match error {
        DeviceError::InvalidPciPath { .. }
        | DeviceError::InvalidName { .. }
        | DeviceError::InvalidScsiAddress { .. } => Code::INVALID_ARGUMENT,
        DeviceError::PciBridge { .. } => Code::NOT_FOUND,
        DeviceError::Timeout { .. } => Code::DEADLINE_EXCEEDED,
        DeviceError::BadNode { .. } => Code::FAILED_PRECONDITION,
        DeviceError::Uevent(_) | DeviceError::Io { .. } => Code::INTERNAL,
    }
}

/// Network errors: the request's faults as such, kernel refusals by their errno. A change
/// whose rollback failed too is INTERNAL: the guest is in neither the old nor the new state.
fn network_code(error: &NetworkError) -> Code {
    match error {
        NetworkError::Invalid { .. } => Code::INVALID_ARGUMENT,
        NetworkError::NotFound(_) => Code::NOT_FOUND,
        NetworkError::Kernel { source, .. } => match source.raw_os_error() {
            // The kernel found the request's values unacceptable.
            Some(
                libc::EINVAL
                | libc::ERANGE
                | libc::EADDRNOTAVAIL
                | libc::ENETUNREACH
                | libc::EHOSTUNREACH
                | libc::EAFNOSUPPORT
                | libc::EOPNOTSUPP,
            ) => Code::INVALID_ARGUMENT,
            Some(libc::EEXIST) => Code::ALREADY_EXISTS,
            Some(libc::ENODEV | libc::ESRCH | libc::ENOENT) => Code::NOT_FOUND,
            Some(libc::EPERM) => Code::PERMISSION_DENIED,
            // E.g. IPv6 disabled on the link, or a link busy.
            Some(libc::EACCES | libc::EBUSY | libc::ENETDOWN) => Code::FAILED_PRECONDITION,
            _ => Code::INTERNAL,
        },
        NetworkError::Netlink { .. }
        | NetworkError::Sysfs { .. }
        | NetworkError::RollbackFailed { .. } => Code::INTERNAL,
    }
}

/// Container and process errors → codes.
fn container_code(error: &ContainerError) -> Code {
    match error {
        ContainerError::InvalidSpec(_) | ContainerError::MissingRootfs(_) => Code::INVALID_ARGUMENT,
        ContainerError::NoSuchContainer(_) | ContainerError::NoSuchProcess { .. } => {
            Code::NOT_FOUND
        }
        ContainerError::ContainerExists(_) | ContainerError::ProcessExists { .. } => {
            Code::ALREADY_EXISTS
        }
        ContainerError::WrongState { .. } => Code::FAILED_PRECONDITION,
        ContainerError::Timeout(_) => Code::DEADLINE_EXCEEDED,
        ContainerError::Process(p) => match p {
            ProcessError::InvalidSignal(_) => Code::INVALID_ARGUMENT,
            ProcessError::StdinClosed
            | ProcessError::NoTerminal
            | ProcessError::NoSuchStream(_)
            | ProcessError::CarriedOnStream(_) => Code::FAILED_PRECONDITION,
            ProcessError::Sys { .. } | ProcessError::Io(_) => Code::INTERNAL,
        },
        ContainerError::Setup(e) => setup_code(e),
        ContainerError::Helper(_) | ContainerError::SelfExe(_) | ContainerError::Cgroup(_) => {
            Code::INTERNAL
        }
    }
}

/// A process that cannot run as the request describes it (no such executable, one that
/// may not be executed or is of a foreign format, a working directory that cannot be
/// entered) is the request's fault: INVALID_ARGUMENT. Docker classifies runc's words for
/// these ("executable file not found", "no such file or directory", "permission denied")
/// as invalid parameters too (exit status 127 or 126); Kata's agent answers INTERNAL for
/// everything. Not NOT_FOUND: that code tells a runtime the container or process it
/// named does not exist. Any other failure of the setup is the guest's: INTERNAL.
fn setup_code(error: &SetupError) -> Code {
    match error {
        SetupError::ExecutableNotFound { .. }
        | SetupError::PermissionDenied { .. }
        | SetupError::InvalidCwd { .. } => Code::INVALID_ARGUMENT,
        SetupError::Exec { errno, .. } if *errno == libc::ENOEXEC => Code::INVALID_ARGUMENT,
        SetupError::Exec { .. }
        | SetupError::Namespace { .. }
        | SetupError::Rootfs { .. }
        | SetupError::Credentials { .. }
        | SetupError::Process { .. }
        | SetupError::Protocol { .. } => Code::INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(errno: i32) -> NetworkError {
        NetworkError::Kernel {
            what: "step".into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
    }

    #[test]
    fn errors_map_to_their_codes() {
        let cases = [
            (
                AgentError::MissingField { field: "OCI spec" },
                Code::INVALID_ARGUMENT,
            ),
            (
                AgentError::InvalidRequest {
                    field: "OCI",
                    reason: "x".into(),
                },
                Code::INVALID_ARGUMENT,
            ),
            (
                AgentError::Unsupported { what: "x" },
                Code::INVALID_ARGUMENT,
            ),
            (StdioPortError::NoListener.into(), Code::FAILED_PRECONDITION),
            (
                StdioPortError::NoConnection {
                    stream: "stdout",
                    port: 7,
                    listener: 1027,
                    waited: std::time::Duration::from_secs(2),
                }
                .into(),
                Code::DEADLINE_EXCEEDED,
            ),
            (
                ContainerError::Process(ProcessError::CarriedOnStream("stdin")).into(),
                Code::FAILED_PRECONDITION,
            ),
            (AgentError::NoSandboxPidns, Code::INVALID_ARGUMENT),
            (
                AgentError::SandboxPidnsEnded { holder: "c".into() },
                Code::FAILED_PRECONDITION,
            ),
            (AgentError::AlreadyDestroying, Code::FAILED_PRECONDITION),
            (AgentError::SandboxDestroyed, Code::FAILED_PRECONDITION),
            (AgentError::SandboxLost, Code::FAILED_PRECONDITION),
            (
                AgentError::io("/x", std::io::Error::other("boom")),
                Code::INTERNAL,
            ),
            (
                ContainerError::NoSuchContainer("c".into()).into(),
                Code::NOT_FOUND,
            ),
            (
                ContainerError::ContainerExists("c".into()).into(),
                Code::ALREADY_EXISTS,
            ),
            (
                ContainerError::InvalidSpec("x".into()).into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ContainerError::WrongState {
                    id: "c".into(),
                    state: hull_container::State::Stopped,
                    action: "start",
                }
                .into(),
                Code::FAILED_PRECONDITION,
            ),
            (
                ContainerError::Process(ProcessError::InvalidSignal(99)).into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ContainerError::Setup(SetupError::ExecutableNotFound {
                    executable: "sl".into(),
                    searched_path: true,
                })
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ContainerError::Setup(SetupError::PermissionDenied {
                    executable: "/etc".into(),
                })
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ContainerError::Setup(SetupError::InvalidCwd {
                    cwd: "/nope".into(),
                    reason: "ENOENT".into(),
                })
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ContainerError::Setup(SetupError::Exec {
                    executable: "/bin/arm".into(),
                    errno: libc::ENOEXEC,
                })
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ContainerError::Setup(SetupError::Rootfs {
                    step: "pivot_root".into(),
                    reason: "EINVAL".into(),
                })
                .into(),
                Code::INTERNAL,
            ),
            (
                StorageError::UnsupportedDriver {
                    driver: "x".into(),
                    supported: "y".into(),
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ConfineError::Escapes {
                    path: "/run/kata-containers/x".into(),
                    root: "/run/kata-containers".into(),
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                StorageError::Device {
                    mount_point: "/m".into(),
                    source: DeviceError::Timeout {
                        what: "vdb".into(),
                        timeout: std::time::Duration::from_secs(3),
                    },
                }
                .into(),
                Code::DEADLINE_EXCEEDED,
            ),
            (
                AgentError::SandboxExists { id: "s".into() },
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::KernelModules { names: "m".into() },
                Code::UNIMPLEMENTED,
            ),
            (
                AgentError::InvalidHostname {
                    hostname: "a b".into(),
                    reason: "x",
                },
                Code::INVALID_ARGUMENT,
            ),
            (
                NetworkError::invalid("routes[0].dest", "x", "bad").into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                NetworkError::NotFound("no link".into()).into(),
                Code::NOT_FOUND,
            ),
            (kernel(libc::EINVAL).into(), Code::INVALID_ARGUMENT),
            (kernel(libc::EADDRNOTAVAIL).into(), Code::INVALID_ARGUMENT),
            (kernel(libc::ENETUNREACH).into(), Code::INVALID_ARGUMENT),
            (kernel(libc::EEXIST).into(), Code::ALREADY_EXISTS),
            (kernel(libc::ENODEV).into(), Code::NOT_FOUND),
            (kernel(libc::EACCES).into(), Code::FAILED_PRECONDITION),
            (kernel(libc::ENOMEM).into(), Code::INTERNAL),
            (
                NetworkError::RollbackFailed {
                    error: Box::new(kernel(libc::EINVAL)),
                    rollback: Box::new(kernel(libc::EBUSY)),
                }
                .into(),
                Code::INTERNAL,
            ),
        ];
        for (error, code) in cases {
            match status(error) {
                ttrpc::Error::RpcStatus(s) => assert_eq!(s.code(), code),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

//! The one mapping from the agent's errors to ttRPC status codes.
//!
//! The request's own faults are INVALID_ARGUMENT, what names nothing that exists
//! NOT_FOUND, what the guest's state forbids FAILED_PRECONDITION, a duplicate
//! ALREADY_EXISTS, a wait that ran out DEADLINE_EXCEEDED, what the agent policy denies
//! PERMISSION_DENIED (a malformed policy is INVALID_ARGUMENT), and what went wrong inside
//! the guest INTERNAL. The status's message is the error's `Display`.

use hull_container::process::ProcessError;
use hull_container::{ContainerError, SetupError};
use nix::errno::Errno;
use ttrpc::Code;

use crate::device::DeviceError;
use crate::device::container::ContainerDeviceError;
use crate::device::cpu_mem::CpuMemError;
use crate::diagnostic::DiagnosticError;
use crate::entropy::EntropyError;
use crate::error::AgentError;
use crate::fs::ConfineError;
use crate::fs::copy::CopyFileError;
use crate::guest_clock::ClockError;
use crate::hooks::HookError;
use crate::iptables::IptablesError;
use crate::mem_agent::MemAgentError;
use crate::mount::MountError;
use crate::network::NetworkError;
use crate::policy::PolicyError;
use crate::sandbox::SandboxError;
use crate::sandbox::shared_mounts::SharedMountError;
use crate::stdio_ports::StdioPortError;
use crate::storage::{StorageError, VolumeError};
use crate::swap::SwapError;
use hull_container::hooks::HookFailure;

/// The one mapping from domain errors to ttRPC statuses.
pub fn status(error: AgentError) -> ttrpc::Error {
    let code = match &error {
        AgentError::MissingField { .. }
        | AgentError::InvalidRequest { .. }
        | AgentError::Unsupported { .. }
        | AgentError::UserName { .. } => Code::INVALID_ARGUMENT,
        AgentError::Sandbox(e) => sandbox_code(e),
        AgentError::Container(e) => container_code(e),
        AgentError::Storage(e) => storage_code(e),
        AgentError::Network(e) => network_code(e),
        AgentError::Swap(e) => swap_code(e),
        AgentError::CopyFile(e) => copy_file_code(e),
        AgentError::Clock(e) => clock_code(e),
        AgentError::Entropy(e) => entropy_code(e),
        AgentError::CpuMem(e) => cpu_mem_code(e),
        AgentError::MemAgent(e) => mem_agent_code(e),
        AgentError::Diagnostic(e) => diagnostic_code(e),
        AgentError::Iptables(e) => iptables_code(e),
        AgentError::Policy(e) => policy_code(e),
    };
    tracing::debug!(?code, %error, "request failed");
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, error.to_string()))
}

/// The sandbox's own refusals by what they are; the layers it drives as they answer
/// on their own.
fn sandbox_code(error: &SandboxError) -> Code {
    match error {
        SandboxError::InvalidHostname { .. }
        | SandboxError::InvalidDns { .. }
        | SandboxError::InvalidHookPath { .. }
        | SandboxError::NoSandboxPidns
        | SandboxError::PidNamespace(_)
        // Kept from the first agent: a malformed sysfs value is answered as invalid.
        | SandboxError::BadSysfsValue { .. } => Code::INVALID_ARGUMENT,
        SandboxError::KernelModules { .. } => Code::UNIMPLEMENTED,
        SandboxError::SandboxExists { .. }
        | SandboxError::SandboxDestroyed
        | SandboxError::SandboxLost
        | SandboxError::AlreadyDestroying
        | SandboxError::SandboxPidnsEnded { .. } => Code::FAILED_PRECONDITION,
        SandboxError::Hostname { .. } | SandboxError::Dns { .. } | SandboxError::Io { .. } => {
            Code::INTERNAL
        }
        SandboxError::Unresponsive { .. } => Code::DEADLINE_EXCEEDED,
        SandboxError::Container(e) => container_code(e),
        SandboxError::Devices(e) => container_device_code(e),
        SandboxError::SharedMount(SharedMountError::Invalid { .. }) => Code::INVALID_ARGUMENT,
        SandboxError::SharedMount(SharedMountError::Failed { .. }) => Code::INTERNAL,
        SandboxError::PodNamespaces(_) => Code::INTERNAL,
        SandboxError::Storage(e) => storage_code(e),
        SandboxError::Hook(e) => hook_code(e),
        SandboxError::Diagnostic(e) => diagnostic_code(e),
        SandboxError::StdioPort(e) => stdio_port_code(e),
    }
}

fn stdio_port_code(error: &StdioPortError) -> Code {
    match error {
        StdioPortError::NoListener => Code::FAILED_PRECONDITION,
        StdioPortError::NoConnection { .. } => Code::DEADLINE_EXCEEDED,
    }
}

/// A path or chunk the host got wrong is INVALID_ARGUMENT (a path that escapes the shared
/// directory included); a full disk RESOURCE_EXHAUSTED; anything else the guest's fault.
fn copy_file_code(error: &CopyFileError) -> Code {
    match error {
        CopyFileError::Path(e) => confine_code(e),
        CopyFileError::UnsupportedType { .. }
        | CopyFileError::InvalidChunk { .. }
        | CopyFileError::InvalidSymlinkTarget { .. } => Code::INVALID_ARGUMENT,
        CopyFileError::Os { errno, .. } => errno_code(*errno),
        CopyFileError::Interrupted { .. } => Code::INTERNAL,
    }
}

fn clock_code(error: &ClockError) -> Code {
    match error {
        ClockError::Invalid { .. } => Code::INVALID_ARGUMENT,
        ClockError::Set { errno, .. } => errno_code(*errno),
    }
}

fn entropy_code(error: &EntropyError) -> Code {
    match error {
        EntropyError::Empty | EntropyError::TooLong { .. } => Code::INVALID_ARGUMENT,
        EntropyError::Open { errno, .. } | EntropyError::Ioctl { errno, .. } => errno_code(*errno),
    }
}

/// A system call's error in a guest service: the kernel refusing the value, a missing
/// privilege, a full disk; anything else is INTERNAL.
fn errno_code(errno: nix::errno::Errno) -> Code {
    use nix::errno::Errno;
    match errno {
        Errno::EINVAL => Code::INVALID_ARGUMENT,
        Errno::EPERM | Errno::EACCES => Code::PERMISSION_DENIED,
        Errno::ENOSPC | Errno::EDQUOT => Code::RESOURCE_EXHAUSTED,
        _ => Code::INTERNAL,
    }
}

/// A probe the kernel refuses says why by its errno: memory there already (EEXIST), an
/// address beyond what it can address (E2BIG, ERANGE) or not a block's start (EINVAL).
fn cpu_mem_code(error: &CpuMemError) -> Code {
    match error {
        CpuMemError::NoProbeFile { .. } => Code::FAILED_PRECONDITION,
        CpuMemError::UnalignedProbe { .. } => Code::INVALID_ARGUMENT,
        CpuMemError::Probe { source, .. } => match source.raw_os_error() {
            Some(libc::EEXIST) => Code::ALREADY_EXISTS,
            Some(libc::EINVAL | libc::E2BIG | libc::ERANGE) => Code::INVALID_ARGUMENT,
            _ => Code::INTERNAL,
        },
        CpuMemError::CpusTimeout { .. } => Code::DEADLINE_EXCEEDED,
        CpuMemError::Online { .. } | CpuMemError::Sysfs { .. } => Code::INTERNAL,
    }
}

fn mem_agent_code(error: &MemAgentError) -> Code {
    match error {
        MemAgentError::Invalid { .. } => Code::INVALID_ARGUMENT,
        MemAgentError::Io { .. } | MemAgentError::Parse { .. } | MemAgentError::Compact(_) => {
            Code::INTERNAL
        }
    }
}

fn diagnostic_code(error: &DiagnosticError) -> Code {
    match error {
        DiagnosticError::UnknownType { .. } => Code::INVALID_ARGUMENT,
        DiagnosticError::NoTerminationPath { .. } | DiagnosticError::NoTerminationMount { .. } => {
            Code::FAILED_PRECONDITION
        }
        DiagnosticError::Read { .. } => Code::INTERNAL,
    }
}

fn iptables_code(error: &IptablesError) -> Code {
    match error {
        IptablesError::Missing { .. } => Code::FAILED_PRECONDITION,
        IptablesError::Rejected { .. } => Code::INVALID_ARGUMENT,
        IptablesError::Timeout { .. } => Code::DEADLINE_EXCEEDED,
        IptablesError::Failed { .. } | IptablesError::Spawn { .. } => Code::INTERNAL,
    }
}

fn policy_code(error: &PolicyError) -> Code {
    match error {
        PolicyError::Denied { .. } => Code::PERMISSION_DENIED,
        PolicyError::Malformed { .. } | PolicyError::Input { .. } => Code::INVALID_ARGUMENT,
        PolicyError::NotBuiltIn | PolicyError::SetPolicyNotBuiltIn => Code::UNIMPLEMENTED,
        PolicyError::Read { .. } | PolicyError::Evaluation { .. } => Code::INTERNAL,
    }
}

fn hook_code(error: &HookError) -> Code {
    match error {
        HookError::Hook { failure, .. } => hook_failure_code(failure),
        HookError::Read { .. } => Code::INTERNAL,
    }
}

/// A hook that ran and refused is the request's precondition; one past its timeout, a
/// deadline; one that could not start, the guest's fault.
fn hook_failure_code(failure: &HookFailure) -> Code {
    match failure {
        HookFailure::Exited { .. } => Code::FAILED_PRECONDITION,
        HookFailure::Timeout(_) => Code::DEADLINE_EXCEEDED,
        HookFailure::Spawn(_) => Code::INTERNAL,
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
        StorageError::Volume(e) => volume_code(e),
        StorageError::Ownership { .. } | StorageError::Interrupted { .. } => Code::INTERNAL,
    }
}

/// A path with no volume is NOT_FOUND; a volume that cannot be resized as it is (its
/// file system, a read-only mount, a disk not grown yet) FAILED_PRECONDITION; a size no
/// volume can take INVALID_ARGUMENT.
fn volume_code(error: &VolumeError) -> Code {
    match error {
        VolumeError::NotMounted { .. } => Code::NOT_FOUND,
        VolumeError::InvalidSize { .. } => Code::INVALID_ARGUMENT,
        VolumeError::UnsupportedFileSystem { .. }
        | VolumeError::ReadOnly { .. }
        | VolumeError::DiskTooSmall { .. }
        | VolumeError::NoDisk { .. } => Code::FAILED_PRECONDITION,
        VolumeError::Resize { errno, .. } => match *errno {
            Errno::EINVAL => Code::INVALID_ARGUMENT,
            Errno::EPERM => Code::PERMISSION_DENIED,
            Errno::EROFS | Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::EBUSY | Errno::ENOSPC => {
                Code::FAILED_PRECONDITION
            }
            _ => Code::INTERNAL,
        },
        VolumeError::Os { .. } => Code::INTERNAL,
    }
}

/// Swap: a request naming nothing usable is INVALID_ARGUMENT, a missing file NOT_FOUND,
/// an area the kernel will not take as it is (no signature, holes, in use, too many)
/// FAILED_PRECONDITION.
fn swap_code(error: &SwapError) -> Code {
    match error {
        SwapError::Invalid { .. } => Code::INVALID_ARGUMENT,
        SwapError::Device(e) => device_code(e),
        SwapError::Confine(e) => confine_code(e),
        SwapError::Swapon { errno, .. } => match *errno {
            Errno::EINVAL | Errno::EBUSY | Errno::EPERM | Errno::ENOTBLK | Errno::EROFS => {
                Code::FAILED_PRECONDITION
            }
            Errno::ENOENT => Code::NOT_FOUND,
            _ => Code::INTERNAL,
        },
        SwapError::Interrupted { .. } => Code::INTERNAL,
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
        MountError::UnmountUnanswered { .. } => Code::DEADLINE_EXCEEDED,
    }
}

/// A container's devices: the request's faults, a driver the guest has no means for
/// (FAILED_PRECONDITION), the device's own errors as storages answer them.
fn container_device_code(error: &ContainerDeviceError) -> Code {
    match error {
        ContainerDeviceError::Incomplete { .. }
        | ContainerDeviceError::UnknownDriver { .. }
        | ContainerDeviceError::Options { .. }
        | ContainerDeviceError::Duplicate { .. }
        | ContainerDeviceError::NotInSpec { .. }
        | ContainerDeviceError::SameHostNumbers { .. } => Code::INVALID_ARGUMENT,
        ContainerDeviceError::Unsupported { .. } => Code::FAILED_PRECONDITION,
        ContainerDeviceError::Device { source, .. } => device_code(source),
        ContainerDeviceError::NotANode { .. } => Code::FAILED_PRECONDITION,
        ContainerDeviceError::Stat { .. } => Code::INTERNAL,
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
        SetupError::Hook { failure, .. } => hook_failure_code(failure),
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
            (
                AgentError::Sandbox(StdioPortError::NoListener.into()),
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::Sandbox(
                    StdioPortError::NoConnection {
                        stream: "stdout",
                        port: 7,
                        listener: 1027,
                        waited: std::time::Duration::from_secs(2),
                    }
                    .into(),
                ),
                Code::DEADLINE_EXCEEDED,
            ),
            (
                ContainerError::Process(ProcessError::CarriedOnStream("stdin")).into(),
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::Sandbox(SandboxError::NoSandboxPidns),
                Code::INVALID_ARGUMENT,
            ),
            (
                AgentError::Sandbox(SandboxError::SandboxPidnsEnded { holder: "c".into() }),
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::Sandbox(SandboxError::AlreadyDestroying),
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::Sandbox(SandboxError::SandboxDestroyed),
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::Sandbox(SandboxError::SandboxLost),
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::Sandbox(SandboxError::io("/x", std::io::Error::other("boom"))),
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
                AgentError::Sandbox(
                    ContainerDeviceError::Unsupported {
                        container_path: "/dev/vfio/1".into(),
                        driver: "vfio-pci".into(),
                        what: "VFIO",
                    }
                    .into(),
                ),
                Code::FAILED_PRECONDITION,
            ),
            (
                AgentError::Sandbox(
                    ContainerDeviceError::NotInSpec {
                        container_path: "/dev/x".into(),
                    }
                    .into(),
                ),
                Code::INVALID_ARGUMENT,
            ),
            (
                AgentError::Sandbox(
                    ContainerDeviceError::Device {
                        container_path: "/dev/x".into(),
                        source: DeviceError::Timeout {
                            what: "vdb".into(),
                            timeout: std::time::Duration::from_secs(3),
                        },
                    }
                    .into(),
                ),
                Code::DEADLINE_EXCEEDED,
            ),
            (
                AgentError::Sandbox(
                    ContainerDeviceError::Device {
                        container_path: "/dev/x".into(),
                        source: DeviceError::InvalidScsiAddress {
                            address: "x".into(),
                        },
                    }
                    .into(),
                ),
                Code::INVALID_ARGUMENT,
            ),
            (
                AgentError::Sandbox(
                    SharedMountError::Invalid {
                        index: 0,
                        name: "m".into(),
                        reason: "dst_path must be absolute",
                    }
                    .into(),
                ),
                Code::INVALID_ARGUMENT,
            ),
            (
                AgentError::Sandbox(
                    SharedMountError::Failed {
                        name: "m".into(),
                        step: "attaching".into(),
                        source: std::io::Error::other("EPERM"),
                    }
                    .into(),
                ),
                Code::INTERNAL,
            ),
            (
                AgentError::Sandbox(
                    crate::sandbox::pod_namespaces::PodNamespaceError::Thread("panicked").into(),
                ),
                Code::INTERNAL,
            ),
            (
                AgentError::Sandbox(SandboxError::SandboxExists { id: "s".into() }),
                Code::FAILED_PRECONDITION,
            ),
            (
                CpuMemError::NoProbeFile {
                    path: "/sys/devices/system/memory/probe".into(),
                }
                .into(),
                Code::FAILED_PRECONDITION,
            ),
            (
                CpuMemError::UnalignedProbe {
                    addr: 1,
                    block_size: 0x800_0000,
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                CpuMemError::Probe {
                    addr: 0x1_0000_0000,
                    source: std::io::Error::from_raw_os_error(libc::EEXIST),
                }
                .into(),
                Code::ALREADY_EXISTS,
            ),
            (
                CpuMemError::Probe {
                    addr: 1 << 50,
                    source: std::io::Error::from_raw_os_error(libc::E2BIG),
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                CpuMemError::CpusTimeout {
                    wanted: 2,
                    online: 1,
                    waited: std::time::Duration::from_secs(5),
                    last_error: None,
                }
                .into(),
                Code::DEADLINE_EXCEEDED,
            ),
            (
                AgentError::Sandbox(SandboxError::KernelModules { names: "m".into() }),
                Code::UNIMPLEMENTED,
            ),
            (
                AgentError::Sandbox(SandboxError::InvalidHostname {
                    hostname: "a b".into(),
                    reason: "x",
                }),
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
                CopyFileError::Path(ConfineError::ParentComponent {
                    path: "/run/kata-containers/shared/containers/../x".into(),
                })
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                CopyFileError::InvalidChunk {
                    path: "/x".into(),
                    reason: "r".into(),
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                CopyFileError::UnsupportedType {
                    path: "/x".into(),
                    mode: 0o010644,
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                CopyFileError::Os {
                    path: "/x".into(),
                    operation: "write",
                    errno: nix::errno::Errno::ENOSPC,
                }
                .into(),
                Code::RESOURCE_EXHAUSTED,
            ),
            (
                CopyFileError::Os {
                    path: "/x".into(),
                    operation: "rename",
                    errno: nix::errno::Errno::EIO,
                }
                .into(),
                Code::INTERNAL,
            ),
            (
                crate::guest_clock::WallTime::new(0, -1).unwrap_err().into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                ClockError::Set {
                    sec: 0,
                    usec: 0,
                    errno: nix::errno::Errno::EPERM,
                }
                .into(),
                Code::PERMISSION_DENIED,
            ),
            (EntropyError::Empty.into(), Code::INVALID_ARGUMENT),
            (
                EntropyError::Ioctl {
                    path: "/dev/random".into(),
                    request: "RNDADDENTROPY",
                    errno: nix::errno::Errno::EPERM,
                }
                .into(),
                Code::PERMISSION_DENIED,
            ),
            (
                NetworkError::RollbackFailed {
                    error: Box::new(kernel(libc::EINVAL)),
                    rollback: Box::new(kernel(libc::EBUSY)),
                }
                .into(),
                Code::INTERNAL,
            ),
        ];
        let volume = |error: VolumeError| AgentError::Storage(error.into());
        let swap = |errno| {
            AgentError::Swap(SwapError::Swapon {
                path: "/dev/vdb".into(),
                errno,
                hint: "",
            })
        };
        let resize = |errno| {
            volume(VolumeError::Resize {
                path: "/v".into(),
                blocks: 1,
                errno,
                hint: "",
            })
        };
        let sandbox = |error: SandboxError| AgentError::Sandbox(error);
        let more = [
            (
                sandbox(SandboxError::InvalidDns {
                    line: "x".into(),
                    reason: "r",
                }),
                Code::INVALID_ARGUMENT,
            ),
            (
                sandbox(SandboxError::InvalidHookPath {
                    path: "x".into(),
                    reason: "r",
                }),
                Code::INVALID_ARGUMENT,
            ),
            (
                sandbox(SandboxError::BadSysfsValue {
                    path: "/sys/x".into(),
                    found: "lots".into(),
                }),
                Code::INVALID_ARGUMENT,
            ),
            (
                sandbox(SandboxError::Hostname {
                    hostname: "h".into(),
                    errno: Errno::EPERM,
                }),
                Code::INTERNAL,
            ),
            (
                sandbox(SandboxError::Dns {
                    target: "/etc/resolv.conf".into(),
                    reason: "r".into(),
                }),
                Code::INTERNAL,
            ),
            (
                sandbox(SandboxError::Unresponsive {
                    path: "/run/rootfs".into(),
                    timeout: std::time::Duration::from_secs(1),
                }),
                Code::DEADLINE_EXCEEDED,
            ),
            (
                sandbox(ContainerError::NoSuchContainer("c".into()).into()),
                Code::NOT_FOUND,
            ),
            (
                sandbox(
                    StorageError::NotHeld {
                        mount_point: "/m".into(),
                    }
                    .into(),
                ),
                Code::NOT_FOUND,
            ),
            (
                sandbox(
                    DiagnosticError::NoTerminationPath {
                        container: "c".into(),
                    }
                    .into(),
                ),
                Code::FAILED_PRECONDITION,
            ),
            (
                volume(VolumeError::NotMounted { path: "/v".into() }),
                Code::NOT_FOUND,
            ),
            (
                volume(VolumeError::DiskTooSmall {
                    path: "/v".into(),
                    size: 2,
                    device: "254:0".into(),
                    device_bytes: 1,
                }),
                Code::FAILED_PRECONDITION,
            ),
            (
                volume(VolumeError::UnsupportedFileSystem {
                    path: "/v".into(),
                    fs_type: 0x0102_1994,
                }),
                Code::FAILED_PRECONDITION,
            ),
            (resize(Errno::EINVAL), Code::INVALID_ARGUMENT),
            (resize(Errno::EPERM), Code::PERMISSION_DENIED),
            (resize(Errno::EIO), Code::INTERNAL),
            (swap(Errno::EINVAL), Code::FAILED_PRECONDITION),
            (swap(Errno::EBUSY), Code::FAILED_PRECONDITION),
            (swap(Errno::ENOMEM), Code::INTERNAL),
            (
                AgentError::Swap(SwapError::Invalid {
                    path: "/etc/passwd".into(),
                    reason: "outside".into(),
                }),
                Code::INVALID_ARGUMENT,
            ),
        ];
        for (error, code) in cases.into_iter().chain(more) {
            match status(error) {
                ttrpc::Error::RpcStatus(s) => assert_eq!(s.code(), code),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn guest_admin_errors_map_to_their_codes() {
        let cases: [(AgentError, Code); 6] = [
            (
                MemAgentError::Invalid {
                    field: "compact_order",
                    reason: "x".into(),
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                DiagnosticError::UnknownType { name: "x".into() }.into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                DiagnosticError::NoTerminationPath {
                    container: "c".into(),
                }
                .into(),
                Code::FAILED_PRECONDITION,
            ),
            (
                IptablesError::Missing {
                    tool: "iptables-save",
                }
                .into(),
                Code::FAILED_PRECONDITION,
            ),
            (
                IptablesError::Rejected {
                    tool: "iptables-restore",
                    code: 2,
                    stderr: String::new(),
                }
                .into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                IptablesError::Failed {
                    tool: "iptables-save",
                    code: 1,
                    stderr: String::new(),
                }
                .into(),
                Code::INTERNAL,
            ),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            match status(error) {
                ttrpc::Error::RpcStatus(s) => {
                    assert_eq!(s.code(), code);
                    assert_eq!(s.message(), message);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

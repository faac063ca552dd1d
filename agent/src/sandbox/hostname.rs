//! The guest's hostname, as `CreateSandbox` gives it.

use super::SandboxError;

/// `HOST_NAME_MAX`.
const HOSTNAME_MAX: usize = 64;

/// Checks a hostname the way the kernel and resolvers need it.
pub fn check_hostname(hostname: &str) -> Result<(), SandboxError> {
    let invalid = |reason| SandboxError::InvalidHostname {
        hostname: hostname.to_string(),
        reason,
    };
    if hostname.len() > HOSTNAME_MAX {
        return Err(invalid("longer than 64 bytes"));
    }
    if hostname
        .bytes()
        .any(|b| b == 0 || b.is_ascii_whitespace() || b == b'/')
    {
        return Err(invalid("contains a NUL, a blank or a '/'"));
    }
    Ok(())
}

/// Sets the guest's hostname (of the agent's UTS namespace).
pub fn set_hostname(hostname: &str) -> Result<(), SandboxError> {
    nix::unistd::sethostname(hostname).map_err(|errno| SandboxError::Hostname {
        hostname: hostname.to_string(),
        errno,
    })
}

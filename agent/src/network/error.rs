//! What can go wrong while configuring the guest's network.

use std::path::PathBuf;

/// A network request that could not be carried out. The RPC layer turns each
/// into a ttRPC code: `Invalid` is INVALID_ARGUMENT, `NotFound` NOT_FOUND, `Kernel` by
/// its errno (EINVAL and its kind INVALID_ARGUMENT), the rest INTERNAL.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A field of the request is malformed; nothing was changed.
    #[error("{field}: {value:?}: {reason}")]
    Invalid {
        /// Where in the request, e.g. `interface.IPAddresses[1]`, `routes[0].dest`.
        field: String,
        /// The value found there, as text.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request names a link that the guest does not have; nothing was changed.
    #[error("{0}")]
    NotFound(String),
    /// The kernel refused a change (the netlink answer carried an errno).
    #[error("{what}: {source}")]
    Kernel {
        /// What was being done, e.g. `setting the MTU of eth0 to 70000`.
        what: String,
        /// The kernel's errno, as an I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The netlink conversation itself failed (socket, unexpected message).
    #[error("{what}: netlink: {reason}")]
    Netlink {
        /// What was being done.
        what: String,
        /// How the conversation failed.
        reason: String,
    },
    /// Reading sysfs failed.
    #[error("{path}: {source}")]
    Sysfs {
        /// The sysfs file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A change failed and putting the previous configuration back failed too.
    #[error("{error}; restoring the previous configuration failed as well: {rollback}")]
    RollbackFailed {
        /// The change's failure.
        error: Box<NetworkError>,
        /// The rollback's failure; the guest's network may now be half-changed.
        rollback: Box<NetworkError>,
    },
}

impl NetworkError {
    /// A malformed request field.
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// Wraps an rtnetlink failure of the step `what`.
    pub fn netlink(what: impl Into<String>, error: rtnetlink::Error) -> Self {
        let what = what.into();
        match error {
            rtnetlink::Error::NetlinkError(message) if message.code.is_some() => Self::Kernel {
                what,
                source: message.to_io(),
            },
            other => Self::Netlink {
                what,
                reason: other.to_string(),
            },
        }
    }

    /// The errno the kernel answered, when it did.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

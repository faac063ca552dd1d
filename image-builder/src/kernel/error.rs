//! What can go wrong building the guest kernel.

use std::path::PathBuf;

use super::check::NotLanded;
use super::fragment::FragmentError;
use crate::cache::CacheError;
use crate::command::CommandError;
use crate::fsutil::IoError;
use crate::manifest::ManifestError;

/// What can go wrong building the guest kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A file of the build (tarball, work directory, artifact) could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),

    /// `tar` or `make` could not be started, or failed.
    #[error(transparent)]
    Command(#[from] CommandError),

    /// The cache directory cannot be found or used.
    #[error(transparent)]
    Cache(#[from] CacheError),

    /// The fragments cannot be read or disagree.
    #[error(transparent)]
    Fragment(#[from] FragmentError),

    /// The kernel's manifest cannot be written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),

    /// The kernel source tarball is not there.
    #[error(
        "kernel source tarball {} not found: install it with `apt-get install linux-source-6.1` \
         or pass --source PATH",
        path.display()
    )]
    KernelSourceMissing {
        /// Where the tarball was looked for (`--source`, or the Debian package's path).
        path: PathBuf,
    },

    /// Some requested kernel options are not in the configured `.config`.
    #[error(transparent)]
    OptionsNotLanded(#[from] NotLanded),

    /// The build succeeded but an expected artifact is missing.
    #[error("the build did not produce {}", path.display())]
    BuildOutputMissing {
        /// Where the artifact should be, in the build tree.
        path: PathBuf,
    },

    /// The kernel source tarball does not unpack into one top-level folder.
    #[error("{} does not unpack into a single top-level folder (found {found})", tarball.display())]
    UnexpectedSourceLayout {
        /// The source tarball.
        tarball: PathBuf,
        /// The names at the unpacked top level, comma-separated.
        found: String,
    },
}

pub(crate) type Result<T, E = KernelError> = std::result::Result<T, E>;

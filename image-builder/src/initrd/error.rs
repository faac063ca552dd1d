//! What can go wrong building the initrd (and checking the guest binaries a root tree
//! holds).

use std::path::PathBuf;

use super::cpio::CpioError;
use crate::fsutil::IoError;

/// What can go wrong building the initrd.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    #[error(transparent)]
    Io(#[from] IoError),

    #[error(transparent)]
    Cpio(#[from] CpioError),

    /// An input file of the initrd is missing.
    #[error("{what} {} not found: {hint}", path.display())]
    MissingInput {
        what: &'static str,
        path: PathBuf,
        hint: String,
    },

    /// An input is not a regular file.
    #[error("{what} {} is not a regular file", path.display())]
    NotAFile { what: &'static str, path: PathBuf },

    /// An input that must be an executable is not an ELF file.
    #[error("{what} {} is not an ELF executable: {reason}", path.display())]
    NotElf {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },

    /// An input executable is dynamically linked.
    #[error(
        "{what} {} is dynamically linked (interpreter {interpreter}): a dynamic binary cannot run \
         in the initrd, which has no libc or loader; build it static \
         (RUSTFLAGS='-C target-feature=+crt-static', see `just guest`)",
        path.display()
    )]
    DynamicElf {
        what: &'static str,
        path: PathBuf,
        interpreter: String,
    },

    /// An input executable is built for another machine.
    #[error("{what} {} is built for {found}, not {expected}", path.display())]
    WrongArch {
        what: &'static str,
        path: PathBuf,
        found: String,
        expected: String,
    },

    /// The output file cannot be created in its directory.
    #[error("cannot write into the output directory {} (does it exist, is it writable?)", dir.display())]
    OutputNotWritable {
        dir: PathBuf,
        #[source]
        source: IoError,
    },

    /// A `--extra SRC:DST` argument is malformed.
    #[error("invalid --extra `{spec}`: {reason}")]
    InvalidExtra { spec: String, reason: String },

    /// SOURCE_DATE_EPOCH is not a usable timestamp.
    #[error(
        "SOURCE_DATE_EPOCH=`{value}` is not a whole number of seconds between 0 and 4294967295"
    )]
    SourceDateEpoch { value: String },
}

pub(crate) type Result<T, E = InitrdError> = std::result::Result<T, E>;

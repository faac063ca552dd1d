//! What can go wrong building the initrd (and checking the guest binaries a root tree
//! holds).

use std::path::PathBuf;

use super::cpio::CpioError;
use crate::fsutil::IoError;

/// What can go wrong building the initrd.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    /// An input could not be read, or the output written.
    #[error(transparent)]
    Io(#[from] IoError),

    /// The archive could not be assembled (a duplicate or invalid path, an oversized entry).
    #[error(transparent)]
    Cpio(#[from] CpioError),

    /// An input file of the initrd is missing.
    #[error("{what} {} not found: {hint}", path.display())]
    MissingInput {
        /// What the input is, for the message (`init binary`, `--extra file`...).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to produce it.
        hint: String,
    },

    /// An input is not a regular file.
    #[error("{what} {} is not a regular file", path.display())]
    NotAFile {
        /// What the input is, for the message (`init binary`, `--extra file`...).
        what: &'static str,
        /// The path given.
        path: PathBuf,
    },

    /// An input that must be an executable is not an ELF file.
    #[error("{what} {} is not an ELF executable: {reason}", path.display())]
    NotElf {
        /// What the input is, for the message (`init binary`, `agent binary`, `busybox`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it is not a usable ELF executable.
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
        /// What the input is, for the message (`init binary`, `agent binary`, `busybox`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its `PT_INTERP` path (the dynamic loader it asks for).
        interpreter: String,
    },

    /// An input executable is built for another machine.
    #[error("{what} {} is built for {found}, not {expected}", path.display())]
    WrongArch {
        /// What the input is, for the message (`init binary`, `agent binary`, `busybox`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The machine it is built for, with its word size (`aarch64 (64-bit)`).
        found: String,
        /// The guest's architecture.
        expected: String,
    },

    /// The output file cannot be created in its directory.
    #[error("cannot write into the output directory {} (does it exist, is it writable?)", dir.display())]
    OutputNotWritable {
        /// The output's directory.
        dir: PathBuf,
        /// Why a file could not be created in it.
        #[source]
        source: IoError,
    },

    /// A `--extra SRC:DST` argument is malformed.
    #[error("invalid --extra `{spec}`: {reason}")]
    InvalidExtra {
        /// The argument as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },

    /// SOURCE_DATE_EPOCH is not a usable timestamp.
    #[error(
        "SOURCE_DATE_EPOCH=`{value}` is not a whole number of seconds between 0 and 4294967295"
    )]
    SourceDateEpoch {
        /// The variable's value.
        value: String,
    },
}

pub(crate) type Result<T, E = InitrdError> = std::result::Result<T, E>;

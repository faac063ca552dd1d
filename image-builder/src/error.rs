//! Typed errors of the hull-image library.
//!
//! Every variant names what failed (a path, a command, a fragment line) and, where there is
//! one, the fix. The binary wraps these in `anyhow` with more context.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::kernel::check::NotLanded;

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building guest artifacts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The kernel source tarball is not there.
    #[error(
        "kernel source tarball {} not found: install it with `apt-get install linux-source-6.1` \
         or pass --source PATH",
        path.display()
    )]
    KernelSourceMissing { path: PathBuf },

    /// The kernel-config folder is not there.
    #[error(
        "kernel config folder {} not found: pass --config-dir DIR (the repository's \
         `kernel-config/` folder)",
        path.display()
    )]
    ConfigDirMissing { path: PathBuf },

    /// The kernel-config folder holds no fragment.
    #[error("no kernel config fragment (*.conf) in {}", dir.display())]
    NoFragments { dir: PathBuf },

    /// A fragment line is not of the accepted form.
    #[error("{file}:{line}: {reason}: `{text}`")]
    FragmentSyntax {
        file: String,
        line: usize,
        text: String,
        reason: String,
    },

    /// Two fragments ask for different values of one option.
    #[error(
        "{option} is requested as `{first_value}` at {first} and as `{second_value}` at {second}: \
         remove one of them"
    )]
    ConflictingOption {
        option: String,
        first: String,
        first_value: String,
        second: String,
        second_value: String,
    },

    /// A command could not be started at all.
    #[error("cannot run `{command}`")]
    CommandSpawn {
        command: String,
        #[source]
        source: io::Error,
    },

    /// A command ran and failed.
    #[error("{}", command_failed_message(command, status, log.as_ref(), tail))]
    CommandFailed {
        command: String,
        status: ExitStatus,
        /// Full log of the command, when it was captured to a file.
        log: Option<PathBuf>,
        /// The last lines of its output.
        tail: Vec<String>,
    },

    /// Some requested kernel options are not in the configured `.config`.
    #[error(transparent)]
    OptionsNotLanded(#[from] NotLanded),

    /// The build succeeded but an expected artifact is missing.
    #[error("the build did not produce {}", path.display())]
    BuildOutputMissing { path: PathBuf },

    /// The kernel source tarball does not unpack into one top-level folder.
    #[error("{} does not unpack into a single top-level folder (found {found})", tarball.display())]
    UnexpectedSourceLayout { tarball: PathBuf, found: String },

    /// No cache directory can be derived from the environment.
    #[error("cannot find a cache directory: set HULL_CACHE, XDG_CACHE_HOME or HOME")]
    CacheDirUnresolved,

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
        source: Box<Error>,
    },

    /// A `--extra SRC:DST` argument is malformed.
    #[error("invalid --extra `{spec}`: {reason}")]
    InvalidExtra { spec: String, reason: String },

    /// Two entries of an initrd or root tree want the same path.
    #[error("{path} is in the tree twice ({reason})")]
    DuplicateEntry { path: String, reason: String },

    /// An initrd entry path is not acceptable.
    #[error("invalid initrd path `{path}`: {reason}")]
    InvalidEntryPath { path: String, reason: String },

    /// A value does not fit the newc cpio format.
    #[error("{what} {value} does not fit a newc cpio header (at most {max})")]
    CpioOverflow {
        what: &'static str,
        value: u64,
        max: u64,
    },

    /// A host tool the build needs is not installed.
    #[error(
        "`{tool}` not found on PATH, /usr/sbin or /sbin: install it with `apt-get install {package}` (or `just setup`)"
    )]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },

    /// The image layout cannot be made (a bug or an impossible request).
    #[error("image layout: {0}")]
    Layout(String),

    /// The image would exceed what an MBR can address.
    #[error("the image would be {bytes} bytes; an MBR partition table addresses at most {max}")]
    ImageTooLarge { bytes: u64, max: u64 },

    /// `--size` is not usable.
    #[error("invalid --size {size}: {reason}")]
    InvalidSize { size: u64, reason: String },

    /// The content does not fit the requested image size.
    #[error(
        "the root filesystem does not fit in {size} bytes: it needs {needed} bytes ({} MiB);          pass --size {}M or more, or leave --size out to size the image to its content",
        needed.div_ceil(1 << 20),
        needed.div_ceil(1 << 20).div_ceil(2) * 2
    )]
    DoesNotFit { needed: u64, size: u64 },

    /// mkfs ran out of space (internal: the builder grows the filesystem and retries).
    #[error("the {fs} filesystem of {bytes} bytes is too small for the tree: {detail}")]
    FsFull {
        fs: &'static str,
        bytes: u64,
        detail: String,
    },

    /// The output path exists and may not be replaced.
    #[error("{} already exists and is not empty: remove it, choose another path, or pass --force", path.display())]
    OutputExists { path: PathBuf },

    /// A manifest cannot be read.
    #[error("cannot read the manifest {}: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },

    /// SOURCE_DATE_EPOCH is not a usable timestamp.
    #[error(
        "SOURCE_DATE_EPOCH=`{value}` is not a whole number of seconds between 0 and 4294967295"
    )]
    SourceDateEpoch { value: String },
}

fn command_failed_message(
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

/// Builds a closure that turns an `io::Error` into [`Error::Io`] for `path`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

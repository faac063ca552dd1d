//! What can go wrong laying out or writing a disk image.

use crate::fsutil::IoError;

/// What can go wrong laying out or writing a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A file could not be read, written or resized.
    #[error(transparent)]
    Io(#[from] IoError),

    /// The image layout cannot be made (a bug or an impossible request).
    #[error("image layout: {0}")]
    Layout(String),

    /// The image would exceed what an MBR can address.
    #[error("the image would be {bytes} bytes; an MBR partition table addresses at most {max}")]
    ImageTooLarge {
        /// Size the image would have, in bytes.
        bytes: u64,
        /// The most a 32-bit-LBA partition table can address, in bytes.
        max: u64,
    },

    /// `--size` is not usable.
    #[error("invalid --size {size}: {reason}")]
    InvalidSize {
        /// The size given, in bytes.
        size: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// The content does not fit the requested image size.
    #[error(
        "the root filesystem does not fit in {size} bytes: it needs {needed} bytes ({} MiB); \
         pass --size {}M or more, or leave --size out to size the image to its content",
        needed.div_ceil(1 << 20),
        needed.div_ceil(1 << 20).div_ceil(2) * 2
    )]
    DoesNotFit {
        /// Bytes the image needs (headers, filesystem, hash tree), rounded up to 2 MiB.
        needed: u64,
        /// The size given with `--size`, in bytes.
        size: u64,
    },
}

pub(crate) type Result<T, E = DiskError> = std::result::Result<T, E>;

//! The hull-image library's error: one typed error per module, composed here.
//!
//! Every module's error names what failed (a path, a command, a fragment line) and, where
//! there is one, the fix; this type only gathers them (`#[from]` each, messages passed
//! through unchanged). Nothing below imports this module. The binary wraps it in
//! `anyhow` with more context.

use crate::cache::CacheError;
use crate::command::CommandError;
use crate::disk::DiskError;
use crate::fsutil::IoError;
use crate::image::ImageError;
use crate::initrd::InitrdError;
use crate::initrd::cpio::CpioError;
use crate::kernel::KernelError;
use crate::manifest::ManifestError;
use crate::mkfs::MkfsError;
use crate::rootfs::RootfsError;
use crate::vm_args::VmArgsError;

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building guest artifacts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed (see [`crate::fsutil`]).
    #[error(transparent)]
    Io(#[from] IoError),
    /// A host command could not be started, or failed (see [`crate::command`]).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The build cache is unusable (see [`crate::cache`]).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The kernel build failed (see [`crate::kernel`]).
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// An initramfs entry could not be written (see [`crate::initrd::cpio`]).
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// The initramfs could not be assembled (see [`crate::initrd`]).
    #[error(transparent)]
    Initrd(#[from] InitrdError),
    /// The root tree could not be assembled (see [`crate::rootfs`]).
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// The filesystem image could not be made (see [`crate::mkfs`]).
    #[error(transparent)]
    Mkfs(#[from] MkfsError),
    /// The disk image could not be laid out or written (see [`crate::disk`]).
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// A manifest could not be read or written (see [`crate::manifest`]).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The disk image build failed (see [`crate::image`]).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// VM arguments could not be derived from a manifest (see [`crate::vm_args`]).
    #[error(transparent)]
    VmArgs(#[from] VmArgsError),
}

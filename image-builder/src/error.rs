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
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Cpio(#[from] CpioError),
    #[error(transparent)]
    Initrd(#[from] InitrdError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Mkfs(#[from] MkfsError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    VmArgs(#[from] VmArgsError),
}

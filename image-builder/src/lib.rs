//! hull-image: builds hull's guest artifacts rootlessly and reproducibly.
//!
//! - [`kernel`]: the guest kernel (Debian's `linux-source-6.1`, allnoconfig + fragments,
//!   landed-option check, cached by content).
//! - [`initrd`]: a gzip newc initramfs with hull-init and hull-agent, written by our own
//!   cpio writer (device nodes without root, fixed mtime/owners/inodes).
//!
//! The binary (`src/main.rs`) is a thin clap front end over these modules.

pub mod arch;
pub mod cache;
pub mod error;
pub mod fsutil;
pub mod initrd;
pub mod kernel;
pub mod progress;
pub mod workspace;

pub use arch::Arch;
pub use error::{Error, Result};

//! hull-image: builds hull's guest artifacts rootlessly and reproducibly.
//!
//! - [`kernel`]: the guest kernel (Debian's `linux-source-6.1`, allnoconfig + fragments,
//!   landed-option check, cached by content).
//! - [`initrd`]: a gzip newc initramfs with hull-init and hull-agent, written by our own
//!   cpio writer (device nodes without root, fixed mtime/owners/inodes).
//! - [`rootfs`]: the guest's root tree for a disk image (init, agent, mount points, /etc;
//!   busybox with `--debug-tools`).
//! - [`mkfs`], [`disk`], [`image`]: the raw image: ext4 or erofs built rootlessly into a
//!   file, MBRs and the NVDIMM pfn block written here, optional dm-verity hash tree.
//! - [`manifest`]: the JSON every build writes.
//! - [`agent_check`]: whether the agent can enforce the policy an image carries.
//! - [`vm_args`]: the one source of VM command lines (attachments, root command lines,
//!   memory, QEMU and vmm-lite argument vectors), which the end-to-end harness boots;
//!   [`guide`]: the attach guide, rendered from them.
//!
//! Each module has its own typed error; [`Error`] gathers them (see [`error`]), and no
//! module imports one that imports it back. The binary (`src/main.rs`) is a thin clap
//! front end over these modules.

pub mod agent_check;
pub mod arch;
pub mod cache;
pub mod command;
pub mod disk;
pub mod error;
pub mod fsutil;
pub mod guide;
pub mod image;
pub mod initrd;
pub mod kernel;
pub mod manifest;
pub mod mkfs;
pub mod progress;
pub mod rootfs;
pub mod vm_args;
pub mod workspace;

pub use arch::Arch;
pub use error::{Error, Result};

//! Pieces shared by hull-init, hull-agent and hull-image.
//!
//! `core` + `alloc` only unless the `std` feature (on by default) is enabled: hull-init is
//! a `no_std` binary and links this crate with `default-features = false`.
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod agent_build;
pub mod cmdline;
pub mod mountinfo;

/// Present in images built with the debug console (`hull-image rootfs --debug-tools`):
/// only then does the agent honour `agent.debug_console` on the kernel command line.
pub const DEBUG_CONSOLE_MARKER: &str = "/etc/hull/debug-console";

//! Pieces shared by hull-init and hull-agent. No dependencies: init links it too and
//! must stay tiny.

pub mod cmdline;

/// Present in images built with the debug console (`hull-image rootfs --debug-tools`):
/// only then does the agent honour `agent.debug_console` on the kernel command line.
pub const DEBUG_CONSOLE_MARKER: &str = "/etc/hull/debug-console";

//! hull's end-to-end harness: boots real guests under QEMU and drives them over the agent
//! API. The tests under `tests/`, the demo (`hull-demo`) and the benchmark (`hull-bench`)
//! all boot guests through this one harness, so they boot them the same way.

pub mod accel;
pub mod artifacts;
pub mod bundle;
pub mod container;
pub mod guest;
pub mod guest_helper;
pub mod http;
pub mod inspect;
pub mod kata_forms;
pub mod nic;
pub mod process;
pub mod qmp;
pub mod stdio_ports;
pub mod vm;

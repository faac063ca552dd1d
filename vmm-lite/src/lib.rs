//! vmm-lite: a small VMM on the rust-vmm crates that boots hull guests.
//!
//! Layers, each using only the ones below it:
//!
//! - `cli` (binary only): flags → [`VmConfig`];
//! - [`builder`]: the one place a VM is assembled: KVM VM, guest memory, irqchip and PIT,
//!   kernel loading, devices on the buses, virtio-mmio windows and the command line;
//! - [`vcpu`]: one thread per vCPU running `KVM_RUN` and dispatching exits to the buses;
//! - [`boot`]: linux-loader, boot_params/e820, the MP table, CPUID, MSRs, registers;
//! - [`devices`]: the bus and a module per device.
//!
//! Library use: `Vm::build(config)?.run()` returns why the VM ended.

pub mod boot;
pub mod builder;
pub mod config;
pub mod devices;
pub mod error;
#[cfg(feature = "payload")]
pub mod payload;
pub mod vcpu;

pub use builder::Vm;
pub use config::VmConfig;
pub use devices::bus::ExitReason;
pub use error::Error;

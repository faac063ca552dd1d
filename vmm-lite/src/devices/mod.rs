//! The devices, one module (or folder) each, and the buses they sit on.
//!
//! - [`bus`]: the PIO/MMIO address spaces and the [`bus::BusDevice`] trait every device
//!   implements; also the contract with virtio-mmio devices.
//! - [`serial`]: the 8250 UART on COM1 (0x3f8, IRQ 4), to a file or stdout.
//! - [`i8042`]: the keyboard controller, only so the guest's reset (0xFE to port 0x64) ends
//!   the VMM.
//! - [`legacy`]: the small port devices a PC guest touches (the test "done" port).
//! - `virtio`: the virtio-mmio transport and the virtio devices.

pub mod bus;
pub mod i8042;
pub mod legacy;
pub mod serial;
pub mod virtio;

use vm_memory::GuestMemoryMmap;

use crate::config::VmConfig;
use crate::error::{Error, Result};
use bus::{MmioDeviceSlot, VmExit};

/// The virtio devices `config` asks for, in command-line order: disks, pmem, vsock, fs.
pub fn create_virtio_devices(
    config: &VmConfig,
    _mem: &GuestMemoryMmap,
    _exit: &VmExit,
) -> Result<Vec<Box<dyn MmioDeviceSlot>>> {
    let slots: Vec<Box<dyn MmioDeviceSlot>> = Vec::new();
    if !config.disks.is_empty()
        || !config.pmems.is_empty()
        || config.vsock.is_some()
        || !config.fs.is_empty()
    {
        return Err(Error::Config(
            "virtio devices are not wired into vmm-lite yet".into(),
        ));
    }
    Ok(slots)
}

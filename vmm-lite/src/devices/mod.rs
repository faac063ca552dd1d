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

use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::boot::layout;
use crate::config::VmConfig;
use crate::error::{Error, Result};
use bus::{DeviceMemory, MmioDeviceSlot, SharedDevice, VmExit};
use virtio::VirtioMmioSlot;

/// The virtio devices `config` asks for, in this order: disks, pmem, vsock, fs, net. Device
/// memory (pmem) is placed from [`layout::device_memory_start`] upward, 1 GiB aligned.
pub fn create_virtio_devices(
    config: &VmConfig,
    mem: &GuestMemoryMmap,
    exit: &VmExit,
) -> Result<Vec<Box<dyn MmioDeviceSlot>>> {
    let device_err = |what: &str, e: &dyn std::fmt::Display| Error::Device(format!("{what}: {e}"));
    let mut slots: Vec<Box<dyn MmioDeviceSlot>> = Vec::new();
    for disk in &config.disks {
        let block = virtio::blk::Block::new(&disk.path, disk.read_only)
            .map_err(|e| device_err("virtio-blk", &e))?;
        let slot = VirtioMmioSlot::new("blk", block, mem.clone())
            .map_err(|e| device_err("virtio-blk", &e))?;
        slots.push(Box::new(slot));
    }
    let mut next_memory = layout::device_memory_start(config.mem_bytes);
    for pmem in &config.pmems {
        let device = virtio::pmem::Pmem::new(&pmem.path, true, GuestAddress(next_memory))
            .map_err(|e| device_err("virtio-pmem", &e))?;
        let region = device.region();
        next_memory = (region.guest_address.0 + region.size).next_multiple_of(1 << 30);
        let slot = VirtioMmioSlot::new("pmem", device, mem.clone())
            .map_err(|e| device_err("virtio-pmem", &e))?;
        slots.push(Box::new(WithMemory {
            slot,
            memory: DeviceMemory {
                guest_addr: region.guest_address.0,
                host_addr: region.host_address,
                len: region.size,
                read_only: region.read_only,
            },
        }));
    }
    if let Some(vsock) = &config.vsock {
        let device = virtio::vsock::Vsock::new(vsock.cid, &vsock.uds)
            .map_err(|e| device_err("virtio-vsock", &e))?;
        let slot = VirtioMmioSlot::new("vsock", device, mem.clone())
            .map_err(|e| device_err("virtio-vsock", &e))?;
        slots.push(Box::new(slot));
    }
    for fs in &config.fs {
        let mut device = virtio::fs::Fs::new(&fs.socket, &fs.tag, 1)
            .map_err(|e| device_err("vhost-user-fs", &e))?;
        device.exit_on_backend_loss(exit.clone());
        let slot = VirtioMmioSlot::new("fs", device, mem.clone())
            .map_err(|e| device_err("vhost-user-fs", &e))?;
        slots.push(Box::new(slot));
    }
    for net in &config.net {
        let (tap, _name) =
            virtio::net::open_tap(&net.tap).map_err(|e| device_err("virtio-net", &e))?;
        let device =
            virtio::net::Net::new(tap, net.mac).map_err(|e| device_err("virtio-net", &e))?;
        let slot = VirtioMmioSlot::new("net", device, mem.clone())
            .map_err(|e| device_err("virtio-net", &e))?;
        slots.push(Box::new(slot));
    }
    Ok(slots)
}

/// A slot plus the device memory it needs mapped (virtio-pmem).
struct WithMemory {
    slot: VirtioMmioSlot,
    memory: DeviceMemory,
}

impl MmioDeviceSlot for WithMemory {
    fn transport(&self) -> SharedDevice {
        self.slot.transport()
    }
    fn queue_events(&self) -> Vec<&EventFd> {
        self.slot.queue_events()
    }
    fn interrupt_event(&self) -> &EventFd {
        self.slot.interrupt_event()
    }
    fn subscriber(&self) -> Option<Arc<Mutex<dyn MutEventSubscriber + Send>>> {
        self.slot.subscriber()
    }
    fn name(&self) -> &str {
        self.slot.name()
    }
    fn cmdline_extra(&self) -> Vec<String> {
        self.slot.cmdline_extra()
    }
    fn device_memory(&self) -> Option<DeviceMemory> {
        Some(self.memory)
    }
}

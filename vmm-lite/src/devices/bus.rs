//! The I/O buses: guest addresses → device objects.
//!
//! A vCPU exit for port I/O (`KVM_EXIT_IO`) or MMIO (`KVM_EXIT_MMIO`) names an address and a
//! byte slice. The vCPU thread looks the address up on the matching [`Bus`] (one for the PIO
//! space, one for MMIO), finds the device whose range `[base, base + len)` holds it, and calls
//! [`BusDevice::read`] or [`BusDevice::write`] with the range's `base` and the `offset` of the
//! access inside it. Accesses that hit no device read as all ones and writes are dropped, as
//! on real hardware.
//!
//! # The contract with the devices (read this before writing one)
//!
//! - A device implements [`BusDevice`]. It is shared between the vCPU threads (through the
//!   bus) and, for virtio devices, the event-loop thread, so it lives in an
//!   `Arc<Mutex<_>>` ([`SharedDevice`]). `read`/`write` run on a vCPU thread: keep them short,
//!   never block on I/O there; queue work goes to the event loop through the queue-notify
//!   eventfd (KVM ioeventfd), which does not even exit to user space.
//! - `data.len()` is the access width (1, 2, 4 or 8). A read fills all of `data`.
//! - A device that must end the VM (the i8042 reset line, a failed backing file, the test
//!   "done" port) calls [`VmExit::request`] on the handle it was given at construction: the
//!   first request wins, the VMM stops every vCPU and returns that reason.
//!
//! # What the builder expects from a virtio-mmio device (helper V2's side)
//!
//! `devices::virtio` hands the builder, per device, a value implementing [`MmioDeviceSlot`]:
//! the transport (a [`BusDevice`] for the 4 KiB window), the queue-notify eventfds, the
//! interrupt eventfd and an optional event-loop subscriber. The builder picks the window
//! (`0xd000_0000 + n * 0x1000`) and the GSI (5, 6, ...), registers the transport on the MMIO
//! bus, registers each queue eventfd as a KVM ioeventfd at `base + 0x50` (QueueNotify) with
//! `datamatch = queue index` (4 bytes), registers the interrupt eventfd as a KVM irqfd on
//! the GSI, adds the subscriber to the event manager it runs on its own thread, and appends
//! `virtio_mmio.device=4K@0x<base>:<gsi>` to the kernel command line.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};

use vmm_sys_util::eventfd::EventFd;

/// A device on a bus. `base` is the start of the range the device was registered at,
/// `offset` the access address minus `base`.
pub trait BusDevice: Send {
    /// A guest read of `data.len()` bytes at `base + offset`; fill `data`.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    /// A guest write of `data` at `base + offset`.
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
}

/// A device as the buses and the event loop share it.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// What the builder needs to place one virtio-mmio device (see the module doc).
pub trait MmioDeviceSlot: Send {
    /// The virtio-mmio transport serving the device's 4 KiB register window.
    fn transport(&self) -> SharedDevice;
    /// One eventfd per queue, indexed by queue number: the builder registers each as a
    /// KVM ioeventfd on `base + 0x50` with `datamatch = index as u32`.
    fn queue_events(&self) -> Vec<&EventFd>;
    /// The eventfd the device writes to raise its interrupt: registered as a KVM irqfd.
    fn interrupt_event(&self) -> &EventFd;
    /// The device's handler for the event loop (queue eventfds, backend sockets), if any.
    fn subscriber(&self) -> Option<Arc<Mutex<dyn event_manager::MutEventSubscriber + Send>>>;
    /// A short name for logs and errors ("vsock", "blk", ...).
    fn name(&self) -> &str;
    /// Extra kernel command-line words this device needs (usually none).
    fn cmdline_extra(&self) -> Vec<String> {
        Vec::new()
    }
    /// A host mapping the device needs in guest-physical space (virtio-pmem's file). The
    /// device's constructor gets its guest address from the builder (above RAM, 2 MiB
    /// aligned: [`crate::boot::layout::device_memory_start`]); the builder registers the KVM
    /// memory slot.
    fn device_memory(&self) -> Option<DeviceMemory> {
        None
    }
}

/// A host mapping placed in guest-physical space for a device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceMemory {
    /// Guest-physical address (2 MiB aligned).
    pub guest_addr: u64,
    /// Host virtual address of the mapping (page aligned, stays mapped while the VM lives).
    pub host_addr: u64,
    /// Length in bytes (a multiple of 2 MiB).
    pub len: u64,
    /// Map read-only in the guest (KVM_MEM_READONLY).
    pub read_only: bool,
}

/// Why the VM stopped, as a device or the VMM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest reset the machine through the i8042 (Linux `reboot`/`poweroff` with
    /// `reboot=k`): a clean end.
    Reset,
    /// A test payload wrote `code` to the debug "done" port.
    Done(u32),
    /// A device failed and cannot go on; the message says which and why.
    DeviceError(String),
    /// The VMM's owner stopped the VM ([`crate::Vm::exit_handle`]).
    Stopped,
    /// A vCPU stopped on something the guest cannot recover from (triple fault, KVM internal
    /// error, failed VM entry); the message says which vCPU and what.
    VcpuFault(String),
}

/// A handle devices use to end the VM. Cloning it is cheap; the first request wins.
#[derive(Clone)]
pub struct VmExit {
    inner: Arc<ExitInner>,
}

struct ExitInner {
    reason: Mutex<Option<ExitReason>>,
    cond: Condvar,
    /// Signalled on every request, for event loops that poll.
    event: EventFd,
}

impl VmExit {
    /// A fresh handle with no exit requested.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            inner: Arc::new(ExitInner {
                reason: Mutex::new(None),
                cond: Condvar::new(),
                event: EventFd::new(libc::EFD_NONBLOCK)?,
            }),
        })
    }

    /// Ask the VMM to stop with `reason`. Later requests are ignored.
    pub fn request(&self, reason: ExitReason) {
        let mut slot = self
            .inner
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            tracing::debug!(?reason, "exit requested");
            *slot = Some(reason);
        }
        self.inner.cond.notify_all();
        let _ = self.inner.event.write(1);
    }

    /// The reason, once one was requested.
    pub fn reason(&self) -> Option<ExitReason> {
        self.inner
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Block until an exit is requested or `timeout` passes.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<ExitReason> {
        let slot = self
            .inner
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (slot, _) = self
            .inner
            .cond
            .wait_timeout_while(slot, timeout, |reason| reason.is_none())
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.clone()
    }

    /// An eventfd that becomes readable when an exit is requested.
    pub fn event(&self) -> &EventFd {
        &self.inner.event
    }
}

/// A device's place on a bus.
#[derive(Clone)]
struct Range {
    len: u64,
    device: SharedDevice,
}

/// Errors of bus registration.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The range overlaps a device already registered.
    #[error("bus range {base:#x}+{len:#x} overlaps another device")]
    Overlap {
        /// The start of the refused range.
        base: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// A zero-length range.
    #[error("bus range at {0:#x} has zero length")]
    Empty(u64),
}

/// An address space (PIO or MMIO) of non-overlapping device ranges.
#[derive(Clone, Default)]
pub struct Bus {
    ranges: BTreeMap<u64, Range>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Place `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        if len == 0 {
            return Err(BusError::Empty(base));
        }
        let end = base
            .checked_add(len)
            .ok_or(BusError::Overlap { base, len })?;
        if let Some((&prev, range)) = self.ranges.range(..end).next_back()
            && prev + range.len > base
        {
            return Err(BusError::Overlap { base, len });
        }
        self.ranges.insert(base, Range { len, device });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(u64, &Range)> {
        let (&base, range) = self.ranges.range(..=addr).next_back()?;
        (addr - base < range.len).then_some((base, range))
    }

    /// Dispatch a read; returns false (and fills `data` with 0xff) when no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((base, range)) => {
                lock(&range.device).read(base, addr - base, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatch a write; returns false when no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((base, range)) => {
                lock(&range.device).write(base, addr - base, data);
                true
            }
            None => false,
        }
    }
}

fn lock(device: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        last: Vec<(u64, u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.last.push((base, offset, data.to_vec()));
        }
    }

    #[test]
    fn dispatches_by_range_with_base_and_offset() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut buf = [0u8; 1];
        assert!(bus.read(0x3fa, &mut buf));
        assert_eq!(buf, [2]);
        assert!(bus.write(0x3ff, &[7]));
        assert!(!bus.write(0x400, &[7]));
        assert!(!bus.read(0x3f7, &mut buf));
        assert_eq!(buf, [0xff]);
        assert_eq!(dev.lock().unwrap().last, vec![(0x3f8, 7, vec![7])]);
    }

    #[test]
    fn rejects_overlaps_and_empty_ranges() {
        let mut bus = Bus::new();
        let dev: SharedDevice = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev.clone(), 0x1000, 0x1000).unwrap();
        assert!(bus.insert(dev.clone(), 0xfff, 2).is_err());
        assert!(bus.insert(dev.clone(), 0x1fff, 1).is_err());
        assert!(bus.insert(dev.clone(), 0x500, 0).is_err());
        bus.insert(dev.clone(), 0x2000, 1).unwrap();
        bus.insert(dev, 0xfff, 1).unwrap();
    }

    #[test]
    fn first_exit_request_wins() {
        let exit = VmExit::new().unwrap();
        assert_eq!(exit.reason(), None);
        exit.request(ExitReason::Reset);
        exit.request(ExitReason::Done(3));
        assert_eq!(exit.reason(), Some(ExitReason::Reset));
        assert_eq!(
            exit.wait(std::time::Duration::from_millis(1)),
            Some(ExitReason::Reset)
        );
        assert_eq!(exit.event().read().unwrap(), 2);
    }
}

//! virtio over MMIO: the device model, the transport and the devices.
//!
//! A virtio device is a set of virtqueues (rings of buffer descriptors in guest RAM that the
//! driver fills and the device consumes), a feature negotiation, a small configuration space
//! and an interrupt. The transport ([`mmio`], virtio-mmio version 2) is the register window
//! through which the guest's driver discovers the device, negotiates features, places the
//! queues and flips the status to `DRIVER_OK`; at that moment the transport hands the queues
//! to the device ([`VirtioDevice::activate`]).
//!
//! After activation the data path does not touch the transport: the driver's queue notify
//! (a write of the queue index at `QueueNotify`) is a KVM ioeventfd that makes the device's
//! queue [`EventFd`] readable in the VMM's event loop, and the device raises its interrupt
//! by setting a bit in [`Interrupt`]'s status and writing its eventfd, which KVM's irqfd
//! turns into a guest interrupt. The guest reads `InterruptStatus` and acknowledges.
//!
//! Each device lives in an `Arc<Mutex<_>>` shared by the transport (vCPU threads) and the
//! event loop (the device is its own [`MutEventSubscriber`]). [`VirtioMmioSlot`] packs that
//! for the builder.
//!
//! # For the builder
//!
//! Each device is built from its backend and wrapped with [`VirtioMmioSlot::new`]:
//! [`blk::Block::new`] (path, read-only), [`pmem::Pmem::new`] (path, read-only, a 2 MiB
//! aligned guest address; map [`pmem::Pmem::region`] as a KVM slot), [`vsock::Vsock::new`]
//! (guest CID, Unix socket path), [`fs::Fs::new`] (virtiofsd's socket, tag, request
//! queues) and [`net::Net::new`] (a tap from [`net::open_tap`], a MAC address). virtio-fs needs guest RAM that is fd-backed and shared (a memfd mapped
//! `MAP_SHARED`): vhost-user hands the backend that fd; activation fails otherwise.

pub mod blk;
pub mod fs;
pub mod mmio;
pub mod net;
pub mod pmem;
pub mod vsock;

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use event_manager::MutEventSubscriber;
use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::{MmioDeviceSlot, SharedDevice};

pub use mmio::MmioTransport;

/// Feature bit every modern (virtio 1.x) device offers and a modern driver must accept.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// The guest memory the devices work on.
pub type GuestMemory = GuestMemoryMmap;

/// The interrupt of one device: the status register the guest reads at `InterruptStatus`
/// and the eventfd that KVM's irqfd turns into the guest interrupt.
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    event: EventFd,
}

impl Interrupt {
    /// A new interrupt with nothing pending.
    pub fn new() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            status: AtomicU32::new(0),
            event: EventFd::new(libc::EFD_NONBLOCK)?,
        }))
    }

    /// The eventfd to register as KVM irqfd.
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// Tell the guest that a queue has used buffers.
    pub fn signal_used_queue(&self) {
        self.signal(VIRTIO_MMIO_INT_VRING);
    }

    /// Tell the guest that the configuration space changed.
    pub fn signal_config_change(&self) {
        self.signal(VIRTIO_MMIO_INT_CONFIG);
    }

    fn signal(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        if let Err(error) = self.event.write(1) {
            tracing::warn!(%error, "virtio: cannot raise the interrupt");
        }
    }

    /// The `InterruptStatus` register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// `InterruptACK`: clear the bits the guest handled.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// Clear everything (device reset).
    pub fn reset(&self) {
        self.status.store(0, Ordering::SeqCst);
    }
}

/// What a device gets when the driver sets `DRIVER_OK`.
pub struct Activation {
    /// The guest memory the queues and buffers live in.
    pub mem: GuestMemory,
    /// The queues, as the driver configured them, indexed by queue number.
    pub queues: Vec<Queue>,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
    /// The features the driver accepted.
    pub acked_features: u64,
}

impl Activation {
    /// The one queue of a single-queue device (blk, pmem), with the memory and the
    /// interrupt it is served with; a driver that set up another number of queues is
    /// refused.
    pub fn single_queue(self) -> Result<SingleQueue, ActivateError> {
        let got = self.queues.len();
        let Some(queue) = self.queues.into_iter().next().filter(|_| got == 1) else {
            return Err(ActivateError::QueueCount { expected: 1, got });
        };
        Ok(SingleQueue {
            mem: self.mem,
            queue,
            interrupt: self.interrupt,
        })
    }
}

/// What a started single-queue device works with until it is reset.
pub struct SingleQueue {
    /// The guest memory the queue and its buffers live in.
    pub mem: GuestMemory,
    /// The request queue.
    pub queue: Queue,
    /// The device's interrupt.
    pub interrupt: Arc<Interrupt>,
}

/// Why a device refused to start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver set up a different number of queues than the device has.
    #[error("the device needs {expected} queues, the driver set up {got}")]
    QueueCount {
        /// Queues the device has.
        expected: usize,
        /// Queues the transport handed over.
        got: usize,
    },
    /// The backend could not be started (socket, file, vhost-user backend).
    #[error("the device backend failed: {0}")]
    Backend(String),
}

/// A virtio device, as the transport sees it.
pub trait VirtioDevice: Send {
    /// The virtio device id (2 block, 19 vsock, 26 fs, 27 pmem).
    fn device_type(&self) -> u32;
    /// The maximum size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// One eventfd per queue: the driver's notifications (KVM ioeventfd at `QueueNotify`
    /// with `datamatch = index`, or the transport on an MMIO exit) make it readable.
    /// They live as long as the device.
    fn queue_events(&self) -> &[EventFd];
    /// The features the device offers (always including [`VIRTIO_F_VERSION_1`]).
    fn features(&self) -> u64;
    /// Read the device configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Write the device configuration space at `offset` (most devices ignore it).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Start the device with the driver's queues.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Stop the device and drop its queues and guest state (status written 0). The device
    /// can be activated again afterwards.
    fn reset(&mut self);
}

/// Copy the part of `config` at `offset` into `data`; bytes past the end read as zero.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if start >= config.len() {
        return;
    }
    let len = data.len().min(config.len() - start);
    data[..len].copy_from_slice(&config[start..start + len]);
}

/// A device and its transport, ready for the builder ([`MmioDeviceSlot`]).
pub struct VirtioMmioSlot {
    name: String,
    transport: Arc<Mutex<MmioTransport>>,
    queue_events: Vec<EventFd>,
    interrupt: Arc<Interrupt>,
    subscriber: Option<Arc<Mutex<dyn MutEventSubscriber + Send>>>,
}

impl VirtioMmioSlot {
    /// Wrap a device that handles its queues in the event loop.
    pub fn new<D>(name: &str, device: D, mem: GuestMemory) -> io::Result<Self>
    where
        D: VirtioDevice + MutEventSubscriber + 'static,
    {
        let device = Arc::new(Mutex::new(device));
        let subscriber: Arc<Mutex<dyn MutEventSubscriber + Send>> = device.clone();
        Self::build(name, device, Some(subscriber), mem)
    }

    /// Wrap a device with nothing to do in the VMM's event loop.
    pub fn without_subscriber<D>(name: &str, device: D, mem: GuestMemory) -> io::Result<Self>
    where
        D: VirtioDevice + 'static,
    {
        Self::build(name, Arc::new(Mutex::new(device)), None, mem)
    }

    fn build(
        name: &str,
        device: Arc<Mutex<dyn VirtioDevice>>,
        subscriber: Option<Arc<Mutex<dyn MutEventSubscriber + Send>>>,
        mem: GuestMemory,
    ) -> io::Result<Self> {
        let interrupt = Interrupt::new()?;
        let queue_events = {
            let guard = device.lock().unwrap_or_else(|p| p.into_inner());
            guard
                .queue_events()
                .iter()
                .map(EventFd::try_clone)
                .collect::<io::Result<Vec<_>>>()?
        };
        let transport = MmioTransport::new(device, mem, interrupt.clone());
        Ok(Self {
            name: name.to_owned(),
            transport: Arc::new(Mutex::new(transport)),
            queue_events,
            interrupt,
            subscriber,
        })
    }

    /// The transport itself (tests drive its registers directly).
    pub fn mmio(&self) -> &Arc<Mutex<MmioTransport>> {
        &self.transport
    }

    /// The device's interrupt.
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }
}

impl MmioDeviceSlot for VirtioMmioSlot {
    fn transport(&self) -> SharedDevice {
        self.transport.clone()
    }

    fn queue_events(&self) -> Vec<&EventFd> {
        self.queue_events.iter().collect()
    }

    fn interrupt_event(&self) -> &EventFd {
        self.interrupt.event()
    }

    fn subscriber(&self) -> Option<Arc<Mutex<dyn MutEventSubscriber + Send>>> {
        self.subscriber.clone()
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_status_bits_set_and_ack() {
        let irq = Interrupt::new().unwrap();
        irq.signal_used_queue();
        irq.signal_config_change();
        assert_eq!(irq.status(), 3);
        assert_eq!(irq.event().read().unwrap(), 2);
        irq.ack(1);
        assert_eq!(irq.status(), 2);
        irq.reset();
        assert_eq!(irq.status(), 0);
    }

    #[test]
    fn config_reads_past_the_end_are_zero() {
        let config = [1u8, 2, 3, 4];
        let mut data = [0xffu8; 4];
        read_config_bytes(&config, 2, &mut data);
        assert_eq!(data, [3, 4, 0, 0]);
        read_config_bytes(&config, 9, &mut data);
        assert_eq!(data, [0; 4]);
    }
}

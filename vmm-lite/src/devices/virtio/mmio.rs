//! The virtio-mmio transport, version 2 ("modern"), as the virtio 1.2 spec §4.2 defines it.
//!
//! The device sits in a 4 KiB window of guest physical memory. Registers are 32-bit and
//! little-endian; the device configuration space starts at 0x100 and may be read at any
//! width. A driver brings the device up in this order:
//!
//! 1. read `MagicValue` ("virt"), `Version` (2) and `DeviceID` (0 means no device);
//! 2. write `Status` 0 (reset), then `ACKNOWLEDGE`, then `DRIVER`;
//! 3. read the 64 feature bits in two words (`DeviceFeaturesSel` 0/1, `DeviceFeatures`),
//!    write the accepted ones the same way (`DriverFeaturesSel`, `DriverFeatures`), set
//!    `FEATURES_OK` and read `Status` back: the bit stays only if the device agrees;
//! 4. per queue: `QueueSel`, read `QueueNumMax`, write `QueueNum`, the three ring addresses
//!    (`QueueDesc`, `QueueDriver` = available ring, `QueueDevice` = used ring, low/high
//!    halves), then `QueueReady` 1;
//! 5. set `DRIVER_OK`: the transport hands the queues to the device.
//!
//! Then the driver writes a queue's index to `QueueNotify` when it added buffers (a KVM
//! ioeventfd normally catches that write without an exit; an exit lands here and signals the
//! same eventfd), and on an interrupt reads `InterruptStatus` (bit 0 used buffers, bit 1
//! configuration change) and writes the bits back to `InterruptACK`. Writing 0 to `Status`
//! resets the device.

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_queue::{Queue, QueueT};

use super::{Activation, GuestMemory, Interrupt, VIRTIO_F_VERSION_1, VirtioDevice};
use crate::devices::bus::BusDevice;

/// "virt" in little-endian.
pub const MMIO_MAGIC: u32 = 0x7472_6976;
/// The modern virtio-mmio version.
pub const MMIO_VERSION: u32 = 2;
/// Our vendor id: "HULL".
pub const MMIO_VENDOR: u32 = 0x4c4c_5548;
/// Size of the register window.
pub const MMIO_WINDOW: u64 = 0x1000;
/// Offset of the `QueueNotify` register (for ioeventfd registration).
pub const QUEUE_NOTIFY_OFFSET: u64 = 0x50;
/// Offset of the device configuration space.
pub const CONFIG_OFFSET: u64 = 0x100;

mod reg {
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_SEL: u64 = 0x0ac;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
}

/// The register file of one virtio-mmio device.
pub struct MmioTransport {
    device: Arc<Mutex<dyn VirtioDevice>>,
    mem: GuestMemory,
    interrupt: Arc<Interrupt>,
    queues: Vec<Queue>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    config_generation: u32,
    active: bool,
}

impl MmioTransport {
    /// The transport for `device`, whose queues will live in `mem`.
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        mem: GuestMemory,
        interrupt: Arc<Interrupt>,
    ) -> Self {
        let queues = {
            let guard = device.lock().unwrap_or_else(|p| p.into_inner());
            guard
                .queue_max_sizes()
                .iter()
                .map(|&max| {
                    // A size that is not a power of two is a bug of ours: the queue then
                    // reads as absent (QueueNumMax 0) rather than ending the VMM.
                    Queue::new(max).unwrap_or_else(|error| {
                        tracing::error!(%error, max, "virtio-mmio: invalid queue size");
                        Queue::default()
                    })
                })
                .collect()
        };
        Self {
            device,
            mem,
            interrupt,
            queues,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            config_generation: 0,
            active: false,
        }
    }

    fn device(&self) -> std::sync::MutexGuard<'_, dyn VirtioDevice + 'static> {
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `Status` register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Whether the device runs (the driver set `DRIVER_OK` and activation succeeded).
    pub fn is_active(&self) -> bool {
        self.active
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        if self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 {
            // Queue layout is fixed once the device runs.
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn read_register(&self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC => MMIO_MAGIC,
            reg::VERSION => MMIO_VERSION,
            reg::DEVICE_ID => self.device().device_type(),
            reg::VENDOR_ID => MMIO_VENDOR,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device().features() as u32,
                1 => (self.device().features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => self.status,
            // No shared memory regions: length -1 says so.
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH => u32::MAX,
            reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => u32::MAX,
            reg::CONFIG_GENERATION => self.config_generation,
            _ => {
                tracing::debug!(offset, "virtio-mmio: read of an unknown register");
                0
            }
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES => {
                if self.status & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
                    return;
                }
                match self.driver_features_sel {
                    0 => {
                        self.driver_features =
                            (self.driver_features & !0xffff_ffff) | u64::from(value)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                    }
                    _ => {}
                }
            }
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(value as u16);
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            reg::QUEUE_NOTIFY => self.notify(value),
            reg::INTERRUPT_ACK => self.interrupt.ack(value),
            reg::STATUS => self.write_status(value),
            reg::QUEUE_DESC_LOW => {
                if let Some(q) = self.selected_queue() {
                    q.set_desc_table_address(Some(value), None);
                }
            }
            reg::QUEUE_DESC_HIGH => {
                if let Some(q) = self.selected_queue() {
                    q.set_desc_table_address(None, Some(value));
                }
            }
            reg::QUEUE_DRIVER_LOW => {
                if let Some(q) = self.selected_queue() {
                    q.set_avail_ring_address(Some(value), None);
                }
            }
            reg::QUEUE_DRIVER_HIGH => {
                if let Some(q) = self.selected_queue() {
                    q.set_avail_ring_address(None, Some(value));
                }
            }
            reg::QUEUE_DEVICE_LOW => {
                if let Some(q) = self.selected_queue() {
                    q.set_used_ring_address(Some(value), None);
                }
            }
            reg::QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.selected_queue() {
                    q.set_used_ring_address(None, Some(value));
                }
            }
            reg::SHM_SEL => {}
            _ => tracing::debug!(offset, value, "virtio-mmio: write to an unknown register"),
        }
    }

    /// A queue notify that came as an MMIO exit: signal the queue's eventfd as the
    /// ioeventfd would have.
    fn notify(&self, index: u32) {
        let device = self.device();
        match device.queue_events().get(index as usize) {
            Some(event) => {
                if let Err(error) = event.write(1) {
                    tracing::warn!(%error, index, "virtio-mmio: cannot signal the queue");
                }
            }
            None => tracing::debug!(index, "virtio-mmio: notify of a queue that does not exist"),
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let newly_set = value & !self.status;
        let mut status = value;
        if newly_set & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
            let offered = self.device().features();
            let acked = self.driver_features;
            if acked & !offered != 0 || acked & VIRTIO_F_VERSION_1 == 0 {
                tracing::warn!(
                    offered,
                    acked,
                    "virtio-mmio: the driver accepted features the device does not offer, \
                     or not VERSION_1; FEATURES_OK refused"
                );
                status &= !VIRTIO_CONFIG_S_FEATURES_OK;
            }
        }
        self.status = status;
        if newly_set & VIRTIO_CONFIG_S_DRIVER_OK != 0
            && status & VIRTIO_CONFIG_S_FEATURES_OK != 0
            && status & VIRTIO_CONFIG_S_FAILED == 0
            && !self.active
        {
            self.activate();
        }
    }

    fn activate(&mut self) {
        let bad_queue = self
            .queues
            .iter()
            .position(|q| q.ready() && !q.is_valid(&self.mem));
        if let Some(index) = bad_queue {
            tracing::warn!(index, "virtio-mmio: the driver set up an invalid queue");
            self.needs_reset();
            return;
        }
        let queues = self
            .queues
            .iter()
            .map(|q| Queue::try_from(q.state()))
            .collect::<Result<Vec<_>, _>>();
        let queues = match queues {
            Ok(queues) => queues,
            Err(error) => {
                tracing::warn!(%error, "virtio-mmio: the driver set up an invalid queue");
                self.needs_reset();
                return;
            }
        };
        let activation = Activation {
            mem: self.mem.clone(),
            queues,
            interrupt: self.interrupt.clone(),
            acked_features: self.driver_features,
        };
        let result = self.device().activate(activation);
        match result {
            Ok(()) => self.active = true,
            Err(error) => {
                tracing::error!(%error, "virtio-mmio: the device did not start");
                self.needs_reset();
            }
        }
    }

    fn needs_reset(&mut self) {
        self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
        self.interrupt.signal_config_change();
    }

    fn reset(&mut self) {
        if self.active {
            self.device().reset();
            self.active = false;
        }
        for q in &mut self.queues {
            q.reset();
        }
        self.interrupt.reset();
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.status = 0;
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            self.device().read_config(offset - CONFIG_OFFSET, data);
            return;
        }
        if data.len() != 4 {
            tracing::debug!(
                offset,
                len = data.len(),
                "virtio-mmio: register read not 32-bit"
            );
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_register(offset).to_le_bytes());
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            self.device().write_config(offset - CONFIG_OFFSET, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            tracing::debug!(
                offset,
                len = data.len(),
                "virtio-mmio: register write not 32-bit"
            );
            return;
        };
        self.write_register(offset, u32::from_le_bytes(bytes));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::devices::virtio::{ActivateError, read_config_bytes};
    use virtio_bindings::virtio_config::{VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER};
    use vm_memory::GuestAddress;
    use vmm_sys_util::eventfd::EventFd;

    /// A device that records what the transport did to it.
    pub struct Dummy {
        events: Vec<EventFd>,
        pub activated: Option<(usize, u64)>,
        pub resets: usize,
        pub fail_activate: bool,
    }

    impl Dummy {
        pub fn new() -> Self {
            Self {
                events: vec![EventFd::new(libc::EFD_NONBLOCK).unwrap()],
                activated: None,
                resets: 0,
                fail_activate: false,
            }
        }
    }

    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            42
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn queue_events(&self) -> &[EventFd] {
            &self.events
        }
        fn features(&self) -> u64 {
            VIRTIO_F_VERSION_1 | 0b101
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            read_config_bytes(&[0xa, 0xb, 0xc, 0xd], offset, data);
        }
        fn activate(&mut self, a: Activation) -> Result<(), ActivateError> {
            if self.fail_activate {
                return Err(ActivateError::Backend("test".into()));
            }
            self.activated = Some((a.queues.len(), a.acked_features));
            Ok(())
        }
        fn reset(&mut self) {
            self.resets += 1;
            self.activated = None;
        }
    }

    pub fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    fn rd(t: &mut MmioTransport, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(0, offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn wr(t: &mut MmioTransport, offset: u64, v: u32) {
        t.write(0, offset, &v.to_le_bytes());
    }

    fn setup(dev: Arc<Mutex<Dummy>>) -> MmioTransport {
        MmioTransport::new(dev, mem(), Interrupt::new().unwrap())
    }

    /// Bring a transport to DRIVER_OK as a driver would, accepting `features`.
    fn bring_up(t: &mut MmioTransport, features: u64) {
        wr(t, reg::STATUS, 0);
        wr(t, reg::STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        wr(
            t,
            reg::STATUS,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER,
        );
        wr(t, reg::DRIVER_FEATURES_SEL, 0);
        wr(t, reg::DRIVER_FEATURES, features as u32);
        wr(t, reg::DRIVER_FEATURES_SEL, 1);
        wr(t, reg::DRIVER_FEATURES, (features >> 32) as u32);
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
        wr(t, reg::STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
        wr(t, reg::QUEUE_SEL, 0);
        wr(t, reg::QUEUE_NUM, 16);
        wr(t, reg::QUEUE_DESC_LOW, 0x1000);
        wr(t, reg::QUEUE_DESC_HIGH, 0);
        wr(t, reg::QUEUE_DRIVER_LOW, 0x2000);
        wr(t, reg::QUEUE_DEVICE_LOW, 0x3000);
        wr(t, reg::QUEUE_READY, 1);
        let s = rd(t, reg::STATUS);
        wr(t, reg::STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
    }

    #[test]
    fn identity_registers() {
        let dev = Arc::new(Mutex::new(Dummy::new()));
        let mut t = setup(dev);
        assert_eq!(rd(&mut t, reg::MAGIC), 0x7472_6976);
        assert_eq!(rd(&mut t, reg::VERSION), 2);
        assert_eq!(rd(&mut t, reg::DEVICE_ID), 42);
        assert_eq!(rd(&mut t, reg::VENDOR_ID), MMIO_VENDOR);
        wr(&mut t, reg::DEVICE_FEATURES_SEL, 0);
        assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 0b101);
        wr(&mut t, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 1);
        wr(&mut t, reg::DEVICE_FEATURES_SEL, 2);
        assert_eq!(rd(&mut t, reg::DEVICE_FEATURES), 0);
        wr(&mut t, reg::QUEUE_SEL, 0);
        assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 16);
        wr(&mut t, reg::QUEUE_SEL, 1);
        assert_eq!(rd(&mut t, reg::QUEUE_NUM_MAX), 0);
        assert_eq!(rd(&mut t, reg::SHM_LEN_LOW), u32::MAX);
        // The config space at any width.
        let mut b = [0u8; 2];
        t.read(0, CONFIG_OFFSET + 1, &mut b);
        assert_eq!(b, [0xb, 0xc]);
        // A register read that is not 32 bits wide reads zero.
        let mut b = [0xffu8; 2];
        t.read(0, reg::MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
    }

    #[test]
    fn activation_hands_over_queues_and_features() {
        let dev = Arc::new(Mutex::new(Dummy::new()));
        let mut t = setup(dev.clone());
        bring_up(&mut t, VIRTIO_F_VERSION_1 | 1);
        assert!(t.is_active());
        assert_eq!(
            dev.lock().unwrap().activated,
            Some((1, VIRTIO_F_VERSION_1 | 1))
        );
        assert_eq!(rd(&mut t, reg::STATUS) & VIRTIO_CONFIG_S_DRIVER_OK, 4);
        assert_eq!(rd(&mut t, reg::QUEUE_READY), 1);
        // Queue setup is frozen while running.
        wr(&mut t, reg::QUEUE_READY, 0);
        assert_eq!(rd(&mut t, reg::QUEUE_READY), 1);
        // Reset stops the device and clears the registers.
        wr(&mut t, reg::STATUS, 0);
        assert!(!t.is_active());
        assert_eq!(dev.lock().unwrap().resets, 1);
        assert_eq!(rd(&mut t, reg::STATUS), 0);
        assert_eq!(rd(&mut t, reg::QUEUE_READY), 0);
        // And it comes up again.
        bring_up(&mut t, VIRTIO_F_VERSION_1);
        assert!(t.is_active());
    }

    #[test]
    fn features_ok_refused_for_unknown_or_legacy_features() {
        let dev = Arc::new(Mutex::new(Dummy::new()));
        let mut t = setup(dev.clone());
        bring_up(&mut t, VIRTIO_F_VERSION_1 | 0b10);
        assert_eq!(rd(&mut t, reg::STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
        assert!(!t.is_active());
        bring_up(&mut t, 1);
        assert_eq!(rd(&mut t, reg::STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
        assert!(dev.lock().unwrap().activated.is_none());
    }

    #[test]
    fn failed_activation_sets_needs_reset_and_a_config_interrupt() {
        let dev = Arc::new(Mutex::new(Dummy::new()));
        dev.lock().unwrap().fail_activate = true;
        let mut t = setup(dev);
        bring_up(&mut t, VIRTIO_F_VERSION_1);
        assert!(!t.is_active());
        assert_ne!(rd(&mut t, reg::STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, 0);
        assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), 2);
        wr(&mut t, reg::INTERRUPT_ACK, 2);
        assert_eq!(rd(&mut t, reg::INTERRUPT_STATUS), 0);
    }

    #[test]
    fn an_invalid_queue_is_not_activated() {
        let dev = Arc::new(Mutex::new(Dummy::new()));
        let mut t = setup(dev.clone());
        wr(&mut t, reg::QUEUE_SEL, 0);
        // Rings outside guest memory.
        wr(&mut t, reg::QUEUE_DESC_HIGH, 0x10);
        bring_up_keeping_addresses(&mut t);
        assert!(!t.is_active());
        assert!(dev.lock().unwrap().activated.is_none());
    }

    fn bring_up_keeping_addresses(t: &mut MmioTransport) {
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
        wr(t, reg::STATUS, s);
        wr(t, reg::DRIVER_FEATURES_SEL, 1);
        wr(t, reg::DRIVER_FEATURES, 1);
        wr(t, reg::STATUS, s | VIRTIO_CONFIG_S_FEATURES_OK);
        wr(t, reg::QUEUE_NUM, 16);
        wr(t, reg::QUEUE_READY, 1);
        wr(
            t,
            reg::STATUS,
            s | VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK,
        );
    }

    #[test]
    fn notify_by_exit_signals_the_queue_event() {
        let dev = Arc::new(Mutex::new(Dummy::new()));
        let mut t = setup(dev.clone());
        wr(&mut t, reg::QUEUE_NOTIFY, 0);
        wr(&mut t, reg::QUEUE_NOTIFY, 7); // no such queue: ignored
        assert_eq!(dev.lock().unwrap().events[0].read().unwrap(), 1);
    }
}

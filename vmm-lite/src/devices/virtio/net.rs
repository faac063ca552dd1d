//! virtio-net (device id 1) on a tap device.
//!
//! Two queues: 0 receive (the driver posts empty buffers; the device fills each with one
//! frame), 1 transmit. Every frame, both ways, starts with the 12-byte `virtio_net_hdr_v1`
//! (flags, GSO type and sizes, checksum offsets, `num_buffers`). The tap is opened with
//! `IFF_VNET_HDR` and a 12-byte header size, so the kernel reads and writes exactly that
//! layout and frames pass through unchanged; no offloads are offered, so the header is all
//! zeroes but `num_buffers`, which the device sets to 1 (one buffer per frame).
//!
//! The device offers its MAC address and a link status (always up). A frame the guest has
//! no buffer for waits in the device, and the tap is not read again until a buffer comes:
//! the kernel's tap queue, not the device, drops when the guest is slow.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{
    ActivateError, Activation, GuestMemory, Interrupt, VIRTIO_F_VERSION_1, VirtioDevice,
    read_config_bytes,
};

/// Length of `virtio_net_hdr_v1`.
pub const VNET_HDR_LEN: usize = 12;
const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
/// Largest frame read from the tap (64 KiB plus the header).
const MAX_FRAME: usize = 65536 + VNET_HDR_LEN;

/// Why a network device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// /dev/net/tun cannot be opened or the tap cannot be created.
    #[error("cannot create tap device {name:?}: {what}: {source}")]
    Tap {
        /// The requested interface name.
        name: String,
        /// What failed.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The interface name does not fit.
    #[error("tap interface name {0:?} is empty or longer than 15 bytes")]
    BadName(String),
    /// An eventfd could not be created.
    #[error("cannot create an eventfd: {0}")]
    EventFd(io::Error),
}

/// Open (or create) tap `name` for virtio-net: non-blocking, no packet info, 12-byte vnet
/// headers, no offloads. Returns the fd and the interface's actual name (a `%d` in `name`
/// is filled in by the kernel).
pub fn open_tap(name: &str) -> Result<(OwnedFd, String), NetError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(NetError::BadName(name.to_owned()));
    }
    let err = |what| {
        let name = name.to_owned();
        move |source| NetError::Tap { name, what, source }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(err("opening /dev/net/tun"))?;
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads and writes the ifreq we own, for the fd we own.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(err("TUNSETIFF")(io::Error::last_os_error()));
    }
    let hdr_len = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads the int we pass by pointer.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) } < 0 {
        return Err(err("TUNSETVNETHDRSZ")(io::Error::last_os_error()));
    }
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETOFFLOAD, 0 as libc::c_ulong) } < 0 {
        return Err(err("TUNSETOFFLOAD")(io::Error::last_os_error()));
    }
    let actual: String = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    Ok((file.into(), actual))
}

struct Active {
    mem: GuestMemory,
    queues: Vec<Queue>,
    interrupt: Arc<Interrupt>,
}

/// A virtio-net device on a frame-oriented fd (a tap; tests use a datagram socket).
pub struct Net {
    tap: File,
    config: [u8; 8],
    queue_events: Vec<EventFd>,
    /// The tap may have frames (edge-triggered readiness seen, not yet drained).
    readable: bool,
    /// A frame read from the tap that waits for a receive buffer.
    pending: Option<Vec<u8>>,
    active: Option<Active>,
}

impl Net {
    /// A device on `tap` (frames with 12-byte vnet headers) with MAC address `mac`.
    pub fn new(tap: OwnedFd, mac: [u8; 6]) -> Result<Self, NetError> {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac);
        config[6..].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        let event = || EventFd::new(libc::EFD_NONBLOCK).map_err(NetError::EventFd);
        Ok(Self {
            tap: File::from(tap),
            config,
            queue_events: vec![event()?, event()?],
            readable: true,
            pending: None,
            active: None,
        })
    }

    /// Deliver tap frames into the guest's receive buffers while both last.
    fn pump_rx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        let mut used = false;
        loop {
            let frame = match self.pending.take() {
                Some(frame) => frame,
                None if self.readable => {
                    let mut buf = vec![0u8; MAX_FRAME];
                    match self.tap.read(&mut buf) {
                        Ok(n) if n >= VNET_HDR_LEN => {
                            buf.truncate(n);
                            buf[10..12].copy_from_slice(&1u16.to_le_bytes()); // num_buffers
                            buf
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            if e.kind() != io::ErrorKind::WouldBlock {
                                tracing::warn!(error = %e, "virtio-net: tap read failed");
                            }
                            self.readable = false;
                            break;
                        }
                    }
                }
                None => break,
            };
            let rx = &mut active.queues[RX];
            let Some(chain) = rx.pop_descriptor_chain(&mem) else {
                self.pending = Some(frame);
                break;
            };
            let head = chain.head_index();
            let written = match chain.writer(&mem) {
                Ok(mut w) if w.available_bytes() >= frame.len() => {
                    w.write_all(&frame).map(|()| frame.len()).unwrap_or(0)
                }
                _ => {
                    tracing::debug!(
                        len = frame.len(),
                        "virtio-net: frame larger than the buffer"
                    );
                    0
                }
            };
            if written == 0 {
                // Dropped: give the buffer back for the next frame.
                rx.go_to_previous_position();
                continue;
            }
            if let Err(error) = rx.add_used(&mem, head, written as u32) {
                tracing::error!(%error, "virtio-net: cannot return a receive buffer");
            }
            used = true;
        }
        if used {
            active.interrupt.signal_used_queue();
        }
    }

    /// Send every frame the guest queued.
    fn process_tx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        let mut used = false;
        while let Some(chain) = active.queues[TX].pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            let mut frame = Vec::new();
            match chain.reader(&mem).map(|mut r| r.read_to_end(&mut frame)) {
                Ok(Ok(_)) if frame.len() >= VNET_HDR_LEN => {
                    // The tap takes a frame per write; a full tap queue drops, like a wire.
                    if let Err(e) = self.tap.write(&frame) {
                        tracing::debug!(error = %e, "virtio-net: frame dropped");
                    }
                }
                _ => tracing::debug!("virtio-net: a malformed transmit chain"),
            }
            if let Err(error) = active.queues[TX].add_used(&mem, head, 0) {
                tracing::error!(%error, "virtio-net: cannot return a transmit buffer");
            }
            used = true;
        }
        if used {
            active.interrupt.signal_used_queue();
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 2]
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | 1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if activation.queues.len() != 2 {
            return Err(ActivateError::QueueCount {
                expected: 2,
                got: activation.queues.len(),
            });
        }
        self.active = Some(Active {
            mem: activation.mem,
            queues: activation.queues,
            interrupt: activation.interrupt,
        });
        self.readable = true;
        self.process_tx();
        self.pump_rx();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.pending = None;
    }
}

impl MutEventSubscriber for Net {
    fn init(&mut self, ops: &mut EventOps) {
        for event in &self.queue_events {
            if let Err(error) = ops.add(Events::new(event, EventSet::IN)) {
                tracing::error!(?error, "virtio-net: cannot watch a queue");
            }
        }
        if let Err(error) = ops.add(Events::new(
            &self.tap,
            EventSet::IN | EventSet::EDGE_TRIGGERED,
        )) {
            tracing::error!(?error, "virtio-net: cannot watch the tap");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.queue_events[RX].as_raw_fd() {
            let _ = self.queue_events[RX].read();
        } else if fd == self.queue_events[TX].as_raw_fd() {
            let _ = self.queue_events[TX].read();
            self.process_tx();
        } else if fd == self.tap.as_raw_fd() {
            self.readable = true;
        }
        self.pump_rx();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Mutex;
    use std::time::Duration;

    use event_manager::{EventManager, SubscriberOps};
    use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
    use vm_memory::{Address, Bytes, GuestAddress};

    /// One split ring in guest memory, the driver's side (just what these tests need).
    struct Ring {
        base: u64,
        next: u16,
    }

    impl Ring {
        fn queue(&self) -> Queue {
            let mut q = Queue::new(QUEUE_SIZE).unwrap();
            q.set_size(16);
            q.set_desc_table_address(Some(self.base as u32), Some(0));
            q.set_avail_ring_address(Some(self.base as u32 + 0x1000), Some(0));
            q.set_used_ring_address(Some(self.base as u32 + 0x2000), Some(0));
            q.set_ready(true);
            q
        }

        fn offer(&mut self, mem: &GuestMemory, addr: u64, len: u32, writable: bool) {
            let d = GuestAddress(self.base + 16 * u64::from(self.next));
            mem.write_obj(addr, d).unwrap();
            mem.write_obj(len, d.unchecked_add(8)).unwrap();
            let flags = if writable {
                VRING_DESC_F_WRITE as u16
            } else {
                0
            };
            mem.write_obj(flags, d.unchecked_add(12)).unwrap();
            let slot = GuestAddress(self.base + 0x1000 + 4 + 2 * u64::from(self.next));
            mem.write_obj(self.next, slot).unwrap();
            self.next += 1;
            mem.write_obj(self.next, GuestAddress(self.base + 0x1002))
                .unwrap();
        }

        fn used(&self, mem: &GuestMemory, i: u64) -> (u16, u32) {
            let idx = mem.read_obj(GuestAddress(self.base + 0x2002)).unwrap();
            let len = mem
                .read_obj(GuestAddress(self.base + 0x2004 + 8 * i + 4))
                .unwrap();
            (idx, len)
        }
    }

    /// The device, its event loop, the other end of its "tap", guest memory, the rx and
    /// tx rings and the interrupt.
    type Setup = (
        Arc<Mutex<Net>>,
        EventManager<Arc<Mutex<Net>>>,
        UnixDatagram,
        GuestMemory,
        Ring,
        Ring,
        Arc<Interrupt>,
    );

    fn setup() -> Setup {
        let (ours, wire) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        wire.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let net = Arc::new(Mutex::new(Net::new(OwnedFd::from(ours), mac).unwrap()));
        let mut em = EventManager::new().unwrap();
        em.add_subscriber(net.clone());
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let (rx, tx) = (
            Ring {
                base: 0x1_0000,
                next: 0,
            },
            Ring {
                base: 0x2_0000,
                next: 0,
            },
        );
        let interrupt = Interrupt::new().unwrap();
        net.lock()
            .unwrap()
            .activate(Activation {
                mem: mem.clone(),
                queues: vec![rx.queue(), tx.queue()],
                interrupt: interrupt.clone(),
                acked_features: VIRTIO_F_VERSION_1,
            })
            .unwrap();
        (net, em, wire, mem, rx, tx, interrupt)
    }

    #[test]
    fn config_names_the_mac_and_a_link_that_is_up() {
        let (net, ..) = setup();
        let net = net.lock().unwrap();
        let mut config = [0u8; 8];
        net.read_config(0, &mut config);
        assert_eq!(config, [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0]);
        assert_eq!(net.device_type(), 1);
        assert_ne!(net.features() & (1 << VIRTIO_NET_F_MAC), 0);
    }

    #[test]
    fn guest_frames_reach_the_tap_whole() {
        let (net, mut em, wire, mem, _rx, mut tx, interrupt) = setup();
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend_from_slice(b"an ethernet frame");
        mem.write_slice(&frame, GuestAddress(0x5_0000)).unwrap();
        tx.offer(&mem, 0x5_0000, frame.len() as u32, false);
        net.lock().unwrap().queue_events[TX].write(1).unwrap();
        em.run_with_timeout(1000).unwrap();
        let mut got = [0u8; 128];
        let n = wire.recv(&mut got).unwrap();
        assert_eq!(&got[..n], &frame[..]);
        assert_eq!(tx.used(&mem, 0).0, 1);
        assert_eq!(interrupt.status(), 1);
    }

    #[test]
    fn tap_frames_wait_for_a_buffer_then_arrive_with_num_buffers_1() {
        let (net, mut em, wire, mem, mut rx, _tx, interrupt) = setup();
        let mut frame = vec![0u8; VNET_HDR_LEN];
        frame.extend_from_slice(b"from the wire");
        wire.send(&frame).unwrap();
        em.run_with_timeout(1000).unwrap();
        assert_eq!(rx.used(&mem, 0).0, 0, "no buffer yet");
        assert!(net.lock().unwrap().pending.is_some());
        rx.offer(&mem, 0x6_0000, 1526, true);
        net.lock().unwrap().queue_events[RX].write(1).unwrap();
        em.run_with_timeout(1000).unwrap();
        let (idx, len) = rx.used(&mem, 0);
        assert_eq!((idx, len as usize), (1, frame.len()));
        let mut got = vec![0u8; frame.len()];
        mem.read_slice(&mut got, GuestAddress(0x6_0000)).unwrap();
        assert_eq!(&got[VNET_HDR_LEN..], b"from the wire");
        assert_eq!(&got[10..12], &1u16.to_le_bytes());
        assert_eq!(interrupt.status(), 1);
        // A frame too large for the buffer is dropped and the buffer stays for the next.
        wire.send(&vec![0u8; 3000]).unwrap();
        wire.send(&frame).unwrap();
        rx.offer(&mem, 0x7_0000, 1526, true);
        net.lock().unwrap().queue_events[RX].write(1).unwrap();
        em.run_with_timeout(1000).unwrap();
        assert_eq!(rx.used(&mem, 1), (2, frame.len() as u32));
    }

    #[test]
    fn a_tap_opens_with_vnet_headers() {
        // Creating a tap needs /dev/net/tun and CAP_NET_ADMIN; fail (never skip) naming them.
        let (fd, name) = open_tap("vmmlt%d")
            .unwrap_or_else(|e| panic!("this test needs /dev/net/tun and CAP_NET_ADMIN: {e}"));
        assert!(name.starts_with("vmmlt"), "{name}");
        assert!(std::path::Path::new(&format!("/sys/class/net/{name}")).exists());
        assert!(Net::new(fd, [2, 0, 0, 0, 0, 1]).is_ok());
        assert!(matches!(open_tap(""), Err(NetError::BadName(_))));
        assert!(matches!(
            open_tap(&"x".repeat(16)),
            Err(NetError::BadName(_))
        ));
    }
}

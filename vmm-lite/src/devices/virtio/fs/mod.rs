//! virtio-fs (device id 26) served by a vhost-user backend (virtiofsd).
//!
//! The VMM only speaks the control plane: at start it connects to the backend's socket,
//! takes ownership and negotiates features (virtio and vhost-user protocol features); when
//! the guest driver sets `DRIVER_OK` it sends the guest memory table (the memfd of guest
//! RAM, which therefore must be shared and fd-backed), and per queue its size, the ring
//! addresses (in this process's address space, which the backend maps through the table),
//! base 0, the kick eventfd (the queue's KVM ioeventfd: guest notifies reach the backend
//! with no VMM involvement) and a call eventfd. The backend reads and writes the rings and
//! guest buffers itself.
//!
//! virtio-mmio's interrupt has a status register the guest reads first, so the backend's
//! call cannot be the irqfd itself: the event loop takes each call, sets the used-buffer
//! bit and raises the irqfd.
//!
//! Queues: 0 is the high-priority queue, 1.. the request queues. The configuration space is
//! the tag (36 bytes, NUL-padded) and the number of request queues (u32).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::QueueT;
use vm_memory::{GuestAddress, GuestMemoryBackend};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::{ExitReason, VmExit};

use super::{
    ActivateError, Activation, Interrupt, VIRTIO_F_VERSION_1, VirtioDevice, read_config_bytes,
};

/// The virtio device id of virtio-fs.
pub const VIRTIO_ID_FS: u32 = 26;
/// Length of the tag field in the configuration space.
pub const TAG_LEN: usize = 36;
const QUEUE_SIZE: u16 = 1024;
/// Feature bits that concern the vhost-user connection, never the guest.
const VHOST_ONLY_FEATURES: u64 =
    VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() | (1 << 26/* VHOST_F_LOG_ALL */);

/// Why the fs device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag is empty or longer than 36 bytes.
    #[error("the virtio-fs tag {0:?} must be 1 to 36 bytes")]
    BadTag(String),
    /// Zero request queues.
    #[error("virtio-fs needs at least one request queue")]
    NoQueues,
    /// The backend socket cannot be reached or spoke unexpectedly.
    #[error("vhost-user backend at {path}: {what}: {source}")]
    Backend {
        /// The socket.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: vhost::Error,
    },
    /// The backend lacks what we need.
    #[error("vhost-user backend at {path}: {what}")]
    Unsupported {
        /// The socket.
        path: PathBuf,
        /// What is missing.
        what: String,
    },
    /// An eventfd could not be created.
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
}

/// A virtio-fs device whose backend is a vhost-user daemon.
pub struct Fs {
    socket: PathBuf,
    frontend: Frontend,
    /// Virtio features the backend offers (vhost-only bits removed).
    features: u64,
    /// The backend negotiated vhost-user protocol features.
    protocol: bool,
    queue_sizes: Vec<u16>,
    queue_events: Vec<EventFd>,
    call_events: Vec<EventFd>,
    config: Vec<u8>,
    /// Queues handed to the backend, so a reset can stop them.
    started: Vec<usize>,
    interrupt: Option<Arc<Interrupt>>,
    exit: Option<VmExit>,
}

impl Fs {
    /// Connect to the backend at `socket` for a share named `tag` with `request_queues`
    /// request queues.
    pub fn new(socket: &Path, tag: &str, request_queues: u16) -> Result<Self, FsError> {
        if tag.is_empty() || tag.len() > TAG_LEN {
            return Err(FsError::BadTag(tag.to_owned()));
        }
        if request_queues == 0 {
            return Err(FsError::NoQueues);
        }
        let queues = usize::from(request_queues) + 1;
        let backend_err = |what| {
            let path = socket.to_owned();
            move |source| FsError::Backend { path, what, source }
        };
        let mut frontend =
            Frontend::connect(socket, queues as u64).map_err(backend_err("connecting"))?;
        let (features, protocol) = Self::handshake(socket, &mut frontend, queues)?;
        let mut config = vec![0u8; TAG_LEN + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[TAG_LEN..].copy_from_slice(&u32::from(request_queues).to_le_bytes());
        let event = || EventFd::new(libc::EFD_NONBLOCK).map_err(FsError::EventFd);
        Ok(Self {
            socket: socket.to_owned(),
            frontend,
            features,
            protocol,
            queue_sizes: vec![QUEUE_SIZE; queues],
            queue_events: (0..queues).map(|_| event()).collect::<Result<_, _>>()?,
            call_events: (0..queues).map(|_| event()).collect::<Result<_, _>>()?,
            config,
            started: Vec::new(),
            interrupt: None,
            exit: None,
        })
    }

    /// End the VM with a device error if the backend hangs up (virtiofsd died: the guest's
    /// file system would hang otherwise).
    pub fn exit_on_backend_loss(&mut self, exit: VmExit) {
        self.exit = Some(exit);
    }

    /// SET_OWNER, features, protocol features, queue count. Returns the guest-visible
    /// features and whether protocol features are in use.
    fn handshake(
        socket: &Path,
        frontend: &mut Frontend,
        queues: usize,
    ) -> Result<(u64, bool), FsError> {
        let backend_err = |what| {
            let path = socket.to_owned();
            move |source| FsError::Backend { path, what, source }
        };
        frontend.set_owner().map_err(backend_err("SET_OWNER"))?;
        let offered = frontend
            .get_features()
            .map_err(backend_err("GET_FEATURES"))?;
        if offered & VIRTIO_F_VERSION_1 == 0 {
            return Err(FsError::Unsupported {
                path: socket.to_owned(),
                what: "it does not offer VIRTIO_F_VERSION_1".into(),
            });
        }
        let protocol = offered & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        if protocol {
            let available = frontend
                .get_protocol_features()
                .map_err(backend_err("GET_PROTOCOL_FEATURES"))?;
            let wanted =
                available & (VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::REPLY_ACK);
            frontend
                .set_protocol_features(wanted)
                .map_err(backend_err("SET_PROTOCOL_FEATURES"))?;
            if wanted.contains(VhostUserProtocolFeatures::MQ) {
                let max = frontend
                    .get_queue_num()
                    .map_err(backend_err("GET_QUEUE_NUM"))?;
                if max < queues as u64 {
                    return Err(FsError::Unsupported {
                        path: socket.to_owned(),
                        what: format!("it serves {max} queues, {queues} are needed"),
                    });
                }
            }
        }
        Ok((offered & !VHOST_ONLY_FEATURES, protocol))
    }

    fn start(&mut self, a: &Activation) -> Result<(), vhost::Error> {
        let mut features = a.acked_features;
        if self.protocol {
            features |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        }
        self.frontend.set_features(features)?;
        let regions = a
            .mem
            .iter()
            .map(VhostUserMemoryRegionInfo::from_guest_region)
            .collect::<Result<Vec<_>, _>>()?;
        self.frontend.set_mem_table(&regions)?;
        for (index, queue) in a.queues.iter().enumerate() {
            if !queue.ready() {
                continue;
            }
            let hva = |gpa: u64| {
                a.mem
                    .get_host_address(GuestAddress(gpa))
                    .map(|p| p as u64)
                    .map_err(|_| vhost::Error::InvalidGuestMemory)
            };
            self.frontend.set_vring_num(index, queue.size())?;
            self.frontend.set_vring_addr(
                index,
                &VringConfigData {
                    queue_max_size: queue.max_size(),
                    queue_size: queue.size(),
                    flags: 0,
                    desc_table_addr: hva(queue.desc_table())?,
                    used_ring_addr: hva(queue.used_ring())?,
                    avail_ring_addr: hva(queue.avail_ring())?,
                    log_addr: None,
                },
            )?;
            self.frontend.set_vring_base(index, 0)?;
            self.frontend
                .set_vring_call(index, &self.call_events[index])?;
            self.frontend
                .set_vring_kick(index, &self.queue_events[index])?;
            if self.protocol {
                self.frontend.set_vring_enable(index, true)?;
            }
            self.started.push(index);
        }
        Ok(())
    }

    /// A backend call: tell the guest.
    fn backend_called(&mut self, index: usize) {
        let _ = self.call_events[index].read();
        if let Some(interrupt) = &self.interrupt {
            interrupt.signal_used_queue();
        }
    }
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        if activation.queues.len() != self.queue_sizes.len() {
            return Err(ActivateError::QueueCount {
                expected: self.queue_sizes.len(),
                got: activation.queues.len(),
            });
        }
        if activation.mem.iter().any(|r| r.file_offset().is_none()) {
            return Err(ActivateError::Backend(
                "guest memory is not fd-backed: vhost-user needs shared (memfd) memory".into(),
            ));
        }
        self.start(&activation).map_err(|e| {
            ActivateError::Backend(format!(
                "vhost-user backend at {}: {e}",
                self.socket.display()
            ))
        })?;
        self.interrupt = Some(activation.interrupt);
        Ok(())
    }

    fn reset(&mut self) {
        self.interrupt = None;
        // GET_VRING_BASE stops a ring; the backend keeps its state for a later start.
        for index in std::mem::take(&mut self.started) {
            if let Err(error) = self.frontend.get_vring_base(index) {
                tracing::warn!(%error, index, "virtio-fs: cannot stop a backend ring");
            }
        }
    }
}

impl MutEventSubscriber for Fs {
    fn init(&mut self, ops: &mut EventOps) {
        // Only the hang-up: replies on this socket belong to the frontend's own reads.
        let hangup = EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        if let Err(error) = ops.add(Events::new_raw(self.frontend.as_raw_fd(), hangup)) {
            tracing::error!(?error, "virtio-fs: cannot watch the backend socket");
        }
        for call in &self.call_events {
            if let Err(error) = ops.add(Events::new(call, EventSet::IN)) {
                tracing::error!(?error, "virtio-fs: cannot watch a backend call");
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if let Some(index) = self
            .call_events
            .iter()
            .position(|e| e.as_raw_fd() == events.fd())
        {
            self.backend_called(index);
        } else if events.fd() == self.frontend.as_raw_fd() {
            let message = format!(
                "virtio-fs: the vhost-user backend at {} hung up",
                self.socket.display()
            );
            tracing::error!("{message}");
            if let Some(exit) = &self.exit {
                exit.request(ExitReason::DeviceError(message));
            }
            let _ = ops.remove(Events::empty_raw(self.frontend.as_raw_fd()));
        }
    }
}

#[cfg(any(test, feature = "payload"))]
pub mod fake_backend;
#[cfg(test)]
mod tests;

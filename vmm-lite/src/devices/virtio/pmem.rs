//! virtio-pmem (device id 27): a file mapped into guest physical memory.
//!
//! The guest sees the file as persistent memory at the address the configuration space
//! names (`start` u64, `size` u64); it reads and, when writable, writes it directly (DAX),
//! with no exit. The only queue carries flush requests (`type` u32 = 0, answered with `ret`
//! u32 = 0 on success): the device fsyncs the file.
//!
//! The builder maps [`Pmem::region`] into the guest as a KVM memory slot (read-only images
//! with `KVM_MEM_READONLY`: a guest write then exits as MMIO and is dropped). Linux's pmem
//! driver needs the size to be a multiple of 2 MiB (error -95 otherwise), so the device
//! refuses other sizes up front, as it refuses a guest address that is not 2 MiB aligned.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::QueueT;
use vm_memory::{FileOffset, GuestAddress, MmapRegion};
use vmm_sys_util::eventfd::EventFd;

use super::{
    ActivateError, Activation, SingleQueue, VIRTIO_F_VERSION_1, VirtioDevice, read_config_bytes,
};

/// The virtio device id of virtio-pmem.
pub const VIRTIO_ID_PMEM: u32 = 27;
/// Required alignment of the region's size and guest address.
pub const PMEM_ALIGN: u64 = 2 << 20;
const QUEUE_SIZE: u16 = 256;
const REQ_TYPE_FLUSH: u32 = 0;

/// Why a pmem device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PmemError {
    /// The image cannot be opened.
    #[error("cannot open the pmem image {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The image size is zero or not a multiple of 2 MiB.
    #[error(
        "the pmem image {path} is {size} bytes: it must be a non-empty multiple of 2 MiB \
         (Linux's pmem driver refuses other sizes)"
    )]
    BadSize {
        /// The image.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The guest address is not 2 MiB aligned.
    #[error("the pmem guest address {0:#x} is not 2 MiB aligned")]
    Unaligned(u64),
    /// mmap failed.
    #[error("cannot map the pmem image {path}: {source}")]
    Map {
        /// The image.
        path: PathBuf,
        /// The cause.
        source: vm_memory::mmap::MmapRegionError,
    },
    /// An eventfd could not be created.
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
}

/// Where the builder must map the image in the guest.
#[derive(Debug, Clone, Copy)]
pub struct PmemRegion {
    /// Guest physical address.
    pub guest_address: GuestAddress,
    /// Length in bytes (a multiple of 2 MiB).
    pub size: u64,
    /// Host virtual address of the mapping (`userspace_addr` of the KVM memory slot).
    pub host_address: u64,
    /// Map the slot with `KVM_MEM_READONLY`.
    pub read_only: bool,
}

/// A virtio-pmem device.
pub struct Pmem {
    file: File,
    mapping: MmapRegion,
    region: PmemRegion,
    config: [u8; 16],
    queue_events: Vec<EventFd>,
    active: Option<SingleQueue>,
}

impl Pmem {
    /// Map `path` (shared; read-only if `read_only`) for the guest at `guest_address`.
    pub fn new(
        path: &Path,
        read_only: bool,
        guest_address: GuestAddress,
    ) -> Result<Self, PmemError> {
        let open_err = |source| PmemError::Open {
            path: path.to_owned(),
            source,
        };
        if guest_address.0 % PMEM_ALIGN != 0 {
            return Err(PmemError::Unaligned(guest_address.0));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        let len = usize::try_from(size)
            .ok()
            .filter(|_| size != 0 && size % PMEM_ALIGN == 0);
        let Some(len) = len else {
            return Err(PmemError::BadSize {
                path: path.to_owned(),
                size,
            });
        };
        let prot = if read_only {
            libc::PROT_READ
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        let mapping = MmapRegion::build(
            Some(FileOffset::new(file.try_clone().map_err(open_err)?, 0)),
            len,
            prot,
            libc::MAP_SHARED | libc::MAP_NORESERVE,
        )
        .map_err(|source| PmemError::Map {
            path: path.to_owned(),
            source,
        })?;
        let region = PmemRegion {
            guest_address,
            size,
            host_address: mapping.as_ptr() as u64,
            read_only,
        };
        let mut config = [0u8; 16];
        config[..8].copy_from_slice(&guest_address.0.to_le_bytes());
        config[8..].copy_from_slice(&size.to_le_bytes());
        Ok(Self {
            file,
            mapping,
            region,
            config,
            queue_events: vec![EventFd::new(libc::EFD_NONBLOCK).map_err(PmemError::EventFd)?],
            active: None,
        })
    }

    /// The region the builder maps as a KVM memory slot. The mapping lives as long as the
    /// device.
    pub fn region(&self) -> PmemRegion {
        self.region
    }

    /// The host mapping (tests read through it).
    pub fn mapping(&self) -> &MmapRegion {
        &self.mapping
    }

    /// Serve every flush request queued; returns how many were completed.
    pub fn process_queue(&mut self) -> usize {
        let Some(active) = self.active.as_mut() else {
            return 0;
        };
        let mem = active.mem.clone();
        let mut done = 0;
        while let Some(chain) = active.queue.pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            let written = match (chain.clone().reader(&mem), chain.writer(&mem)) {
                (Ok(mut reader), Ok(mut writer)) => {
                    let mut kind = [0u8; 4];
                    let ret: u32 = match reader.read_exact(&mut kind) {
                        Ok(()) if u32::from_le_bytes(kind) == REQ_TYPE_FLUSH => {
                            match self.file.sync_all() {
                                Ok(()) => 0,
                                Err(error) => {
                                    tracing::error!(%error, "virtio-pmem: flush failed");
                                    1
                                }
                            }
                        }
                        _ => 1,
                    };
                    match writer.write_all(&ret.to_le_bytes()) {
                        Ok(()) => 4,
                        Err(_) => 0,
                    }
                }
                _ => 0,
            };
            if let Err(error) = active.queue.add_used(&mem, head, written) {
                tracing::error!(%error, "virtio-pmem: cannot return a used buffer");
            }
            done += 1;
        }
        if done > 0 {
            active.interrupt.signal_used_queue();
        }
        done
    }
}

impl VirtioDevice for Pmem {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_PMEM
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.active = Some(activation.single_queue()?);
        self.process_queue();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

impl MutEventSubscriber for Pmem {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(error) = ops.add(Events::new(&self.queue_events[0], EventSet::IN)) {
            tracing::error!(?error, "virtio-pmem: cannot watch the queue");
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps) {
        if events.fd() == std::os::fd::AsRawFd::as_raw_fd(&self.queue_events[0]) {
            let _ = self.queue_events[0].read();
            self.process_queue();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::{GuestMemory, Interrupt};
    use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{RawDescriptor, split::Descriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, VolatileMemory};

    fn image(size: usize) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = vec![0u8; size];
        if size >= 8 {
            bytes[..8].copy_from_slice(b"PMEMTEST");
        }
        f.write_all(&bytes).unwrap();
        f
    }

    #[test]
    fn maps_the_file_and_names_it_in_the_config_space() {
        let img = image(2 << 20);
        let dev = Pmem::new(img.path(), true, GuestAddress(0x1_0000_0000)).unwrap();
        assert_eq!(dev.device_type(), 27);
        let mut b = [0u8; 16];
        dev.read_config(0, &mut b);
        assert_eq!(
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            0x1_0000_0000
        );
        assert_eq!(u64::from_le_bytes(b[8..].try_into().unwrap()), 2 << 20);
        let region = dev.region();
        assert!(region.read_only);
        assert_eq!(region.size, 2 << 20);
        let mut head = [0u8; 8];
        dev.mapping()
            .get_slice(0, 8)
            .unwrap()
            .copy_to(&mut head[..]);
        assert_eq!(&head, b"PMEMTEST");
    }

    #[test]
    fn refuses_sizes_that_are_not_2mib_multiples_and_unaligned_addresses() {
        let img = image(3 << 20);
        let err = Pmem::new(img.path(), true, GuestAddress(0))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("multiple of 2 MiB"), "{err}");
        let img = image(0);
        assert!(Pmem::new(img.path(), true, GuestAddress(0)).is_err());
        let img = image(2 << 20);
        let err = Pmem::new(img.path(), true, GuestAddress(0x1000))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("2 MiB aligned"), "{err}");
    }

    #[test]
    fn flush_request_is_answered_ok() {
        let img = image(2 << 20);
        let mut dev = Pmem::new(img.path(), false, GuestAddress(0)).unwrap();
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x100_000)]).unwrap();
        let vq = MockSplitQueue::create(&mem, GuestAddress(0), 16);
        mem.write_obj(REQ_TYPE_FLUSH, GuestAddress(0x10_000))
            .unwrap();
        mem.write_obj(0xdead_u32, GuestAddress(0x20_000)).unwrap();
        vq.build_desc_chain(&[
            RawDescriptor::from(Descriptor::new(0x10_000, 4, 0, 0)),
            RawDescriptor::from(Descriptor::new(0x20_000, 4, VRING_DESC_F_WRITE as u16, 0)),
        ])
        .unwrap();
        let interrupt = Interrupt::new().unwrap();
        dev.activate(Activation {
            mem: mem.clone(),
            queues: vec![vq.create_queue().unwrap()],
            interrupt: interrupt.clone(),
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(0x20_000)).unwrap(), 0);
        assert_eq!(vq.used().idx().load(), 1);
        assert_eq!(interrupt.status(), 1);
    }
}

//! virtio-blk (device id 2) on a raw image file.
//!
//! One request queue. Each request is a descriptor chain: a 16-byte header the device reads
//! (`type` u32, reserved u32, `sector` u64 in 512-byte units), the data buffers (read by the
//! device for a write, written for a read), and a final writable status byte (0 OK, 1 I/O
//! error, 2 unsupported). The configuration space starts with the capacity in sectors.
//!
//! Supported: `IN` (read), `OUT` (write, refused with an I/O error on a read-only disk, which
//! also offers `VIRTIO_BLK_F_RO`), `FLUSH` (fsync of the file) and `GET_ID` (a 20-byte
//! serial). Every access is checked against the capacity.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{DescriptorChain, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{
    ActivateError, Activation, GuestMemory, SingleQueue, VIRTIO_F_VERSION_1, VirtioDevice,
    read_config_bytes,
};

/// Sector size of the virtio-blk protocol.
pub const SECTOR_SIZE: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// Largest chunk copied between the file and guest memory at once.
const CHUNK: usize = 1 << 20;

/// Why a disk could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image cannot be opened.
    #[error("cannot open the disk image {path}: {source}")]
    Open {
        /// The image.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The image size is not a whole number of 512-byte sectors.
    #[error("the disk image {path} is {size} bytes, not a multiple of 512")]
    OddSize {
        /// The image.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// An eventfd could not be created.
    #[error("cannot create an eventfd: {0}")]
    EventFd(std::io::Error),
}

/// A virtio-blk device backed by a raw file.
pub struct Block {
    file: File,
    read_only: bool,
    sectors: u64,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    config: Vec<u8>,
    queue_events: Vec<EventFd>,
    active: Option<SingleQueue>,
}

impl Block {
    /// Open `path` as a disk; `read_only` opens it read-only and tells the guest so.
    pub fn new(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let open_err = |source| BlockError::Open {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        if size % SECTOR_SIZE != 0 {
            return Err(BlockError::OddSize {
                path: path.to_owned(),
                size,
            });
        }
        let sectors = size / SECTOR_SIZE;
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = name.len().min(id.len());
        id[..n].copy_from_slice(&name.as_bytes()[..n]);
        // virtio_blk_config: capacity u64, size_max u32, seg_max u32.
        let mut config = Vec::with_capacity(16);
        config.extend_from_slice(&sectors.to_le_bytes());
        config.extend_from_slice(&0u32.to_le_bytes());
        config.extend_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
        Ok(Self {
            file,
            read_only,
            sectors,
            id,
            config,
            queue_events: vec![EventFd::new(libc::EFD_NONBLOCK).map_err(BlockError::EventFd)?],
            active: None,
        })
    }

    /// The capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Serve every request the driver queued; returns how many were completed.
    pub fn process_queue(&mut self) -> usize {
        let Some(active) = self.active.as_mut() else {
            return 0;
        };
        let mem = active.mem.clone();
        let mut done = 0;
        while let Some(chain) = active.queue.pop_descriptor_chain(&mem) {
            let head = chain.head_index();
            let written = Self::serve(
                &self.file,
                self.read_only,
                self.sectors,
                &self.id,
                &mem,
                chain,
            );
            if let Err(error) = active.queue.add_used(&mem, head, written) {
                tracing::error!(%error, "virtio-blk: cannot return a used buffer");
            }
            done += 1;
        }
        if done > 0 {
            active.interrupt.signal_used_queue();
        }
        done
    }

    /// Serve one request; returns the number of bytes written to guest memory.
    fn serve(
        file: &File,
        read_only: bool,
        sectors: u64,
        id: &[u8],
        mem: &GuestMemory,
        chain: DescriptorChain<&GuestMemory>,
    ) -> u32 {
        let (Ok(mut reader), Ok(mut writer)) = (chain.clone().reader(mem), chain.writer(mem))
        else {
            tracing::warn!("virtio-blk: a malformed descriptor chain");
            return 0;
        };
        // The status byte is the last writable byte.
        let Some(data_len) = writer.available_bytes().checked_sub(1) else {
            tracing::warn!("virtio-blk: a request without a status byte");
            return 0;
        };
        let Ok(mut status_writer) = writer.split_at(data_len) else {
            return 0;
        };
        let mut header = [0u8; 16];
        let status = if reader.read_exact(&mut header).is_err() {
            VIRTIO_BLK_S_IOERR
        } else {
            let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let mut sector_bytes = [0u8; 8];
            sector_bytes.copy_from_slice(&header[8..16]);
            let sector = u64::from_le_bytes(sector_bytes);
            match kind {
                VIRTIO_BLK_T_IN => Self::read_sectors(file, sectors, sector, data_len, &mut writer),
                VIRTIO_BLK_T_OUT if read_only => VIRTIO_BLK_S_IOERR,
                VIRTIO_BLK_T_OUT => Self::write_sectors(file, sectors, sector, &mut reader),
                VIRTIO_BLK_T_FLUSH => match file.sync_all() {
                    Ok(()) => VIRTIO_BLK_S_OK,
                    Err(error) => {
                        tracing::error!(%error, "virtio-blk: flush failed");
                        VIRTIO_BLK_S_IOERR
                    }
                },
                VIRTIO_BLK_T_GET_ID => {
                    let n = id.len().min(data_len);
                    match writer.write_all(&id[..n]) {
                        Ok(()) => VIRTIO_BLK_S_OK,
                        Err(_) => VIRTIO_BLK_S_IOERR,
                    }
                }
                _ => VIRTIO_BLK_S_UNSUPP,
            }
        };
        let _ = status_writer.write_all(&[status as u8]);
        (writer.bytes_written() + status_writer.bytes_written()) as u32
    }

    /// Whether `len` bytes at `sector` lie inside the disk and are whole sectors.
    fn in_bounds(sectors: u64, sector: u64, len: usize) -> Option<u64> {
        let len = len as u64;
        if len % SECTOR_SIZE != 0 {
            return None;
        }
        let end = sector.checked_add(len / SECTOR_SIZE)?;
        (end <= sectors).then(|| sector * SECTOR_SIZE)
    }

    fn read_sectors(
        file: &File,
        sectors: u64,
        sector: u64,
        len: usize,
        writer: &mut virtio_queue::Writer<'_>,
    ) -> u32 {
        let Some(mut offset) = Self::in_bounds(sectors, sector, len) else {
            tracing::debug!(sector, len, "virtio-blk: read out of range");
            return VIRTIO_BLK_S_IOERR;
        };
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            if let Err(error) = file.read_exact_at(&mut buf[..n], offset) {
                tracing::error!(%error, "virtio-blk: read failed");
                return VIRTIO_BLK_S_IOERR;
            }
            if writer.write_all(&buf[..n]).is_err() {
                return VIRTIO_BLK_S_IOERR;
            }
            offset += n as u64;
            left -= n;
        }
        VIRTIO_BLK_S_OK
    }

    fn write_sectors(
        file: &File,
        sectors: u64,
        sector: u64,
        reader: &mut virtio_queue::Reader<'_>,
    ) -> u32 {
        let len = reader.available_bytes();
        let Some(mut offset) = Self::in_bounds(sectors, sector, len) else {
            tracing::debug!(sector, len, "virtio-blk: write out of range");
            return VIRTIO_BLK_S_IOERR;
        };
        let mut buf = vec![0u8; len.min(CHUNK)];
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK);
            if reader.read_exact(&mut buf[..n]).is_err() {
                return VIRTIO_BLK_S_IOERR;
            }
            if let Err(error) = file.write_all_at(&buf[..n], offset) {
                tracing::error!(%error, "virtio-blk: write failed");
                return VIRTIO_BLK_S_IOERR;
            }
            offset += n as u64;
            left -= n;
        }
        VIRTIO_BLK_S_OK
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn queue_events(&self) -> &[EventFd] {
        &self.queue_events
    }

    fn features(&self) -> u64 {
        let mut features = VIRTIO_F_VERSION_1 | 1 << VIRTIO_BLK_F_FLUSH | 1 << VIRTIO_BLK_F_SEG_MAX;
        if self.read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        self.active = Some(activation.single_queue()?);
        // Requests queued before the notify was wired would otherwise wait forever.
        self.process_queue();
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }
}

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(error) = ops.add(Events::new(&self.queue_events[0], EventSet::IN)) {
            tracing::error!(?error, "virtio-blk: cannot watch the queue");
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
    use crate::devices::virtio::Interrupt;
    use std::io::Seek;
    use virtio_bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{RawDescriptor, split::Descriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const HDR: u64 = 0x10_000;
    const DATA: u64 = 0x20_000;
    const STATUS: u64 = 0x30_000;

    fn image(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    fn pattern() -> Vec<u8> {
        (0..4 * 512).map(|i| (i % 251) as u8).collect()
    }

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 0x100_000)]).unwrap()
    }

    /// Queue one request and run the device; returns (status byte, used len).
    fn request(
        dev: &mut Block,
        mem: &GuestMemory,
        kind: u32,
        sector: u64,
        data_len: u32,
        data_writable: bool,
    ) -> (u8, u32) {
        let vq = MockSplitQueue::create(mem, GuestAddress(0), 16);
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&header, GuestAddress(HDR)).unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let mut descs = vec![RawDescriptor::from(Descriptor::new(HDR, 16, 0, 0))];
        if data_len > 0 {
            let flags = if data_writable {
                VRING_DESC_F_WRITE as u16
            } else {
                0
            };
            descs.push(RawDescriptor::from(Descriptor::new(
                DATA, data_len, flags, 0,
            )));
        }
        descs.push(RawDescriptor::from(Descriptor::new(
            STATUS,
            1,
            VRING_DESC_F_WRITE as u16,
            0,
        )));
        vq.build_desc_chain(&descs).unwrap();
        let interrupt = Interrupt::new().unwrap();
        dev.reset();
        dev.activate(Activation {
            mem: mem.clone(),
            queues: vec![vq.create_queue().unwrap()],
            interrupt: interrupt.clone(),
            acked_features: VIRTIO_F_VERSION_1,
        })
        .unwrap();
        assert_eq!(interrupt.status(), 1, "the device interrupts when done");
        let used_len = vq.used().ring().ref_at(0).unwrap().load().len();
        (mem.read_obj(GuestAddress(STATUS)).unwrap(), used_len)
    }

    #[test]
    fn reads_known_bytes_and_reports_capacity() {
        let img = image(&pattern());
        let mut dev = Block::new(img.path(), true).unwrap();
        assert_eq!(dev.sectors(), 4);
        let mut cap = [0u8; 8];
        dev.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 4);
        assert_eq!(dev.device_type(), 2);
        assert_ne!(dev.features() & (1 << VIRTIO_BLK_F_RO), 0);
        let mem = mem();
        let (status, used) = request(&mut dev, &mem, VIRTIO_BLK_T_IN, 1, 1024, true);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        assert_eq!(used, 1025);
        let mut got = vec![0u8; 1024];
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(got, pattern()[512..1536]);
    }

    #[test]
    fn writes_and_flushes_a_writable_disk() {
        let img = image(&pattern());
        let mut dev = Block::new(img.path(), false).unwrap();
        assert_eq!(dev.features() & (1 << VIRTIO_BLK_F_RO), 0);
        let mem = mem();
        mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        let (status, _) = request(&mut dev, &mem, VIRTIO_BLK_T_OUT, 3, 512, false);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        let (status, _) = request(&mut dev, &mem, VIRTIO_BLK_T_FLUSH, 0, 0, false);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        let on_disk = std::fs::read(img.path()).unwrap();
        assert_eq!(&on_disk[3 * 512..], &[0x5a; 512][..]);
        assert_eq!(&on_disk[..3 * 512], &pattern()[..3 * 512]);
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let img = image(&pattern());
        let mut dev = Block::new(img.path(), true).unwrap();
        let mem = mem();
        let (status, _) = request(&mut dev, &mem, VIRTIO_BLK_T_OUT, 0, 512, false);
        assert_eq!(status, VIRTIO_BLK_S_IOERR as u8);
        assert_eq!(std::fs::read(img.path()).unwrap(), pattern());
    }

    #[test]
    fn out_of_range_and_unknown_requests_fail() {
        let img = image(&pattern());
        let mut dev = Block::new(img.path(), false).unwrap();
        let mem = mem();
        let (status, _) = request(&mut dev, &mem, VIRTIO_BLK_T_IN, 3, 1024, true);
        assert_eq!(status, VIRTIO_BLK_S_IOERR as u8);
        let (status, _) = request(&mut dev, &mem, VIRTIO_BLK_T_OUT, u64::MAX, 512, false);
        assert_eq!(status, VIRTIO_BLK_S_IOERR as u8);
        let (status, _) = request(&mut dev, &mem, VIRTIO_BLK_T_IN, 0, 100, true);
        assert_eq!(status, VIRTIO_BLK_S_IOERR as u8);
        let (status, _) = request(&mut dev, &mem, 99, 0, 0, false);
        assert_eq!(status, VIRTIO_BLK_S_UNSUPP as u8);
    }

    #[test]
    fn get_id_returns_the_file_name() {
        let img = image(&pattern());
        let mut dev = Block::new(img.path(), true).unwrap();
        let mem = mem();
        let (status, _) = request(&mut dev, &mem, VIRTIO_BLK_T_GET_ID, 0, 20, true);
        assert_eq!(status, VIRTIO_BLK_S_OK as u8);
        let mut id = [0u8; 20];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        let name = img
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let n = name.len().min(20);
        assert_eq!(&id[..n], &name.as_bytes()[..n]);
    }

    #[test]
    fn odd_sized_and_missing_images_are_refused_clearly() {
        let img = image(&[0u8; 100]);
        let err = Block::new(img.path(), true).err().unwrap().to_string();
        assert!(err.contains("not a multiple of 512"), "{err}");
        let err = Block::new(Path::new("/nonexistent/disk.img"), true)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/disk.img"), "{err}");
    }
}

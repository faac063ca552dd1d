//! A fake vhost-user backend for tests: it speaks the wire protocol on a real Unix socket,
//! reports every request with the file descriptors that came with it, and can serve its
//! queues the way a real backend does: map guest memory from the memory table's fd, find
//! the rings at the addresses SET_VRING_ADDR gave (in the VMM's address space), and on
//! every kick return each new descriptor chain as used, writing [`MARKER`] into the chain's
//! first device-writable buffer, then signal the call eventfd.
//!
//! It offers `VERSION_1 | PROTOCOL_FEATURES` and the protocol feature MQ.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use vm_memory::{Bytes, FileOffset, MmapRegion, VolatileMemory};

/// Written by a serving backend into the first writable buffer of each chain it uses.
pub const MARKER: u32 = u32::from_le_bytes(*b"HVFS");

/// Request codes (the vhost-user spec's front-end message types).
pub mod code {
    /// `VHOST_USER_GET_FEATURES`: ask for the backend's virtio feature bits.
    pub const GET_FEATURES: u32 = 1;
    /// `VHOST_USER_SET_FEATURES`: the virtio feature bits the front-end acked.
    pub const SET_FEATURES: u32 = 2;
    /// `VHOST_USER_SET_OWNER`: claim the backend for this front-end's session.
    pub const SET_OWNER: u32 = 3;
    /// `VHOST_USER_SET_MEM_TABLE`: the guest memory regions, one fd each.
    pub const SET_MEM_TABLE: u32 = 5;
    /// `VHOST_USER_SET_VRING_NUM`: a queue's size in descriptors.
    pub const SET_VRING_NUM: u32 = 8;
    /// `VHOST_USER_SET_VRING_ADDR`: a queue's ring addresses (front-end virtual addresses).
    pub const SET_VRING_ADDR: u32 = 9;
    /// `VHOST_USER_SET_VRING_BASE`: the next available index a queue starts from.
    pub const SET_VRING_BASE: u32 = 10;
    /// `VHOST_USER_GET_VRING_BASE`: stop a queue and return its next available index.
    pub const GET_VRING_BASE: u32 = 11;
    /// `VHOST_USER_SET_VRING_KICK`: the eventfd the front-end signals when a queue has work.
    pub const SET_VRING_KICK: u32 = 12;
    /// `VHOST_USER_SET_VRING_CALL`: the eventfd the backend signals after using buffers.
    pub const SET_VRING_CALL: u32 = 13;
    /// `VHOST_USER_GET_PROTOCOL_FEATURES`: ask for the vhost-user protocol feature bits.
    pub const GET_PROTOCOL_FEATURES: u32 = 15;
    /// `VHOST_USER_SET_PROTOCOL_FEATURES`: the protocol feature bits the front-end uses.
    pub const SET_PROTOCOL_FEATURES: u32 = 16;
    /// `VHOST_USER_GET_QUEUE_NUM`: ask how many queues the backend supports (protocol feature MQ).
    pub const GET_QUEUE_NUM: u32 = 17;
    /// `VHOST_USER_SET_VRING_ENABLE`: enable or disable a queue.
    pub const SET_VRING_ENABLE: u32 = 18;
}

/// One request the backend received.
pub struct Message {
    /// The request code.
    pub code: u32,
    /// Its body.
    pub body: Vec<u8>,
    /// The file descriptors sent with it.
    pub fds: Vec<File>,
}

/// A running fake backend.
pub struct FakeBackend {
    /// Every request, in order.
    pub messages: mpsc::Receiver<Message>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Ring {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    next_avail: u16,
    next_used: u16,
    kick: Option<File>,
    call: Option<File>,
}

#[derive(Default)]
struct Served {
    /// (guest physical address, size, VMM address, mapping)
    regions: Vec<(u64, u64, u64, MmapRegion)>,
    rings: Vec<Ring>,
}

impl FakeBackend {
    /// Accept one front end on `listener`; announce `queues` queues; serve the rings if
    /// `serve`.
    pub fn spawn(listener: UnixListener, queues: u64, serve: bool) -> Self {
        Self::spawn_limited(listener, queues, serve, usize::MAX)
    }

    /// Like [`FakeBackend::spawn`], but hang up after `limit` requests.
    pub fn spawn_limited(listener: UnixListener, queues: u64, serve: bool, limit: usize) -> Self {
        let (tx, messages) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(Mutex::new(Served::default()));
        let mut threads = Vec::new();
        {
            let stop = stop.clone();
            let served = served.clone();
            threads.push(std::thread::spawn(move || {
                if let Ok((sock, _)) = listener.accept() {
                    protocol(sock, queues, serve.then_some(&served), &tx, limit);
                }
                stop.store(true, Ordering::SeqCst);
            }));
        }
        if serve {
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(mut s) = served.lock() {
                        serve_kicks(&mut s);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        Self { messages, threads }
    }

    /// Wait for the front end to hang up and the threads to end.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Receive a 12-byte header and the file descriptors sent with it.
fn recv_header(sock: &UnixStream) -> Option<([u8; 12], Vec<File>)> {
    let mut header = [0u8; 12];
    let mut cmsg = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: header.as_mut_ptr().cast(),
        iov_len: header.len(),
    };
    // SAFETY: msghdr is plain data; all zeroes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg);
    // SAFETY: the iovec and the control buffer outlive the call and their lengths are right.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_WAITALL) };
    if n != 12 {
        return None;
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel just wrote into `cmsg`; each
    // SCM_RIGHTS descriptor is new and ours to own.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    fds.push(File::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((header, fds))
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from(u32_at(b, o)) | u64::from(u32_at(b, o + 4)) << 32
}

fn protocol(
    mut sock: UnixStream,
    queues: u64,
    served: Option<&Arc<Mutex<Served>>>,
    tx: &mpsc::Sender<Message>,
    limit: usize,
) {
    let mut count = 0;
    while count < limit
        && let Some((header, fds)) = recv_header(&sock)
    {
        count += 1;
        let code = u32_at(&header, 0);
        let mut body = vec![0u8; u32_at(&header, 8) as usize];
        if sock.read_exact(&mut body).is_err() {
            return;
        }
        let reply: Option<Vec<u8>> = match code {
            code::GET_FEATURES => Some((1u64 << 32 | 1 << 30).to_le_bytes().to_vec()),
            code::GET_PROTOCOL_FEATURES => Some(1u64.to_le_bytes().to_vec()),
            code::GET_QUEUE_NUM => Some(queues.to_le_bytes().to_vec()),
            code::GET_VRING_BASE => Some([&body[..4], &0u32.to_le_bytes()[..]].concat()),
            _ => None,
        };
        if let Some(reply) = reply {
            let mut out = Vec::new();
            out.extend_from_slice(&code.to_le_bytes());
            out.extend_from_slice(&5u32.to_le_bytes()); // version 1, reply
            out.extend_from_slice(&(reply.len() as u32).to_le_bytes());
            out.extend_from_slice(&reply);
            if sock.write_all(&out).is_err() {
                return;
            }
        }
        if let Some(served) = served
            && let Ok(mut s) = served.lock()
        {
            remember(&mut s, code, &body, &fds);
        }
        if tx.send(Message { code, body, fds }).is_err() {
            return;
        }
    }
}

/// Keep what serving needs from a request.
fn remember(s: &mut Served, code: u32, body: &[u8], fds: &[File]) {
    let index = u32_at(body, 0) as usize & 0xff;
    if matches!(
        code,
        code::SET_VRING_NUM | code::SET_VRING_ADDR | code::SET_VRING_KICK | code::SET_VRING_CALL
    ) && s.rings.len() <= index
    {
        s.rings.resize_with(index + 1, Ring::default);
    }
    match code {
        code::SET_MEM_TABLE => {
            // VhostUserMemory: num u32, padding u32, then per region: guest address, size,
            // VMM address, mmap offset (u64 each).
            for (i, fd) in fds.iter().enumerate() {
                let r = 8 + i * 32;
                let (gpa, size, uva, offset) = (
                    u64_at(body, r),
                    u64_at(body, r + 8),
                    u64_at(body, r + 16),
                    u64_at(body, r + 24),
                );
                let Ok(file) = fd.try_clone() else { continue };
                if let Ok(map) = MmapRegion::build(
                    Some(FileOffset::new(file, offset)),
                    size as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                ) {
                    s.regions.push((gpa, size, uva, map));
                }
            }
        }
        code::SET_VRING_NUM => s.rings[index].size = u32_at(body, 4) as u16,
        code::SET_VRING_ADDR => {
            // vhost_vring_addr: index, flags, desc, used, avail, log.
            s.rings[index].desc = u64_at(body, 8);
            s.rings[index].used = u64_at(body, 16);
            s.rings[index].avail = u64_at(body, 24);
        }
        code::SET_VRING_KICK => s.rings[index].kick = fds.first().and_then(|f| f.try_clone().ok()),
        code::SET_VRING_CALL => s.rings[index].call = fds.first().and_then(|f| f.try_clone().ok()),
        _ => {}
    }
}

/// Where `addr` (VMM address if `vmm`, else guest physical) lies: (region, offset).
fn locate(s: &Served, addr: u64, vmm: bool) -> Option<(usize, usize)> {
    s.regions
        .iter()
        .enumerate()
        .find_map(|(i, (gpa, size, uva, _))| {
            let base = if vmm { *uva } else { *gpa };
            (addr >= base && addr - base < *size).then(|| (i, (addr - base) as usize))
        })
}

fn read<T: vm_memory::ByteValued>(s: &Served, addr: u64, vmm: bool) -> Option<T> {
    let (i, off) = locate(s, addr, vmm)?;
    s.regions[i]
        .3
        .get_slice(off, size_of::<T>())
        .ok()?
        .read_obj(0)
        .ok()
}

fn write<T: vm_memory::ByteValued>(s: &Served, addr: u64, vmm: bool, value: T) -> Option<()> {
    let (i, off) = locate(s, addr, vmm)?;
    s.regions[i]
        .3
        .get_slice(off, size_of::<T>())
        .ok()?
        .write_obj(value, 0)
        .ok()
}

fn serve_kicks(s: &mut Served) {
    for q in 0..s.rings.len() {
        let mut value = [0u8; 8];
        let kicked = match s.rings[q].kick.as_ref() {
            Some(mut kick) => kick.read(&mut value).is_ok(),
            None => false,
        };
        if !kicked || s.rings[q].size == 0 {
            continue;
        }
        let (size, desc, avail, used) = {
            let r = &s.rings[q];
            (r.size, r.desc, r.avail, r.used)
        };
        let Some(avail_idx) = read::<u16>(s, avail + 2, true) else {
            continue;
        };
        while s.rings[q].next_avail != avail_idx {
            let slot = u64::from(s.rings[q].next_avail % size);
            let Some(head) = read::<u16>(s, avail + 4 + 2 * slot, true) else {
                break;
            };
            // Walk the chain to its first device-writable buffer and mark it.
            let mut index = head;
            for _ in 0..size {
                let d = desc + 16 * u64::from(index);
                let (Some(addr), Some(flags), Some(next)) = (
                    read::<u64>(s, d, true),
                    read::<u16>(s, d + 12, true),
                    read::<u16>(s, d + 14, true),
                ) else {
                    break;
                };
                if flags & 2 != 0 {
                    let _ = write(s, addr, false, MARKER);
                    break;
                }
                if flags & 1 == 0 {
                    break;
                }
                index = next;
            }
            let used_slot = u64::from(s.rings[q].next_used % size);
            let _ = write(s, used + 4 + 8 * used_slot, true, u32::from(head));
            let _ = write(s, used + 8 + 8 * used_slot, true, 4u32);
            s.rings[q].next_used = s.rings[q].next_used.wrapping_add(1);
            let _ = write(s, used + 2, true, s.rings[q].next_used);
            s.rings[q].next_avail = s.rings[q].next_avail.wrapping_add(1);
        }
        if let Some(mut call) = s.rings[q].call.as_ref() {
            let _ = call.write_all(&1u64.to_ne_bytes());
        }
    }
}

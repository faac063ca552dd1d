//! The vsock device against a driver simulated in guest memory and real Unix sockets,
//! driven through a real event manager as the VMM runs it.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_manager::{EventManager, SubscriberOps};
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress};

use super::packet::{HDR_LEN, HOST_CID, Header, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM, op};
use super::*;

const GUEST_CID: u64 = 3;
const RX_BUFS: u16 = 16;
const RX_BUF_LEN: u32 = 4096 + HDR_LEN as u32;

/// The driver side of one split virtqueue in guest memory.
struct Ring {
    desc: u64,
    avail: u64,
    used: u64,
    size: u16,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Ring {
    fn new(base: u64, size: u16) -> Self {
        Self {
            desc: base,
            avail: base + 16 * u64::from(size),
            used: base + 0x1000,
            size,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).unwrap();
        q.set_size(self.size);
        q.set_desc_table_address(Some(self.desc as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail as u32), Some(0));
        q.set_used_ring_address(Some(self.used as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Offer a chain of buffers (address, length, device-writable).
    fn offer(&mut self, mem: &GuestMemory, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let idx = self.next_desc;
            self.next_desc = (self.next_desc + 1) % self.size;
            let mut flags = if writable {
                VRING_DESC_F_WRITE as u16
            } else {
                0
            };
            if i + 1 < bufs.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let at = GuestAddress(self.desc + 16 * u64::from(idx));
            mem.write_obj(addr, at).unwrap();
            mem.write_obj(len, at.unchecked_add(8)).unwrap();
            mem.write_obj(flags, at.unchecked_add(12)).unwrap();
            mem.write_obj(self.next_desc, at.unchecked_add(14)).unwrap();
        }
        let slot = GuestAddress(self.avail + 4 + 2 * u64::from(self.avail_idx % self.size));
        mem.write_obj(head, slot).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
            .unwrap();
        head
    }

    /// Used entries (id, len) not seen yet.
    fn take_used(&mut self, mem: &GuestMemory) -> Vec<(u32, u32)> {
        let idx: u16 = mem.read_obj(GuestAddress(self.used + 2)).unwrap();
        let mut out = Vec::new();
        while self.used_seen != idx {
            let at = GuestAddress(self.used + 4 + 8 * u64::from(self.used_seen % self.size));
            out.push((
                mem.read_obj(at).unwrap(),
                mem.read_obj(at.unchecked_add(4)).unwrap(),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }
}

/// A guest with a vsock driver, the device and the event loop.
struct Guest {
    mem: GuestMemory,
    dev: Arc<Mutex<Vsock>>,
    em: EventManager<Arc<Mutex<Vsock>>>,
    rx: Ring,
    tx: Ring,
    /// Packets received and not yet looked at.
    inbox: Vec<(Header, Vec<u8>)>,
    tx_buf: u64,
    interrupt: Arc<Interrupt>,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn rx_buf(i: u16) -> u64 {
    0x10_0000 + u64::from(i) * 0x2000
}

impl Guest {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap();
        let dev = Arc::new(Mutex::new(Vsock::new(GUEST_CID, &path).unwrap()));
        let mut em = EventManager::new().unwrap();
        em.add_subscriber(dev.clone());
        let mut rx = Ring::new(0x1_0000, RX_BUFS);
        let tx = Ring::new(0x2_0000, 64);
        let ev = Ring::new(0x3_0000, 4);
        for i in 0..RX_BUFS {
            rx.offer(&mem, &[(rx_buf(i), RX_BUF_LEN, true)]);
        }
        let interrupt = Interrupt::new().unwrap();
        dev.lock()
            .unwrap()
            .activate(Activation {
                mem: mem.clone(),
                queues: vec![rx.queue(), tx.queue(), ev.queue()],
                interrupt: interrupt.clone(),
                acked_features: VIRTIO_F_VERSION_1,
            })
            .unwrap();
        let mut guest = Self {
            mem,
            dev,
            em,
            rx,
            tx,
            inbox: Vec::new(),
            tx_buf: 0x30_0000,
            interrupt,
            _dir: dir,
            path,
        };
        guest.run();
        guest
    }

    /// Run the event loop until it is idle; collect received packets and repost buffers.
    fn run(&mut self) {
        for _ in 0..20 {
            let n = self.em.run_with_timeout(5).unwrap();
            for (id, len) in self.rx.take_used(&self.mem) {
                let addr = rx_buf(id as u16);
                let mut hdr = [0u8; HDR_LEN];
                self.mem.read_slice(&mut hdr, GuestAddress(addr)).unwrap();
                let hdr = Header::decode(&hdr);
                let mut payload = vec![0u8; len as usize - HDR_LEN];
                self.mem
                    .read_slice(&mut payload, GuestAddress(addr + HDR_LEN as u64))
                    .unwrap();
                assert_eq!(hdr.len as usize, payload.len());
                self.inbox.push((hdr, payload));
                self.rx.offer(&self.mem, &[(addr, RX_BUF_LEN, true)]);
                self.dev.lock().unwrap().queue_events[RX].write(1).unwrap();
            }
            self.tx.take_used(&self.mem);
            if n == 0 {
                return;
            }
        }
    }

    /// Run until a packet matching `pred` arrives; return it.
    fn expect(&mut self, what: &str, pred: impl Fn(&Header) -> bool) -> (Header, Vec<u8>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(i) = self.inbox.iter().position(|(h, _)| pred(h)) {
                return self.inbox.remove(i);
            }
            assert!(Instant::now() < deadline, "no {what}; got {:?}", self.inbox);
            self.run();
        }
    }

    /// Send a packet from guest port `src_port` to host port `dst_port`.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        src_port: u32,
        dst_port: u32,
        op: u16,
        flags: u32,
        buf_alloc: u32,
        fwd_cnt: u32,
        payload: &[u8],
    ) {
        let hdr = Header {
            src_cid: GUEST_CID,
            dst_cid: HOST_CID,
            src_port,
            dst_port,
            len: payload.len() as u32,
            kind: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        };
        let at = self.tx_buf;
        self.tx_buf += 0x1_0000;
        if self.tx_buf >= 0x3f_0000 {
            self.tx_buf = 0x30_0000;
        }
        self.mem
            .write_slice(&hdr.encode(), GuestAddress(at))
            .unwrap();
        let mut bufs = vec![(at, HDR_LEN as u32, false)];
        if !payload.is_empty() {
            self.mem
                .write_slice(payload, GuestAddress(at + 0x100))
                .unwrap();
            bufs.push((at + 0x100, payload.len() as u32, false));
        }
        self.tx.offer(&self.mem, &bufs);
        self.dev.lock().unwrap().queue_events[TX].write(1).unwrap();
        self.run();
    }

    fn host_connect(&mut self, port: u32) -> UnixStream {
        let mut s = UnixStream::connect(&self.path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        writeln!(s, "CONNECT {port}").unwrap();
        self.run();
        s
    }
}

/// Read from a host socket while the device runs, until `n` bytes or end of file.
fn read_some(guest: &mut Guest, s: &mut UnixStream, n: usize) -> Vec<u8> {
    s.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while out.len() < n && Instant::now() < deadline {
        guest.run();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("host read: {e}"),
        }
    }
    s.set_nonblocking(false).unwrap();
    out
}

fn is_eof(guest: &mut Guest, s: &mut UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        guest.run();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn host_connect_handshake_then_bytes_both_ways_then_close() {
    let mut g = Guest::new();
    let mut host = g.host_connect(1024);
    let (req, _) = g.expect("REQUEST", |h| h.op == op::REQUEST);
    assert_eq!(
        (req.dst_port, req.dst_cid, req.src_cid),
        (1024, GUEST_CID, HOST_CID)
    );
    assert!(g.interrupt.status() & 1 != 0, "the guest was interrupted");
    let local = req.src_port;
    g.send(1024, local, op::RESPONSE, 0, 65536, 0, &[]);
    assert_eq!(
        read_some(&mut g, &mut host, 1),
        format!("OK {local}\n").into_bytes()
    );

    host.write_all(b"ping").unwrap();
    let (rw, data) = g.expect("RW", |h| h.op == op::RW);
    assert_eq!(
        (rw.src_port, rw.dst_port, data.as_slice()),
        (local, 1024, &b"ping"[..])
    );
    assert_eq!(rw.buf_alloc, BUF_ALLOC);

    g.send(1024, local, op::RW, 0, 65536, 4, b"pong");
    assert_eq!(read_some(&mut g, &mut host, 4), b"pong");
    assert_eq!(g.dev.lock().unwrap().conns.len(), 1);

    // The guest closes: the host sees end of file and the guest gets the final RST.
    g.send(
        1024,
        local,
        op::SHUTDOWN,
        SHUTDOWN_RCV | SHUTDOWN_SEND,
        65536,
        4,
        &[],
    );
    assert!(is_eof(&mut g, &mut host));
    g.expect("RST", |h| h.op == op::RST && h.src_port == local);
    assert!(g.dev.lock().unwrap().conns.is_empty());
}

#[test]
fn host_connect_to_a_port_nobody_listens_on_gets_eof() {
    let mut g = Guest::new();
    let mut host = g.host_connect(4000);
    let (req, _) = g.expect("REQUEST", |h| h.op == op::REQUEST);
    g.send(4000, req.src_port, op::RST, 0, 0, 0, &[]);
    assert!(is_eof(&mut g, &mut host));
}

#[test]
fn a_malformed_connect_line_gets_eof() {
    let mut g = Guest::new();
    let mut s = UnixStream::connect(&g.path).unwrap();
    s.write_all(b"HELLO 1024\n").unwrap();
    assert!(is_eof(&mut g, &mut s));
    assert!(g.inbox.is_empty());
}

#[test]
fn guest_connects_to_a_host_listener_at_path_port() {
    let mut g = Guest::new();
    let listener = UnixListener::bind(format!("{}_5000", g.path.display())).unwrap();
    g.send(7777, 5000, op::REQUEST, 0, 65536, 0, &[]);
    let (resp, _) = g.expect("RESPONSE", |h| h.op == op::RESPONSE);
    assert_eq!((resp.src_port, resp.dst_port), (5000, 7777));
    let (mut host, _) = listener.accept().unwrap();
    g.send(7777, 5000, op::RW, 0, 65536, 0, b"hello host");
    assert_eq!(read_some(&mut g, &mut host, 10), b"hello host");
    host.write_all(b"hello guest").unwrap();
    let (_, data) = g.expect("RW", |h| h.op == op::RW);
    assert_eq!(data, b"hello guest");
    // The host closes: the guest is told it will get no more data.
    drop(host);
    let (sd, _) = g.expect("SHUTDOWN", |h| h.op == op::SHUTDOWN);
    assert_eq!(sd.flags, SHUTDOWN_SEND);
}

#[test]
fn guest_request_to_a_port_without_listener_and_stray_packets_get_rst() {
    let mut g = Guest::new();
    g.send(7777, 6000, op::REQUEST, 0, 65536, 0, &[]);
    let (rst, _) = g.expect("RST", |h| h.op == op::RST);
    assert_eq!((rst.src_port, rst.dst_port), (6000, 7777));
    g.send(7778, 6001, op::RW, 0, 65536, 0, b"stray");
    g.expect("RST", |h| h.op == op::RST && h.dst_port == 7778);
    // A RST for an unknown connection is not answered.
    g.send(7779, 6002, op::RST, 0, 0, 0, &[]);
    assert!(g.inbox.is_empty(), "{:?}", g.inbox);
}

#[test]
fn host_data_waits_for_guest_credit() {
    let mut g = Guest::new();
    let mut host = g.host_connect(1024);
    let (req, _) = g.expect("REQUEST", |h| h.op == op::REQUEST);
    let local = req.src_port;
    // The guest can buffer 8 bytes.
    g.send(1024, local, op::RESPONSE, 0, 8, 0, &[]);
    read_some(&mut g, &mut host, 1);
    host.write_all(b"0123456789abcdefghij").unwrap();
    let (_, first) = g.expect("RW", |h| h.op == op::RW);
    assert_eq!(first, b"01234567");
    g.expect("CREDIT_REQUEST", |h| h.op == op::CREDIT_REQUEST);
    assert!(!g.inbox.iter().any(|(h, _)| h.op == op::RW));
    // The guest consumed the 8 bytes.
    g.send(1024, local, op::CREDIT_UPDATE, 0, 8, 8, &[]);
    let (_, second) = g.expect("RW", |h| h.op == op::RW);
    assert_eq!(second, b"89abcdef");
    // A credit request from the guest is answered with our credit.
    g.send(1024, local, op::CREDIT_REQUEST, 0, 8, 16, &[]);
    let (cu, data) = g.expect("RW or CREDIT_UPDATE", |h| h.op == op::CREDIT_UPDATE);
    assert!(data.is_empty());
    assert_eq!(cu.buf_alloc, BUF_ALLOC);
}

#[test]
fn a_guest_overrunning_its_credit_is_reset() {
    let mut g = Guest::new();
    let _listener = UnixListener::bind(format!("{}_5001", g.path.display())).unwrap();
    g.send(7000, 5001, op::REQUEST, 0, 65536, 0, &[]);
    g.expect("RESPONSE", |h| h.op == op::RESPONSE);
    // Nobody accepts and reads on the host: fill our buffer and the socket's, then more.
    let chunk = vec![7u8; 60 * 1024];
    let mut reset = false;
    for _ in 0..64 {
        g.send(7000, 5001, op::RW, 0, 65536, 0, &chunk);
        if g.inbox.iter().any(|(h, _)| h.op == op::RST) {
            reset = true;
            break;
        }
    }
    assert!(reset, "overrun not detected");
}

#[test]
fn many_concurrent_host_connections() {
    let mut g = Guest::new();
    let mut hosts = Vec::new();
    for _ in 0..10 {
        hosts.push(g.host_connect(1024));
    }
    let mut locals = Vec::new();
    for _ in 0..10 {
        let (req, _) = g.expect("REQUEST", |h| h.op == op::REQUEST);
        locals.push(req.src_port);
    }
    locals.sort();
    locals.dedup();
    assert_eq!(locals.len(), 10, "every connection has its own host port");
    for &local in &locals {
        g.send(1024, local, op::RESPONSE, 0, 65536, 0, &[]);
    }
    for host in &mut hosts {
        let ok = read_some(&mut g, host, 1);
        let text = String::from_utf8(ok).unwrap();
        let port: u32 = text.trim().strip_prefix("OK ").unwrap().parse().unwrap();
        host.write_all(format!("from {port}").as_bytes()).unwrap();
        let want = format!("from {port}").into_bytes();
        let (h, data) = g.expect("RW", |h| h.op == op::RW && h.src_port == port);
        assert_eq!(data, want);
        g.send(1024, h.src_port, op::RW, 0, 65536, 0, b"back");
        assert_eq!(read_some(&mut g, host, 4), b"back");
    }
}

#[test]
fn reset_drops_connections_and_the_host_sees_eof() {
    let mut g = Guest::new();
    let mut host = g.host_connect(1024);
    let (req, _) = g.expect("REQUEST", |h| h.op == op::REQUEST);
    g.send(1024, req.src_port, op::RESPONSE, 0, 65536, 0, &[]);
    read_some(&mut g, &mut host, 1);
    g.dev.lock().unwrap().reset();
    assert!(is_eof(&mut g, &mut host));
    assert!(g.dev.lock().unwrap().conns.is_empty());
}

#[test]
fn config_space_holds_the_guest_cid_and_reserved_cids_are_refused() {
    let g = Guest::new();
    let mut cid = [0u8; 8];
    g.dev.lock().unwrap().read_config(0, &mut cid);
    assert_eq!(u64::from_le_bytes(cid), GUEST_CID);
    assert_eq!(g.dev.lock().unwrap().device_type(), 19);
    let dir = tempfile::tempdir().unwrap();
    assert!(Vsock::new(2, &dir.path().join("x")).is_err());
}

/// Connect the host to guest port 1024 and accept as a guest with `buf_alloc`; returns the
/// host socket and the connection's host port.
fn established(g: &mut Guest, buf_alloc: u32) -> (UnixStream, u32) {
    let mut host = g.host_connect(1024);
    let (req, _) = g.expect("REQUEST", |h| h.op == op::REQUEST);
    g.send(1024, req.src_port, op::RESPONSE, 0, buf_alloc, 0, &[]);
    let ok = read_some(g, &mut host, 1);
    assert!(ok.starts_with(b"OK "), "{ok:?}");
    (host, req.src_port)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

#[test]
fn a_megabyte_host_to_guest_flows_under_a_small_guest_credit() {
    const TOTAL: usize = 1 << 20;
    const GUEST_BUF: u32 = 64 * 1024;
    let mut g = Guest::new();
    let (host, local) = established(&mut g, GUEST_BUF);
    let mut writer = host.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&pattern(TOTAL)));
    let mut got = Vec::new();
    let mut reported = 0usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < TOTAL {
        assert!(Instant::now() < deadline, "stalled at {} bytes", got.len());
        g.run();
        let mut answer_credit_request = false;
        for (h, data) in g.inbox.drain(..) {
            match h.op {
                op::RW => {
                    assert!(
                        got.len() + data.len() - reported <= GUEST_BUF as usize,
                        "the device sent past the guest's credit"
                    );
                    got.extend_from_slice(&data);
                }
                op::CREDIT_REQUEST => answer_credit_request = true,
                other => panic!("unexpected op {other}"),
            }
        }
        // The guest application consumed everything: tell the device, as Linux does when
        // its free space runs low or when asked.
        if answer_credit_request || got.len() - reported >= GUEST_BUF as usize / 2 {
            reported = got.len();
            g.send(
                1024,
                local,
                op::CREDIT_UPDATE,
                0,
                GUEST_BUF,
                reported as u32,
                &[],
            );
        }
    }
    sender.join().unwrap().unwrap();
    assert!(
        got == pattern(TOTAL),
        "the bytes arrived altered or out of order"
    );
}

#[test]
fn a_megabyte_guest_to_a_slow_host_flows_by_credit_updates() {
    const TOTAL: usize = 1 << 20;
    let mut g = Guest::new();
    let (host, local) = established(&mut g, 65536);
    let mut reader = host.try_clone().unwrap();
    let receiver = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while out.len() < TOTAL {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        out
    });
    let data = pattern(TOTAL);
    let mut sent = 0usize;
    // What the device told us last.
    let (mut buf_alloc, mut fwd_cnt) = (BUF_ALLOC, 0u32);
    let deadline = Instant::now() + Duration::from_secs(20);
    while sent < TOTAL {
        assert!(Instant::now() < deadline, "stalled at {sent} bytes");
        let credit = buf_alloc as usize - (sent - fwd_cnt as usize);
        if credit > 0 {
            let n = credit.min(4096).min(TOTAL - sent);
            g.send(1024, local, op::RW, 0, 65536, 0, &data[sent..sent + n]);
            sent += n;
        } else {
            g.run();
            std::thread::sleep(Duration::from_millis(1));
        }
        for (h, _) in g.inbox.drain(..) {
            assert_ne!(h.op, op::RST, "the device reset the connection");
            buf_alloc = h.buf_alloc;
            fwd_cnt = h.fwd_cnt;
        }
    }
    // Keep the device running until the host has everything.
    while !receiver.is_finished() {
        assert!(Instant::now() < deadline, "the host did not get everything");
        g.run();
    }
    let got = receiver.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    assert!(got == data, "the bytes arrived altered or out of order");
}

#[test]
fn a_host_that_hangs_up_before_the_answer_is_forgotten() {
    let mut g = Guest::new();
    // Hung up before the guest saw the request: nothing reaches the guest.
    {
        let dev = g.dev.clone();
        let mut guard = dev.lock().unwrap();
        guard.reset(); // no receive buffers: the request stays queued
        drop(guard);
    }
    let host = g.host_connect(1024);
    drop(host);
    g.run();
    assert!(g.dev.lock().unwrap().conns.is_empty());
    assert!(g.dev.lock().unwrap().control.is_empty());
}

#[test]
fn a_host_that_hangs_up_after_the_request_gets_the_guest_an_rst() {
    let mut g = Guest::new();
    let host = g.host_connect(1024);
    let (req, _) = g.expect("REQUEST", |h| h.op == op::REQUEST);
    drop(host);
    g.expect("RST", |h| h.op == op::RST && h.src_port == req.src_port);
    assert!(g.dev.lock().unwrap().conns.is_empty());
}

#[test]
fn the_socket_file_is_removed_with_the_device_and_a_stale_one_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock");
    let stale = UnixListener::bind(&path).unwrap();
    drop(stale); // leaves the file behind
    let dev = Vsock::new(GUEST_CID, &path).unwrap();
    assert!(UnixStream::connect(&path).is_ok());
    drop(dev);
    assert!(!path.exists());
    // A path that is not a socket is never removed.
    std::fs::write(&path, b"not a socket").unwrap();
    let err = Vsock::new(GUEST_CID, &path).err().unwrap().to_string();
    assert!(err.contains("v.sock"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
}

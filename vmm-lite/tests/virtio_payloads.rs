//! Payload tests of the virtio-mmio devices under this machine's /dev/kvm: small 64-bit
//! guest programs, assembled here, that vmm-lite boots through its real builder and that
//! drive one device each as a driver would. They read the window's magic, version and
//! device id, negotiate VERSION_1, set up split virtqueues in guest RAM, notify through the
//! queue's KVM ioeventfd, poll the used ring and check the interrupt status register (the
//! irqfd's twin), then report on the done port: 0 for success, otherwise the number of the
//! step that failed (see each test's constants).
//!
//! Every payload stays far under PVM's budget (~100k emulated instructions): the only
//! loops are bounded polls of the used ring.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use vmm_lite::config::{DiskConfig, PmemConfig, VsockConfig};
use vmm_lite::payload::{Payload, PayloadRun, TempFile, require_kvm};

/// The first virtio-mmio window (each test has one device).
const WINDOW: u64 = 0xd000_0000;
/// Queue size every payload uses.
const QSIZE: u32 = 8;
/// Poll bound for a used ring: ~3 emulated instructions per round.
const POLL_ROUNDS: u32 = 3_000_000;

// Register offsets (virtio 1.2 §4.2.2).
const MAGIC: i32 = 0x00;
const VERSION: i32 = 0x04;
const DEVICE_ID: i32 = 0x08;
const DEVICE_FEATURES: i32 = 0x10;
const DEVICE_FEATURES_SEL: i32 = 0x14;
const DRIVER_FEATURES: i32 = 0x20;
const DRIVER_FEATURES_SEL: i32 = 0x24;
const QUEUE_SEL: i32 = 0x30;
const QUEUE_NUM_MAX: i32 = 0x34;
const QUEUE_NUM: i32 = 0x38;
const QUEUE_READY: i32 = 0x44;
const QUEUE_NOTIFY: i32 = 0x50;
const INTERRUPT_STATUS: i32 = 0x60;
const INTERRUPT_ACK: i32 = 0x64;
const STATUS: i32 = 0x70;
const QUEUE_DESC: i32 = 0x80;
const QUEUE_DRIVER: i32 = 0x90;
const QUEUE_DEVICE: i32 = 0xa0;
const CONFIG: i32 = 0x100;

const DESC_F_NEXT: u32 = 1;
const DESC_F_WRITE: u32 = 2;

/// Where queue `q`'s rings live in guest RAM.
fn desc(q: u32) -> u64 {
    0x20_0000 + u64::from(q) * 0x4000
}
fn avail(q: u32) -> u64 {
    desc(q) + 0x1000
}
fn used(q: u32) -> u64 {
    desc(q) + 0x2000
}

/// A driver being assembled: RDI holds the window's base, EBX the current step number,
/// which the failure path reports.
struct Driver {
    p: Payload,
    fail: CodeLabel,
}

impl Driver {
    fn new() -> Self {
        let mut p = Payload::new().unwrap();
        p.map_mmio_gap().unwrap();
        p.asm.mov(rdi, WINDOW).unwrap();
        let fail = p.asm.create_label();
        Self { p, fail }
    }

    fn step(&mut self, n: u32) {
        self.p.asm.mov(ebx, n).unwrap();
    }

    fn reg_write(&mut self, offset: i32, value: u32) {
        self.p.asm.mov(dword_ptr(rdi + offset), value).unwrap();
    }

    /// Step `n`: the 32-bit register (or config word) at `offset` equals `value`.
    fn expect_reg(&mut self, n: u32, offset: i32, value: u32) {
        self.step(n);
        self.p.asm.cmp(dword_ptr(rdi + offset), value).unwrap();
        self.p.asm.jne(self.fail).unwrap();
    }

    /// Step `n`: the 32-bit word at guest-physical `addr` equals `value`.
    fn expect_mem32(&mut self, n: u32, addr: u64, value: u32) {
        self.step(n);
        self.p.asm.cmp(dword_ptr(addr), value).unwrap();
        self.p.asm.jne(self.fail).unwrap();
    }

    fn store8(&mut self, addr: u64, value: u32) {
        self.p.asm.mov(byte_ptr(addr), value).unwrap();
    }
    fn store16(&mut self, addr: u64, value: u32) {
        self.p.asm.mov(word_ptr(addr), value).unwrap();
    }
    fn store32(&mut self, addr: u64, value: u32) {
        self.p.asm.mov(dword_ptr(addr), value).unwrap();
    }

    /// Steps 1-3 identity, 4-5 features, 6 FEATURES_OK, then each queue (7: its size).
    fn bring_up(&mut self, device_id: u32, queues: u32) {
        self.expect_reg(1, MAGIC, 0x7472_6976);
        self.expect_reg(2, VERSION, 2);
        self.expect_reg(3, DEVICE_ID, device_id);
        self.reg_write(STATUS, 0);
        self.reg_write(STATUS, 1); // ACKNOWLEDGE
        self.reg_write(STATUS, 3); // DRIVER
        // VERSION_1 is bit 32: bit 0 of the second word.
        self.step(4);
        self.reg_write(DEVICE_FEATURES_SEL, 1);
        self.p
            .asm
            .test(dword_ptr(rdi + DEVICE_FEATURES), 1)
            .unwrap();
        self.p.asm.jz(self.fail).unwrap();
        self.reg_write(DRIVER_FEATURES_SEL, 1);
        self.reg_write(DRIVER_FEATURES, 1);
        self.reg_write(DRIVER_FEATURES_SEL, 0);
        self.reg_write(DRIVER_FEATURES, 0);
        self.reg_write(STATUS, 0xb); // FEATURES_OK
        self.expect_reg(6, STATUS, 0xb);
        for q in 0..queues {
            self.reg_write(QUEUE_SEL, q);
            self.step(7);
            self.p
                .asm
                .cmp(dword_ptr(rdi + QUEUE_NUM_MAX), QSIZE)
                .unwrap();
            self.p.asm.jb(self.fail).unwrap();
            self.reg_write(QUEUE_NUM, QSIZE);
            self.reg_write(QUEUE_DESC, desc(q) as u32);
            self.reg_write(QUEUE_DESC + 4, 0);
            self.reg_write(QUEUE_DRIVER, avail(q) as u32);
            self.reg_write(QUEUE_DRIVER + 4, 0);
            self.reg_write(QUEUE_DEVICE, used(q) as u32);
            self.reg_write(QUEUE_DEVICE + 4, 0);
            self.reg_write(QUEUE_READY, 1);
        }
        self.reg_write(STATUS, 0xf); // DRIVER_OK
        self.expect_reg(8, STATUS, 0xf);
    }

    /// Write descriptor `i` of queue `q`.
    fn descriptor(&mut self, q: u32, i: u32, addr: u64, len: u32, flags: u32, next: u32) {
        let at = desc(q) + 16 * u64::from(i);
        self.store32(at, addr as u32);
        self.store32(at + 4, (addr >> 32) as u32);
        self.store32(at + 8, len);
        self.store16(at + 12, flags);
        self.store16(at + 14, next);
    }

    /// Put chain `head` in avail slot `slot` of queue `q` and publish `slot + 1`.
    fn offer(&mut self, q: u32, slot: u32, head: u32) {
        self.store16(avail(q) + 4 + 2 * u64::from(slot % QSIZE), head);
        self.store16(avail(q) + 2, slot + 1);
    }

    fn notify(&mut self, q: u32) {
        self.reg_write(QUEUE_NOTIFY, q);
    }

    /// Step `n`: poll until queue `q`'s used index reaches `idx`.
    fn wait_used(&mut self, n: u32, q: u32, idx: u32) {
        self.step(n);
        let mut again = self.p.asm.create_label();
        let mut ready = self.p.asm.create_label();
        self.p.asm.mov(ecx, POLL_ROUNDS).unwrap();
        self.p.asm.set_label(&mut again).unwrap();
        self.p.asm.cmp(word_ptr(used(q) + 2), idx).unwrap();
        self.p.asm.jae(ready).unwrap();
        self.p.asm.dec(ecx).unwrap();
        self.p.asm.jnz(again).unwrap();
        self.p.asm.jmp(self.fail).unwrap();
        self.p.asm.set_label(&mut ready).unwrap();
    }

    /// Step `n`: poll `InterruptStatus` (each read is an exit, ~15 µs) until the used-buffer
    /// bit is set.
    fn wait_interrupt(&mut self, n: u32) {
        self.step(n);
        let mut again = self.p.asm.create_label();
        let mut ready = self.p.asm.create_label();
        self.p.asm.mov(ecx, 200_000u32).unwrap();
        self.p.asm.set_label(&mut again).unwrap();
        self.p
            .asm
            .test(dword_ptr(rdi + INTERRUPT_STATUS), 1)
            .unwrap();
        self.p.asm.jnz(ready).unwrap();
        self.p.asm.dec(ecx).unwrap();
        self.p.asm.jnz(again).unwrap();
        self.p.asm.jmp(self.fail).unwrap();
        self.p.asm.set_label(&mut ready).unwrap();
    }

    /// Step `n`: the device raised (or raises soon: it updates the ring first) its
    /// used-buffer interrupt; acknowledge it.
    fn expect_interrupt(&mut self, n: u32) {
        self.wait_interrupt(n);
        self.reg_write(INTERRUPT_ACK, 1);
    }

    /// Success reports 0; a failure reports its step.
    fn run(mut self, configure: impl FnOnce(&mut vmm_lite::VmConfig)) -> PayloadRun {
        self.p.done(0).unwrap();
        self.p.asm.set_label(&mut self.fail).unwrap();
        self.p.asm.mov(eax, ebx).unwrap();
        self.p.done_with_eax().unwrap();
        self.p.run(configure).unwrap()
    }
}

fn disk_image() -> TempFile {
    let mut bytes = vec![0u8; 4 * 512];
    bytes[512..520].copy_from_slice(b"HULLBLK!");
    TempFile::with_bytes("disk.img", &bytes).unwrap()
}

#[test]
fn blk_payload_reads_a_sector_and_a_write_to_a_read_only_disk_fails() {
    require_kvm();
    let image = disk_image();
    let mut d = Driver::new();
    d.bring_up(2, 1);
    d.expect_reg(10, CONFIG, 4); // capacity: 4 sectors
    d.expect_reg(11, CONFIG + 4, 0);
    // Request 1: read sector 1 into 0x30_1000; status byte at 0x30_2000.
    d.store32(0x30_0000, 0); // VIRTIO_BLK_T_IN
    d.store32(0x30_0008, 1); // sector
    d.store8(0x30_2000, 0xff);
    d.descriptor(0, 0, 0x30_0000, 16, DESC_F_NEXT, 1);
    d.descriptor(0, 1, 0x30_1000, 512, DESC_F_WRITE | DESC_F_NEXT, 2);
    d.descriptor(0, 2, 0x30_2000, 1, DESC_F_WRITE, 0);
    d.offer(0, 0, 0);
    d.notify(0);
    d.wait_used(12, 0, 1);
    d.expect_interrupt(13);
    d.step(14);
    d.p.asm.cmp(byte_ptr(0x30_2000u64), 0).unwrap(); // VIRTIO_BLK_S_OK
    d.p.asm.jne(d.fail).unwrap();
    d.expect_mem32(15, 0x30_1000, u32::from_le_bytes(*b"HULL"));
    d.expect_mem32(16, 0x30_1004, u32::from_le_bytes(*b"BLK!"));
    // Request 2: write sector 0 on the read-only disk: I/O error (1).
    d.store32(0x30_3000, 1); // VIRTIO_BLK_T_OUT
    d.store32(0x30_3008, 0);
    d.store8(0x30_5000, 0xff);
    d.descriptor(0, 3, 0x30_3000, 16, DESC_F_NEXT, 4);
    d.descriptor(0, 4, 0x30_4000, 512, DESC_F_NEXT, 5);
    d.descriptor(0, 5, 0x30_5000, 1, DESC_F_WRITE, 0);
    d.offer(0, 1, 3);
    d.notify(0);
    d.wait_used(17, 0, 2);
    d.step(18);
    d.p.asm.cmp(byte_ptr(0x30_5000u64), 1).unwrap(); // VIRTIO_BLK_S_IOERR
    d.p.asm.jne(d.fail).unwrap();
    let path = image.0.clone();
    let run = d.run(|c| {
        c.disks.push(DiskConfig {
            path,
            read_only: true,
        })
    });
    assert_eq!(run.code(), Some(0), "{run:?}");
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
    let on_disk = std::fs::read(&image.0).unwrap();
    assert!(
        on_disk[..512].iter().all(|&b| b == 0),
        "the read-only disk was written"
    );
}

#[test]
fn pmem_payload_reads_the_mapped_file_and_flushes() {
    require_kvm();
    let mut bytes = vec![0u8; 2 << 20];
    bytes[..8].copy_from_slice(b"PMEMDATA");
    let image = TempFile::with_bytes("pmem.img", &bytes).unwrap();
    let mut d = Driver::new();
    d.bring_up(27, 1);
    d.expect_reg(10, CONFIG + 8, 2 << 20); // size
    // Map the 2 MiB page holding `start` (from the config space) with a page directory at
    // 0xd000, then read the file's first bytes through it.
    let a = &mut d.p.asm;
    a.mov(rax, qword_ptr(rdi + CONFIG)).unwrap();
    a.mov(rcx, rax).unwrap();
    a.shr(rcx, 30).unwrap();
    a.mov(rdx, 0xd003u64).unwrap();
    a.mov(qword_ptr(rcx * 8 + 0xa000), rdx).unwrap();
    a.mov(rcx, rax).unwrap();
    a.shr(rcx, 21).unwrap();
    a.and(ecx, 511).unwrap();
    a.mov(rdx, rax).unwrap();
    a.and(rdx, -0x20_0000i32).unwrap();
    a.or(rdx, 0x83).unwrap();
    a.mov(qword_ptr(rcx * 8 + 0xd000), rdx).unwrap();
    a.mov(rdx, cr3).unwrap();
    a.mov(cr3, rdx).unwrap();
    d.step(11);
    d.p.asm
        .cmp(dword_ptr(rax), u32::from_le_bytes(*b"PMEM"))
        .unwrap();
    d.p.asm.jne(d.fail).unwrap();
    d.step(12);
    d.p.asm
        .cmp(dword_ptr(rax + 4), u32::from_le_bytes(*b"DATA"))
        .unwrap();
    d.p.asm.jne(d.fail).unwrap();
    // A flush request: type 0; the answer (0 = OK) lands at 0x30_1000.
    d.store32(0x30_0000, 0);
    d.store32(0x30_1000, 0xffff_ffff);
    d.descriptor(0, 0, 0x30_0000, 4, DESC_F_NEXT, 1);
    d.descriptor(0, 1, 0x30_1000, 4, DESC_F_WRITE, 0);
    d.offer(0, 0, 0);
    d.notify(0);
    d.wait_used(13, 0, 1);
    d.expect_interrupt(14);
    d.expect_mem32(15, 0x30_1000, 0);
    let path = image.0.clone();
    let run = d.run(|c| c.pmems.push(PmemConfig { path }));
    assert_eq!(run.code(), Some(0), "{run:?}");
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
}

/// A temp directory for sockets, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vmm-lite-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// vsock guest-side layout: rx buffers at 0x40_0000 + i * 0x2000, tx packets at 0x50_0000.
const RX_BUF: u64 = 0x40_0000;
const RX_LEN: u32 = 4096 + 44;
const TX_BUF: u64 = 0x50_0000;

/// The vsock driver: queues rx, tx, event; four receive buffers offered.
fn vsock_driver() -> Driver {
    let mut d = Driver::new();
    d.bring_up(19, 3);
    d.expect_reg(10, CONFIG, 3); // guest CID
    d.expect_reg(11, CONFIG + 4, 0);
    for i in 0..4 {
        d.descriptor(
            0,
            i,
            RX_BUF + u64::from(i) * 0x2000,
            RX_LEN,
            DESC_F_WRITE,
            0,
        );
        d.store16(avail(0) + 4 + 2 * u64::from(i), i);
    }
    d.store16(avail(0) + 2, 4);
    d.notify(0);
    d
}

/// Write a packet header (guest CID 3 → host CID 2) at `at`; the destination port is the
/// dword at `dst_port_from` when given, else `dst_port`.
fn vsock_header(
    d: &mut Driver,
    at: u64,
    src_port: u32,
    dst_port: (u32, Option<u64>),
    op: u32,
    len: u32,
    fwd_cnt: u32,
) {
    d.store32(at, 3);
    d.store32(at + 4, 0);
    d.store32(at + 8, 2);
    d.store32(at + 12, 0);
    d.store32(at + 16, src_port);
    match dst_port.1 {
        Some(from) => {
            d.p.asm.mov(eax, dword_ptr(from)).unwrap();
            d.p.asm.mov(dword_ptr(at + 20), eax).unwrap();
        }
        None => d.store32(at + 20, dst_port.0),
    }
    d.store32(at + 24, len);
    d.store16(at + 28, 1); // stream
    d.store16(at + 30, op);
    d.store32(at + 32, 0);
    d.store32(at + 36, 65536); // buf_alloc
    d.store32(at + 40, fwd_cnt);
}

/// Step `n`: the packet in receive buffer `i` has operation `op`.
fn expect_rx_op(d: &mut Driver, n: u32, i: u64, op: u32) {
    d.step(n);
    d.p.asm.cmp(word_ptr(RX_BUF + i * 0x2000 + 30), op).unwrap();
    d.p.asm.jne(d.fail).unwrap();
}

#[test]
fn vsock_payload_accepts_a_host_connect_and_exchanges_bytes() {
    require_kvm();
    let dir = TempDir::new("vsock-host");
    let uds = dir.0.join("v.sock");
    // The guest "listens" on port 1024: it answers the REQUEST, takes "ping", sends "pong".
    let mut d = vsock_driver();
    d.wait_used(12, 0, 1);
    d.expect_interrupt(13);
    expect_rx_op(&mut d, 14, 0, 1); // REQUEST
    d.expect_mem32(15, RX_BUF + 20, 1024); // to guest port 1024
    d.expect_mem32(16, RX_BUF, 2); // from the host CID
    vsock_header(&mut d, TX_BUF, 1024, (0, Some(RX_BUF + 16)), 2, 0, 0); // RESPONSE
    d.descriptor(1, 0, TX_BUF, 44, 0, 0);
    d.offer(1, 0, 0);
    d.notify(1);
    d.wait_used(17, 0, 2);
    expect_rx_op(&mut d, 18, 1, 5); // RW
    d.expect_mem32(19, RX_BUF + 0x2000 + 24, 4);
    d.expect_mem32(20, RX_BUF + 0x2000 + 44, u32::from_le_bytes(*b"ping"));
    vsock_header(
        &mut d,
        TX_BUF + 0x1000,
        1024,
        (0, Some(RX_BUF + 16)),
        5,
        4,
        4,
    ); // RW
    d.store32(TX_BUF + 0x1000 + 44, u32::from_le_bytes(*b"pong"));
    d.descriptor(1, 1, TX_BUF + 0x1000, 48, 0, 0);
    d.offer(1, 1, 1);
    d.notify(1);
    d.wait_used(21, 1, 2);

    let host_path = uds.clone();
    let host = std::thread::spawn(move || -> Result<(String, Vec<u8>), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match UnixStream::connect(&host_path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(format!("connect: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"CONNECT 1024\n")
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut ok = String::new();
        reader
            .read_line(&mut ok)
            .map_err(|e| format!("OK line: {e}"))?;
        stream.write_all(b"ping").map_err(|e| e.to_string())?;
        let mut reply = [0u8; 4];
        reader
            .read_exact(&mut reply)
            .map_err(|e| format!("reply: {e}"))?;
        Ok((ok, reply.to_vec()))
    });
    let run = d.run(|c| {
        c.vsock = Some(VsockConfig {
            uds: uds.clone(),
            cid: 3,
        })
    });
    let host = host.join().unwrap();
    assert_eq!(run.code(), Some(0), "{run:?} host: {host:?}");
    let (ok, reply) = host.unwrap();
    assert!(ok.starts_with("OK ") && ok.ends_with('\n'), "{ok:?}");
    assert_eq!(reply, b"pong");
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
}

#[test]
fn vsock_payload_connects_to_a_host_listener_at_path_port() {
    require_kvm();
    let dir = TempDir::new("vsock-guest");
    let uds = dir.0.join("v.sock");
    let listener = UnixListener::bind(dir.0.join("v.sock_5000")).unwrap();
    // The guest connects from port 777 to host port 5000, sends "helo", expects "back".
    let mut d = vsock_driver();
    vsock_header(&mut d, TX_BUF, 777, (5000, None), 1, 0, 0); // REQUEST
    d.descriptor(1, 0, TX_BUF, 44, 0, 0);
    d.offer(1, 0, 0);
    d.notify(1);
    d.wait_used(12, 0, 1);
    expect_rx_op(&mut d, 13, 0, 2); // RESPONSE
    d.expect_mem32(14, RX_BUF + 16, 5000);
    d.expect_mem32(15, RX_BUF + 20, 777);
    vsock_header(&mut d, TX_BUF + 0x1000, 777, (5000, None), 5, 4, 0); // RW
    d.store32(TX_BUF + 0x1000 + 44, u32::from_le_bytes(*b"helo"));
    d.descriptor(1, 1, TX_BUF + 0x1000, 48, 0, 0);
    d.offer(1, 1, 1);
    d.notify(1);
    d.wait_used(16, 0, 2);
    expect_rx_op(&mut d, 17, 1, 5); // RW
    d.expect_mem32(18, RX_BUF + 0x2000 + 44, u32::from_le_bytes(*b"back"));

    let host = std::thread::spawn(move || -> Result<Vec<u8>, String> {
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if Instant::now() > deadline => return Err(format!("accept: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut got = [0u8; 4];
        stream.read_exact(&mut got).map_err(|e| e.to_string())?;
        stream.write_all(b"back").map_err(|e| e.to_string())?;
        Ok(got.to_vec())
    });
    let run = d.run(|c| {
        c.vsock = Some(VsockConfig {
            uds: uds.clone(),
            cid: 3,
        })
    });
    assert_eq!(run.code(), Some(0), "{run:?}");
    assert_eq!(host.join().unwrap(), Ok(b"helo".to_vec()));
}

/// The interrupt path end to end: the device's irqfd → KVM's in-kernel PIC (IRQ 5, the
/// first virtio window's GSI) → the guest's IDT handler, which acknowledges the device and
/// the PIC and sets a flag the payload waits for.
#[test]
fn blk_payload_takes_the_interrupt_through_irqfd_the_pic_and_the_idt() {
    require_kvm();
    const IDT: u64 = 0xe000;
    const IDTR: u64 = 0xf000;
    const FLAG: u64 = 0xf100;
    const VECTOR: u64 = 0x20 + 5;
    let image = disk_image();
    let mut d = Driver::new();
    let mut handler = d.p.asm.create_label();
    let mut after_handler = d.p.asm.create_label();
    let a = &mut d.p.asm;
    a.jmp(after_handler).unwrap();
    // The handler: note the interrupt, ack the device and the PIC.
    a.set_label(&mut handler).unwrap();
    a.push(rax).unwrap();
    a.mov(byte_ptr(FLAG), 1u32).unwrap();
    a.mov(eax, dword_ptr(rdi + INTERRUPT_STATUS)).unwrap();
    a.mov(dword_ptr(rdi + INTERRUPT_ACK), eax).unwrap();
    a.mov(al, 0x20u32).unwrap();
    a.out(0x20, al).unwrap(); // EOI
    a.pop(rax).unwrap();
    a.iretq().unwrap();
    a.set_label(&mut after_handler).unwrap();
    // The gate for the vector: offset pieces, our CS, present 64-bit interrupt gate.
    let gate = IDT + 16 * VECTOR;
    a.lea(rax, ptr(handler)).unwrap();
    a.mov(word_ptr(gate), ax).unwrap();
    a.shr(rax, 16).unwrap();
    a.mov(word_ptr(gate + 6), ax).unwrap();
    a.shr(rax, 16).unwrap();
    a.mov(dword_ptr(gate + 8), eax).unwrap();
    a.mov(ax, cs).unwrap();
    a.mov(word_ptr(gate + 2), ax).unwrap();
    a.mov(word_ptr(gate + 4), 0x8e00u32).unwrap();
    a.mov(word_ptr(IDTR), 0xfffu32).unwrap();
    a.mov(dword_ptr(IDTR + 2), IDT as u32).unwrap();
    a.mov(dword_ptr(IDTR + 6), 0u32).unwrap();
    a.lidt(ptr(IDTR)).unwrap();
    // The 8259s: master vectors 0x20.., slave 0x28.., only IRQ 5 unmasked.
    for (port, value) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, 0x20),
        (0xa1, 0x28),
        (0x21, 0x04),
        (0xa1, 0x02),
        (0x21, 0x01),
        (0xa1, 0x01),
        (0x21, 0xdf),
        (0xa1, 0xff),
    ] {
        a.mov(al, value as u32).unwrap();
        a.out(port, al).unwrap();
    }
    a.sti().unwrap();
    d.bring_up(2, 1);
    d.store32(0x30_0000, 0); // read sector 1
    d.store32(0x30_0008, 1);
    d.descriptor(0, 0, 0x30_0000, 16, DESC_F_NEXT, 1);
    d.descriptor(0, 1, 0x30_1000, 512, DESC_F_WRITE | DESC_F_NEXT, 2);
    d.descriptor(0, 2, 0x30_2000, 1, DESC_F_WRITE, 0);
    d.offer(0, 0, 0);
    d.notify(0);
    // Wait for the handler's flag.
    d.step(12);
    let mut again = d.p.asm.create_label();
    let mut taken = d.p.asm.create_label();
    d.p.asm.mov(ecx, POLL_ROUNDS).unwrap();
    d.p.asm.set_label(&mut again).unwrap();
    d.p.asm.cmp(byte_ptr(FLAG), 1).unwrap();
    d.p.asm.je(taken).unwrap();
    d.p.asm.dec(ecx).unwrap();
    d.p.asm.jnz(again).unwrap();
    d.p.asm.jmp(d.fail).unwrap();
    d.p.asm.set_label(&mut taken).unwrap();
    d.p.asm.cli().unwrap();
    d.expect_mem32(13, used(0) + 2, 1); // used idx 1 (and flags 0)
    d.expect_reg(14, INTERRUPT_STATUS, 0); // the handler acknowledged it
    d.expect_mem32(15, 0x30_1000, u32::from_le_bytes(*b"HULL"));
    let path = image.0.clone();
    let run = d.run(|c| {
        c.disks.push(DiskConfig {
            path,
            read_only: true,
        })
    });
    assert_eq!(run.code(), Some(0), "{run:?}");
}

/// virtio-fs with a vhost-user backend (the fake one of the crate, serving its rings as
/// virtiofsd would): the guest's notify goes through the KVM ioeventfd straight to the
/// backend's kick fd, the backend finds the rings and the buffer through the memory table
/// (guest RAM is a shared memfd) and uses the chain, its call becomes the interrupt.
#[test]
fn fs_payload_gets_a_buffer_used_by_the_vhost_user_backend() {
    use vmm_lite::config::FsConfig;
    use vmm_lite::devices::virtio::fs::fake_backend::{FakeBackend, MARKER};
    require_kvm();
    let dir = TempDir::new("fs");
    let socket = dir.0.join("fs.sock");
    let backend = FakeBackend::spawn(UnixListener::bind(&socket).unwrap(), 2, true);
    let mut d = Driver::new();
    d.bring_up(26, 2); // hiprio + one request queue
    d.expect_reg(10, CONFIG, u32::from_le_bytes(*b"hull"));
    d.expect_reg(11, CONFIG + 4, 0);
    d.expect_reg(12, CONFIG + 36, 1); // one request queue
    d.store32(0x30_1000, 0);
    d.descriptor(1, 0, 0x30_0000, 40, DESC_F_NEXT, 1);
    d.descriptor(1, 1, 0x30_1000, 16, DESC_F_WRITE, 0);
    d.offer(1, 0, 0);
    d.notify(1);
    // The backend's call reaches the VMM after its used-ring update: wait for the interrupt
    // as a driver does, then look at the ring.
    d.expect_interrupt(13);
    d.wait_used(15, 1, 1);
    d.expect_mem32(16, 0x30_1000, MARKER);
    let run = d.run(|c| {
        c.fs.push(FsConfig {
            tag: "hull".into(),
            socket: socket.clone(),
        })
    });
    assert_eq!(run.code(), Some(0), "{run:?}");
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
    backend.join();
}

/// virtiofsd, found on PATH or in the hull tool cache; killed on drop.
struct Virtiofsd {
    child: std::process::Child,
}

impl Virtiofsd {
    fn start(socket: &std::path::Path, shared: &std::path::Path) -> Self {
        let cache = std::env::var_os("HULL_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hull")));
        let candidates = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(cache.map(|c| c.join("tools/bin")))
            .map(|dir| dir.join("virtiofsd"))
            .collect::<Vec<_>>();
        let Some(bin) = candidates.iter().find(|p| p.is_file()) else {
            panic!(
                "this test needs virtiofsd (on PATH or in $HULL_CACHE/tools/bin): run `just setup`"
            );
        };
        let child = std::process::Command::new(bin)
            .arg(format!("--socket-path={}", socket.display()))
            .arg(format!("--shared-dir={}", shared.display()))
            .args([
                "--sandbox",
                "none",
                "--cache",
                "never",
                "--log-level",
                "error",
            ])
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut me = Self { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(status)) = me.child.try_wait() {
                panic!("virtiofsd exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "virtiofsd did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        me
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real virtiofsd behind vmm-lite's vhost-user-fs: the payload sends FUSE_INIT on the
/// request queue and gets virtiofsd's answer (FUSE 7.x, no error) with the interrupt.
#[test]
fn fs_payload_gets_fuse_init_answered_by_virtiofsd() {
    use vmm_lite::config::FsConfig;
    require_kvm();
    let dir = TempDir::new("virtiofsd");
    let shared = dir.0.join("share");
    std::fs::create_dir_all(&shared).unwrap();
    let socket = dir.0.join("fs.sock");
    let _daemon = Virtiofsd::start(&socket, &shared);
    let mut d = Driver::new();
    d.bring_up(26, 2);
    // fuse_in_header (40 bytes) + fuse_init_in (major, minor, max_readahead, flags).
    const REQ: u64 = 0x30_0000;
    const RESP: u64 = 0x30_1000;
    d.store32(REQ, 56); // len
    d.store32(REQ + 4, 26); // FUSE_INIT
    d.store32(REQ + 8, 1); // unique
    d.store32(REQ + 40, 7); // major
    d.store32(REQ + 44, 31); // minor
    d.store32(RESP + 4, 0xdead);
    d.descriptor(1, 0, REQ, 56, DESC_F_NEXT, 1);
    d.descriptor(1, 1, RESP, 80, DESC_F_WRITE, 0);
    d.offer(1, 0, 0);
    d.notify(1);
    d.expect_interrupt(13);
    d.wait_used(14, 1, 1);
    d.expect_mem32(15, RESP + 4, 0); // fuse_out_header.error
    d.expect_mem32(16, RESP + 8, 1); // unique echoed
    d.expect_mem32(17, RESP + 16, 7); // fuse_init_out.major
    let run = d.run(|c| {
        c.fs.push(FsConfig {
            tag: "share".into(),
            socket: socket.clone(),
        })
    });
    assert_eq!(run.code(), Some(0), "{run:?}");
}

/// A raw packet socket on interface `ifindex` for the test's ethertype.
struct PacketSocket(std::os::fd::OwnedFd);

const ETHERTYPE: u16 = 0x88b5; // IEEE local experimental

impl PacketSocket {
    fn bind(ifindex: i32) -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        let proto = i32::from(ETHERTYPE.to_be());
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor we own.
        let sock = Self(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETHERTYPE.to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: binding our socket to an address we own, with its size.
        let rc = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: SO_RCVTIMEO reads a timeval of the given size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(sock)
    }

    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: send(2) reads `frame` for its length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn recv(&self) -> Option<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 2048];
        // SAFETY: recv(2) writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }
}

/// virtio-net on a real tap: the host sends an Ethernet frame into the tap, the guest
/// receives it ("ping") and answers with a broadcast frame ("pong") the host reads.
#[test]
fn net_payload_exchanges_frames_with_the_host_through_a_tap() {
    use vmm_lite::config::NetConfig;
    require_kvm();
    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    let tap = format!("vmmlt{}", std::process::id() % 100_000);
    let mut d = Driver::new();
    d.bring_up(1, 2);
    d.expect_reg(
        10,
        CONFIG,
        u32::from_le_bytes([MAC[0], MAC[1], MAC[2], MAC[3]]),
    );
    // Receive: one buffer of 1526 bytes (12-byte header + a full frame).
    d.descriptor(0, 0, 0x30_0000, 1526, DESC_F_WRITE, 0);
    d.offer(0, 0, 0);
    d.notify(0);
    d.wait_used(11, 0, 1);
    d.expect_interrupt(12);
    d.expect_mem32(13, 0x30_0000 + 12 + 14, u32::from_le_bytes(*b"ping"));
    // Transmit: header, broadcast destination, our MAC, the ethertype, "pong".
    const TX: u64 = 0x31_0000;
    for (i, byte) in [0xffu8; 6]
        .iter()
        .chain(MAC.iter())
        .chain(ETHERTYPE.to_be_bytes().iter())
        .chain(b"pong".iter())
        .enumerate()
    {
        d.store8(TX + 12 + i as u64, u32::from(*byte));
    }
    d.descriptor(1, 0, TX, 12 + 14 + 4 + 30, 0, 0); // padded to the Ethernet minimum
    d.offer(1, 0, 0);
    d.notify(1);
    d.wait_used(14, 1, 1);

    let host_tap = tap.clone();
    let host = std::thread::spawn(move || -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let sys = PathBuf::from(format!("/sys/class/net/{host_tap}"));
        while !sys.exists() {
            if Instant::now() > deadline {
                return Err("the tap never appeared".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // No IPv6 chatter into the guest's one buffer; then link up.
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{host_tap}/disable_ipv6"),
            "1",
        );
        let up = std::process::Command::new("ip")
            .args(["link", "set", &host_tap, "up"])
            .status()
            .map_err(|e| format!("ip link set up: {e}"))?;
        if !up.success() {
            return Err(format!("ip link set {host_tap} up: {up}"));
        }
        let ifindex: i32 = std::fs::read_to_string(sys.join("ifindex"))
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("ifindex: {e}"))?;
        let sock = PacketSocket::bind(ifindex).map_err(|e| format!("packet socket: {e}"))?;
        let mut ping = Vec::new();
        ping.extend_from_slice(&MAC);
        ping.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        ping.extend_from_slice(&ETHERTYPE.to_be_bytes());
        ping.extend_from_slice(b"ping");
        ping.resize(60, 0);
        sock.send(&ping).map_err(|e| format!("send: {e}"))?;
        while Instant::now() < deadline {
            if let Some(frame) = sock.recv()
                && frame.get(14..18) == Some(&b"pong"[..])
            {
                return Ok(frame);
            }
        }
        Err("no pong from the guest".into())
    });
    let run = d.run(|c| {
        c.net.push(NetConfig {
            tap: tap.clone(),
            mac: MAC,
        })
    });
    let host = host.join().unwrap();
    assert_eq!(run.code(), Some(0), "{run:?}; host: {host:?}");
    let frame = host.unwrap();
    assert_eq!(&frame[6..12], &MAC, "the guest's source MAC");
    assert!(
        !PathBuf::from(format!("/sys/class/net/{tap}")).exists(),
        "the tap outlived the VM"
    );
}

//! virtio-vsock (device id 19) with a hybrid-vsock backend: guest stream sockets meet
//! host Unix sockets, with Firecracker's conventions.
//!
//! - **Host to guest.** The host connects to the Unix socket at `PATH`, writes
//!   `CONNECT <port>\n`, and the device sends the guest a connection REQUEST for `<port>`
//!   from a fresh host port. When the guest accepts (RESPONSE) the host reads
//!   `OK <hostport>\n` and then the byte stream; when nothing listens on that guest port the
//!   guest answers RST and the host reads end of file.
//! - **Guest to host.** A guest connection to host CID 2, port `P`, is connected to the Unix
//!   listener at `PATH_P`; no listener there means RST to the guest.
//!
//! Queues: 0 receive (device → guest; the driver posts empty buffers), 1 transmit
//! (guest → device), 2 events (unused here: no migration). Each packet is a 44-byte header
//! ([`packet::Header`]) and its payload. Control packets (RESPONSE, RST, SHUTDOWN, credit)
//! wait in a queue for receive buffers; data is read from a host socket only when the guest
//! has credit and a receive buffer is free, so a slow guest slows the host, never the other
//! way round, and nothing is dropped.
//!
//! Everything runs in the VMM's event loop: the queue eventfds, the listener, every
//! connection's socket (edge-triggered) and a timer for connections the guest never
//! answers.

pub mod connection;
pub mod packet;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use self::connection::{BUF_ALLOC, Connection, Flush, State};
use self::packet::{HDR_LEN, HOST_CID, Header, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM, op};
use super::{
    ActivateError, Activation, GuestMemory, Interrupt, VIRTIO_F_VERSION_1, VirtioDevice,
    read_config_bytes,
};

/// The virtio device id of vsock.
pub const VIRTIO_ID_VSOCK: u32 = 19;
const QUEUE_SIZE: u16 = 256;
const RX: usize = 0;
const TX: usize = 1;
const EVT: usize = 2;
/// How long the guest has to answer a host-initiated connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest payload of one data packet to the guest.
const MAX_PAYLOAD: usize = 64 * 1024;
/// Longest `CONNECT <port>\n` line accepted.
const MAX_CONNECT_LINE: usize = 32;
/// First host port handed out to host-initiated connections.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// Why the vsock device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The Unix socket cannot be created.
    #[error("cannot listen on the vsock Unix socket {path}: {source}")]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The guest CID is reserved.
    #[error("guest CID {0} is reserved (use 3 or more)")]
    ReservedCid(u64),
    /// An eventfd or timerfd could not be created.
    #[error("cannot create an event source: {0}")]
    Event(io::Error),
}

/// Identifies a connection: (host port, guest port).
type Key = (u32, u32);

/// A control packet waiting for a receive buffer.
#[derive(Debug, Clone, Copy)]
struct Control {
    key: Key,
    op: u16,
    flags: u32,
}

/// A host connection that has not finished its `CONNECT` line yet.
struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
}

struct Active {
    mem: GuestMemory,
    queues: Vec<Queue>,
    interrupt: Arc<Interrupt>,
}

/// The virtio-vsock device.
pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    queue_events: Vec<EventFd>,
    /// Wakes the event loop after activation or reset (from a vCPU thread).
    kick: EventFd,
    timer: TimerFd,
    config: [u8; 8],
    conns: HashMap<Key, Connection>,
    by_fd: HashMap<RawFd, Key>,
    handshakes: HashMap<RawFd, Handshake>,
    control: VecDeque<Control>,
    /// Sockets to unregister and close (the event loop does it, it owns the epoll).
    graveyard: Vec<UnixStream>,
    next_local_port: u32,
    /// Round-robin start for the fair choice of a connection to read.
    cursor: usize,
    active: Option<Active>,
}

impl Vsock {
    /// A device for guest `guest_cid`, listening on `uds_path` (removed first if it is a
    /// stale socket).
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Self, VsockError> {
        if guest_cid < 3 || guest_cid > u64::from(u32::MAX) {
            return Err(VsockError::ReservedCid(guest_cid));
        }
        let listen_err = |source| VsockError::Listen {
            path: uds_path.to_owned(),
            source,
        };
        if let Ok(meta) = std::fs::symlink_metadata(uds_path)
            && std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type())
        {
            let _ = std::fs::remove_file(uds_path);
        }
        let listener = UnixListener::bind(uds_path).map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        let event = || EventFd::new(libc::EFD_NONBLOCK).map_err(VsockError::Event);
        let mut timer = TimerFd::new().map_err(|e| VsockError::Event(e.into()))?;
        let tick = Duration::from_millis(250);
        timer
            .reset(tick, Some(tick))
            .map_err(|e| VsockError::Event(e.into()))?;
        Ok(Self {
            guest_cid,
            uds_path: uds_path.to_owned(),
            listener,
            queue_events: vec![event()?, event()?, event()?],
            kick: event()?,
            timer,
            config: guest_cid.to_le_bytes(),
            conns: HashMap::new(),
            by_fd: HashMap::new(),
            handshakes: HashMap::new(),
            control: VecDeque::new(),
            graveyard: Vec::new(),
            next_local_port: FIRST_LOCAL_PORT,
            cursor: 0,
            active: None,
        })
    }

    /// The host Unix socket path.
    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    fn watch(ops: &mut EventOps, stream: &UnixStream) {
        let set = EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        if let Err(error) = ops.add(Events::new(stream, set)) {
            tracing::error!(?error, "vsock: cannot watch a connection");
        }
    }

    /// Close a connection: its socket goes to the graveyard, the host sees end of file.
    fn close(&mut self, key: Key) {
        if let Some(conn) = self.conns.remove(&key) {
            self.by_fd.remove(&conn.stream.as_raw_fd());
            self.graveyard.push(conn.stream);
        }
    }

    fn reset_connection(&mut self, key: Key) {
        self.close(key);
        self.control.push_back(Control {
            key,
            op: op::RST,
            flags: 0,
        });
    }

    fn bury(&mut self, ops: &mut EventOps) {
        for stream in self.graveyard.drain(..) {
            let _ = ops.remove(Events::empty(&stream));
        }
    }

    fn accept(&mut self, ops: &mut EventOps) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(error) = stream.set_nonblocking(true) {
                        tracing::warn!(%error, "vsock: dropping a host connection");
                        continue;
                    }
                    Self::watch(ops, &stream);
                    self.handshakes.insert(
                        stream.as_raw_fd(),
                        Handshake {
                            stream,
                            line: Vec::new(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::warn!(%error, "vsock: accept failed");
                    return;
                }
            }
        }
    }

    /// Read a host connection's `CONNECT <port>\n` line; once complete, ask the guest.
    fn read_handshake(&mut self, fd: RawFd) {
        let Some(hs) = self.handshakes.get_mut(&fd) else {
            return;
        };
        let mut buf = [0u8; 256];
        let outcome = loop {
            match hs.stream.read(&mut buf) {
                Ok(0) => break Err("closed before CONNECT"),
                Ok(n) => {
                    hs.line.extend_from_slice(&buf[..n]);
                    if hs.line.contains(&b'\n') {
                        break Ok(());
                    }
                    if hs.line.len() > MAX_CONNECT_LINE {
                        break Err("CONNECT line too long");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break Err("read error"),
            }
        };
        let Some(hs) = self.handshakes.remove(&fd) else {
            return;
        };
        let port = outcome.and_then(|()| parse_connect(&hs.line).ok_or("malformed CONNECT"));
        let (port, rest) = match port {
            Ok(found) => found,
            Err(why) => {
                tracing::debug!(why, "vsock: host connection dropped");
                self.graveyard.push(hs.stream);
                return;
            }
        };
        let local_port = self.allocate_port(port);
        let key = (local_port, port);
        let mut conn = Connection::new(
            hs.stream,
            State::AwaitingResponse { deadline: None },
            local_port,
            port,
        );
        conn.from_host = rest;
        self.by_fd.insert(fd, key);
        self.conns.insert(key, conn);
        self.control.push_back(Control {
            key,
            op: op::REQUEST,
            flags: 0,
        });
    }

    fn allocate_port(&mut self, peer_port: u32) -> u32 {
        loop {
            let port = self.next_local_port;
            self.next_local_port = self.next_local_port.wrapping_add(1).max(FIRST_LOCAL_PORT);
            if !self.conns.contains_key(&(port, peer_port)) {
                return port;
            }
        }
    }

    /// Handle a host socket's readiness.
    fn host_ready(&mut self, key: Key, set: EventSet) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        if let State::AwaitingResponse { deadline } = conn.state
            && set.intersects(EventSet::HANG_UP | EventSet::ERROR)
        {
            // The host gave up before the guest answered: forget the request, and if the
            // guest already has it, reset the connection it may accept.
            self.control.retain(|c| c.key != key);
            if deadline.is_some() {
                self.reset_connection(key);
            } else {
                self.close(key);
            }
            return;
        }
        if set
            .intersects(EventSet::IN | EventSet::READ_HANG_UP | EventSet::HANG_UP | EventSet::ERROR)
        {
            conn.readable = true;
        }
        if set.contains(EventSet::OUT) && conn.state == State::Established {
            self.flush(key);
        }
    }

    /// Write buffered guest data to the host; tear down on a broken socket.
    fn flush(&mut self, key: Key) {
        let Some(conn) = self.conns.get_mut(&key) else {
            return;
        };
        match conn.flush_to_host() {
            Flush::Broken => self.reset_connection(key),
            Flush::Ok => {
                if conn.peer_shutdown & SHUTDOWN_SEND != 0 && !conn.has_pending_to_host() {
                    let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                }
                if conn.wants_credit_update() {
                    self.control.push_back(Control {
                        key,
                        op: op::CREDIT_UPDATE,
                        flags: 0,
                    });
                }
            }
        }
    }

    /// Handle one packet the guest sent.
    fn guest_packet(&mut self, ops: &mut EventOps, hdr: Header, payload: &[u8]) {
        let key = (hdr.dst_port, hdr.src_port);
        if hdr.dst_cid != HOST_CID || hdr.src_cid != self.guest_cid || hdr.kind != TYPE_STREAM {
            tracing::debug!(?hdr, "vsock: packet not for a host stream");
            if hdr.op != op::RST && hdr.src_cid == self.guest_cid {
                self.control.push_back(Control {
                    key,
                    op: op::RST,
                    flags: 0,
                });
            }
            return;
        }
        let Some(conn) = self.conns.get_mut(&key) else {
            match hdr.op {
                op::REQUEST => self.guest_connect(ops, hdr),
                op::RST => {}
                _ => self.control.push_back(Control {
                    key,
                    op: op::RST,
                    flags: 0,
                }),
            }
            return;
        };
        conn.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
        match (hdr.op, conn.state) {
            (op::RESPONSE, State::AwaitingResponse { .. }) => {
                let line = format!("OK {}\n", conn.local_port);
                // A fresh Unix socket's buffer takes a short line whole.
                match conn.stream.write(line.as_bytes()) {
                    Ok(n) if n == line.len() => conn.state = State::Established,
                    _ => self.reset_connection(key),
                }
            }
            (op::RW, State::Established) => {
                if conn.peer_shutdown & SHUTDOWN_SEND != 0 || !conn.push_to_host(payload) {
                    tracing::warn!(
                        ?key,
                        "vsock: the guest sent past its credit or its shutdown"
                    );
                    self.reset_connection(key);
                } else {
                    self.flush(key);
                }
            }
            (op::CREDIT_UPDATE, _) => {}
            (op::CREDIT_REQUEST, _) => self.control.push_back(Control {
                key,
                op: op::CREDIT_UPDATE,
                flags: 0,
            }),
            (op::SHUTDOWN, State::Established) => {
                conn.peer_shutdown |= hdr.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                let both = conn.peer_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND;
                if both || (conn.peer_shutdown & SHUTDOWN_SEND != 0 && conn.host_eof) {
                    // Closed both ways: flush what we can, then the final RST.
                    let _ = conn.flush_to_host();
                    self.reset_connection(key);
                } else {
                    self.flush(key);
                }
            }
            (op::RST, _) => self.close(key),
            _ => {
                tracing::debug!(?hdr, "vsock: unexpected packet");
                self.reset_connection(key);
            }
        }
    }

    /// The guest connects to host port `hdr.dst_port`: dial `PATH_<port>`.
    fn guest_connect(&mut self, ops: &mut EventOps, hdr: Header) {
        let key = (hdr.dst_port, hdr.src_port);
        let path = format!("{}_{}", self.uds_path.display(), hdr.dst_port);
        let stream = UnixStream::connect(&path).and_then(|s| s.set_nonblocking(true).map(|()| s));
        match stream {
            Ok(stream) => {
                Self::watch(ops, &stream);
                let mut conn = Connection::new(stream, State::Established, key.0, key.1);
                conn.update_peer_credit(hdr.buf_alloc, hdr.fwd_cnt);
                self.by_fd.insert(conn.stream.as_raw_fd(), key);
                self.conns.insert(key, conn);
                self.control.push_back(Control {
                    key,
                    op: op::RESPONSE,
                    flags: 0,
                });
            }
            Err(error) => {
                tracing::debug!(%error, path, "vsock: no host listener for the guest");
                self.control.push_back(Control {
                    key,
                    op: op::RST,
                    flags: 0,
                });
            }
        }
    }

    fn header(&mut self, key: Key, op: u16, flags: u32, len: usize) -> Header {
        let (buf_alloc, fwd_cnt) = match self.conns.get_mut(&key) {
            Some(conn) => (BUF_ALLOC, conn.fwd_cnt_for_packet()),
            None => (0, 0),
        };
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.0,
            dst_port: key.1,
            len: len as u32,
            kind: TYPE_STREAM,
            op,
            flags,
            buf_alloc,
            fwd_cnt,
        }
    }

    /// The next packet for the guest that fits `max_payload`, if any.
    fn next_packet(&mut self, max_payload: usize) -> Option<(Header, Vec<u8>)> {
        if let Some(c) = self.control.pop_front() {
            if c.op == op::REQUEST
                && let Some(conn) = self.conns.get_mut(&c.key)
            {
                conn.state = State::AwaitingResponse {
                    deadline: Some(Instant::now() + RESPONSE_TIMEOUT),
                };
            }
            return Some((self.header(c.key, c.op, c.flags, 0), Vec::new()));
        }
        let mut keys: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.state == State::Established
                    && (c.readable || !c.from_host.is_empty())
                    && !c.host_eof
                    && c.peer_shutdown & SHUTDOWN_RCV == 0
            })
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        if keys.is_empty() {
            return None;
        }
        self.cursor = self.cursor.wrapping_add(1);
        let start = self.cursor % keys.len();
        for i in 0..keys.len() {
            let key = keys[(start + i) % keys.len()];
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            let credit = conn.peer_credit() as usize;
            if credit == 0 {
                if !conn.credit_requested {
                    conn.credit_requested = true;
                    return Some((self.header(key, op::CREDIT_REQUEST, 0, 0), Vec::new()));
                }
                continue;
            }
            match conn.read_from_host(credit.min(max_payload).min(MAX_PAYLOAD)) {
                Ok(None) => continue,
                Ok(Some(data)) if data.is_empty() => {
                    conn.host_eof = true;
                    if conn.peer_shutdown & SHUTDOWN_SEND != 0 {
                        self.reset_connection(key);
                        return self.next_packet(max_payload);
                    }
                    return Some((self.header(key, op::SHUTDOWN, SHUTDOWN_SEND, 0), Vec::new()));
                }
                Ok(Some(data)) => {
                    conn.sent_to_guest(data.len());
                    return Some((self.header(key, op::RW, 0, data.len()), data));
                }
                Err(error) => {
                    tracing::debug!(%error, ?key, "vsock: host socket failed");
                    self.reset_connection(key);
                    return self.next_packet(max_payload);
                }
            }
        }
        None
    }

    /// Fill the guest's receive buffers with whatever is ready. Returns whether any
    /// buffer was used.
    fn pump_rx(&mut self) -> bool {
        let Some(mut active) = self.active.take() else {
            return false;
        };
        let mem = active.mem.clone();
        let mut used = false;
        loop {
            let rx = &mut active.queues[RX];
            let Some(chain) = rx.pop_descriptor_chain(&mem) else {
                break;
            };
            let head = chain.head_index();
            let mut writer = match chain.writer(&mem) {
                Ok(w) if w.available_bytes() >= HDR_LEN => w,
                _ => {
                    tracing::warn!("vsock: a receive buffer too small for a header");
                    let _ = active.queues[RX].add_used(&mem, head, 0);
                    used = true;
                    continue;
                }
            };
            let Some((hdr, payload)) = self.next_packet(writer.available_bytes() - HDR_LEN) else {
                active.queues[RX].go_to_previous_position();
                break;
            };
            let ok = writer.write_all(&hdr.encode()).is_ok() && writer.write_all(&payload).is_ok();
            if !ok {
                tracing::warn!("vsock: cannot write a packet into guest memory");
            }
            let len = (HDR_LEN + payload.len()) as u32;
            if let Err(error) = active.queues[RX].add_used(&mem, head, len) {
                tracing::error!(%error, "vsock: cannot return a receive buffer");
            }
            used = true;
        }
        if used {
            active.interrupt.signal_used_queue();
        }
        self.active = Some(active);
        used
    }

    /// Take every packet the guest queued for sending. The buffers go back to the guest
    /// only after their packets were handled, so a driver that saw its buffer used knows
    /// the bytes reached the host socket (or its buffer).
    fn process_tx(&mut self, ops: &mut EventOps) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mem = active.mem.clone();
        let mut heads = Vec::new();
        let mut packets = Vec::new();
        while let Some(chain) = active.queues[TX].pop_descriptor_chain(&mem) {
            heads.push(chain.head_index());
            if let Ok(mut reader) = chain.reader(&mem) {
                let mut hdr = [0u8; HDR_LEN];
                if reader.read_exact(&mut hdr).is_ok() {
                    let hdr = Header::decode(&hdr);
                    let len = (hdr.len as usize).min(reader.available_bytes());
                    let mut payload = vec![0u8; len];
                    if reader.read_exact(&mut payload).is_ok() {
                        packets.push((hdr, payload));
                    }
                }
            }
        }
        for (hdr, payload) in packets {
            self.guest_packet(ops, hdr, &payload);
        }
        let Some(active) = self.active.as_mut() else {
            return;
        };
        for &head in &heads {
            if let Err(error) = active.queues[TX].add_used(&mem, head, 0) {
                tracing::error!(%error, "vsock: cannot return a transmit buffer");
            }
        }
        if !heads.is_empty() {
            active.interrupt.signal_used_queue();
        }
    }

    /// Give up on host connections the guest did not answer in time.
    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.state, State::AwaitingResponse { deadline: Some(d) } if d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in late {
            tracing::debug!(?key, "vsock: the guest did not answer a connection");
            self.reset_connection(key);
        }
    }

    /// Drop every connection (device reset). The host sees end of file on each.
    fn drop_all(&mut self) {
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for key in keys {
            self.close(key);
        }
        self.control.clear();
    }
}

impl Drop for Vsock {
    /// The socket file goes with the device, so a later VMM (or a host dialer) does not
    /// find a dead socket.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}

/// Parse `CONNECT <port>\n`; returns the port and any bytes after the line.
fn parse_connect(line: &[u8]) -> Option<(u32, Vec<u8>)> {
    let end = line.iter().position(|&b| b == b'\n')?;
    let text = std::str::from_utf8(&line[..end]).ok()?;
    let port = text
        .trim_end_matches('\r')
        .strip_prefix("CONNECT ")?
        .trim()
        .parse()
        .ok()?;
    Some((port, line[end + 1..].to_vec()))
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; 3]
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
        if activation.queues.len() != 3 {
            return Err(ActivateError::QueueCount {
                expected: 3,
                got: activation.queues.len(),
            });
        }
        self.active = Some(Active {
            mem: activation.mem,
            queues: activation.queues,
            interrupt: activation.interrupt,
        });
        let _ = self.kick.write(1);
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.drop_all();
        let _ = self.kick.write(1);
    }
}

impl MutEventSubscriber for Vsock {
    fn init(&mut self, ops: &mut EventOps) {
        let sources: [&dyn AsRawFd; 6] = [
            &self.queue_events[RX],
            &self.queue_events[TX],
            &self.queue_events[EVT],
            &self.kick,
            &self.timer,
            &self.listener,
        ];
        for source in sources {
            if let Err(error) = ops.add(Events::new_raw(source.as_raw_fd(), EventSet::IN)) {
                tracing::error!(?error, "vsock: cannot watch an event source");
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let fd = events.fd();
        if fd == self.queue_events[RX].as_raw_fd() {
            let _ = self.queue_events[RX].read();
        } else if fd == self.queue_events[TX].as_raw_fd() {
            let _ = self.queue_events[TX].read();
            self.process_tx(ops);
        } else if fd == self.queue_events[EVT].as_raw_fd() {
            let _ = self.queue_events[EVT].read();
        } else if fd == self.kick.as_raw_fd() {
            let _ = self.kick.read();
            // Packets the guest queued before activation.
            self.process_tx(ops);
        } else if fd == self.timer.as_raw_fd() {
            let _ = self.timer.wait();
            self.expire();
        } else if fd == self.listener.as_raw_fd() {
            self.accept(ops);
        } else if self.handshakes.contains_key(&fd) {
            self.read_handshake(fd);
        } else if let Some(&key) = self.by_fd.get(&fd) {
            self.host_ready(key, events.event_set());
        }
        self.pump_rx();
        self.bury(ops);
    }
}

#[cfg(test)]
mod tests;

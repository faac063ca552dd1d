//! One stream connection between a guest socket and a host Unix socket.
//!
//! Credit-based flow control (virtio 1.2 §5.10.6.3): each side tells the other, on every
//! packet, how much it can buffer (`buf_alloc`) and how many bytes it has consumed so far
//! (`fwd_cnt`). A sender may have at most `buf_alloc - (sent - fwd_cnt)` bytes in flight.
//! Here the device buffers what the guest sends in `to_host` until the host socket takes
//! it, and reads from the host socket only as much as the guest said it can take.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::num::Wrapping;
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// How much guest data the device buffers per connection (its `buf_alloc`).
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Send a credit update once this much was forwarded since the guest last heard.
const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 4;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The host dialled and sent `CONNECT`: the device asked the guest and waits for its
    /// RESPONSE (`deadline` is set once the request reached the guest).
    AwaitingResponse {
        /// When to give up.
        deadline: Option<Instant>,
    },
    /// Bytes flow both ways.
    Established,
}

/// What a write of guest data to the host socket came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything buffered went out, or the socket is full for now.
    Ok,
    /// The host side is gone.
    Broken,
}

/// A connection; the host port is `local_port`, the guest port `peer_port`.
#[derive(Debug)]
pub struct Connection {
    /// The host side: the socket the host dialled, or the one the device dialled at
    /// `<uds>_P`; non-blocking.
    pub stream: UnixStream,
    /// Whether the guest has accepted the connection yet.
    pub state: State,
    /// The host end's vsock port: allocated by the device for a host-dialled connection,
    /// the guest's destination port for a guest-dialled one.
    pub local_port: u32,
    /// The guest end's vsock port.
    pub peer_port: u32,
    /// Guest bytes not yet written to the host socket.
    to_host: VecDeque<u8>,
    /// Host bytes read ahead (after the `CONNECT` line) not yet sent to the guest.
    pub from_host: Vec<u8>,
    /// Guest bytes written to the host socket.
    pub fwd_cnt: Wrapping<u32>,
    last_fwd_cnt_sent: Wrapping<u32>,
    /// Bytes sent to the guest.
    rx_cnt: Wrapping<u32>,
    peer_buf_alloc: u32,
    peer_fwd_cnt: Wrapping<u32>,
    /// The host socket may have data (edge-triggered readiness seen, not yet drained).
    pub readable: bool,
    /// The host socket reached end of file; the guest was told.
    pub host_eof: bool,
    /// `SHUTDOWN` flags the guest sent so far.
    pub peer_shutdown: u32,
    /// A `CREDIT_REQUEST` is out and unanswered.
    pub credit_requested: bool,
}

impl Connection {
    /// A connection over `stream`.
    pub fn new(stream: UnixStream, state: State, local_port: u32, peer_port: u32) -> Self {
        Self {
            stream,
            state,
            local_port,
            peer_port,
            to_host: VecDeque::new(),
            from_host: Vec::new(),
            fwd_cnt: Wrapping(0),
            last_fwd_cnt_sent: Wrapping(0),
            rx_cnt: Wrapping(0),
            peer_buf_alloc: 0,
            peer_fwd_cnt: Wrapping(0),
            readable: true,
            host_eof: false,
            peer_shutdown: 0,
            credit_requested: false,
        }
    }

    /// Record the guest's credit from a packet it sent.
    pub fn update_peer_credit(&mut self, buf_alloc: u32, fwd_cnt: u32) {
        self.peer_buf_alloc = buf_alloc;
        self.peer_fwd_cnt = Wrapping(fwd_cnt);
        self.credit_requested = false;
    }

    /// How many bytes the guest can take now.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = (self.rx_cnt - self.peer_fwd_cnt).0;
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Our `fwd_cnt` as it goes out on a packet; returns it.
    pub fn fwd_cnt_for_packet(&mut self) -> u32 {
        self.last_fwd_cnt_sent = self.fwd_cnt;
        self.fwd_cnt.0
    }

    /// Whether the guest should hear about freed buffer space.
    pub fn wants_credit_update(&self) -> bool {
        (self.fwd_cnt - self.last_fwd_cnt_sent).0 >= CREDIT_UPDATE_THRESHOLD
    }

    /// Account for `n` bytes sent to the guest.
    pub fn sent_to_guest(&mut self, n: usize) {
        self.rx_cnt += Wrapping(n as u32);
    }

    /// Queue guest data for the host. False if the guest overran the credit it was given.
    pub fn push_to_host(&mut self, data: &[u8]) -> bool {
        if self.to_host.len() + data.len() > BUF_ALLOC as usize {
            return false;
        }
        self.to_host.extend(data);
        true
    }

    /// Whether guest data still waits for the host socket.
    pub fn has_pending_to_host(&self) -> bool {
        !self.to_host.is_empty()
    }

    /// Write buffered guest data to the host socket until it is drained or full.
    pub fn flush_to_host(&mut self) -> Flush {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Flush::Broken,
                Ok(n) => {
                    self.to_host.drain(..n);
                    self.fwd_cnt += Wrapping(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flush::Ok,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Flush::Broken,
            }
        }
        Flush::Ok
    }

    /// Read up to `max` host bytes for the guest. `Ok(None)`: nothing now (socket drained).
    /// `Ok(Some(empty))`: end of file.
    pub fn read_from_host(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        if !self.from_host.is_empty() {
            let n = max.min(self.from_host.len());
            let rest = self.from_host.split_off(n);
            return Ok(Some(std::mem::replace(&mut self.from_host, rest)));
        }
        let mut buf = vec![0u8; max];
        loop {
            match self.stream.read(&mut buf) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_accounting_wraps_and_never_goes_negative() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut c = Connection::new(a, State::Established, 1, 2);
        assert_eq!(c.peer_credit(), 0);
        c.update_peer_credit(1000, u32::MAX - 10);
        c.rx_cnt = Wrapping(u32::MAX - 10);
        assert_eq!(c.peer_credit(), 1000);
        c.sent_to_guest(600);
        assert_eq!(c.peer_credit(), 400);
        c.sent_to_guest(600);
        assert_eq!(c.peer_credit(), 0);
        c.update_peer_credit(1000, (Wrapping(u32::MAX - 10) + Wrapping(1200)).0);
        assert_eq!(c.peer_credit(), 1000);
    }

    #[test]
    fn guest_data_is_buffered_within_credit_and_flushed() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut c = Connection::new(a, State::Established, 1, 2);
        assert!(c.push_to_host(b"hello"));
        assert!(!c.push_to_host(&vec![0u8; BUF_ALLOC as usize]));
        assert_eq!(c.flush_to_host(), Flush::Ok);
        assert_eq!(c.fwd_cnt.0, 5);
        let mut got = [0u8; 5];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert!(!c.wants_credit_update());
        drop(b);
        assert!(c.push_to_host(b"x"));
        assert_eq!(c.flush_to_host(), Flush::Broken);
    }
}

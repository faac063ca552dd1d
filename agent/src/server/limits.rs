//! What connections may cost the agent, enforced by a layer between the listening socket
//! and ttRPC's server (which has no limits of its own but its 4 MiB frame maximum).
//!
//! ttRPC reads a frame's 10-byte header, then allocates the whole body the header
//! declares before reading it. This layer sees every byte first, parses the frame
//! headers going each way, and:
//! - lets a frame larger than [`MAX_FRAME`] through uncharged: ttRPC answers it
//!   INVALID_ARGUMENT and discards its body a page at a time, never buffering it whole;
//! - keeps the bytes declared by frames not yet fully received, over all connections,
//!   under [`FRAME_BUDGET`]: past it, connections holding a stalled partial frame are
//!   closed, the longest stalled first; if none can be, the new frame's connection is;
//! - closes a connection whose partial frame made no progress for [`STALL_TIMEOUT`];
//! - stops reading from a connection with [`MAX_PENDING_REQUESTS`] requests awaiting
//!   their answer, until answers go out (back-pressure, nothing is dropped);
//! - keeps at most [`MAX_CONNECTIONS`]: a new one sheds the connection idle the longest
//!   (no request waiting for its answer), or is refused when every connection is busy;
//! - on fd exhaustion (EMFILE, ENFILE) and other accept errors, backs off (up to
//!   [`ACCEPT_BACKOFF_MAX`]) instead of retrying at once, and logs once per
//!   [`ACCEPT_LOG_INTERVAL`].
//!
//! An idle connection is otherwise kept: the runtime may hold one open for the sandbox's
//! whole life, and long calls (WaitProcess, ReadStdout) are silent while they wait.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ttrpc::asynchronous::transport::{Listener, Socket};

/// The largest frame body ttRPC buffers (its own maximum, 4 MiB); larger ones it refuses
/// without buffering them.
pub const MAX_FRAME: u32 = 4 << 20;
/// Bytes declared by partly received frames, all connections together: 4 full frames.
pub const FRAME_BUDGET: usize = 16 << 20;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Requests awaiting their answer on one connection before the agent stops reading
/// from it (until answers go out): a runtime keeps a WaitProcess and a ReadStdout or
/// two pending per container, so this leaves room for hundreds of containers.
pub const MAX_PENDING_REQUESTS: u64 = 1024;
/// A partly received frame that makes no progress for this long closes its connection.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest pause between accept attempts after failures.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Accept failures are logged at most once per interval (with a count).
pub const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

const HEADER_LEN: usize = 10;
const TYPE_REQUEST: u8 = 1;
const TYPE_RESPONSE: u8 = 2;

/// The numbers a [`Guard`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// See [`MAX_FRAME`].
    pub max_frame: u32,
    /// See [`FRAME_BUDGET`].
    pub frame_budget: usize,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`STALL_TIMEOUT`].
    pub stall_timeout: Duration,
    /// See [`MAX_PENDING_REQUESTS`].
    pub max_pending: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: MAX_FRAME,
            frame_budget: FRAME_BUDGET,
            max_connections: MAX_CONNECTIONS,
            stall_timeout: STALL_TIMEOUT,
            max_pending: MAX_PENDING_REQUESTS,
        }
    }
}

/// One connection's state as the guard sees it.
#[derive(Default)]
struct Slot {
    /// Milliseconds since the guard's epoch at the last byte moved.
    last_active: AtomicU64,
    /// Body bytes declared by the partly received frame, charged to the budget.
    charged: AtomicUsize,
    /// Requests received minus responses sent.
    in_flight: AtomicU64,
    /// Set to close the connection; its reader sees an error at its next poll.
    shed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Slot {
    fn shed(&self) {
        self.shed.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        if let Ok(mut waker) = self.waker.lock()
            && let Some(waker) = waker.take()
        {
            waker.wake();
        }
    }
}

/// The bookkeeping shared by every connection of one listener.
pub struct Guard {
    limits: Limits,
    epoch: Instant,
    used: AtomicUsize,
    slots: Mutex<Vec<Weak<Slot>>>,
}

impl Guard {
    /// A guard enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            epoch: Instant::now(),
            used: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Live connections.
    pub fn connections(&self) -> usize {
        self.live().len()
    }

    /// Bytes charged to the frame budget now.
    pub fn budget_used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    fn live(&self) -> Vec<Arc<Slot>> {
        match self.slots.lock() {
            Ok(mut slots) => {
                slots.retain(|s| s.strong_count() > 0);
                slots
                    .iter()
                    .filter_map(Weak::upgrade)
                    .filter(|s| !s.shed.load(Ordering::SeqCst))
                    .collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Admits a new connection, shedding the longest-idle one when at the cap; `None`
    /// when every connection is busy.
    pub fn admit<S>(self: &Arc<Self>, inner: S) -> Option<Guarded<S>> {
        let live = self.live();
        if live.len() >= self.limits.max_connections {
            let idle = live
                .iter()
                .filter(|s| s.in_flight.load(Ordering::SeqCst) == 0)
                .min_by_key(|s| s.last_active.load(Ordering::SeqCst));
            match idle {
                Some(oldest) => {
                    tracing::warn!(
                        max = self.limits.max_connections,
                        "connection limit reached: closing the longest idle connection"
                    );
                    oldest.shed();
                }
                None => {
                    tracing::warn!(
                        max = self.limits.max_connections,
                        "connection limit reached, every connection busy: refusing a new one"
                    );
                    return None;
                }
            }
        }
        let slot = Arc::new(Slot::default());
        slot.last_active.store(self.now_ms(), Ordering::SeqCst);
        if let Ok(mut slots) = self.slots.lock() {
            slots.push(Arc::downgrade(&slot));
        }
        Some(Guarded {
            inner,
            slot,
            guard: self.clone(),
            incoming: Parser::default(),
            outgoing: Parser::default(),
        })
    }

    /// Charges `len` body bytes for `slot`; false when the frame must be refused.
    fn charge(&self, slot: &Arc<Slot>, len: usize) -> bool {
        let used = self.used.fetch_add(len, Ordering::SeqCst) + len;
        slot.charged.store(len, Ordering::SeqCst);
        if used <= self.limits.frame_budget {
            return true;
        }
        // Over budget: close connections whose partial frames stalled, longest first.
        let mut stalled: Vec<Arc<Slot>> = self
            .live()
            .into_iter()
            .filter(|s| !Arc::ptr_eq(s, slot) && s.charged.load(Ordering::SeqCst) > 0)
            .collect();
        stalled.sort_by_key(|s| s.last_active.load(Ordering::SeqCst));
        let mut over = used - self.limits.frame_budget;
        for victim in stalled {
            if over == 0 {
                break;
            }
            let freed = self.release(&victim);
            over = over.saturating_sub(freed);
            tracing::warn!(
                budget = self.limits.frame_budget,
                freed,
                "frame budget exhausted: closing a connection with a stalled partial frame"
            );
            victim.shed();
        }
        if over > 0 {
            self.release(slot);
            return false;
        }
        true
    }

    fn release(&self, slot: &Slot) -> usize {
        let freed = slot.charged.swap(0, Ordering::SeqCst);
        self.used.fetch_sub(freed, Ordering::SeqCst);
        freed
    }

    /// Closes connections whose partial frame made no progress for the stall timeout.
    pub fn sweep(&self) {
        let now = self.now_ms();
        let timeout = u64::try_from(self.limits.stall_timeout.as_millis()).unwrap_or(u64::MAX);
        for slot in self.live() {
            if slot.charged.load(Ordering::SeqCst) > 0
                && now.saturating_sub(slot.last_active.load(Ordering::SeqCst)) >= timeout
            {
                tracing::warn!("closing a connection whose partial frame stalled");
                self.release(&slot);
                slot.shed();
            }
        }
    }
}

/// A frame-header parser for one direction of a connection.
#[derive(Default)]
struct Parser {
    header: [u8; HEADER_LEN],
    header_len: usize,
    body_left: usize,
}

/// What a parsed header says.
struct Header {
    len: u32,
    kind: u8,
}

impl Parser {
    /// Feeds `bytes`; calls `on_header` for each complete header (its return value says
    /// whether to go on) and `on_body_done` when a body has been fully seen.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        mut on_header: impl FnMut(Header) -> bool,
        mut on_body_done: impl FnMut(),
    ) -> bool {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                if self.body_left == 0 {
                    on_body_done();
                }
                continue;
            }
            let n = (HEADER_LEN - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == HEADER_LEN {
                self.header_len = 0;
                let [a, b, c, d, _, _, _, _, kind, _] = self.header;
                let len = u32::from_be_bytes([a, b, c, d]);
                if !on_header(Header { len, kind }) {
                    return false;
                }
                self.body_left = len as usize;
                if self.body_left == 0 {
                    on_body_done();
                }
            }
        }
        true
    }
}

/// A connection under a [`Guard`].
pub struct Guarded<S> {
    inner: S,
    slot: Arc<Slot>,
    guard: Arc<Guard>,
    incoming: Parser,
    outgoing: Parser,
}

impl<S> Drop for Guarded<S> {
    fn drop(&mut self) {
        self.guard.release(&self.slot);
    }
}

fn refused(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, why)
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Ok(mut waker) = this.slot.waker.lock() {
            *waker = Some(cx.waker().clone());
        }
        if this.slot.shed.load(Ordering::SeqCst) {
            this.guard.release(&this.slot);
            return Poll::Ready(Err(refused("connection shed by the agent's limits")));
        }
        if this.slot.in_flight.load(Ordering::SeqCst) >= this.guard.limits.max_pending {
            // Woken by the next answer written (or by shedding).
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let new = &buf.filled()[before..];
            if new.is_empty() {
                return result;
            }
            this.slot
                .last_active
                .store(this.guard.now_ms(), Ordering::SeqCst);
            let guard = this.guard.clone();
            let slot = this.slot.clone();
            let mut refusal = None;
            let ok = this.incoming.feed(
                new,
                |header| {
                    // ttRPC answers a larger frame INVALID_ARGUMENT and discards its body
                    // page by page: it costs no buffer, so nothing is charged.
                    let charged = header.len <= guard.limits.max_frame;
                    if header.kind == TYPE_REQUEST {
                        slot.in_flight.fetch_add(1, Ordering::SeqCst);
                    }
                    if charged && header.len > 0 && !guard.charge(&slot, header.len as usize) {
                        tracing::warn!(
                            len = header.len,
                            budget = guard.limits.frame_budget,
                            "frame budget exhausted: closing the connection"
                        );
                        refusal = Some("frame budget exhausted");
                        return false;
                    }
                    true
                },
                || {
                    guard.release(&slot);
                },
            );
            if !ok {
                this.guard.release(&this.slot);
                this.slot.shed.store(true, Ordering::SeqCst);
                return Poll::Ready(Err(refused(refusal.unwrap_or("refused frame"))));
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            this.slot
                .last_active
                .store(this.guard.now_ms(), Ordering::SeqCst);
            let slot = this.slot.clone();
            this.outgoing.feed(
                data.get(..n).unwrap_or(data),
                |header| {
                    if header.kind == TYPE_RESPONSE {
                        let _ =
                            slot.in_flight
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                                    v.checked_sub(1)
                                });
                    }
                    true
                },
                || {},
            );
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Paces accept retries after failures and rate-limits their logging.
#[derive(Debug)]
pub struct AcceptBackoff {
    delay: Duration,
    failures: u64,
    last_log: Option<Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl AcceptBackoff {
    /// No failure yet.
    pub fn new() -> Self {
        Self {
            delay: Duration::ZERO,
            failures: 0,
            last_log: None,
        }
    }

    /// A successful accept: the next failure starts from the shortest pause.
    pub fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// A failed accept: logs (once per interval) and returns how long to pause.
    pub fn failed(&mut self, error: &io::Error) -> Duration {
        self.failures += 1;
        self.delay = (self.delay * 2)
            .max(Duration::from_millis(10))
            .min(ACCEPT_BACKOFF_MAX);
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= ACCEPT_LOG_INTERVAL);
        if due {
            let exhausted = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
            tracing::error!(
                %error,
                failures = self.failures,
                fd_exhaustion = exhausted,
                backoff_ms = u64::try_from(self.delay.as_millis()).unwrap_or(u64::MAX),
                "cannot accept connections"
            );
            self.last_log = Some(Instant::now());
            self.failures = 0;
        }
        self.delay
    }
}

/// Puts `guard` (and accept backoff) between `listener` and the ttRPC server. The
/// returned listener never yields an error, so ttRPC's own accept loop cannot spin.
pub fn guarded_listener(listener: Listener, guard: Arc<Guard>) -> Listener {
    let sweeper = Arc::downgrade(&guard);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            match sweeper.upgrade() {
                Some(guard) => guard.sweep(),
                None => break,
            }
        }
    });
    let state = (listener, guard, AcceptBackoff::new());
    Listener::new(futures_util::stream::unfold(
        state,
        |(mut listener, guard, mut backoff)| async move {
            loop {
                match listener.next().await? {
                    Ok(socket) => {
                        backoff.succeeded();
                        if let Some(guarded) = guard.admit::<Socket>(socket) {
                            return Some((Ok(guarded), (listener, guard, backoff)));
                        }
                    }
                    Err(error) => tokio::time::sleep(backoff.failed(&error)).await,
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    fn header(len: u32, kind: u8) -> Vec<u8> {
        let mut h = len.to_be_bytes().to_vec();
        h.extend_from_slice(&1u32.to_be_bytes());
        h.push(kind);
        h.push(0);
        h
    }

    fn small(max_connections: usize, frame_budget: usize) -> Arc<Guard> {
        Guard::new(Limits {
            max_frame: 1024,
            frame_budget,
            max_connections,
            stall_timeout: Duration::from_millis(50),
            max_pending: 2,
        })
    }

    fn connect(guard: &Arc<Guard>) -> (Guarded<DuplexStream>, DuplexStream) {
        let (ours, peer) = duplex(64 * 1024);
        let guarded = guard.admit(ours).unwrap();
        (guarded, peer)
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_maximum_is_not_charged() {
        let guard = small(4, 4096);
        let (mut conn, mut peer) = connect(&guard);
        peer.write_all(&header(5000, TYPE_REQUEST)).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 10);
        assert_eq!(guard.budget_used(), 0);
        // The next frame is parsed after the skipped body.
        peer.write_all(&[0; 5000]).await.unwrap();
        peer.write_all(&header(100, TYPE_REQUEST)).await.unwrap();
        let mut big = [0u8; 8192];
        let mut got = 0;
        while got < 5010 {
            got += conn.read(&mut big).await.unwrap();
        }
        assert_eq!(guard.budget_used(), 100);
    }

    #[tokio::test]
    async fn partial_frames_are_charged_and_released() {
        let guard = small(4, 4096);
        let (mut conn, mut peer) = connect(&guard);
        peer.write_all(&header(1000, TYPE_REQUEST)).await.unwrap();
        peer.write_all(&[7; 10]).await.unwrap();
        let mut buf = [0u8; 2048];
        let _ = conn.read(&mut buf).await.unwrap();
        assert_eq!(guard.budget_used(), 1000);
        peer.write_all(&[7; 990]).await.unwrap();
        let mut got = 0;
        while got < 990 {
            got += conn.read(&mut buf).await.unwrap();
        }
        assert_eq!(guard.budget_used(), 0);
    }

    #[tokio::test]
    async fn over_budget_the_stalled_partial_frame_is_shed() {
        let guard = small(4, 1500);
        let mut buf = [0u8; 2048];
        let (mut stalled, mut stalled_peer) = connect(&guard);
        stalled_peer
            .write_all(&header(1000, TYPE_REQUEST))
            .await
            .unwrap();
        let _ = stalled.read(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (mut fresh, mut fresh_peer) = connect(&guard);
        fresh_peer
            .write_all(&header(1000, TYPE_REQUEST))
            .await
            .unwrap();
        let _ = fresh.read(&mut buf).await.unwrap();
        assert_eq!(guard.budget_used(), 1000);
        let err = stalled.read(&mut buf).await.unwrap_err();
        assert!(err.to_string().contains("shed"), "{err}");
    }

    #[tokio::test]
    async fn a_stalled_partial_frame_times_out() {
        let guard = small(4, 4096);
        let (mut conn, mut peer) = connect(&guard);
        peer.write_all(&header(1000, TYPE_REQUEST)).await.unwrap();
        let mut buf = [0u8; 64];
        let _ = conn.read(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        guard.sweep();
        assert!(conn.read(&mut buf).await.is_err());
        assert_eq!(guard.budget_used(), 0);
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_is_shed_busy_ones_kept() {
        let guard = small(2, 4096);
        let mut buf = [0u8; 64];
        let (mut busy, mut busy_peer) = connect(&guard);
        // A request without its answer yet: busy.
        busy_peer.write_all(&header(0, TYPE_REQUEST)).await.unwrap();
        let _ = busy.read(&mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (mut idle, _idle_peer) = connect(&guard);
        let (_third, _third_peer) = connect(&guard);
        assert!(idle.read(&mut buf).await.is_err());
        assert_eq!(guard.connections(), 2);
        // Every connection busy: the next is refused.
        busy.write_all(&header(0, TYPE_RESPONSE)).await.unwrap();
        let (ours, _p) = duplex(64);
        assert!(
            guard.admit(ours).is_some(),
            "the answered connection is idle again"
        );
    }

    #[tokio::test]
    async fn reading_pauses_at_the_pending_limit_until_an_answer_goes_out() {
        let guard = small(4, 4096);
        let (mut conn, mut peer) = connect(&guard);
        let mut two = header(0, TYPE_REQUEST);
        two.extend(header(0, TYPE_REQUEST));
        peer.write_all(&two).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 20);
        peer.write_all(&header(0, TYPE_REQUEST)).await.unwrap();
        let paused = tokio::time::timeout(Duration::from_millis(50), conn.read(&mut buf)).await;
        assert!(paused.is_err(), "read past the pending limit");
        conn.write_all(&header(0, TYPE_RESPONSE)).await.unwrap();
        assert_eq!(conn.read(&mut buf).await.unwrap(), 10);
    }

    #[tokio::test]
    async fn accept_failures_back_off_and_log_rarely() {
        let mut backoff = AcceptBackoff::new();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let mut total = Duration::ZERO;
        for _ in 0..20 {
            total += backoff.failed(&emfile);
        }
        assert!(total >= Duration::from_secs(10), "{total:?}");
        assert_eq!(backoff.failed(&emfile), ACCEPT_BACKOFF_MAX);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), Duration::from_millis(10));
    }
}

//! Dialing the agent: connect a stream, retrying until a deadline, and wrap
//! it in a ttRPC client.
//!
//! The agent may not be listening yet when the host starts dialing (the VM is
//! still booting), so transient failures are retried with a short, growing
//! backoff (20 ms doubling up to 200 ms) until the deadline:
//!
//! - connection refused, socket file missing (`ENOENT`), connection reset,
//!   `ENODEV`/unreachable vsock peers, timeouts;
//! - for hybrid vsock, the VMM closing the connection (EOF) instead of
//!   answering `OK <n>` — that is what Firecracker and Cloud Hypervisor do
//!   while nothing listens on the guest port.
//!
//! Anything else (permission denied, a hybrid-vsock reply that is not `OK`)
//! fails at once.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;
use ttrpc::asynchronous::Client;
use ttrpc::asynchronous::transport::Socket;

use crate::address::AgentAddress;

/// First pause between two connection attempts.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(20);
/// Longest pause between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// Longest time a single attempt (connect plus handshake) may take before
/// it is abandoned and retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time granted to a single attempt even when the deadline is (nearly)
/// exhausted, so that `connect(addr, Duration::ZERO)` still tries once.
pub const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest accepted hybrid-vsock reply line, newline included.
const MAX_HANDSHAKE_LINE: usize = 64;

/// Why one connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The socket could not be connected (or the handshake could not be
    /// written/read).
    #[error("{0}")]
    Io(io::Error),
    /// Hybrid vsock: the VMM closed the connection before answering; the
    /// guest port usually has no listener yet.
    #[error("hybrid vsock peer closed the connection before replying to CONNECT{}",
        if partial.is_empty() { String::new() } else { format!(" (partial reply {partial:?})") })]
    HandshakeEof {
        /// Bytes received before the EOF, if any.
        partial: String,
    },
    /// Hybrid vsock: the VMM answered something other than `OK <n>`.
    #[error("hybrid vsock peer replied {reply:?} to CONNECT instead of \"OK <port>\"")]
    HandshakeRejected {
        /// The reply received (lossily decoded, truncated).
        reply: String,
    },
    /// The attempt took longer than its time budget.
    #[error("attempt timed out after {0:?}")]
    TimedOut(Duration),
}

impl AttemptError {
    /// Whether the failure is expected while the agent is starting, and so
    /// worth another attempt.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::HandshakeEof { .. } | Self::TimedOut(_) => true,
            Self::HandshakeRejected { .. } => false,
            Self::Io(e) => is_transient_io(e),
        }
    }
}

fn is_transient_io(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionRefused
            | K::NotFound
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::TimedOut
            | K::WouldBlock
            | K::Interrupted
            | K::HostUnreachable
            | K::NetworkUnreachable
    ) {
        return true;
    }
    // vsock: ENODEV while the guest's CID is not registered yet; ESHUTDOWN
    // while the transport is being torn down/reset.
    matches!(
        e.raw_os_error(),
        Some(libc_errno::ENODEV | libc_errno::ESHUTDOWN | libc_errno::EAGAIN)
    )
}

/// Linux errno values used above (kept local to avoid a libc dependency).
mod libc_errno {
    pub const EAGAIN: i32 = 11;
    pub const ENODEV: i32 = 19;
    pub const ESHUTDOWN: i32 = 108;
}

impl From<io::Error> for AttemptError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Why [`connect`] gave up.
///
/// The display text is complete on its own (address, elapsed time, last
/// failure); the attempt failure is available through
/// [`DialError::last_attempt`] rather than as an error `source`, so that
/// printing the error chain does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Every attempt failed with a transient error until the deadline.
    #[error(
        "could not connect to agent at {addr} within {elapsed:.1?} ({attempts} attempts); last error: {last}"
    )]
    DeadlineExceeded {
        /// The address dialed.
        addr: AgentAddress,
        /// Time spent dialing.
        elapsed: Duration,
        /// Number of attempts made.
        attempts: u32,
        /// The last attempt's failure.
        last: AttemptError,
    },
    /// An attempt failed in a way retrying cannot fix.
    #[error("could not connect to agent at {addr} (after {elapsed:.1?}): {cause}")]
    Fatal {
        /// The address dialed.
        addr: AgentAddress,
        /// Time spent dialing.
        elapsed: Duration,
        /// The failure.
        cause: AttemptError,
    },
}

impl DialError {
    /// The failure of the last attempt.
    pub fn last_attempt(&self) -> &AttemptError {
        match self {
            Self::DeadlineExceeded { last, .. } => last,
            Self::Fatal { cause, .. } => cause,
        }
    }
}

/// Connects to the agent at `addr` and returns a ttRPC client over the
/// connection, retrying transient failures until `deadline` has elapsed.
///
/// Must be called inside a Tokio runtime (the client spawns its I/O task).
/// At least one attempt is made even with a zero deadline.
pub async fn connect(addr: &AgentAddress, deadline: Duration) -> Result<Client, DialError> {
    let socket = connect_socket(addr, deadline).await?;
    Ok(Client::new(socket))
}

/// Like [`connect`], but returns the connected ttRPC transport [`Socket`]
/// instead of a client (e.g. to wrap it with custom hooks).
pub async fn connect_socket(addr: &AgentAddress, deadline: Duration) -> Result<Socket, DialError> {
    let start = Instant::now();
    let end = start + deadline;
    let mut backoff = INITIAL_BACKOFF;
    let mut attempts: u32 = 0;
    loop {
        attempts = attempts.saturating_add(1);
        let budget = end
            .saturating_duration_since(Instant::now())
            .clamp(MIN_ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT);
        let result = match tokio::time::timeout(budget, connect_once(addr)).await {
            Ok(r) => r,
            Err(_) => Err(AttemptError::TimedOut(budget)),
        };
        let err = match result {
            Ok(socket) => {
                tracing::debug!(%addr, attempts, elapsed = ?start.elapsed(), "connected to agent");
                return Ok(socket);
            }
            Err(e) => e,
        };
        if !err.is_transient() {
            return Err(DialError::Fatal {
                addr: addr.clone(),
                elapsed: start.elapsed(),
                cause: err,
            });
        }
        let now = Instant::now();
        if now >= end {
            return Err(DialError::DeadlineExceeded {
                addr: addr.clone(),
                elapsed: start.elapsed(),
                attempts,
                last: err,
            });
        }
        tracing::trace!(%addr, attempts, error = %err, "agent not reachable yet, retrying");
        let pause = backoff.min(end - now);
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection attempt, without retry or timeout.
async fn connect_once(addr: &AgentAddress) -> Result<Socket, AttemptError> {
    match addr {
        AgentAddress::Unix(path) => Ok(Socket::from(UnixStream::connect(path).await?)),
        AgentAddress::Vsock { cid, port } => {
            let stream =
                tokio_vsock::VsockStream::connect(tokio_vsock::VsockAddr::new(*cid, *port)).await?;
            Ok(Socket::from(stream))
        }
        AgentAddress::HybridVsock { path, port } => {
            Ok(Socket::from(hybrid_vsock_handshake(path, *port).await?))
        }
    }
}

/// Connects to a VMM's hybrid-vsock Unix socket and asks it to forward the
/// connection to guest vsock `port`.
///
/// Sends `CONNECT <port>\n`; succeeds on a reply line starting with `OK`
/// (Firecracker and Cloud Hypervisor send `OK <host-side port>\n`; the
/// number is ignored). The reply is read one byte at a time so that nothing
/// after the newline is consumed: those bytes belong to the ttRPC stream.
pub async fn hybrid_vsock_handshake(path: &Path, port: u32) -> Result<UnixStream, AttemptError> {
    Ok(hybrid_vsock_connect(path, port).await?.0)
}

/// Like [`hybrid_vsock_handshake`], and also answers the number of the `OK <n>` reply,
/// if there is one: the host-side port of the connection for Firecracker, Cloud
/// Hypervisor and Dragonball (the port the guest sees the connection come from, which
/// Kata's stdio ports name); vhost-device-vsock answers the guest port instead.
pub async fn hybrid_vsock_connect(
    path: &Path,
    port: u32,
) -> Result<(UnixStream, Option<u32>), AttemptError> {
    let mut stream = UnixStream::connect(path).await?;
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .await?;

    let mut line = Vec::with_capacity(16);
    loop {
        let mut byte = [0u8; 1];
        let n = match stream.read(&mut byte).await {
            Ok(n) => n,
            // A reset while waiting for the reply is the VMM refusing the
            // connection, like EOF.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Err(AttemptError::HandshakeEof {
                partial: String::from_utf8_lossy(&line).into_owned(),
            });
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() >= MAX_HANDSHAKE_LINE {
            return Err(AttemptError::HandshakeRejected {
                reply: String::from_utf8_lossy(&line).into_owned(),
            });
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if is_ok_reply(&line) {
        tracing::trace!(path = %path.display(), port, "hybrid vsock handshake done");
        let number = std::str::from_utf8(&line[2..])
            .ok()
            .and_then(|n| n.trim().parse().ok());
        Ok((stream, number))
    } else {
        Err(AttemptError::HandshakeRejected {
            reply: String::from_utf8_lossy(&line).into_owned(),
        })
    }
}

/// `OK` alone or `OK <anything>`.
fn is_ok_reply(line: &[u8]) -> bool {
    line == b"OK" || line.starts_with(b"OK ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::UnixListener;

    /// What the fake VMM does with the Nth connection.
    #[derive(Clone, Copy)]
    enum Reply {
        /// Read CONNECT, then close without answering.
        Eof,
        /// Read CONNECT, answer `OK 1073741824`, then echo one line.
        Ok,
        /// Read CONNECT, answer this line.
        Line(&'static str),
    }

    struct FakeVmm {
        path: PathBuf,
        connections: Arc<AtomicUsize>,
        _dir: tempfile::TempDir,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for FakeVmm {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    /// A fake hybrid-vsock VMM socket; connection N gets `script[N]` (the
    /// last entry repeats).
    fn fake_vmm(script: Vec<Reply>) -> FakeVmm {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vmm.sock");
        let listener = UnixListener::bind(&path).expect("bind fake vmm");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let reply = script[n.min(script.len() - 1)];
                tokio::spawn(serve(stream, reply));
            }
        });
        FakeVmm {
            path,
            connections,
            _dir: dir,
            task,
        }
    }

    async fn serve(stream: UnixStream, reply: Reply) {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let mut line = String::new();
        if r.read_line(&mut line).await.is_err() || line != "CONNECT 1024\n" {
            return;
        }
        match reply {
            Reply::Eof => {}
            Reply::Line(s) => {
                let _ = w.write_all(s.as_bytes()).await;
            }
            Reply::Ok => {
                if w.write_all(b"OK 1073741824\n").await.is_err() {
                    return;
                }
                // Then behave as the guest service: echo one line.
                let mut payload = String::new();
                if r.read_line(&mut payload).await.is_ok() {
                    let _ = w.write_all(payload.as_bytes()).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn handshake_ok_and_stream_usable() {
        let vmm = fake_vmm(vec![Reply::Ok]);
        let mut s = hybrid_vsock_handshake(&vmm.path, 1024)
            .await
            .expect("handshake");
        s.write_all(b"ping\n").await.expect("write");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping\n");
    }

    #[tokio::test]
    async fn the_reply_s_port_is_answered() {
        let vmm = fake_vmm(vec![Reply::Ok, Reply::Line("OK\n"), Reply::Line("OK x\n")]);
        let (_s, port) = hybrid_vsock_connect(&vmm.path, 1024).await.unwrap();
        assert_eq!(port, Some(1_073_741_824));
        for _ in 0..2 {
            let (_s, port) = hybrid_vsock_connect(&vmm.path, 1024).await.unwrap();
            assert_eq!(port, None);
        }
    }

    #[tokio::test]
    async fn connect_retries_eof_then_ok() {
        let vmm = fake_vmm(vec![Reply::Eof, Reply::Eof, Reply::Ok]);
        let addr = AgentAddress::HybridVsock {
            path: vmm.path.clone(),
            port: 1024,
        };
        let _client = connect(&addr, Duration::from_secs(5))
            .await
            .expect("connect after retries");
        assert_eq!(vmm.connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connect_waits_for_socket_to_appear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("late.sock");
        let addr = AgentAddress::Unix(path.clone());
        let binder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let listener = UnixListener::bind(&path).expect("bind");
            let _conn = listener.accept().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let _client = connect(&addr, Duration::from_secs(5))
            .await
            .expect("connect once the socket exists");
        binder.abort();
    }

    #[tokio::test]
    async fn deadline_exceeded_names_address_and_last_error() {
        let vmm = fake_vmm(vec![Reply::Eof]);
        let addr = AgentAddress::HybridVsock {
            path: vmm.path.clone(),
            port: 1024,
        };
        let started = std::time::Instant::now();
        let err = connect(&addr, Duration::from_millis(300))
            .await
            .err()
            .expect("must fail");
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        match &err {
            DialError::DeadlineExceeded { attempts, last, .. } => {
                assert!(*attempts >= 2, "attempts {attempts}");
                assert!(
                    matches!(last, AttemptError::HandshakeEof { .. }),
                    "{last:?}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&addr.to_string()), "{msg}");
        assert!(msg.contains("closed the connection"), "{msg}");
    }

    #[tokio::test]
    async fn missing_unix_socket_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = AgentAddress::Unix(dir.path().join("nobody.sock"));
        let err = connect(&addr, Duration::from_millis(100))
            .await
            .err()
            .expect("must fail");
        match &err {
            DialError::DeadlineExceeded { last, .. } => {
                assert!(matches!(last, AttemptError::Io(e) if e.kind() == io::ErrorKind::NotFound));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("nobody.sock"));
    }

    #[tokio::test]
    async fn garbage_reply_fails_fast() {
        let vmm = fake_vmm(vec![Reply::Line("ERROR no such port\n")]);
        let addr = AgentAddress::HybridVsock {
            path: vmm.path.clone(),
            port: 1024,
        };
        let err = connect(&addr, Duration::from_secs(10))
            .await
            .err()
            .expect("must fail");
        match &err {
            DialError::Fatal {
                cause: AttemptError::HandshakeRejected { reply },
                ..
            } => assert_eq!(reply, "ERROR no such port"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(vmm.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn overlong_reply_is_rejected() {
        const LONG: &str = "OKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAYOKAY";
        let vmm = fake_vmm(vec![Reply::Line(LONG)]);
        let err = hybrid_vsock_handshake(&vmm.path, 1024)
            .await
            .expect_err("must fail");
        assert!(
            matches!(err, AttemptError::HandshakeRejected { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn ok_reply_forms() {
        assert!(is_ok_reply(b"OK"));
        assert!(is_ok_reply(b"OK 1073741824"));
        assert!(is_ok_reply(b"OK whatever"));
        assert!(!is_ok_reply(b"OKAY"));
        assert!(!is_ok_reply(b"ok 1"));
        assert!(!is_ok_reply(b""));
    }
}

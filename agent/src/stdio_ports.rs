//! Stdio over vsock ports, as Kata's agent does it ("passfd io").
//!
//! With `agent.passfd_listener_port=P` on the kernel command line the agent listens on
//! vsock port P. The runtime, before `CreateContainer` or `ExecProcess`, opens one
//! connection to P per stream it wants carried (through the VMM's hybrid vsock socket:
//! `CONNECT P`, answered `OK <host port>`; Kata's runtime-rs has Dragonball pass the
//! container's FIFO into that connection), and puts the host port of each connection (the
//! source port the guest sees as the connection's peer port) into the request's
//! `stdin_port`, `stdout_port` or `stderr_port`; 0 leaves a stream on the RPCs.
//!
//! The agent keeps every accepted connection by its peer port until a request claims it.
//! A request naming a port no connection came from waits [`CLAIM_WAIT`] for it (the
//! connection may still be on its way), then fails naming the port: Kata's agent gives
//! up after 300 ms and silently leaves the stream on the RPCs, where nobody reads it.
//! Ports in a request without the listener are refused.
//!
//! What is done with the connections is `hull_container::process::streams`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hull_container::process::StdioStreams;
use tokio::sync::Notify;

/// How long a request waits for a connection it names.
pub const CLAIM_WAIT: Duration = Duration::from_secs(2);
/// Connections kept unclaimed at most; more are closed as they arrive.
const MAX_PENDING: usize = 256;

/// The stdio ports of a `CreateContainer` or `ExecProcess` (0: the stream stays on the
/// RPCs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StdioPorts {
    /// `stdin_port`.
    pub stdin: u32,
    /// `stdout_port`.
    pub stdout: u32,
    /// `stderr_port`.
    pub stderr: u32,
}

impl StdioPorts {
    /// Whether no stream is asked for.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Why a request's stdio ports could not be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StdioPortError {
    /// Ports were given, but the agent has no stdio listener.
    #[error(
        "stdio ports were given but the agent has no stdio listener: set agent.passfd_listener_port on the kernel command line"
    )]
    NoListener,
    /// No connection to the listener came from this host port in time.
    #[error(
        "{stream}_port {port}: no connection from host port {port} reached the stdio listener (vsock port {listener}) within {waited:?}"
    )]
    NoConnection {
        /// `stdin`, `stdout` or `stderr`.
        stream: &'static str,
        /// The port the request named.
        port: u32,
        /// The listener's port.
        listener: u32,
        /// How long the request waited.
        waited: Duration,
    },
}

/// Connections accepted on the stdio listener, by peer port, until claimed.
pub struct StdioConnections {
    listener_port: u32,
    claim_wait: Duration,
    pending: Mutex<HashMap<u32, OwnedFd>>,
    arrived: Notify,
}

impl StdioConnections {
    /// An empty table for the listener on vsock `listener_port`.
    pub fn new(listener_port: u32) -> Self {
        Self::with_claim_wait(listener_port, CLAIM_WAIT)
    }

    /// The same with another claim wait (tests).
    pub fn with_claim_wait(listener_port: u32, claim_wait: Duration) -> Self {
        Self {
            listener_port,
            claim_wait,
            pending: Mutex::new(HashMap::new()),
            arrived: Notify::new(),
        }
    }

    /// The listener's vsock port.
    pub fn listener_port(&self) -> u32 {
        self.listener_port
    }

    /// Keeps a connection from `peer_port` for a request to claim. A second one from the
    /// same port replaces the first (the host reuses a port only after closing it).
    pub fn accepted(&self, peer_port: u32, stream: OwnedFd) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_PENDING && !pending.contains_key(&peer_port) {
            tracing::warn!(
                peer_port,
                "stdio listener: too many unclaimed connections; this one is closed"
            );
            return;
        }
        pending.insert(peer_port, stream);
        drop(pending);
        tracing::debug!(peer_port, "stdio connection accepted");
        self.arrived.notify_waiters();
    }

    fn try_take(&self, port: u32) -> Option<OwnedFd> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&port)
    }

    /// The connection from host port `port`, waiting for it at most the claim wait.
    async fn take(&self, stream: &'static str, port: u32) -> Result<OwnedFd, StdioPortError> {
        let deadline = tokio::time::Instant::now() + self.claim_wait;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(fd) = self.try_take(port) {
                return Ok(fd);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.try_take(port).ok_or(StdioPortError::NoConnection {
                    stream,
                    port,
                    listener: self.listener_port,
                    waited: self.claim_wait,
                });
            }
        }
    }

    /// Claims the connections `ports` names. On an error the ones already claimed are
    /// closed (the host sees its streams end).
    pub async fn claim(&self, ports: StdioPorts) -> Result<StdioStreams, StdioPortError> {
        let mut streams = StdioStreams::default();
        for (name, port, slot) in [
            ("stdin", ports.stdin, &mut streams.stdin),
            ("stdout", ports.stdout, &mut streams.stdout),
            ("stderr", ports.stderr, &mut streams.stderr),
        ] {
            if port != 0 {
                *slot = Some(self.take(name, port).await?);
            }
        }
        Ok(streams)
    }
}

/// Claims `ports` from `connections`; no ports, no streams; ports without a listener are
/// refused.
pub async fn claim(
    connections: Option<&StdioConnections>,
    ports: StdioPorts,
) -> Result<StdioStreams, StdioPortError> {
    if ports.is_empty() {
        return Ok(StdioStreams::default());
    }
    match connections {
        Some(connections) => connections.claim(ports).await,
        None => Err(StdioPortError::NoListener),
    }
}

/// Accepts connections on vsock `connections.listener_port()` for the agent's whole life.
pub async fn serve_on_vsock(connections: Arc<StdioConnections>) {
    let port = connections.listener_port();
    let addr = tokio_vsock::VsockAddr::new(libc::VMADDR_CID_ANY, port);
    let listener = match tokio_vsock::VsockListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(port, error = %e, "cannot listen for stdio connections");
            return;
        }
    };
    tracing::info!(port, "stdio listener (agent.passfd_listener_port) serving");
    loop {
        // The std stream: not registered with tokio, so its fd can be handed on.
        match std::future::poll_fn(|cx| listener.poll_accept_std(cx)).await {
            Ok((stream, peer)) => connections.accepted(peer.port(), OwnedFd::from(stream)),
            Err(e) => {
                tracing::warn!(port, error = %e, "stdio listener: accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    fn connection() -> (UnixStream, OwnedFd) {
        let (host, agent) = UnixStream::pair().unwrap();
        (host, agent.into())
    }

    #[tokio::test]
    async fn connections_are_matched_by_peer_port() {
        let table = StdioConnections::new(2000);
        let (mut host_a, a) = connection();
        let (mut host_b, b) = connection();
        table.accepted(7, a);
        table.accepted(9, b);
        let streams = table
            .claim(StdioPorts {
                stdin: 0,
                stdout: 9,
                stderr: 7,
            })
            .await
            .unwrap();
        assert!(streams.stdin.is_none());
        let mut stdout = std::fs::File::from(streams.stdout.unwrap());
        let mut stderr = std::fs::File::from(streams.stderr.unwrap());
        stdout.write_all(b"out").unwrap();
        stderr.write_all(b"err").unwrap();
        let mut buf = [0u8; 3];
        host_b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"out");
        host_a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"err");
        // Claimed once.
        let again = StdioConnections::with_claim_wait(2000, Duration::from_millis(10));
        assert!(
            again
                .claim(StdioPorts {
                    stdout: 9,
                    ..Default::default()
                })
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_claim_waits_for_a_late_connection() {
        let table = Arc::new(StdioConnections::new(2000));
        let claim = tokio::spawn({
            let table = table.clone();
            async move {
                table
                    .claim(StdioPorts {
                        stdout: 42,
                        ..Default::default()
                    })
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_other_host, other) = connection();
        table.accepted(41, other);
        let (_host, late) = connection();
        table.accepted(42, late);
        let streams = claim.await.unwrap().unwrap();
        assert!(streams.stdout.is_some());
    }

    #[tokio::test]
    async fn a_missing_connection_fails_in_bounded_time_naming_the_port() {
        let table = StdioConnections::with_claim_wait(2000, Duration::from_millis(100));
        let (mut host, stdin) = connection();
        table.accepted(5, stdin);
        let started = std::time::Instant::now();
        let err = table
            .claim(StdioPorts {
                stdin: 5,
                stdout: 6,
                stderr: 0,
            })
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(matches!(
            err,
            StdioPortError::NoConnection {
                stream: "stdout",
                port: 6,
                listener: 2000,
                ..
            }
        ));
        assert!(err.to_string().contains("stdout_port 6"), "{err}");
        // The stdin connection already claimed was closed: the host reads end of file.
        let mut rest = Vec::new();
        host.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn ports_without_a_listener_are_refused_and_no_ports_need_none() {
        let ports = StdioPorts {
            stdout: 1030,
            ..Default::default()
        };
        assert_eq!(
            claim(None, ports).await.unwrap_err(),
            StdioPortError::NoListener
        );
        assert!(claim(None, StdioPorts::default()).await.unwrap().is_empty());
    }
}

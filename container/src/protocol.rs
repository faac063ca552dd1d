//! The conversation between the agent (or the runtime CLI) and its helper, over a Unix
//! socket pair: each message is a 4-byte big-endian length and a JSON body.
//!
//! ```text
//! launcher                                helper (stage 1)
//!    ── Request ───────────────────────────▶
//!                     (new user namespace only)
//!    ◀── NeedIdMaps ────────────────────────
//!    ── IdMapsWritten ─────────────────────▶
//!                                          unshare / setns, fork ──▶ stage 2
//!    ◀── ChildPid(pid) ─────────────────────
//!    ── Ack ───────────────────────────────▶ (stage 1 exits; stage 2 goes on)
//!                                             stage 2: mounts, pivot_root, ...
//!    ◀── Ready ──────────────────────────── (init: waiting at the start gate)
//!    ── Start ─────────────────────────────▶ (agent gate only)
//!    ◀── EOF (execve succeeded: the socket is close-on-exec) or Error
//! ```
//!
//! Any step may instead answer `Error(SetupError)`; the helper then exits.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SetupError;
use super::plan::{ContainerPlan, ProcessPlan};

/// Large enough for any plan (a seccomp profile is the bulk of it).
const MAX_MESSAGE: usize = 16 << 20;

/// The first message: what the helper is to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Create a container: namespaces, rootfs, then wait at the start gate.
    Init {
        plan: Box<ContainerPlan>,
        gate: Gate,
    },
    /// Run a process in the namespaces of the running process `init_pid`.
    Exec {
        init_pid: i32,
        process: Box<ProcessPlan>,
    },
}

/// How an init process learns that it may run its workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Gate {
    /// A `Start` message on the helper socket (the agent holds the other end).
    Socket,
    /// A connection on a Unix socket the helper listens on at this path (the runtime
    /// CLI, whose `create` exits before `start`). The connecting side then reads the
    /// outcome as on the helper socket: EOF or `Error`.
    Listener(PathBuf),
}

/// Launcher → helper, after the request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Command {
    IdMapsWritten,
    Ack,
    Start,
}

/// Helper → launcher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Report {
    NeedIdMaps,
    ChildPid(i32),
    Ready,
    Error(SetupError),
}

/// Writes one message.
pub fn send<T: Serialize>(stream: &mut UnixStream, message: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len()).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame)
}

/// Reads one message; `Ok(None)` on a clean end of file before the first byte.
pub fn receive<T: for<'de> Deserialize<'de>>(
    stream: &mut UnixStream,
) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match stream.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other(format!(
            "helper message of {len} bytes is too large"
        )));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof_is_none() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        send(&mut a, &Report::ChildPid(42)).unwrap();
        let boom = SetupError::Protocol {
            step: "fork".into(),
            reason: "boom".into(),
        };
        send(&mut a, &Report::Error(boom.clone())).unwrap();
        drop(a);
        assert_eq!(
            receive::<Report>(&mut b).unwrap(),
            Some(Report::ChildPid(42))
        );
        assert_eq!(
            receive::<Report>(&mut b).unwrap(),
            Some(Report::Error(boom))
        );
        assert_eq!(receive::<Report>(&mut b).unwrap(), None);
    }

    #[test]
    fn a_truncated_or_huge_message_is_an_error() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&[0, 0, 0, 10, b'{']).unwrap();
        drop(a);
        assert!(receive::<Report>(&mut b).is_err());
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(receive::<Report>(&mut b).is_err());
    }
}

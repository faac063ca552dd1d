//! Stdio carried on connected streams (Kata's "passfd io"): the runtime hands the agent
//! one connected socket per stream (vsock connections to the agent's stdio listener),
//! and the agent copies between them and the process's pipes (or terminal).
//!
//! The process keeps pipes, not the sockets, as its fds 0, 1 and 2: a program that opens
//! `/dev/stdout` or `/proc/self/fd/1` cannot open a socket. The copies:
//!
//! - stdin: socket → the stdin pipe (or the terminal master). The host closing its side
//!   closes the pipe (the process reads end of file; on a terminal ^D is sent). The copy
//!   ends when the process exits.
//! - stdout, stderr: the pipe (or the terminal master) → socket, until every writer of the
//!   pipe has closed it; then the socket's write side is shut down and it is closed.
//!
//! [`super::ProcessIo::output_drained`] resolves when every output copy has ended: as in
//! Kata's agent, `WaitProcess` answers only then, so a runtime that has the exit status
//! has every byte and the end of each output stream. Bytes are copied in order by one
//! task per stream through a fixed buffer; a slow reader on the host holds the process up
//! (back-pressure), nothing is dropped.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::ExitWatch;
use super::stdio::{Endpoint, read_fd, write_fd};

/// Bytes moved per read.
const COPY_BUFFER: usize = 256 << 10;

/// Connected stream sockets that carry a process's stdio instead of `ReadStdout`,
/// `ReadStderr` and `WriteStdin`. A stream left `None` stays on the RPCs.
#[derive(Debug, Default)]
pub struct StdioStreams {
    /// Read by the agent and written into the process's stdin.
    pub stdin: Option<OwnedFd>,
    /// The process's stdout is written into it.
    pub stdout: Option<OwnedFd>,
    /// The process's stderr is written into it (ignored on a terminal: closed at once).
    pub stderr: Option<OwnedFd>,
}

impl StdioStreams {
    /// Whether no stream is given.
    pub fn is_empty(&self) -> bool {
        self.stdin.is_none() && self.stdout.is_none() && self.stderr.is_none()
    }
}

/// How a copy ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// The source reached end of file.
    Eof,
    /// The destination went away (EPIPE, ECONNRESET) or an I/O error.
    Broken,
}

/// Copies `from` into `to` until `from` ends (a terminal master's EIO counts as end of
/// file) or `to` breaks.
pub(super) async fn copy(from: &Endpoint, to: &Endpoint, terminal_source: bool) -> Ended {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match read_some(from, &mut buf).await {
            Ok(0) => return Ended::Eof,
            Ok(n) => n,
            Err(e) if terminal_source && e.raw_os_error() == Some(libc::EIO) => {
                return Ended::Eof;
            }
            Err(e) => {
                tracing::debug!(error = %e, "stdio copy: reading");
                return Ended::Broken;
            }
        };
        if let Err(e) = write_all(to, &buf[..n]).await {
            tracing::debug!(error = %e, "stdio copy: writing");
            return Ended::Broken;
        }
    }
}

async fn read_some(fd: &Endpoint, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut ready = fd.readable().await?;
        match ready.try_io(|inner| read_fd(inner.get_ref().as_raw_fd(), buf)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(fd: &Endpoint, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let mut ready = fd.writable().await?;
        match ready.try_io(|inner| write_fd(inner.get_ref().as_raw_fd(), data)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Copies the host's stdin stream into the process until either ends.
pub(super) async fn pump_stdin(socket: Endpoint, sink: Endpoint, terminal: bool, exit: ExitWatch) {
    let mut exit = exit;
    let ended = tokio::select! {
        ended = copy(&socket, &sink, false) => ended,
        _ = exit.wait() => return,
    };
    if ended == Ended::Eof && terminal {
        // The terminal stays open for output: end of file is its EOF character.
        let _ = write_all(&sink, &[0x04]).await;
    }
    // Dropping the pipe's write end (the only one left) gives the process end of file.
}

/// Copies one output stream of the process to the host's socket, then shuts the
/// socket's write side down and closes it.
pub(super) async fn pump_output(source: Endpoint, socket: Endpoint, terminal: bool) {
    copy(&source, &socket, terminal).await;
    shut_down_writes(socket.get_ref());
}

fn shut_down_writes(fd: &OwnedFd) {
    // SAFETY: `fd` is an open socket owned by the caller; shutdown touches no memory.
    if unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) } < 0 {
        let e = io::Error::last_os_error();
        tracing::debug!(error = %e, "stdio stream: shutdown");
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ExitStatus, ProcessError, ProcessIo};
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    fn pair() -> (UnixStream, OwnedFd) {
        let (host, agent) = UnixStream::pair().unwrap();
        (host, agent.into())
    }

    #[tokio::test]
    async fn streams_carry_stdio_in_order_and_close_before_the_drain_resolves() {
        let (io, child) = ProcessIo::pipes().unwrap();
        let (exit_tx, exit) = ExitWatch::manual();
        let (mut host_in, agent_in) = pair();
        let (mut host_out, agent_out) = pair();
        let (mut host_err, agent_err) = pair();
        io.carry(
            StdioStreams {
                stdin: Some(agent_in),
                stdout: Some(agent_out),
                stderr: Some(agent_err),
            },
            exit,
        )
        .await
        .unwrap();
        // The streams left the RPCs.
        assert!(io.read(false, 10).await.unwrap().is_empty());
        assert!(matches!(
            io.write(b"x").await,
            Err(ProcessError::CarriedOnStream("stdin"))
        ));

        // The "process": copies stdin to stdout (4 MiB, far more than a pipe holds), then
        // writes one line to stderr and closes its ends.
        let (mut stdin, mut stdout, mut stderr) = (
            std::fs::File::from(child.stdin),
            std::fs::File::from(child.stdout),
            std::fs::File::from(child.stderr),
        );
        let process = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                let n = stdin.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                stdout.write_all(&buf[..n]).unwrap();
            }
            stderr.write_all(b"done\n").unwrap();
        });
        let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn({
            let data = data.clone();
            move || {
                host_in.write_all(&data).unwrap();
                host_in.shutdown(std::net::Shutdown::Write).unwrap();
            }
        });
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            host_out.read_to_end(&mut out).unwrap();
            let mut err = Vec::new();
            host_err.read_to_end(&mut err).unwrap();
            (out, err)
        });
        let drained = tokio::time::timeout(Duration::from_secs(20), io.output_drained());
        drained.await.expect("the outputs drained");
        writer.join().unwrap();
        process.join().unwrap();
        let (out, err) = reader.join().unwrap();
        assert!(
            out == data,
            "stdout differs from stdin ({} bytes)",
            out.len()
        );
        assert_eq!(err, b"done\n");
        exit_tx.send_replace(Some(ExitStatus::Exited(0)));
    }

    #[tokio::test]
    async fn a_terminal_is_carried_both_ways_and_a_stderr_stream_is_closed() {
        let (io, child) = ProcessIo::terminal(24, 80).unwrap();
        let (_exit_tx, exit) = ExitWatch::manual();
        let (mut host_in, agent_in) = pair();
        let (mut host_out, agent_out) = pair();
        let (mut host_err, agent_err) = pair();
        io.carry(
            StdioStreams {
                stdin: Some(agent_in),
                stdout: Some(agent_out),
                stderr: Some(agent_err),
            },
            exit,
        )
        .await
        .unwrap();
        for stream in [&host_in, &host_out, &host_err] {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
        }
        let mut rest = Vec::new();
        host_err.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "stderr of a terminal carries nothing");
        // The blocking side on a thread of its own: the copies run on the test's runtime.
        let (stdout, stdin) = (child.stdout, child.stdin);
        let terminal_user = tokio::task::spawn_blocking(move || {
            let mut slave = std::fs::File::from(stdout);
            slave.write_all(b"hello\n").unwrap();
            let mut buf = [0u8; 7];
            host_out.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hello\r\n");
            // The line discipline hands the slave a whole line of what the host typed.
            host_in.write_all(b"typed\n").unwrap();
            let mut stdin = std::fs::File::from(stdin);
            let mut line = [0u8; 6];
            stdin.read_exact(&mut line).unwrap();
            assert_eq!(&line, b"typed\n");
            (slave, stdin, host_in)
        });
        let (slave, stdin, host_in) = tokio::time::timeout(Duration::from_secs(20), terminal_user)
            .await
            .expect("the terminal carried both ways")
            .unwrap();
        drop((slave, stdin, child.stderr));
        drop(host_in);
        tokio::time::timeout(Duration::from_secs(5), io.output_drained())
            .await
            .expect("the terminal's output drained once its slave closed");
    }

    #[tokio::test]
    async fn stdin_copy_ends_with_the_process_and_the_drain_waits_for_writers() {
        let (io, child) = ProcessIo::pipes().unwrap();
        let (exit_tx, exit) = ExitWatch::manual();
        let (host_in, agent_in) = pair();
        let (mut host_out, agent_out) = pair();
        io.carry(
            StdioStreams {
                stdin: Some(agent_in),
                stdout: Some(agent_out),
                stderr: None,
            },
            exit,
        )
        .await
        .unwrap();
        // stderr stays on the RPCs.
        let mut stderr = std::fs::File::from(child.stderr);
        stderr.write_all(b"rpc").unwrap();
        assert_eq!(io.read(true, 10).await.unwrap(), b"rpc");
        // The drain waits while a writer of stdout is open.
        let mut stdout = std::fs::File::from(child.stdout);
        stdout.write_all(b"last words").unwrap();
        let wait = tokio::time::timeout(Duration::from_millis(200), io.output_drained());
        assert!(wait.await.is_err(), "drained while stdout is open");
        drop(stdout);
        tokio::time::timeout(Duration::from_secs(5), io.output_drained())
            .await
            .expect("drained after the last writer closed");
        let mut out = Vec::new();
        host_out.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"last words");
        // The host never closes stdin: the process's exit ends the copy, and the stdin
        // pipe's read end sees end of file.
        exit_tx.send_replace(Some(ExitStatus::Exited(0)));
        let mut stdin = std::fs::File::from(child.stdin);
        let got = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            stdin.read_to_end(&mut all).map(|_| all)
        });
        let got = tokio::time::timeout(Duration::from_secs(5), got).await;
        assert!(got.expect("stdin ended").unwrap().unwrap().is_empty());
        drop(host_in);
    }
}

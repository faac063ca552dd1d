//! Processes of a container and their stdio: ExecProcess, SignalProcess, WaitProcess,
//! ReadStdout, ReadStderr, WriteStdin, CloseStdin, TtyWinResize; and reading a stream
//! to its end.
//!
//! The agent keeps no buffer of a process's output: a process whose output nobody reads
//! blocks, so a stream is read while the process runs, each stream by its own task,
//! until the agent answers an empty read (the end of the stream).

use std::time::Instant;

use crate::agent::{
    CloseStdinRequest, ExecProcessRequest, ReadStreamRequest, SignalProcessRequest,
    TtyWinResizeRequest, WaitProcessRequest, WriteStreamRequest,
};

use super::{AgentClient, ClientError};

/// The largest read [`AgentClient::read_to_end`] asks for (the agent serves up to
/// 1 MiB per `ReadStdout`).
pub const READ_CHUNK: u32 = 1 << 20;

/// Which output stream of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `ReadStdout` (a process on a terminal has only this one).
    Stdout,
    /// `ReadStderr`.
    Stderr,
}

/// What one stream delivered, read to its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// Every byte, in order.
    pub bytes: Vec<u8>,
    /// When its first byte arrived.
    pub first_byte_at: Option<Instant>,
    /// How many reads it took (the last, empty one included).
    pub reads: u32,
}

impl Captured {
    /// The bytes as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

fn process_ids(container_id: &str, exec_id: &str) -> (String, String) {
    (container_id.to_owned(), exec_id.to_owned())
}

impl AgentClient {
    /// `AgentService.ExecProcess`.
    pub async fn exec_process(&self, req: &ExecProcessRequest) -> Result<(), ClientError> {
        self.call_agent("AgentService.ExecProcess", |agent, ctx| {
            agent.exec_process(ctx, req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.SignalProcess`; an empty `exec_id` signals every process of the
    /// container.
    pub async fn signal_process(
        &self,
        container_id: &str,
        exec_id: &str,
        signal: u32,
    ) -> Result<(), ClientError> {
        let (container_id, exec_id) = process_ids(container_id, exec_id);
        let req = SignalProcessRequest {
            container_id,
            exec_id,
            signal,
            ..Default::default()
        };
        self.call_agent("AgentService.SignalProcess", |agent, ctx| {
            agent.signal_process(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.WaitProcess`: the exit status (128+N for a process killed by signal
    /// N) once the process has ended. An empty `exec_id` is the container's init process.
    ///
    /// It blocks as long as the process runs: call it on a client without a per-call
    /// timeout (`client.clone().with_timeout(Duration::ZERO)`) unless a bound is wanted.
    pub async fn wait_process(
        &self,
        container_id: &str,
        exec_id: &str,
    ) -> Result<i32, ClientError> {
        let (container_id, exec_id) = process_ids(container_id, exec_id);
        let req = WaitProcessRequest {
            container_id,
            exec_id,
            ..Default::default()
        };
        self.call_agent("AgentService.WaitProcess", |agent, ctx| {
            agent.wait_process(ctx, &req)
        })
        .await
        .map(|r| r.status)
    }

    /// `AgentService.ReadStdout` or `ReadStderr`: up to `len` bytes, waiting for at
    /// least one; empty at the end of the stream. Blocks like
    /// [`AgentClient::wait_process`].
    pub async fn read_stream(
        &self,
        container_id: &str,
        exec_id: &str,
        stream: Stream,
        len: u32,
    ) -> Result<Vec<u8>, ClientError> {
        let (container_id, exec_id) = process_ids(container_id, exec_id);
        let req = ReadStreamRequest {
            container_id,
            exec_id,
            len,
            ..Default::default()
        };
        match stream {
            Stream::Stdout => {
                self.call_agent("AgentService.ReadStdout", |agent, ctx| {
                    agent.read_stdout(ctx, &req)
                })
                .await
            }
            Stream::Stderr => {
                self.call_agent("AgentService.ReadStderr", |agent, ctx| {
                    agent.read_stderr(ctx, &req)
                })
                .await
            }
        }
        .map(|r| r.data)
    }

    /// `AgentService.ReadStdout`, as [`AgentClient::read_stream`].
    pub async fn read_stdout(
        &self,
        container_id: &str,
        exec_id: &str,
        len: u32,
    ) -> Result<Vec<u8>, ClientError> {
        self.read_stream(container_id, exec_id, Stream::Stdout, len)
            .await
    }

    /// `AgentService.ReadStderr`, as [`AgentClient::read_stream`].
    pub async fn read_stderr(
        &self,
        container_id: &str,
        exec_id: &str,
        len: u32,
    ) -> Result<Vec<u8>, ClientError> {
        self.read_stream(container_id, exec_id, Stream::Stderr, len)
            .await
    }

    /// Reads `stream` of a process until it ends, handing each chunk to `sink` as it
    /// arrives; answers how many reads it took. A `sink` error stops the reading.
    pub async fn read_each<E: From<ClientError>>(
        &self,
        container_id: &str,
        exec_id: &str,
        stream: Stream,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u32, E> {
        let mut reads = 0;
        loop {
            let chunk = self
                .read_stream(container_id, exec_id, stream, READ_CHUNK)
                .await?;
            reads += 1;
            if chunk.is_empty() {
                return Ok(reads);
            }
            sink(&chunk)?;
        }
    }

    /// Reads `stream` of a process to its end (see [`AgentClient::read_each`]).
    pub async fn read_to_end(
        &self,
        container_id: &str,
        exec_id: &str,
        stream: Stream,
    ) -> Result<Captured, ClientError> {
        let mut captured = Captured::default();
        captured.reads = self
            .read_each(container_id, exec_id, stream, |chunk| {
                captured.first_byte_at.get_or_insert_with(Instant::now);
                captured.bytes.extend_from_slice(chunk);
                Ok::<(), ClientError>(())
            })
            .await?;
        Ok(captured)
    }

    /// `AgentService.WriteStdin`; answers how many bytes were written.
    pub async fn write_stdin(
        &self,
        container_id: &str,
        exec_id: &str,
        data: &[u8],
    ) -> Result<u32, ClientError> {
        let (container_id, exec_id) = process_ids(container_id, exec_id);
        let req = WriteStreamRequest {
            container_id,
            exec_id,
            data: data.to_vec(),
            ..Default::default()
        };
        self.call_agent("AgentService.WriteStdin", |agent, ctx| {
            agent.write_stdin(ctx, &req)
        })
        .await
        .map(|r| r.len)
    }

    /// `AgentService.CloseStdin`.
    pub async fn close_stdin(&self, container_id: &str, exec_id: &str) -> Result<(), ClientError> {
        let (container_id, exec_id) = process_ids(container_id, exec_id);
        let req = CloseStdinRequest {
            container_id,
            exec_id,
            ..Default::default()
        };
        self.call_agent("AgentService.CloseStdin", |agent, ctx| {
            agent.close_stdin(ctx, &req)
        })
        .await
        .map(drop)
    }

    /// `AgentService.TtyWinResize`: the terminal of a process is now `rows` × `columns`.
    pub async fn tty_win_resize(
        &self,
        container_id: &str,
        exec_id: &str,
        rows: u32,
        columns: u32,
    ) -> Result<(), ClientError> {
        let (container_id, exec_id) = process_ids(container_id, exec_id);
        let req = TtyWinResizeRequest {
            container_id,
            exec_id,
            row: rows,
            column: columns,
            ..Default::default()
        };
        self.call_agent("AgentService.TtyWinResize", |agent, ctx| {
            agent.tty_win_resize(ctx, &req)
        })
        .await
        .map(drop)
    }
}

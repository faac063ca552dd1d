//! Structured logs: to the console (stderr) by default, or to the host through a vsock
//! port (`agent.log_vport`), as Kata's agent does.
//!
//! With a log port, the agent listens on it and writes every log line to whoever connects
//! (one reader at a time; a new reader takes over). Lines logged while nobody reads are
//! kept in a bounded queue; when it is full, new lines are counted and dropped, and the
//! count is reported in the stream as soon as there is room again.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::Uptime;

use crate::config::AgentConfig;

/// Log lines kept while no reader is connected to the log port.
pub const LOG_QUEUE_LINES: usize = 4096;

/// Where the log lines go once the logging is set up.
pub enum LogOutput {
    /// Lines go to stderr; nothing to serve.
    Console,
    /// Lines wait in this queue for [`forward_logs`] to send them to the host.
    VsockPort {
        /// The vsock port to listen on (`agent.log_vport`).
        port: u32,
        /// The queue of formatted log lines, one event each.
        lines: mpsc::Receiver<Vec<u8>>,
        /// How many lines were dropped because the queue was full.
        dropped: Arc<AtomicU64>,
    },
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(config: &AgentConfig) -> LogOutput {
    let level: tracing::Level = config.log_level.into();
    forward_log(level);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_timer(Uptime::default())
        .with_target(level >= tracing::Level::DEBUG);
    match config.log_vport {
        None => {
            // A second initialisation (only possible in tests) keeps the first subscriber.
            let _ = builder.with_writer(io::stderr).try_init();
            LogOutput::Console
        }
        Some(port) => {
            let (sink, lines, dropped) = QueueSink::new(LOG_QUEUE_LINES);
            let _ = builder.with_writer(sink).try_init();
            LogOutput::VsockPort {
                port,
                lines,
                dropped,
            }
        }
    }
}

/// Forwards the `log` crate's records (ttRPC logs its own errors through it) to
/// `tracing` at the same level, up to `max`. Idempotent: a second call only changes
/// the level.
pub fn forward_log(max: tracing::Level) {
    static FORWARDER: LogToTracing = LogToTracing;
    let _ = log::set_logger(&FORWARDER);
    log::set_max_level(match max {
        tracing::Level::ERROR => log::LevelFilter::Error,
        tracing::Level::WARN => log::LevelFilter::Warn,
        tracing::Level::INFO => log::LevelFilter::Info,
        tracing::Level::DEBUG => log::LevelFilter::Debug,
        tracing::Level::TRACE => log::LevelFilter::Trace,
    });
}

/// A `log::Log` that re-emits each record as a `tracing` event; the record's target
/// (e.g. `ttrpc::asynchronous::server`) becomes the field `origin`.
struct LogToTracing;

impl log::Log for LogToTracing {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        let origin = record.target();
        let message = record.args();
        match record.level() {
            log::Level::Error => tracing::error!(origin, "{message}"),
            log::Level::Warn => tracing::warn!(origin, "{message}"),
            log::Level::Info => tracing::info!(origin, "{message}"),
            log::Level::Debug => tracing::debug!(origin, "{message}"),
            log::Level::Trace => tracing::trace!(origin, "{message}"),
        }
    }

    fn flush(&self) {}
}

/// A `MakeWriter` that queues each formatted event without ever blocking the caller.
#[derive(Clone)]
pub struct QueueSink {
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl QueueSink {
    /// A sink and the receiving end of its queue.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Vec<u8>>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        (
            Self {
                tx,
                dropped: dropped.clone(),
            },
            rx,
            dropped,
        )
    }
}

impl io::Write for QueueSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tx.try_send(buf.to_vec()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueueSink {
    type Writer = QueueSink;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Sends queued log lines to readers obtained from `accept`, one reader at a time, until
/// the queue's senders are gone. A line whose write fails is sent again to the next
/// reader, so a reader that disconnects loses nothing that was still queued.
pub async fn forward_logs<S, F, Fut>(
    mut lines: mpsc::Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    mut accept: F,
) where
    S: AsyncWrite + Unpin,
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<S>>,
{
    let mut pending: Option<Vec<u8>> = None;
    loop {
        let mut reader = match accept().await {
            Ok(reader) => reader,
            Err(e) => {
                eprintln!("hull-agent: log port accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let line = match pending.take() {
                Some(line) => line,
                None => match lines.recv().await {
                    Some(line) => line,
                    None => return,
                },
            };
            let lost = dropped.swap(0, Ordering::Relaxed);
            let notice = (lost > 0).then(|| format!("hull-agent: {lost} log lines dropped\n"));
            let result = match &notice {
                Some(notice) => reader.write_all(notice.as_bytes()).await,
                None => Ok(()),
            };
            if result.and(reader.write_all(&line).await).is_err() {
                dropped.fetch_add(lost, Ordering::Relaxed);
                pending = Some(line);
                break;
            }
        }
    }
}

/// Serves the log queue on vsock `port`, for the agent's whole life.
pub async fn serve_on_vsock(port: u32, lines: mpsc::Receiver<Vec<u8>>, dropped: Arc<AtomicU64>) {
    let addr = tokio_vsock::VsockAddr::new(libc::VMADDR_CID_ANY, port);
    let listener = match tokio_vsock::VsockListener::bind(addr) {
        Ok(listener) => Arc::new(listener),
        Err(e) => {
            eprintln!("hull-agent: cannot listen for log readers on vsock port {port}: {e}");
            return;
        }
    };
    forward_logs(lines, dropped, move || {
        let listener = listener.clone();
        async move { listener.accept().await.map(|(stream, _)| stream) }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::AsyncReadExt;
    use tokio::net::{UnixListener, UnixStream};

    /// ttRPC's `log` records reach the agent's log at their level; finer ones than the
    /// configured level do not.
    #[test]
    fn log_records_reach_the_tracing_log() {
        let (sink, mut rx, _dropped) = QueueSink::new(16);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(sink)
            .finish();
        forward_log(tracing::Level::INFO);
        tracing::subscriber::with_default(subscriber, || {
            log::error!(target: "ttrpc::asynchronous::server", "incoming conn fail EMFILE");
            log::debug!(target: "ttrpc::asynchronous::server", "too fine to show");
        });
        let line = String::from_utf8(rx.try_recv().unwrap()).unwrap();
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains("incoming conn fail EMFILE"), "{line}");
        assert!(
            line.contains("origin=\"ttrpc::asynchronous::server\""),
            "{line}"
        );
        assert!(
            rx.try_recv().is_err(),
            "a debug record passed an info filter"
        );
    }

    #[tokio::test]
    async fn lines_logged_before_a_reader_connects_reach_it_in_order() {
        let (mut sink, rx, dropped) = QueueSink::new(16);
        sink.write_all(b"one\n").unwrap();
        sink.write_all(b"two\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let listener = Arc::new(UnixListener::bind(&path).unwrap());
        let forward = tokio::spawn(forward_logs(rx, dropped, move || {
            let listener = listener.clone();
            async move { listener.accept().await.map(|(s, _)| s) }
        }));
        let mut reader = UnixStream::connect(&path).await.unwrap();
        sink.write_all(b"three\n").unwrap();
        drop(sink);
        let mut text = String::new();
        reader.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "one\ntwo\nthree\n");
        forward.await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_counts_and_reports_dropped_lines() {
        let (mut sink, rx, dropped) = QueueSink::new(2);
        for line in ["a\n", "b\n", "c\n", "d\n"] {
            sink.write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        drop(sink);
        let (client, server) = UnixStream::pair().unwrap();
        let mut server = Some(server);
        let forward = forward_logs(rx, dropped, move || {
            let s = server.take();
            async move { s.ok_or_else(|| io::Error::other("one reader only")) }
        });
        forward.await;
        let mut client = client;
        let mut text = String::new();
        client.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hull-agent: 2 log lines dropped\na\nb\n");
    }
}

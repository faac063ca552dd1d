//! A process's stdio as the agent sees it: pipes, or a pseudo-terminal.
//!
//! No buffer of the agent's own sits between the process and the host: `ReadStdout`
//! reads straight from the pipe (or the terminal master) and `WriteStdin` writes straight
//! into it. The kernel's pipe buffer is the only buffer, so memory is bounded, and a
//! process whose output nobody reads blocks on write (back-pressure) instead of losing
//! bytes. The stdout and stderr pipes are grown to [`OUTPUT_PIPE_SIZE`] (within
//! `/proc/sys/fs/pipe-max-size`; the kernel's 64 KiB when that fails), so a process keeps
//! writing while a read's answer is on its way and one read carries more.
//!
//! A read waits until the stream has at least one byte (or ends), then takes everything
//! readable at that moment, up to the length asked, in one buffer sized by what the
//! kernel says is there (`FIONREAD`): it never waits for more. Each stream has one lock,
//! held for a whole read or write, so concurrent calls cannot reorder bytes; a call
//! dropped while waiting (its RPC cancelled) has consumed nothing, as the bytes are taken
//! without any wait between the first and the last.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::{Mutex, watch};

use super::streams::{StdioStreams, pump_output, pump_stdin};
use super::{ExitWatch, ProcessError};

/// The largest read a single `ReadStdout`/`ReadStderr` serves (the ttRPC message limit
/// is 4 MiB).
pub const MAX_READ: usize = 1 << 20;

/// The capacity asked for the stdout and stderr pipes (the kernel bounds it by
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default). The pages are the kernel's and only
/// as many as the unread output needs.
pub const OUTPUT_PIPE_SIZE: usize = 1 << 20;

/// The buffer for a read when the kernel reports nothing readable although the stream is
/// ready (end of file, an error, or bytes that arrived since).
const SMALL_READ: usize = 4096;

/// The ends the new process gets as its fds 0, 1 and 2.
pub struct ChildStdio {
    /// Fd 0: the read end of the stdin pipe, or the terminal's slave side.
    pub stdin: OwnedFd,
    /// Fd 1: the write end of the stdout pipe, or the terminal's slave side.
    pub stdout: OwnedFd,
    /// Fd 2: the write end of the stderr pipe, or the terminal's slave side.
    pub stderr: OwnedFd,
}

/// One end of a pipe, a terminal master or a socket, non-blocking, registered with tokio.
pub(super) type Endpoint = Arc<AsyncFd<OwnedFd>>;

/// The agent's side of a process's stdio.
pub struct ProcessIo {
    stdin: Mutex<Option<Endpoint>>,
    stdout: Mutex<Option<Endpoint>>,
    /// `None` with a terminal: stdout and stderr are the same stream.
    stderr: Mutex<Option<Endpoint>>,
    terminal: Option<Endpoint>,
    /// Stdin is carried on a stream ([`ProcessIo::carry`]): `WriteStdin` is refused.
    stdin_carried: AtomicBool,
    /// Output copies to streams still running.
    copies: watch::Sender<usize>,
}

impl ProcessIo {
    /// Three pipes.
    pub fn pipes() -> Result<(Self, ChildStdio), ProcessError> {
        let (stdin_r, stdin_w) = pipe()?;
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        grow_pipe(&stdout_r);
        grow_pipe(&stderr_r);
        let io = Self {
            stdin: Mutex::new(Some(endpoint(stdin_w)?)),
            stdout: Mutex::new(Some(endpoint(stdout_r)?)),
            stderr: Mutex::new(Some(endpoint(stderr_r)?)),
            terminal: None,
            stdin_carried: AtomicBool::new(false),
            copies: watch::Sender::new(0),
        };
        Ok((
            io,
            ChildStdio {
                stdin: stdin_r,
                stdout: stdout_w,
                stderr: stderr_w,
            },
        ))
    }

    /// A pseudo-terminal of `rows` x `cols` (0 x 0: the kernel's default). The process
    /// gets the terminal's slave side as fds 0, 1 and 2; the helper makes it the
    /// controlling terminal.
    pub fn terminal(rows: u16, cols: u16) -> Result<(Self, ChildStdio), ProcessError> {
        let (master, slave) = open_pty()?;
        if rows > 0 || cols > 0 {
            set_window_size(master.as_raw_fd(), rows, cols)?;
        }
        let slave2 = slave.try_clone().map_err(ProcessError::Io)?;
        let slave3 = slave.try_clone().map_err(ProcessError::Io)?;
        let master = endpoint(master)?;
        let io = Self {
            stdin: Mutex::new(Some(master.clone())),
            stdout: Mutex::new(Some(master.clone())),
            stderr: Mutex::new(None),
            terminal: Some(master),
            stdin_carried: AtomicBool::new(false),
            copies: watch::Sender::new(0),
        };
        Ok((
            io,
            ChildStdio {
                stdin: slave,
                stdout: slave2,
                stderr: slave3,
            },
        ))
    }

    /// Whether the process runs on a terminal.
    pub fn is_terminal(&self) -> bool {
        self.terminal.is_some()
    }

    /// Reads up to `len` bytes of stdout (or stderr), waiting until there is at least
    /// one; an empty answer means end of file.
    pub async fn read(&self, stderr: bool, len: usize) -> Result<Vec<u8>, ProcessError> {
        let stream = if stderr { &self.stderr } else { &self.stdout };
        let guard = stream.lock().await;
        let Some(fd) = guard.as_ref() else {
            if stderr && self.is_terminal() {
                return Err(ProcessError::NoSuchStream(
                    "a process on a terminal has no separate stderr",
                ));
            }
            return Ok(Vec::new());
        };
        let len = len.clamp(1, MAX_READ);
        loop {
            let mut ready = fd.readable().await.map_err(ProcessError::Io)?;
            // No await from here to the answer: the bytes taken are the answer's.
            match ready.try_io(|inner| read_available(inner.get_ref().as_raw_fd(), len)) {
                Ok(Ok(buf)) => return Ok(buf),
                // A terminal master reads EIO once every slave fd is closed: end of file.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) && self.is_terminal() => {
                    return Ok(Vec::new());
                }
                Ok(Err(e)) => return Err(ProcessError::Io(e)),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` to stdin, waiting while the pipe is full.
    pub async fn write(&self, data: &[u8]) -> Result<usize, ProcessError> {
        let guard = self.stdin.lock().await;
        if self.stdin_carried.load(Ordering::SeqCst) {
            return Err(ProcessError::CarriedOnStream("stdin"));
        }
        let fd = guard.as_ref().ok_or(ProcessError::StdinClosed)?;
        let mut written = 0;
        while written < data.len() {
            let mut ready = fd.writable().await.map_err(ProcessError::Io)?;
            match ready.try_io(|inner| write_fd(inner.get_ref().as_raw_fd(), &data[written..])) {
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EPIPE) => {
                    return Err(ProcessError::StdinClosed);
                }
                Ok(Err(e)) => return Err(ProcessError::Io(e)),
                Err(_would_block) => continue,
            }
        }
        Ok(written)
    }

    /// Closes stdin: the process reads end of file. On a terminal, sends the end-of-file
    /// character (^D) instead, as the terminal stays open for output.
    pub async fn close_stdin(&self) -> Result<(), ProcessError> {
        if self.is_terminal() {
            if self.stdin.lock().await.is_some() {
                self.write(&[0x04]).await?;
            }
            self.stdin.lock().await.take();
            return Ok(());
        }
        self.stdin.lock().await.take();
        Ok(())
    }

    /// Moves the given streams off the RPCs onto connected sockets (see
    /// [`super::streams`]): each socket's copy task starts now. A stream moved so reads as
    /// at its end through `ReadStdout`/`ReadStderr`; `WriteStdin` is refused. `exit` ends
    /// the stdin copy when the process exits.
    pub async fn carry(&self, streams: StdioStreams, exit: ExitWatch) -> Result<(), ProcessError> {
        let terminal = self.is_terminal();
        let StdioStreams {
            stdin,
            stdout,
            stderr,
        } = streams;
        // On a terminal stderr is stdout: a stderr stream gets end of file at once.
        let stderr = if terminal { None } else { stderr };
        let stdin = stdin.map(endpoint).transpose()?;
        let stdout = stdout.map(endpoint).transpose()?;
        let stderr = stderr.map(endpoint).transpose()?;
        if let Some(socket) = stdin {
            let mut slot = self.stdin.lock().await;
            self.stdin_carried.store(true, Ordering::SeqCst);
            match slot.take() {
                Some(sink) => {
                    tokio::spawn(pump_stdin(socket, sink, terminal, exit));
                }
                // Already closed: the host's stream ends here.
                None => drop(socket),
            }
        }
        for (socket, slot) in [(stdout, &self.stdout), (stderr, &self.stderr)] {
            let Some(socket) = socket else { continue };
            let Some(source) = slot.lock().await.take() else {
                continue;
            };
            self.copies.send_modify(|n| *n += 1);
            let copies = self.copies.clone();
            tokio::spawn(async move {
                pump_output(source, socket, terminal).await;
                copies.send_modify(|n| *n = n.saturating_sub(1));
            });
        }
        Ok(())
    }

    /// Resolves when every output stream carried on a socket has been copied to its end
    /// and the socket closed (at once when none is).
    pub async fn output_drained(&self) {
        let mut rx = self.copies.subscribe();
        // The sender lives in `self`: `wait_for` cannot fail while we borrow it.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Resizes the terminal.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ProcessError> {
        let terminal = self.terminal.as_ref().ok_or(ProcessError::NoTerminal)?;
        set_window_size(terminal.get_ref().as_raw_fd(), rows, cols)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), ProcessError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| ProcessError::Sys {
        what: "pipe2",
        errno,
    })
}

/// Asks for an [`OUTPUT_PIPE_SIZE`] pipe, or `pipe-max-size` when that is smaller. A
/// pipe that cannot grow keeps its size: the stream works, only with shorter reads.
fn grow_pipe(fd: &OwnedFd) {
    let size = pipe_max_size().map_or(OUTPUT_PIPE_SIZE, |max| max.min(OUTPUT_PIPE_SIZE));
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    if let Err(errno) = fcntl(fd, FcntlArg::F_SETPIPE_SZ(size)) {
        tracing::debug!(%errno, size, "stdio: the pipe keeps its size (F_SETPIPE_SZ)");
    }
}

/// `/proc/sys/fs/pipe-max-size`, when it can be read.
fn pipe_max_size() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How many bytes `fd` (a pipe or a terminal master) holds unread, per the kernel; 0 when
/// it cannot say.
fn readable_bytes(fd: RawFd) -> usize {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid for it.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut count) };
    if rc < 0 {
        return 0;
    }
    usize::try_from(count).unwrap_or(0)
}

/// Takes everything `fd` holds now, up to `len` bytes, in a buffer sized by what the
/// kernel reports. The first read's result is the call's (`WouldBlock`, end of file as an
/// empty buffer, an error); later reads only add bytes, and stop at the first that has
/// none to give (the error, if any, comes again to the next call).
fn read_available(fd: RawFd, len: usize) -> io::Result<Vec<u8>> {
    let first = readable_bytes(fd);
    let mut buf = Vec::with_capacity(if first == 0 { SMALL_READ } else { first }.min(len));
    let n = read_spare(fd, &mut buf, len)?;
    if n == 0 {
        return Ok(buf);
    }
    while buf.len() < len {
        let more = readable_bytes(fd).min(len - buf.len());
        if more == 0 {
            break;
        }
        buf.reserve_exact(more);
        match read_spare(fd, &mut buf, len) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(buf)
}

/// One read(2) into `buf`'s spare capacity, leaving `buf` at most `len` long; the bytes
/// read extend `buf`.
fn read_spare(fd: RawFd, buf: &mut Vec<u8>, len: usize) -> io::Result<usize> {
    let room = len.saturating_sub(buf.len());
    let spare = buf.spare_capacity_mut();
    let room = room.min(spare.len());
    // SAFETY: `spare` is valid for `spare.len()` >= `room` bytes of writes; read(2)
    // writes only there, and at most `room` bytes.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), room) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: read(2) initialised the first `n` spare bytes (n <= room <= spare.len()).
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

fn endpoint(fd: OwnedFd) -> Result<Endpoint, ProcessError> {
    let flags = fcntl(&fd, FcntlArg::F_GETFL).map_err(|errno| ProcessError::Sys {
        what: "fcntl(F_GETFL)",
        errno,
    })?;
    fcntl(
        &fd,
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|errno| ProcessError::Sys {
        what: "fcntl(F_SETFL)",
        errno,
    })?;
    // SAFETY: the OwnedFd is moved into the AsyncFd, which keeps it open (the same fd)
    // for its whole life.
    let fd =
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
            .map_err(|e| ProcessError::Io(std::io::Error::other(e.to_string())))?;
    Ok(Arc::new(fd))
}

/// Opens a new pseudo-terminal pair (master, slave), both ends close-on-exec.
pub fn open_pty() -> Result<(OwnedFd, OwnedFd), ProcessError> {
    let sys = |what| move |errno| ProcessError::Sys { what, errno };
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("posix_openpt"))?;
    nix::pty::grantpt(&master).map_err(sys("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(sys("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(sys("ptsname_r"))?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("open(pty slave)"))?;
    // SAFETY: posix_openpt returned a valid fd that only `master` owns; we take it out.
    let master = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(master)) };
    let _ = fcntl(&master, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    Ok((master, slave))
}

fn set_window_size(fd: RawFd, rows: u16, cols: u16) -> Result<(), ProcessError> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is an open terminal fd and `size` a valid winsize for the call.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size) };
    if rc < 0 {
        return Err(ProcessError::Sys {
            what: "ioctl(TIOCSWINSZ)",
            errno: nix::errno::Errno::last(),
        });
    }
    Ok(())
}

pub(super) fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(super) fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of reads.
    let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[tokio::test]
    async fn pipes_carry_bytes_in_order_and_report_end_of_file() {
        let (io, child) = ProcessIo::pipes().unwrap();
        let mut stdout = std::fs::File::from(child.stdout);
        let writer = std::thread::spawn(move || {
            for i in 0..200u32 {
                stdout.write_all(&[i as u8; 1000]).unwrap();
            }
        });
        let mut got = Vec::new();
        loop {
            let chunk = io.read(false, 4096).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            got.extend(chunk);
        }
        writer.join().unwrap();
        assert_eq!(got.len(), 200_000);
        for (i, block) in got.chunks(1000).enumerate() {
            assert!(
                block.iter().all(|&b| b == i as u8),
                "block {i} out of order"
            );
        }
    }

    #[tokio::test]
    async fn a_read_takes_all_that_is_there_up_to_its_length_without_waiting_for_more() {
        let (io, child) = ProcessIo::pipes().unwrap();
        let capacity = fcntl(&child.stdout, FcntlArg::F_GETPIPE_SZ).unwrap();
        let expected = pipe_max_size().map_or(OUTPUT_PIPE_SIZE, |max| max.min(OUTPUT_PIPE_SIZE));
        assert_eq!(capacity as usize, expected, "the stdout pipe grew");
        let stderr_capacity = fcntl(&child.stderr, FcntlArg::F_GETPIPE_SZ).unwrap();
        assert_eq!(stderr_capacity as usize, expected, "the stderr pipe grew");
        // 256 KiB fit in the pipe: the writes return before anybody reads.
        let data: Vec<u8> = (0..256u32 << 10).map(|i| (i % 253) as u8).collect();
        let mut stdout = std::fs::File::from(child.stdout);
        stdout.write_all(&data).unwrap();
        // Longer than what is there: one read answers all of it, at once.
        let all = tokio::time::timeout(std::time::Duration::from_secs(5), io.read(false, 1 << 20))
            .await
            .expect("a read with bytes there answered at once")
            .unwrap();
        assert!(
            all == data,
            "one read took {} of {} bytes",
            all.len(),
            data.len()
        );
        // Shorter: exactly its length, the rest stays for the next read.
        stdout.write_all(&data).unwrap();
        assert_eq!(io.read(false, 1000).await.unwrap(), data[..1000]);
        assert_eq!(io.read(false, 1 << 20).await.unwrap(), data[1000..]);
        // A few bytes are answered without waiting for the buffer to fill; the end of
        // the stream comes after the last of them.
        stdout.write_all(b"tail").unwrap();
        drop(stdout);
        assert_eq!(io.read(false, 1 << 20).await.unwrap(), b"tail");
        assert!(io.read(false, 1 << 20).await.unwrap().is_empty());
        assert!(io.read(false, 1 << 20).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_read_dropped_while_waiting_takes_nothing() {
        let (io, child) = ProcessIo::pipes().unwrap();
        let io = Arc::new(io);
        let waiting = tokio::spawn({
            let io = io.clone();
            async move { io.read(false, 1 << 20).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "a read answered with no bytes there"
        );
        waiting.abort();
        assert!(waiting.await.unwrap_err().is_cancelled());
        let mut stdout = std::fs::File::from(child.stdout);
        stdout.write_all(b"next").unwrap();
        assert_eq!(io.read(false, 1 << 20).await.unwrap(), b"next");
    }

    #[tokio::test]
    async fn stdin_applies_back_pressure_and_close_gives_eof() {
        let (io, child) = ProcessIo::pipes().unwrap();
        let data = vec![7u8; 1 << 20];
        let io = Arc::new(io);
        let writer = tokio::spawn({
            let io = io.clone();
            let data = data.clone();
            async move {
                let n = io.write(&data).await.unwrap();
                io.close_stdin().await.unwrap();
                n
            }
        });
        // The pipe holds far less than 1 MiB: the write cannot finish before we read.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(!writer.is_finished());
        let mut stdin = std::fs::File::from(child.stdin);
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            stdin.read_to_end(&mut all).unwrap();
            all
        });
        assert_eq!(writer.await.unwrap(), data.len());
        assert_eq!(reader.join().unwrap(), data);
        assert!(matches!(
            io.write(b"x").await,
            Err(ProcessError::StdinClosed)
        ));
    }

    #[tokio::test]
    async fn a_terminal_echoes_and_resizes() {
        let (io, child) = ProcessIo::terminal(24, 80).unwrap();
        io.resize(40, 120).unwrap();
        // SAFETY: `winsize` is four `c_ushort`s: all zeroes is a valid value.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: valid terminal fd and a winsize to fill.
        let rc = unsafe { libc::ioctl(child.stdin.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
        assert_eq!(rc, 0);
        assert_eq!((size.ws_row, size.ws_col), (40, 120));
        let mut slave = std::fs::File::from(child.stdout);
        slave.write_all(b"hello\n").unwrap();
        let out = io.read(false, 100).await.unwrap();
        assert_eq!(out, b"hello\r\n");
        assert!(matches!(
            io.read(true, 100).await,
            Err(ProcessError::NoSuchStream(_))
        ));
        drop(slave);
        drop(child.stdin);
        drop(child.stderr);
        assert!(io.read(false, 100).await.unwrap().is_empty());
    }
}

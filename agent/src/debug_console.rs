//! The debug console: a root shell on a pty, served on vsock port
//! `agent.debug_console_vport` (1026 by default), as Kata's agent offers.
//!
//! It runs only when the kernel command line asks for it *and* the image was built with
//! it (see [`crate::config::AgentConfig::debug_console_enabled`]): a host that can only
//! change the command line cannot open a shell in a production guest. Each connection
//! gets its own shell in a new session with the pty as its controlling terminal; the
//! shell is killed when the connection closes.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use hull_container::process::reaper::Reaper;

/// The shell a debug session runs (busybox's, in images built with debug tools).
pub const DEBUG_SHELL: &str = "/bin/sh";

/// Serves debug sessions on vsock `port` for the agent's whole life.
pub async fn serve_on_vsock(port: u32) {
    let addr = tokio_vsock::VsockAddr::new(libc::VMADDR_CID_ANY, port);
    let listener = match tokio_vsock::VsockListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(port, error = %e, "debug console: cannot listen");
            return;
        }
    };
    tracing::warn!(
        port,
        "debug console enabled: a root shell is served on this vsock port"
    );
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tracing::info!(%peer, "debug console session");
                tokio::spawn(async move {
                    if let Err(e) = session(stream, Path::new(DEBUG_SHELL)).await {
                        tracing::warn!(error = %e, "debug console session ended with an error");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "debug console: accept failed"),
        }
    }
}

/// Runs one shell on a new pty and relays bytes between it and `stream` until either
/// side ends.
pub async fn session<S>(mut stream: S, shell: &Path) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !shell.is_file() {
        let message = format!(
            "hull-agent: no shell at {} in this image\r\n",
            shell.display()
        );
        stream.write_all(message.as_bytes()).await?;
        return Ok(());
    }
    let pty = nix::pty::openpty(None, None).map_err(io::Error::from)?;
    // The agent's one reaper owns every child's exit status (containers' too): the shell
    // is spawned under it, and signalled through it so a reaped pid is never reused.
    let reaper = Reaper::global().map_err(io::Error::other)?;
    let (pid, mut exited) = reaper.spawn_registered(|| {
        let child = shell_command(shell, &pty.slave)?.spawn()?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        Ok((pid, pid))
    })?;
    drop(pty.slave);
    let master = PtyMaster::new(pty.master)?;
    let relayed = relay(&mut stream, &master).await;
    // The shell may still run (the peer went away first): end it.
    let _ = reaper.signal(pid, Signal::SIGKILL);
    exited.wait().await;
    relayed
}

fn shell_command(shell: &Path, slave: &OwnedFd) -> io::Result<Command> {
    let stdio = || slave.try_clone().map(Stdio::from);
    let mut command = Command::new(shell);
    command
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("TERM", "vt100")
        .env("HOME", "/root")
        .current_dir("/")
        .stdin(stdio()?)
        .stdout(stdio()?)
        .stderr(stdio()?);
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (setsid, ioctl) on the child's own fd 0.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

/// The master side of a pty, readable and writable without blocking the runtime.
struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        let flags = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: `fd` is an open pty master that the AsyncFd takes ownership of; an
        // OwnedFd's raw fd never changes, and it is closed only when the AsyncFd drops.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(io::Error::from))
            {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

async fn relay<S>(stream: &mut S, master: &PtyMaster) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut from_peer = [0u8; 4096];
    let mut from_shell = [0u8; 4096];
    loop {
        tokio::select! {
            read = stream.read(&mut from_peer) => match read? {
                0 => return Ok(()),
                n => master.write_all(&from_peer[..n]).await?,
            },
            read = master.read(&mut from_shell) => match read {
                Ok(0) => return Ok(()),
                Ok(n) => stream.write_all(&from_shell[..n]).await?,
                // EIO: every holder of the slave side closed it, i.e. the shell ended.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(()),
                Err(e) => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixStream;

    #[tokio::test]
    async fn a_session_runs_commands_in_a_shell_on_a_terminal() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let session = tokio::spawn(async move { session(server, Path::new("/bin/sh")).await });
        client
            .write_all(b"tty >/dev/null && echo on-a-tty-$((40+2)); exit\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("on-a-tty-42") {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), client.read(&mut buf))
                .await
                .expect("shell output in time")
                .unwrap();
            assert!(
                n > 0,
                "session ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
        tokio::time::timeout(std::time::Duration::from_secs(10), session)
            .await
            .expect("session ends after exit")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn no_shell_is_said_and_the_session_ends() {
        let (mut client, server) = UnixStream::pair().unwrap();
        session(server, Path::new("/no/such/shell")).await.unwrap();
        let mut text = String::new();
        client.read_to_string(&mut text).await.unwrap();
        assert!(text.contains("no shell at /no/such/shell"), "{text}");
    }
}

//! The host side of Kata's stdio ports ("passfd io"): a guest booted with
//! `agent.passfd_listener_port=`[`LISTENER_PORT`], one hybrid-vsock connection to that
//! port per stream, and the host port of each connection put in `CreateContainer`'s or
//! `ExecProcess`'s `stdin_port`/`stdout_port`/`stderr_port`.
//!
//! The request must name the port the guest sees the connection come from. Firecracker,
//! Cloud Hypervisor and Dragonball answer it in `OK <port>`; vhost-device-vsock (the
//! harness's QEMU backend) answers the guest port there instead, and gives host
//! connections consecutive ports. So before each connection [`StdioPortDialer`] asks a
//! probe in the guest (`guest-helper vsock-peer-ports`, in a container) which port its
//! own connection came from: the next connection gets the one after it.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hull_protocols::dial::hybrid_vsock_connect;

use crate::bundle::ContainerSpec;
use crate::container::Container;
use crate::guest::SandboxGuest;

/// The stdio listener's port on the guests of the tests and the bench.
pub const LISTENER_PORT: u32 = 1027;
/// The kernel command-line option that turns the listener on.
pub fn listener_cmdline() -> String {
    format!("agent.passfd_listener_port={LISTENER_PORT}")
}
/// Where the probe listens in the guest.
pub const PROBE_PORT: u32 = 6000;
const PROBE_DEADLINE: Duration = Duration::from_secs(60);

/// Opens stdio connections and tells their host ports.
pub struct StdioPortDialer {
    socket: PathBuf,
    listener_port: u32,
    probe: Container,
}

impl StdioPortDialer {
    /// Starts the probe (container `id`, `guest-helper` copied into its rootfs).
    pub async fn start(guest: &SandboxGuest, helper: &Path, id: &str) -> Result<Self> {
        let rootfs = guest.busybox_rootfs(id)?;
        std::fs::copy(helper, rootfs.join("bin/guest-helper")).context("copying guest-helper")?;
        let spec = ContainerSpec::new([
            "/bin/guest-helper".to_string(),
            "vsock-peer-ports".to_string(),
            PROBE_PORT.to_string(),
        ]);
        let probe = Container::create(&guest.client, id, spec.to_proto(id)?)
            .await
            .with_context(|| format!("CreateContainer {id}"))?;
        probe
            .start()
            .await
            .with_context(|| format!("StartContainer {id}"))?;
        Ok(Self {
            socket: guest.vm().hybrid_vsock_socket(),
            listener_port: LISTENER_PORT,
            probe,
        })
    }

    /// The host port of the probe's next connection (retried while it starts).
    async fn probe_port(&self) -> Result<u32> {
        let started = Instant::now();
        loop {
            match hybrid_vsock_connect(&self.socket, PROBE_PORT).await {
                Ok((stream, _)) => {
                    let stream = stream.into_std()?;
                    stream.set_nonblocking(false)?;
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    let mut line = String::new();
                    BufReader::new(stream)
                        .read_line(&mut line)
                        .context("reading the probe's answer")?;
                    return line
                        .trim()
                        .parse()
                        .with_context(|| format!("the probe answered {line:?}"));
                }
                Err(e) if started.elapsed() > PROBE_DEADLINE => {
                    bail!("the probe on guest port {PROBE_PORT} did not answer: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// One connection to the stdio listener (blocking, 10 min read timeout: a stream may
    /// stay quiet while the process works) and the host port the guest sees it come from.
    pub async fn connect(&self) -> Result<(UnixStream, u32)> {
        let before = self.probe_port().await?;
        let (stream, reply) = hybrid_vsock_connect(&self.socket, self.listener_port)
            .await
            .with_context(|| format!("connecting to the stdio listener {}", self.listener_port))?;
        let port = match reply {
            Some(port) if port != self.listener_port => port,
            _ => before + 1,
        };
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(600)))?;
        Ok((stream, port))
    }

    /// Removes the probe.
    pub async fn stop(self) -> Result<()> {
        self.probe.remove().await.context("removing the probe")
    }
}

//! Kernel uevents: what they carry, and a `NETLINK_KOBJECT_UEVENT` socket to receive them.
//!
//! The kernel multicasts a message to group 1 whenever a device appears or goes:
//! `add@/devices/pci0000:00/0000:00:05.0/virtio3/block/vdb` followed by NUL-separated
//! `KEY=value` pairs (`ACTION`, `DEVPATH`, `SUBSYSTEM`, `DEVNAME`, `DEVTYPE`, `SEQNUM`, ...).
//! Messages from user space (udev rebroadcasts start with `libudev`, and anything not sent
//! by the kernel, port id 0) are ignored.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recvfrom, setsockopt,
    socket, sockopt,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The multicast group the kernel sends uevents to.
const KERNEL_GROUP: u32 = 1;
/// Receive buffer asked for, so a burst of hot-plug events is not dropped.
const RECEIVE_BUFFER: usize = 1 << 20;
/// The kernel's uevent buffer is 2 KiB plus the header; twice that is plenty.
const MESSAGE_MAX: usize = 8192;

/// One kernel uevent, the fields the agent uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uevent {
    /// `ACTION`: `add`, `remove`, `change`, `bind`, ...
    pub action: String,
    /// Relative to `/sys`, e.g. `/devices/pci0000:00/0000:00:05.0/virtio3/block/vdb`.
    pub devpath: String,
    /// `SUBSYSTEM`, e.g. `block`, `pci`, `virtio`.
    pub subsystem: String,
    /// Relative to `/dev`, e.g. `vdb`; empty for devices without a node.
    pub devname: String,
    /// `disk` or `partition` for block devices.
    pub devtype: String,
    /// `SEQNUM`, the kernel's event counter; 0 when missing or unparsable.
    pub seqnum: u64,
}

impl Uevent {
    /// Parses a kernel uevent message; `None` for anything else.
    pub fn parse(message: &[u8]) -> Option<Self> {
        let mut fields = message.split(|&b| b == 0).filter(|f| !f.is_empty());
        let header = std::str::from_utf8(fields.next()?).ok()?;
        // "ACTION@DEVPATH"; udev's messages start with "libudev" and have no '@'.
        header.split_once('@')?;
        let mut event = Self::default();
        for field in fields {
            let Ok(field) = std::str::from_utf8(field) else {
                continue;
            };
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "ACTION" => event.action = value.to_string(),
                "DEVPATH" => event.devpath = value.to_string(),
                "SUBSYSTEM" => event.subsystem = value.to_string(),
                "DEVNAME" => event.devname = value.to_string(),
                "DEVTYPE" => event.devtype = value.to_string(),
                "SEQNUM" => event.seqnum = value.parse().unwrap_or(0),
                _ => {}
            }
        }
        (!event.action.is_empty() && !event.devpath.is_empty()).then_some(event)
    }

    /// Whether this is the appearance of a block device node (a whole disk or a
    /// partition).
    pub fn is_block_add(&self) -> bool {
        self.action == "add" && self.subsystem == "block" && !self.devname.is_empty()
    }
}

/// Why uevents could not be received.
#[derive(Debug, thiserror::Error)]
pub enum UeventError {
    /// The socket's buffer overflowed: events were lost (look at sysfs again).
    #[error("uevents were lost (receive buffer overflow)")]
    Overflow,
    /// The socket could not be opened, bound or read.
    #[error("uevent socket: {0}")]
    Io(#[from] io::Error),
}

/// A stream of uevents: the kernel's in the agent, a scripted one in tests.
pub trait UeventSource {
    /// The next uevent. Cancel-safe: dropping the future loses no event.
    fn next_event(&mut self) -> impl Future<Output = Result<Uevent, UeventError>> + Send;
}

/// A `NETLINK_KOBJECT_UEVENT` socket subscribed to the kernel's uevents.
pub struct UeventSocket {
    fd: AsyncFd<OwnedFd>,
    buffer: Vec<u8>,
}

impl UeventSocket {
    /// Subscribes. Events that happen from now on are queued until read.
    pub fn open() -> Result<Self, UeventError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )
        .map_err(io::Error::from)?;
        // Port id 0: the kernel assigns one.
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, KERNEL_GROUP)).map_err(io::Error::from)?;
        // Best effort: forcing needs CAP_NET_ADMIN, the plain request is capped by
        // rmem_max.
        if setsockopt(&fd, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
            let _ = setsockopt(&fd, sockopt::RcvBuf, &RECEIVE_BUFFER);
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it from now on: the
        // descriptor stays open and is the same one for the AsyncFd's whole life.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Self {
            fd,
            buffer: vec![0; MESSAGE_MAX],
        })
    }
}

impl UeventSource for UeventSocket {
    async fn next_event(&mut self) -> Result<Uevent, UeventError> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buffer = &mut self.buffer;
            let received = guard.try_io(|fd| {
                recvfrom::<NetlinkAddr>(fd.as_raw_fd(), buffer).map_err(io::Error::from)
            });
            match received {
                Ok(Ok((len, sender))) => {
                    // Only the kernel (port id 0) speaks with authority.
                    if sender.is_some_and(|s| s.pid() == 0)
                        && let Some(event) = Uevent::parse(&self.buffer[..len])
                    {
                        return Ok(event);
                    }
                }
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::ENOBUFS as i32) => {
                    return Err(UeventError::Overflow);
                }
                Ok(Err(e)) => return Err(UeventError::Io(e)),
                // Spurious wake-up: the readiness was cleared, wait again.
                Err(_would_block) => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The message the kernel sends when a virtio-blk disk appears.
    pub(crate) fn kernel_message(action: &str, devpath: &str, devname: &str) -> Vec<u8> {
        let mut message = format!("{action}@{devpath}\0").into_bytes();
        for field in [
            format!("ACTION={action}"),
            format!("DEVPATH={devpath}"),
            "SUBSYSTEM=block".to_string(),
            "MAJOR=253".to_string(),
            "MINOR=16".to_string(),
            format!("DEVNAME={devname}"),
            "DEVTYPE=disk".to_string(),
            "SEQNUM=1234".to_string(),
        ] {
            message.extend_from_slice(field.as_bytes());
            message.push(0);
        }
        message
    }

    #[test]
    fn parses_a_kernel_block_add() {
        let devpath = "/devices/pci0000:00/0000:00:05.0/virtio3/block/vdb";
        let event = Uevent::parse(&kernel_message("add", devpath, "vdb")).unwrap();
        assert_eq!(
            event,
            Uevent {
                action: "add".into(),
                devpath: devpath.into(),
                subsystem: "block".into(),
                devname: "vdb".into(),
                devtype: "disk".into(),
                seqnum: 1234,
            }
        );
        assert!(event.is_block_add());
    }

    #[test]
    fn ignores_udev_and_garbage() {
        assert_eq!(Uevent::parse(b"libudev\0\xfe\xed\xca\xfe"), None);
        assert_eq!(Uevent::parse(b""), None);
        assert_eq!(Uevent::parse(b"\0\0\0"), None);
        assert_eq!(Uevent::parse(b"add@/devices/x\0"), None, "no ACTION field");
        let event =
            Uevent::parse(b"remove@/d\0ACTION=remove\0DEVPATH=/d\0\xff\xfe\0junk\0").unwrap();
        assert_eq!(event.action, "remove");
        assert!(!event.is_block_add());
    }

    #[tokio::test]
    async fn the_socket_opens_and_waits_quietly() {
        // Binding a uevent socket needs no privilege; no event is expected within
        // 50 ms on a quiet machine, and waiting must not fail.
        let mut socket = UeventSocket::open().unwrap();
        let result =
            tokio::time::timeout(std::time::Duration::from_millis(50), socket.next_event()).await;
        if let Ok(event) = result {
            // A real device event raced the test: it must still be well formed.
            let event = event.unwrap();
            assert!(!event.devpath.is_empty());
        }
    }
}

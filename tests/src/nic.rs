//! A guest NIC on QEMU user networking (slirp): a virtio-net device whose traffic QEMU
//! carries in user space, so no tap device, bridge or privilege is needed and the host's
//! network is untouched.
//!
//! Slirp's fixed plan: the guest is expected at [`GUEST_ADDRESS`]/[`GUEST_PREFIX_LEN`],
//! [`GATEWAY`] is slirp's router (and the host's loopback, as the guest sees it),
//! [`DNS`] its resolver. Nothing configures the guest: the agent API does. Host ports
//! forwarded into the guest listen on 127.0.0.1 only; the harness picks free ones. By
//! default the guest is isolated (`restrict=on`): it can answer forwarded connections but
//! open none.

use std::net::{Ipv4Addr, TcpListener};

use anyhow::{Context, Result};
use hull_image::vm_args::{self, PortForward, UserNic};
use hull_protocols::client::AgentClient;
use hull_protocols::types::{IPAddress, IPFamily, Interface, Route};

/// Where slirp expects the guest.
pub const GUEST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The prefix length of slirp's network, 10.0.2.0/24.
pub const GUEST_PREFIX_LEN: u8 = 24;
/// Slirp's router; connections to it reach the host's loopback.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Slirp's DNS forwarder.
pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
/// The NIC's slot on the root PCI bus unless told otherwise; its Kata PCI path is "05".
pub const DEFAULT_PCI_SLOT: u8 = 5;

/// A TCP port of 127.0.0.1 on the host forwarded to a guest port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    /// The port on the host's 127.0.0.1 (free when the harness picked it).
    pub host_port: u16,
    /// The guest port it reaches, on [`GUEST_ADDRESS`].
    pub guest_port: u16,
}

/// A virtio-net NIC on user networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    /// The NIC's MAC, colon-separated hex.
    pub mac: String,
    /// Its slot on the root PCI bus (q35's pcie.0).
    pub pci_slot: u8,
    /// Host ports forwarded into the guest.
    pub forwards: Vec<HostForward>,
    /// Let the guest open connections too (to the host's loopback through [`GATEWAY`]).
    pub reach_host: bool,
}

impl NicConfig {
    /// A NIC with `mac` in the default slot, no forwards, isolated.
    pub fn new(mac: impl Into<String>) -> Self {
        Self {
            mac: mac.into(),
            pci_slot: DEFAULT_PCI_SLOT,
            forwards: Vec::new(),
            reach_host: false,
        }
    }

    /// Forwards a free TCP port of 127.0.0.1 to `guest_port` (see [`NicConfig::host_port`]).
    pub fn forward_tcp(mut self, guest_port: u16) -> Result<Self> {
        // Bound then released: QEMU binds it right after, a window other programs on
        // this machine rarely hit.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("finding a free port on 127.0.0.1")?;
        let host_port = listener.local_addr()?.port();
        self.forwards.push(HostForward {
            host_port,
            guest_port,
        });
        Ok(self)
    }

    /// The host port forwarded to `guest_port`.
    pub fn host_port(&self, guest_port: u16) -> Option<u16> {
        self.forwards
            .iter()
            .find(|f| f.guest_port == guest_port)
            .map(|f| f.host_port)
    }

    /// The NIC's PCI path as Kata's runtime writes it (`devicePath`).
    pub fn pci_path(&self) -> String {
        format!("{:02x}", self.pci_slot)
    }

    /// Configures the NIC in the guest through the agent, as Kata's runtime does before it
    /// creates containers: `eth0` at [`GUEST_ADDRESS`] (found by its MAC), a default
    /// route through [`GATEWAY`].
    pub async fn configure_through_agent(&self, client: &AgentClient) -> Result<()> {
        let interface = Interface {
            name: "eth0".into(),
            hwAddr: self.mac.clone(),
            mtu: 1500,
            IPAddresses: vec![IPAddress {
                family: IPFamily::v4.into(),
                address: GUEST_ADDRESS.to_string(),
                mask: GUEST_PREFIX_LEN.to_string(),
                ..Default::default()
            }],
            ..Default::default()
        };
        client
            .update_interface(interface)
            .await
            .context("UpdateInterface")?;
        let route = Route {
            gateway: GATEWAY.to_string(),
            device: "eth0".into(),
            family: IPFamily::v4.into(),
            ..Default::default()
        };
        client
            .update_routes(vec![route])
            .await
            .context("UpdateRoutes")?;
        Ok(())
    }

    /// The NIC as hull-image's VM description names it.
    pub fn user_nic(&self) -> UserNic {
        UserNic {
            mac: self.mac.clone(),
            pci_slot: self.pci_slot,
            network: (Ipv4Addr::new(10, 0, 2, 0), GUEST_PREFIX_LEN),
            gateway: GATEWAY,
            dns: DNS,
            forwards: self
                .forwards
                .iter()
                .map(|f| PortForward {
                    host_port: f.host_port,
                    guest_port: f.guest_port,
                })
                .collect(),
            reach_host: self.reach_host,
        }
    }

    /// QEMU's `-netdev` and `-device` arguments.
    pub fn qemu_args(&self) -> Vec<String> {
        vm_args::qemu::nic_args(&self.user_nic())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_networking_is_isolated_with_loopback_forwards() {
        let nic = NicConfig::new("52:54:00:12:34:56")
            .forward_tcp(80)
            .unwrap()
            .forward_tcp(443)
            .unwrap();
        let host_80 = nic.host_port(80).unwrap();
        let host_443 = nic.host_port(443).unwrap();
        assert_ne!(host_80, 0);
        assert_eq!(nic.host_port(22), None);
        let args = nic.qemu_args().join(" ");
        assert!(args.contains("restrict=on"), "{args}");
        assert!(
            args.contains(&format!("hostfwd=tcp:127.0.0.1:{host_80}-:80")),
            "{args}"
        );
        assert!(
            args.contains(&format!("hostfwd=tcp:127.0.0.1:{host_443}-:443")),
            "{args}"
        );
        assert!(
            args.contains("-device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,addr=0x5"),
            "{args}"
        );
        assert_eq!(nic.pci_path(), "05");
        let open = NicConfig {
            reach_host: true,
            ..NicConfig::new("52:54:00:00:00:01")
        };
        assert!(open.qemu_args().join(" ").contains("restrict=off"));
    }
}

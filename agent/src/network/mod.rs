//! The guest's network, configured over rtnetlink (no `ip`, no shelling out).
//!
//! The runtime configures the sandbox's network namespace, which is the agent's own (as
//! in Kata, containers join it): `UpdateInterface` per NIC, then `UpdateRoutes`, then
//! `AddARPNeighbors`. Every change is all or nothing: a request is validated whole
//! before anything is touched (the RPC layer turns the messages into checked
//! [`InterfaceSpec`]s, [`RouteEntry`]s and [`NeighborSpec`]s), and a change the kernel refuses midway is
//! rolled back to the configuration read before it, so a failed request leaves the
//! network as it was. Changes and listings are serialized by one lock, so a listing
//! never sees half an update.
//!
//! - [`interface`]: find a link (PCI path, MAC or name), rename, MTU, addresses, flags, up.
//! - [`route`]: replace the managed routes; list them.
//! - [`neighbor`]: static ARP / NDP entries.
//! - [`pci`]: PCI path → interface name through sysfs, waiting for hot plug.
//!
//! Loopback is brought up once when the agent starts ([`Network::start`]).

pub mod addr;
mod error;
pub mod interface;
pub mod neighbor;
mod netlink;
pub mod pci;
pub mod route;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{Mutex, OnceCell};

pub use error::NetworkError;
pub use interface::{InterfaceSpec, InterfaceState, LinkSelector};
pub use neighbor::NeighborSpec;
pub use route::RouteEntry;

use netlink::Netlink;

/// Where the network code looks, and how long it waits.
#[derive(Debug, Clone)]
pub struct NetworkSettings {
    /// The sysfs mount, where PCI paths are resolved.
    pub sysfs: PathBuf,
    /// How long `UpdateInterface` waits for a NIC given by PCI path to appear.
    pub hotplug_timeout: Duration,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        Self {
            sysfs: PathBuf::from("/sys"),
            hotplug_timeout: Duration::from_secs(3),
        }
    }
}

/// What [`Network::start`] did with the loopback link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loopback {
    /// `lo` was down and has been brought up.
    BroughtUp,
    /// `lo` was up already; nothing was changed.
    AlreadyUp,
}

/// The sandbox's network: a netlink connection in the agent's own network namespace.
pub struct Network {
    settings: NetworkSettings,
    /// Opened on first use (it needs the tokio runtime); [`Network::start`] is that use.
    netlink: OnceCell<Netlink>,
    /// Serializes changes and listings.
    lock: Mutex<()>,
}

impl Default for Network {
    fn default() -> Self {
        Self::new(NetworkSettings::default())
    }
}

impl Network {
    /// A network with `settings`; nothing is opened until [`Network::start`].
    pub fn new(settings: NetworkSettings) -> Self {
        Self {
            settings,
            netlink: OnceCell::new(),
            lock: Mutex::new(()),
        }
    }

    async fn netlink(&self) -> Result<&Netlink, NetworkError> {
        self.netlink
            .get_or_try_init(|| async { Netlink::connect() })
            .await
    }

    /// Opens the netlink connection and brings the loopback link up.
    pub async fn start(&self) -> Result<Loopback, NetworkError> {
        let nl = self.netlink().await?;
        let _guard = self.lock.lock().await;
        let lo = nl
            .link_by_name("lo")
            .await?
            .ok_or_else(|| NetworkError::NotFound("the guest has no loopback link".into()))?;
        if lo.is_up() {
            return Ok(Loopback::AlreadyUp);
        }
        nl.set_link(
            "bringing lo up".into(),
            rtnetlink::LinkUnspec::new_with_index(lo.index).up().build(),
        )
        .await?;
        Ok(Loopback::BroughtUp)
    }

    /// `UpdateInterface`: configures the link `spec` designates; answers its new state.
    pub async fn update_interface(
        &self,
        spec: &InterfaceSpec,
    ) -> Result<InterfaceState, NetworkError> {
        let nl = self.netlink().await?;
        // Wait for a hot-plugged NIC before taking the lock: others may go on meanwhile.
        let pci_name = match &spec.selector {
            LinkSelector::PciPath(path) => Some(
                pci::wait_for_interface(path, &self.settings.sysfs, self.settings.hotplug_timeout)
                    .await?,
            ),
            _ => None,
        };
        let _guard = self.lock.lock().await;
        let link = interface::find(nl, &spec.selector, pci_name.as_deref()).await?;
        interface::update(nl, link, spec).await
    }

    /// `ListInterfaces`: every link, sorted by name.
    pub async fn list_interfaces(&self) -> Result<Vec<InterfaceState>, NetworkError> {
        let nl = self.netlink().await?;
        let _guard = self.lock.lock().await;
        interface::list(nl).await
    }

    /// `UpdateRoutes`: replaces the managed routes; answers the resulting list.
    pub async fn update_routes(
        &self,
        routes: &[RouteEntry],
    ) -> Result<Vec<RouteEntry>, NetworkError> {
        let nl = self.netlink().await?;
        let _guard = self.lock.lock().await;
        route::replace_all(nl, routes).await
    }

    /// `ListRoutes`: the managed routes (see [`route`]).
    pub async fn list_routes(&self) -> Result<Vec<RouteEntry>, NetworkError> {
        let nl = self.netlink().await?;
        let _guard = self.lock.lock().await;
        route::list(nl).await
    }

    /// `AddARPNeighbors`.
    pub async fn add_arp_neighbors(&self, neighbors: &[NeighborSpec]) -> Result<(), NetworkError> {
        let nl = self.netlink().await?;
        let _guard = self.lock.lock().await;
        neighbor::add_all(nl, neighbors).await
    }
}

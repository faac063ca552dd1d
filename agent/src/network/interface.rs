//! `UpdateInterface` and `ListInterfaces`: one link brought to a wanted state, all or
//! nothing.
//!
//! An update reads the link, computes the wanted state (the request over what is there),
//! and [`converge`]s the link to it step by step: down when it must be renamed or given a
//! new MAC (the kernel refuses both on a running link), MAC, name, MTU, addresses, flags,
//! up. If a step fails, the same [`converge`] takes the link back to the state read
//! before, and the routes through the link that the excursion removed are put back; the
//! answer is the first error.

use rtnetlink::packet_route::link::LinkFlags;

use super::addr::{IpNet, Mac};
use super::error::NetworkError;
use super::netlink::{Link, Netlink};
use super::route;
use crate::device::PciPath;

/// How the request designates the link to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkSelector {
    /// By the PCI path of the NIC (hot-plugged devices), resolved through sysfs.
    PciPath(PciPath),
    /// By MAC address: Kata's usual way.
    Mac(Mac),
    /// By current kernel name, when neither of the above is given.
    Name(String),
}

impl std::fmt::Display for LinkSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PciPath(path) => write!(f, "PCI path {path}"),
            Self::Mac(mac) => write!(f, "MAC {mac}"),
            Self::Name(name) => write!(f, "name {name:?}"),
        }
    }
}

/// A validated `UpdateInterface` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// Which link to configure.
    pub selector: LinkSelector,
    /// The MAC the link must carry, when it was found other than by MAC.
    pub mac: Option<Mac>,
    /// The name it must carry; `None` keeps the current one.
    pub name: Option<String>,
    /// `None` keeps the current MTU.
    pub mtu: Option<u32>,
    /// Every address the link must have, and only those (IPv6 link-local addresses that
    /// the kernel made itself are left alone).
    pub addresses: Vec<IpNet>,
    /// `IFF_*` flags as the host saw them: see [`wanted_flags`].
    pub raw_flags: u32,
}

/// A link as `ListInterfaces` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceState {
    /// The link's kernel name.
    pub name: String,
    /// Its hardware address; `None` when it has no six-byte one (an IP tunnel, say).
    pub mac: Option<Mac>,
    /// Its MTU, in bytes.
    pub mtu: u32,
    /// The configured addresses: everything but the kernel's own autoconfiguration.
    pub addresses: Vec<IpNet>,
    /// Link kind (`veth`, `bridge`...); empty for plain devices such as virtio-net.
    pub kind: String,
    /// `IFF_*` flags.
    pub flags: u32,
}

/// The flags `UpdateInterface` may change. `IFF_NOARP` always follows `raw_flags` (as in
/// Kata: a zero `raw_flags` means ARP on). The other flags follow `raw_flags` only when
/// it is not zero, since zero means the host said nothing; clearing `IFF_MULTICAST` on
/// such a request would break IPv6 neighbour discovery.
pub fn wanted_flags(raw_flags: u32) -> (u32, u32) {
    let mut mask = LinkFlags::Noarp.bits();
    if raw_flags != 0 {
        mask |= (LinkFlags::Promisc | LinkFlags::Allmulti | LinkFlags::Multicast).bits();
    }
    (raw_flags & mask, mask)
}

/// The state [`converge`] brings a link to.
#[derive(Debug, Clone)]
struct Wanted {
    name: String,
    mac: Option<Mac>,
    mtu: u32,
    addresses: Vec<IpNet>,
    flags: u32,
    flags_mask: u32,
    up: bool,
}

/// Another link that holds the name ours must take: moved aside under a temporary name,
/// then given our link's old name (Kata swaps names the same way).
struct Parked {
    link: Link,
    temporary: String,
}

pub(super) async fn list(nl: &Netlink) -> Result<Vec<InterfaceState>, NetworkError> {
    let links = nl.links().await?;
    let addresses = nl.addresses(None).await?;
    let mut list: Vec<InterfaceState> = links
        .into_iter()
        .map(|link| {
            let addresses = addresses
                .iter()
                .filter(|a| a.index == link.index && !a.kernel_managed)
                .map(|a| a.net)
                .collect();
            state(link, addresses)
        })
        .collect();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

/// The link `selector` designates.
pub(super) async fn find(
    nl: &Netlink,
    selector: &LinkSelector,
    pci_name: Option<&str>,
) -> Result<Link, NetworkError> {
    let links = nl.links().await?;
    let found = match selector {
        LinkSelector::Mac(mac) => {
            let mut matching = links.into_iter().filter(|l| l.mac == Some(*mac));
            let first = matching.next();
            if let (Some(first), Some(second)) = (&first, matching.next()) {
                tracing::warn!(%mac, first = %first.name, second = %second.name,
                    "several links carry this MAC; configuring the first");
            }
            first
        }
        LinkSelector::PciPath(_) => {
            let name = pci_name.unwrap_or_default();
            links.into_iter().find(|l| l.name == name)
        }
        LinkSelector::Name(name) => links.into_iter().find(|l| &l.name == name),
    };
    found.ok_or_else(|| NetworkError::NotFound(format!("no network link has {selector}")))
}

/// Applies `spec` to `link`; on failure puts the previous configuration back.
pub(super) async fn update(
    nl: &Netlink,
    link: Link,
    spec: &InterfaceSpec,
) -> Result<InterfaceState, NetworkError> {
    let addresses = configured_addresses(nl, link.index).await?;
    let routes = route::snapshot_of_link(nl, link.index).await?;
    let (flags, flags_mask) = wanted_flags(spec.raw_flags);
    let before = Wanted {
        name: link.name.clone(),
        mac: link.mac,
        mtu: link.mtu,
        addresses: addresses.clone(),
        flags: link.flags & flags_mask,
        flags_mask,
        up: link.is_up(),
    };
    let wanted = Wanted {
        name: spec.name.clone().unwrap_or_else(|| link.name.clone()),
        mac: spec.mac.or(link.mac),
        mtu: spec.mtu.unwrap_or(link.mtu),
        addresses: spec.addresses.clone(),
        flags,
        flags_mask,
        up: true,
    };
    tracing::info!(link = %link.name, index = link.index, ?wanted, "updating interface");

    let mut parked = None;
    let result = async {
        if wanted.name != link.name
            && let Some(holder) = nl.link_by_name(&wanted.name).await?
            && holder.index != link.index
        {
            if holder.is_loopback() {
                return Err(NetworkError::invalid(
                    "interface.name",
                    &wanted.name,
                    "that is the loopback link's name",
                ));
            }
            let temporary = format!("hulltmp{}", holder.index);
            rename(nl, &holder, &temporary).await?;
            parked = Some(Parked {
                link: holder,
                temporary,
            });
        }
        converge(nl, link.index, &wanted).await?;
        if let Some(parked) = &parked {
            // The other link takes our old name, and its previous up state back.
            let moved = nl.existing_link(parked.link.index).await?;
            rename(nl, &moved, &link.name).await?;
            if parked.link.is_up() {
                set_up(nl, &moved, true).await?;
            }
        }
        Ok(())
    }
    .await;

    if let Err(error) = result {
        tracing::warn!(link = %link.name, %error, "interface update failed; restoring");
        let restored = async {
            if let Some(parked) = &parked {
                let other = nl.existing_link(parked.link.index).await?;
                if other.name != parked.temporary {
                    rename(nl, &other, &parked.temporary).await?;
                }
            }
            converge(nl, link.index, &before).await?;
            if let Some(parked) = &parked {
                let other = nl.existing_link(parked.link.index).await?;
                rename(nl, &other, &parked.link.name).await?;
                if parked.link.is_up() {
                    set_up(nl, &other, true).await?;
                }
            }
            route::restore(nl, &routes).await
        }
        .await;
        return Err(match restored {
            Ok(()) => error,
            Err(rollback) => {
                tracing::error!(link = %link.name, %rollback, "restoring the interface failed");
                NetworkError::RollbackFailed {
                    error: Box::new(error),
                    rollback: Box::new(rollback),
                }
            }
        });
    }

    let link = nl.existing_link(link.index).await?;
    let addresses = configured_addresses(nl, link.index).await?;
    tracing::info!(link = %link.name, "interface updated");
    Ok(state(link, addresses))
}

/// Brings link `index` to `wanted`, doing only the steps that change something.
async fn converge(nl: &Netlink, index: u32, wanted: &Wanted) -> Result<(), NetworkError> {
    let mut link = nl.existing_link(index).await?;
    let renaming = link.name != wanted.name;
    let new_mac = wanted.mac.is_some() && link.mac != wanted.mac;
    if (renaming || new_mac) && link.is_up() {
        set_up(nl, &link, false).await?;
    }
    if let Some(mac) = wanted.mac.filter(|_| new_mac) {
        nl.set_link(
            format!("setting the MAC of {} to {mac}", link.name),
            message(index).address(mac.0.to_vec()).build(),
        )
        .await?;
    }
    if renaming {
        rename(nl, &link, &wanted.name).await?;
        link.name = wanted.name.clone();
    }
    if link.mtu != wanted.mtu {
        nl.set_link(
            format!(
                "setting the MTU of {} to {}{}",
                link.name,
                wanted.mtu,
                mtu_range(&link)
            ),
            message(index).mtu(wanted.mtu).build(),
        )
        .await?;
    }
    converge_addresses(nl, &link, &wanted.addresses).await?;
    if link.flags & wanted.flags_mask != wanted.flags {
        let mut flags = message(index).build();
        flags.header.flags = LinkFlags::from_bits_retain(wanted.flags);
        flags.header.change_mask = LinkFlags::from_bits_retain(wanted.flags_mask);
        nl.set_link(
            format!("setting the flags of {} to {:#x}", link.name, wanted.flags),
            flags,
        )
        .await?;
    }
    let link = nl.existing_link(index).await?;
    if link.is_up() != wanted.up {
        set_up(nl, &link, wanted.up).await?;
    }
    Ok(())
}

/// Removes the addresses not wanted, then adds the missing ones.
async fn converge_addresses(
    nl: &Netlink,
    link: &Link,
    wanted: &[IpNet],
) -> Result<(), NetworkError> {
    let mut unwanted: Vec<_> = nl
        .addresses(Some(link.index))
        .await?
        .into_iter()
        .filter(|a| !a.kernel_managed && !wanted.contains(&a.net))
        .collect();
    // Removing a primary IPv4 address takes its secondaries with it: secondaries first.
    unwanted.sort_by_key(|a| !a.is_secondary());
    for address in &unwanted {
        match nl.del_address(link, address).await {
            // Already gone with its primary.
            Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => {}
            other => other?,
        }
    }
    let present = configured_addresses(nl, link.index).await?;
    for net in wanted {
        if !present.contains(net) {
            nl.add_address(link, *net).await?;
        }
    }
    Ok(())
}

async fn configured_addresses(nl: &Netlink, index: u32) -> Result<Vec<IpNet>, NetworkError> {
    Ok(nl
        .addresses(Some(index))
        .await?
        .into_iter()
        .filter(|a| !a.kernel_managed)
        .map(|a| a.net)
        .collect())
}

async fn rename(nl: &Netlink, link: &Link, name: &str) -> Result<(), NetworkError> {
    if link.is_up() {
        set_up(nl, link, false).await?;
    }
    nl.set_link(
        format!("renaming {} to {name}", link.name),
        message(link.index).name(name).build(),
    )
    .await
}

async fn set_up(nl: &Netlink, link: &Link, up: bool) -> Result<(), NetworkError> {
    let (what, message) = if up {
        ("up", message(link.index).up().build())
    } else {
        ("down", message(link.index).down().build())
    };
    nl.set_link(format!("bringing {} {what}", link.name), message)
        .await
}

fn message(index: u32) -> rtnetlink::LinkMessageBuilder<rtnetlink::LinkUnspec> {
    rtnetlink::LinkUnspec::new_with_index(index)
}

/// " (the link accepts 68 to 65535)" when the kernel told us the range.
fn mtu_range(link: &Link) -> String {
    match (link.min_mtu, link.max_mtu) {
        (Some(min), Some(max)) => format!(" (the link accepts {min} to {max})"),
        _ => String::new(),
    }
}

fn state(link: Link, addresses: Vec<IpNet>) -> InterfaceState {
    InterfaceState {
        name: link.name,
        mac: link.mac,
        mtu: link.mtu,
        addresses,
        kind: link.kind,
        flags: link.flags,
    }
}

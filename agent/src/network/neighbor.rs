//! `AddARPNeighbors`: static neighbour (ARP / NDP) entries, added or replaced through
//! RTM_NEWNEIGH. All or nothing: the entries a failing request had already written are
//! put back as they were (or removed, where there was none).

use std::net::IpAddr;

use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteType;

use super::addr::Mac;
use super::error::NetworkError;
use super::netlink::{Link, Netlink};

/// `NUD_PERMANENT`: the state of an entry whose request gave none (as in Kata).
pub const NUD_PERMANENT: u16 = 0x80;

/// A validated neighbour entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborSpec {
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// The link the neighbour is on.
    pub device: String,
    /// Its link-layer address; `None` adds an entry without one.
    pub lladdr: Option<Mac>,
    /// `NUD_*` state bits.
    pub state: u16,
    /// `NTF_*` flag bits.
    pub flags: u8,
}

pub(super) async fn add_all(nl: &Netlink, neighbors: &[NeighborSpec]) -> Result<(), NetworkError> {
    let links = nl.links().await?;
    let mut planned = Vec::with_capacity(neighbors.len());
    for (i, neighbor) in neighbors.iter().enumerate() {
        let link = links
            .iter()
            .find(|l| l.name == neighbor.device)
            .ok_or_else(|| {
                NetworkError::NotFound(format!(
                    "neighbors[{i}].device: no network link is named {:?}",
                    neighbor.device
                ))
            })?;
        let previous = nl.neighbours(link.index, neighbor.ip).await?;
        planned.push((neighbor, link, previous));
    }

    let mut written = Vec::new();
    for (neighbor, link, previous) in &planned {
        let what = format!("adding neighbour {} on {}", neighbor.ip, link.name);
        if let Err(error) = nl.replace_neighbour(what, message(neighbor, link)).await {
            tracing::warn!(%error, "adding neighbours failed; restoring the previous entries");
            let restored = restore(nl, &written).await;
            return Err(match restored {
                Ok(()) => error,
                Err(rollback) => NetworkError::RollbackFailed {
                    error: Box::new(error),
                    rollback: Box::new(rollback),
                },
            });
        }
        written.push((*neighbor, *link, previous));
    }
    tracing::info!(count = neighbors.len(), "neighbours added");
    Ok(())
}

async fn restore(
    nl: &Netlink,
    written: &[(&NeighborSpec, &Link, &Vec<NeighbourMessage>)],
) -> Result<(), NetworkError> {
    for (neighbor, link, previous) in written.iter().rev() {
        if previous.is_empty() {
            nl.del_neighbour(
                format!("removing neighbour {} from {}", neighbor.ip, link.name),
                message(neighbor, link),
            )
            .await?;
        }
        for old in previous.iter() {
            nl.replace_neighbour(
                format!("restoring neighbour {} on {}", neighbor.ip, link.name),
                restorable(old),
            )
            .await?;
        }
    }
    Ok(())
}

fn message(neighbor: &NeighborSpec, link: &Link) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = match neighbor.ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.ifindex = link.index;
    message.header.state = NeighbourState::from(neighbor.state);
    message.header.flags = NeighbourFlags::from_bits_retain(neighbor.flags);
    message.header.kind = RouteType::Unspec;
    message
        .attributes
        .push(NeighbourAttribute::Destination(match neighbor.ip {
            IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
            IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
        }));
    if let Some(mac) = neighbor.lladdr {
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    }
    message
}

/// A dumped entry as a request: its header, destination and link-layer address.
fn restorable(old: &NeighbourMessage) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header = old.header.clone();
    message.attributes = old
        .attributes
        .iter()
        .filter(|a| {
            matches!(
                a,
                NeighbourAttribute::Destination(_) | NeighbourAttribute::LinkLayerAddress(_)
            )
        })
        .cloned()
        .collect();
    message
}

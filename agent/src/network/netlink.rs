//! The one place that speaks rtnetlink: dumps links, addresses, routes and neighbours
//! into plain structs, and sends changes, naming each step in its errors.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressProtocol};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage};
use rtnetlink::packet_route::route::{RouteHeader, RouteMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::addr::{IpNet, Mac};
use super::error::NetworkError;

/// A link as the kernel reports it.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<Mac>,
    pub mtu: u32,
    pub min_mtu: Option<u32>,
    pub max_mtu: Option<u32>,
    /// `IFF_*` flags.
    pub flags: u32,
    /// The link kind (`veth`, `bridge`, ...); empty for plain devices such as virtio-net.
    pub kind: String,
}

impl Link {
    fn from_message(message: &LinkMessage) -> Self {
        let mut link = Link {
            index: message.header.index,
            name: String::new(),
            mac: None,
            mtu: 0,
            min_mtu: None,
            max_mtu: None,
            flags: message.header.flags.bits(),
            kind: String::new(),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name.clone(),
                LinkAttribute::Address(bytes) => link.mac = Mac::from_bytes(bytes),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::MinMtu(mtu) => link.min_mtu = Some(*mtu),
                LinkAttribute::MaxMtu(mtu) => link.max_mtu = Some(*mtu),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::Kind(kind) = info {
                            link.kind = kind.to_string();
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    pub fn is_up(&self) -> bool {
        self.flags & LinkFlags::Up.bits() != 0
    }

    pub fn is_loopback(&self) -> bool {
        self.flags & LinkFlags::Loopback.bits() != 0
    }
}

/// An address as the kernel reports it.
#[derive(Debug, Clone)]
pub(super) struct Address {
    pub index: u32,
    pub net: IpNet,
    /// Made by the kernel itself (IPv6 link-local or router-advertised autoconfiguration),
    /// as the address's `IFA_PROTO` says on kernels that have it (6.1 and later).
    pub kernel_managed: bool,
    message: AddressMessage,
}

impl Address {
    /// A secondary IPv4 address (another address of the same subnet came first).
    pub fn is_secondary(&self) -> bool {
        self.message
            .header
            .flags
            .contains(rtnetlink::packet_route::address::AddressHeaderFlags::Secondary)
    }

    fn from_message(message: AddressMessage) -> Option<Self> {
        let mut address = None;
        let mut local = None;
        let mut kernel_managed = false;
        for attribute in &message.attributes {
            match attribute {
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Protocol(
                    AddressProtocol::LinkLocal | AddressProtocol::RouterAnnouncement,
                ) => kernel_managed = true,
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
        // point-to-point link and the same as IFA_LOCAL otherwise (IPv6 sends only it).
        let addr = local.or(address)?;
        Some(Self {
            index: message.header.index,
            net: IpNet {
                addr,
                prefix_len: message.header.prefix_len,
            },
            kernel_managed,
            message,
        })
    }
}

/// A connection to the kernel's routing netlink, in the network namespace of the thread
/// that opened it.
#[derive(Clone)]
pub(super) struct Netlink {
    handle: rtnetlink::Handle,
}

impl Netlink {
    /// Opens the socket and spawns its connection task on the current tokio runtime.
    pub fn connect() -> Result<Self, NetworkError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| NetworkError::Kernel {
                what: "opening a netlink socket".into(),
                source: e,
            })?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The raw handle, for tests that build their own links.
    #[cfg(test)]
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    pub async fn links(&self) -> Result<Vec<Link>, NetworkError> {
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetworkError::netlink("listing links", e))?;
        Ok(messages.iter().map(Link::from_message).collect())
    }

    /// The link with `index`, or `None` when it is gone.
    pub async fn link(&self, index: u32) -> Result<Option<Link>, NetworkError> {
        let result: Result<Vec<LinkMessage>, _> = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_collect()
            .await;
        match result {
            Ok(messages) => Ok(messages.first().map(Link::from_message)),
            Err(e) => match NetworkError::netlink(format!("reading link {index}"), e) {
                err if err.errno() == Some(libc::ENODEV) => Ok(None),
                err => Err(err),
            },
        }
    }

    /// The link with `index`, which must exist.
    pub async fn existing_link(&self, index: u32) -> Result<Link, NetworkError> {
        self.link(index)
            .await?
            .ok_or_else(|| NetworkError::NotFound(format!("link {index} disappeared")))
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, NetworkError> {
        Ok(self.links().await?.into_iter().find(|l| l.name == name))
    }

    /// Sends RTM_SETLINK for `message` (index in the header).
    pub async fn set_link(&self, what: String, message: LinkMessage) -> Result<(), NetworkError> {
        tracing::debug!(%what, "netlink");
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(what, e))
    }

    /// Every address of every link, or of the link `index`.
    pub async fn addresses(&self, index: Option<u32>) -> Result<Vec<Address>, NetworkError> {
        let mut request = self.handle.address().get();
        if let Some(index) = index {
            request = request.set_link_index_filter(index);
        }
        let messages: Vec<AddressMessage> = request
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetworkError::netlink("listing addresses", e))?;
        Ok(messages
            .into_iter()
            .filter_map(Address::from_message)
            .collect())
    }

    pub async fn add_address(&self, link: &Link, net: IpNet) -> Result<(), NetworkError> {
        let what = format!("adding address {net} to {}", link.name);
        tracing::debug!(%what, "netlink");
        self.handle
            .address()
            .add(link.index, net.addr, net.prefix_len)
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(what, e))
    }

    pub async fn del_address(&self, link: &Link, address: &Address) -> Result<(), NetworkError> {
        let what = format!("removing address {} from {}", address.net, link.name);
        tracing::debug!(%what, "netlink");
        self.handle
            .address()
            .del(address.message.clone())
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(what, e))
    }

    /// Every IPv4 and IPv6 route of the main table.
    pub async fn main_routes(&self) -> Result<Vec<RouteMessage>, NetworkError> {
        let mut routes = Vec::new();
        // One dump at a time: a netlink socket refuses a second concurrent dump.
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = RouteMessage::default();
            query.header.address_family = family;
            let messages: Vec<RouteMessage> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetworkError::netlink("listing routes", e))?;
            routes.extend(
                messages
                    .into_iter()
                    .filter(|m| route_table(m) == u32::from(RouteHeader::RT_TABLE_MAIN)),
            );
        }
        Ok(routes)
    }

    /// Adds `route`, replacing a route with the same destination, TOS and priority.
    pub async fn replace_route(
        &self,
        what: String,
        route: RouteMessage,
    ) -> Result<(), NetworkError> {
        tracing::debug!(%what, "netlink");
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(what, e))
    }

    pub async fn del_route(&self, what: String, route: RouteMessage) -> Result<(), NetworkError> {
        tracing::debug!(%what, "netlink");
        self.handle
            .route()
            .del(route)
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(what, e))
    }

    /// The neighbour entries of link `index` for `destination`.
    pub async fn neighbours(
        &self,
        index: u32,
        destination: IpAddr,
    ) -> Result<Vec<NeighbourMessage>, NetworkError> {
        let family = match destination {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        let messages: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetworkError::netlink("listing neighbours", e))?;
        Ok(messages
            .into_iter()
            .filter(|m| m.header.ifindex == index && neighbour_destination(m) == Some(destination))
            .collect())
    }

    /// Adds or replaces the neighbour entry `message`.
    pub async fn replace_neighbour(
        &self,
        what: String,
        message: NeighbourMessage,
    ) -> Result<(), NetworkError> {
        tracing::debug!(%what, "netlink");
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(message));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        self.send(what, request).await
    }

    pub async fn del_neighbour(
        &self,
        what: String,
        message: NeighbourMessage,
    ) -> Result<(), NetworkError> {
        tracing::debug!(%what, "netlink");
        self.handle
            .neighbours()
            .del(message)
            .execute()
            .await
            .map_err(|e| NetworkError::netlink(what, e))
    }

    async fn send(
        &self,
        what: String,
        request: NetlinkMessage<RouteNetlinkMessage>,
    ) -> Result<(), NetworkError> {
        let mut handle = self.handle.clone();
        let mut responses = handle
            .request(request)
            .map_err(|e| NetworkError::netlink(what.clone(), e))?;
        while let Some(message) = futures_util::StreamExt::next(&mut responses).await {
            if let NetlinkPayload::Error(error) = message.payload
                && error.code.is_some()
            {
                return Err(NetworkError::netlink(
                    what,
                    rtnetlink::Error::NetlinkError(error),
                ));
            }
        }
        Ok(())
    }
}

/// The routing table of `route` (RTA_TABLE when present: tables above 255 only have it).
pub(super) fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            rtnetlink::packet_route::route::RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}

pub(super) fn neighbour_destination(message: &NeighbourMessage) -> Option<IpAddr> {
    message.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

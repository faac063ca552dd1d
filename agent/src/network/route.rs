//! `UpdateRoutes` and `ListRoutes`.
//!
//! The routes the agent manages are those of the main table that someone configured:
//! unicast routes out of a link other than loopback, whose protocol is not `kernel`. The
//! routes the kernel derives from addresses (`10.0.2.0/24 proto kernel`, IPv6
//! `fe80::/64`) and loopback's routes belong to the kernel: `ListRoutes` does not report
//! them and `UpdateRoutes` does not remove them, though a requested route may replace one
//! (same destination and metric), and is then the agent's.
//!
//! `UpdateRoutes` replaces the managed routes with the requested ones: it removes the old
//! ones, then adds the new ones, routes without a gateway first so that the link routes
//! a gateway is reached through exist when the gateway route is added. If any step fails,
//! the routes added so far are removed and the previous routes put back.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteProtocol, RouteScope, RouteType,
};

use super::addr::{Family, Prefix};
use super::error::NetworkError;
use super::netlink::{Link, Netlink};

/// A route, as `UpdateRoutes` takes it and `ListRoutes` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The destination; length 0 is the default route.
    pub dest: Prefix,
    /// The next hop; `None` for a route to a directly attached network.
    pub gateway: Option<IpAddr>,
    /// The link the route goes out of.
    pub device: String,
    /// The preferred source address (`src` in iproute2).
    pub source: Option<IpAddr>,
    /// `RT_SCOPE_*`: 0 universe, 253 link, 254 host.
    pub scope: u8,
    /// `RTNH_F_*` flags, e.g. 4 for onlink.
    pub flags: u32,
    /// The route's MTU metric; 0 for none.
    pub mtu: u32,
}

impl RouteEntry {
    /// The route's family, its destination's.
    pub fn family(&self) -> Family {
        self.dest.family()
    }
}

impl fmt::Display for RouteEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dest.is_default() {
            write!(f, "default")?;
        } else {
            write!(f, "{}", self.dest)?;
        }
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        write!(f, " dev {}", self.device)?;
        if let Some(source) = self.source {
            write!(f, " src {source}")?;
        }
        if self.scope != 0 {
            write!(f, " scope {}", self.scope)?;
        }
        if self.mtu != 0 {
            write!(f, " mtu {}", self.mtu)?;
        }
        Ok(())
    }
}

/// Routes read before a change, to put back if it fails.
#[derive(Debug, Clone, Default)]
pub(super) struct Snapshot(Vec<RouteMessage>);

/// The managed routes, in the kernel's order.
pub(super) async fn list(nl: &Netlink) -> Result<Vec<RouteEntry>, NetworkError> {
    let links = links_by_index(nl).await?;
    Ok(nl
        .main_routes()
        .await?
        .iter()
        .filter(|m| is_managed(m, &links))
        .filter_map(|m| entry(m, &links))
        .collect())
}

/// Replaces the managed routes with `routes`; see the module documentation.
pub(super) async fn replace_all(
    nl: &Netlink,
    routes: &[RouteEntry],
) -> Result<Vec<RouteEntry>, NetworkError> {
    let links = links_by_index(nl).await?;
    let by_name: HashMap<&str, &Link> = links.values().map(|l| (l.name.as_str(), l)).collect();
    let mut planned = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let link = by_name.get(route.device.as_str()).ok_or_else(|| {
            NetworkError::NotFound(format!(
                "routes[{i}].device: no network link is named {:?}",
                route.device
            ))
        })?;
        planned.push((route, message(route, link.index)));
    }
    // Link routes first: a gateway must be reachable when its route is added.
    planned.sort_by_key(|(route, _)| route.gateway.is_some());

    let before = nl.main_routes().await?;
    let managed_before: Vec<RouteMessage> = before
        .iter()
        .filter(|m| is_managed(m, &links))
        .cloned()
        .collect();
    // Everything out of a non-loopback link, kernel routes included: a requested route
    // may replace a kernel route, which the rollback must then put back.
    let snapshot = Snapshot(
        before
            .into_iter()
            .filter(|m| oif(m).is_some_and(|i| links.get(&i).is_some_and(|l| !l.is_loopback())))
            .collect(),
    );
    tracing::info!(
        removing = managed_before.len(),
        adding = planned.len(),
        "replacing the routes"
    );

    let result = async {
        for old in &managed_before {
            delete(nl, old, &links).await?;
        }
        for (route, message) in &planned {
            nl.replace_route(format!("adding route {route}"), message.clone())
                .await?;
        }
        Ok(())
    }
    .await;

    if let Err(error) = result {
        tracing::warn!(%error, "route update failed; restoring the previous routes");
        let restored = async {
            let links = links_by_index(nl).await?;
            for added in nl
                .main_routes()
                .await?
                .iter()
                .filter(|m| is_managed(m, &links))
            {
                delete(nl, added, &links).await?;
            }
            restore(nl, &snapshot).await
        }
        .await;
        return Err(match restored {
            Ok(()) => error,
            Err(rollback) => {
                tracing::error!(%rollback, "restoring the routes failed");
                NetworkError::RollbackFailed {
                    error: Box::new(error),
                    rollback: Box::new(rollback),
                }
            }
        });
    }
    list(nl).await
}

/// Every main-table route out of link `index`, kernel routes included.
pub(super) async fn snapshot_of_link(nl: &Netlink, index: u32) -> Result<Snapshot, NetworkError> {
    Ok(Snapshot(
        nl.main_routes()
            .await?
            .into_iter()
            .filter(|m| oif(m) == Some(index))
            .collect(),
    ))
}

/// Adds back every route of `snapshot` that is missing now, link routes first.
pub(super) async fn restore(nl: &Netlink, snapshot: &Snapshot) -> Result<(), NetworkError> {
    let present: Vec<Key> = nl.main_routes().await?.iter().map(Key::of).collect();
    let mut missing: Vec<&RouteMessage> = snapshot
        .0
        .iter()
        .filter(|m| !present.contains(&Key::of(m)))
        .collect();
    missing.sort_by_key(|m| gateway(m).is_some());
    for route in missing {
        nl.replace_route(
            format!("restoring route {:?}", Key::of(route)),
            restorable(route),
        )
        .await?;
    }
    Ok(())
}

async fn delete(
    nl: &Netlink,
    route: &RouteMessage,
    links: &HashMap<u32, Link>,
) -> Result<(), NetworkError> {
    let what = match entry(route, links) {
        Some(entry) => format!("removing route {entry}"),
        None => format!("removing route {:?}", Key::of(route)),
    };
    match nl.del_route(what, restorable(route)).await {
        // Gone already, e.g. with the address or link it depended on.
        Err(e) if e.errno() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

async fn links_by_index(nl: &Netlink) -> Result<HashMap<u32, Link>, NetworkError> {
    Ok(nl
        .links()
        .await?
        .into_iter()
        .map(|l| (l.index, l))
        .collect())
}

/// A route the agent manages: unicast, not the kernel's, out of a non-loopback link.
fn is_managed(route: &RouteMessage, links: &HashMap<u32, Link>) -> bool {
    route.header.kind == RouteType::Unicast
        && route.header.protocol != RouteProtocol::Kernel
        && oif(route).is_some_and(|i| links.get(&i).is_some_and(|l| !l.is_loopback()))
}

/// The netlink message that adds `route` out of link `oif`.
fn message(route: &RouteEntry, oif: u32) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = match route.family() {
        Family::V4 => AddressFamily::Inet,
        Family::V6 => AddressFamily::Inet6,
    };
    message.header.destination_prefix_length = route.dest.len;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    // Kata marks the routes it adds as `boot`; so does hull.
    message.header.protocol = RouteProtocol::Boot;
    message.header.scope = RouteScope::from(route.scope);
    message.header.kind = RouteType::Unicast;
    message.header.flags = RouteFlags::from_bits_retain(route.flags);
    let attributes = &mut message.attributes;
    if !route.dest.is_default() {
        attributes.push(RouteAttribute::Destination(RouteAddress::from(
            route.dest.addr,
        )));
    }
    if let Some(gateway) = route.gateway {
        attributes.push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    }
    if let Some(source) = route.source {
        attributes.push(RouteAttribute::PrefSource(RouteAddress::from(source)));
    }
    attributes.push(RouteAttribute::Oif(oif));
    if route.mtu != 0 {
        attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(route.mtu)]));
    }
    message
}

/// A dumped route as a request: the attributes that say what the route is, and no
/// state flags (the kernel refuses `dead` and `linkdown` in requests).
fn restorable(route: &RouteMessage) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header = route.header.clone();
    message.header.flags &= RouteFlags::Onlink | RouteFlags::Pervasive;
    message.attributes = route
        .attributes
        .iter()
        .filter(|a| {
            matches!(
                a,
                RouteAttribute::Destination(_)
                    | RouteAttribute::Source(_)
                    | RouteAttribute::Gateway(_)
                    | RouteAttribute::PrefSource(_)
                    | RouteAttribute::Via(_)
                    | RouteAttribute::Oif(_)
                    | RouteAttribute::Priority(_)
                    | RouteAttribute::Metrics(_)
                    | RouteAttribute::Table(_)
                    | RouteAttribute::Preference(_)
                    | RouteAttribute::MultiPath(_)
            )
        })
        .cloned()
        .collect();
    message
}

/// What tells two routes apart when checking whether one is still there.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    family: AddressFamily,
    dest: Option<IpAddr>,
    dest_len: u8,
    tos: u8,
    priority: Option<u32>,
    oif: Option<u32>,
    gateway: Option<IpAddr>,
}

impl Key {
    fn of(route: &RouteMessage) -> Self {
        Self {
            family: route.header.address_family,
            dest: address(route, |a| match a {
                RouteAttribute::Destination(d) => Some(d),
                _ => None,
            }),
            dest_len: route.header.destination_prefix_length,
            tos: route.header.tos,
            priority: route.attributes.iter().find_map(|a| match a {
                RouteAttribute::Priority(p) => Some(*p),
                _ => None,
            }),
            oif: oif(route),
            gateway: gateway(route),
        }
    }
}

/// The `ListRoutes` view of a dumped route; `None` for routes it cannot express.
fn entry(route: &RouteMessage, links: &HashMap<u32, Link>) -> Option<RouteEntry> {
    let family = match route.header.address_family {
        AddressFamily::Inet => Family::V4,
        AddressFamily::Inet6 => Family::V6,
        _ => return None,
    };
    let dest = match address(route, |a| match a {
        RouteAttribute::Destination(d) => Some(d),
        _ => None,
    }) {
        Some(addr) => Prefix {
            addr,
            len: route.header.destination_prefix_length,
        },
        None => Prefix::default_route(family),
    };
    Some(RouteEntry {
        dest,
        gateway: gateway(route),
        device: links.get(&oif(route)?)?.name.clone(),
        source: address(route, |a| match a {
            RouteAttribute::PrefSource(s) => Some(s),
            _ => None,
        }),
        scope: u8::from(route.header.scope),
        flags: route.header.flags.bits(),
        mtu: route
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Metrics(metrics) => metrics.iter().find_map(|m| match m {
                    RouteMetric::Mtu(mtu) => Some(*mtu),
                    _ => None,
                }),
                _ => None,
            })
            .unwrap_or(0),
    })
}

fn oif(route: &RouteMessage) -> Option<u32> {
    route.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn gateway(route: &RouteMessage) -> Option<IpAddr> {
    address(route, |a| match a {
        RouteAttribute::Gateway(g) => Some(g),
        _ => None,
    })
}

fn address(
    route: &RouteMessage,
    pick: impl Fn(&RouteAttribute) -> Option<&RouteAddress>,
) -> Option<IpAddr> {
    route.attributes.iter().find_map(|a| match pick(a) {
        Some(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        Some(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    })
}

//! The agent API's network messages (`types.Interface`, `types.Route`,
//! `types.ARPNeighbor`) to validated requests, and the guest's state back to messages.
//!
//! Every field is checked before anything is changed; a bad one is answered with
//! [`NetworkError::Invalid`] naming the field (Kata's field names, with the index in its
//! list) and the value. Conventions:
//!
//! - Interface: the link is found by `devicePath` (a PCI path) when given, else by
//!   `hwAddr`, else by `device` (its current name). `name` empty keeps the name, `mtu` 0
//!   keeps the MTU. `IPAddresses[].mask` is the prefix length; the address decides the
//!   family (the `family` field is not checked, as in Kata).
//! - Route: `dest` is `""` or `default` for the default route, `a.b.c.d/n`, or a bare
//!   address for a host route; the host bits must be zero. `family` must agree with
//!   `dest`, `gateway` and `source` (it alone tells the family of a default route).
//!   `source` is the preferred source address. `device` is required.
//! - Reported routes carry `dest` `""` for the default route, else `address/length`.
//! - Neighbour: `toIPAddress.address` and `device` are required; `lladdr` is a MAC or
//!   empty; `state` 0 means `NUD_PERMANENT`.

use std::net::IpAddr;

use hull_protocols::agent::{Interfaces, Routes};
use hull_protocols::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use protobuf::EnumOrUnknown;

use crate::device::PciPath;
use crate::network::addr::{Family, IpNet, Mac, Prefix};
use crate::network::neighbor::NUD_PERMANENT;
use crate::network::{
    InterfaceSpec, InterfaceState, LinkSelector, NeighborSpec, NetworkError, RouteEntry,
};

/// The kernel's limit on interface names: IFNAMSIZ (16) with its terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// `UpdateInterfaceRequest.interface` as a request.
pub fn interface_spec(interface: Option<&Interface>) -> Result<InterfaceSpec, NetworkError> {
    let interface = interface
        .ok_or_else(|| NetworkError::invalid("interface", "", "the request has no interface"))?;
    let mac = match interface.hwAddr.as_str() {
        "" => None,
        text => Some(
            text.parse::<Mac>()
                .map_err(|reason| NetworkError::invalid("interface.hwAddr", text, reason))?,
        ),
    };
    let pci_path = match interface.devicePath.as_str() {
        "" => None,
        text => Some(
            text.parse::<PciPath>()
                .map_err(|e| NetworkError::invalid("interface.devicePath", text, e.to_string()))?,
        ),
    };
    let selector = match (pci_path, mac) {
        (Some(path), _) => LinkSelector::PciPath(path),
        (None, Some(mac)) => LinkSelector::Mac(mac),
        (None, None) if !interface.device.is_empty() => {
            LinkSelector::Name(interface_name("interface.device", &interface.device)?)
        }
        (None, None) => {
            return Err(NetworkError::invalid(
                "interface",
                "",
                "say which link to configure: hwAddr, devicePath or device",
            ));
        }
    };
    let name = match interface.name.as_str() {
        "" => None,
        name => Some(interface_name("interface.name", name)?),
    };
    let mtu = match interface.mtu {
        0 => None,
        mtu => Some(u32::try_from(mtu).map_err(|_| {
            NetworkError::invalid("interface.mtu", mtu.to_string(), "too large for an MTU")
        })?),
    };
    let addresses = interface
        .IPAddresses
        .iter()
        .enumerate()
        .map(|(i, a)| ip_net(&format!("interface.IPAddresses[{i}]"), a))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(InterfaceSpec {
        mac: if matches!(selector, LinkSelector::Mac(_)) {
            None
        } else {
            mac
        },
        selector,
        name,
        mtu,
        addresses,
        raw_flags: interface.raw_flags,
    })
}

/// A link as `ListInterfaces` and `UpdateInterface` answer it.
pub fn interface_to_proto(state: &InterfaceState) -> Interface {
    Interface {
        device: state.name.clone(),
        name: state.name.clone(),
        IPAddresses: state.addresses.iter().map(ip_address_to_proto).collect(),
        mtu: u64::from(state.mtu),
        hwAddr: state.mac.map(|m| m.to_string()).unwrap_or_default(),
        type_: state.kind.clone(),
        raw_flags: state.flags,
        ..Default::default()
    }
}

/// Links as `ListInterfaces` answers them.
pub fn interfaces_to_proto(states: &[InterfaceState]) -> Interfaces {
    Interfaces {
        Interfaces: states.iter().map(interface_to_proto).collect(),
        ..Default::default()
    }
}

/// Routes as `ListRoutes` and `UpdateRoutes` answer them.
pub fn routes_to_proto(routes: &[RouteEntry]) -> Routes {
    Routes {
        Routes: routes.iter().map(route_to_proto).collect(),
        ..Default::default()
    }
}

/// `UpdateRoutesRequest.routes.Routes` as requests.
pub fn route_specs(routes: &[Route]) -> Result<Vec<RouteEntry>, NetworkError> {
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| route_spec(&format!("routes[{i}]"), r))
        .collect()
}

fn route_spec(field: &str, route: &Route) -> Result<RouteEntry, NetworkError> {
    let family = family(&format!("{field}.family"), route.family)?;
    let in_family = |name: &str, text: &str| -> Result<Option<IpAddr>, NetworkError> {
        if text.is_empty() {
            return Ok(None);
        }
        let field = format!("{field}.{name}");
        let addr: IpAddr = text
            .parse()
            .map_err(|_| NetworkError::invalid(&field, text, "not an IP address"))?;
        if Family::of(&addr) != family {
            return Err(NetworkError::invalid(
                &field,
                text,
                format!(
                    "it is {} but the route's family is {family}",
                    Family::of(&addr)
                ),
            ));
        }
        Ok(Some(addr))
    };
    let dest = Prefix::parse(&route.dest, family)
        .map_err(|reason| NetworkError::invalid(format!("{field}.dest"), &route.dest, reason))?;
    let gateway = in_family("gateway", &route.gateway)?;
    if let Some(gateway) = gateway
        && (gateway.is_unspecified() || gateway.is_multicast())
    {
        return Err(NetworkError::invalid(
            format!("{field}.gateway"),
            &route.gateway,
            "not a unicast address",
        ));
    }
    // Kata's runtime sends the preferred source as a bare address; a full-length prefix
    // means the same. Source-prefix routing is not supported.
    let source_text = match route.source.split_once('/') {
        Some((addr, len)) if len == family.max_prefix_len().to_string() => addr,
        Some(_) => {
            return Err(NetworkError::invalid(
                format!("{field}.source"),
                &route.source,
                "give the preferred source address; source prefixes are not supported",
            ));
        }
        None => route.source.as_str(),
    };
    let source = in_family("source", source_text)?;
    if route.device.is_empty() {
        return Err(NetworkError::invalid(
            format!("{field}.device"),
            "",
            "a route needs the link it goes out of",
        ));
    }
    let device = interface_name(&format!("{field}.device"), &route.device)?;
    let scope = u8::try_from(route.scope).map_err(|_| {
        NetworkError::invalid(
            format!("{field}.scope"),
            route.scope.to_string(),
            "a scope is 0 to 255",
        )
    })?;
    Ok(RouteEntry {
        dest,
        gateway,
        device,
        source,
        scope,
        flags: route.flags,
        mtu: route.mtu,
    })
}

/// A route as `ListRoutes` and `UpdateRoutes` answer it.
pub fn route_to_proto(route: &RouteEntry) -> Route {
    Route {
        dest: if route.dest.is_default() {
            String::new()
        } else {
            route.dest.to_string()
        },
        gateway: route.gateway.map(|g| g.to_string()).unwrap_or_default(),
        device: route.device.clone(),
        source: route.source.map(|s| s.to_string()).unwrap_or_default(),
        scope: u32::from(route.scope),
        family: family_to_proto(route.family()),
        flags: route.flags,
        mtu: route.mtu,
        ..Default::default()
    }
}

/// `AddARPNeighborsRequest.neighbors.ARPNeighbors` as requests.
pub fn neighbor_specs(neighbors: &[ARPNeighbor]) -> Result<Vec<NeighborSpec>, NetworkError> {
    neighbors
        .iter()
        .enumerate()
        .map(|(i, n)| neighbor_spec(&format!("neighbors[{i}]"), n))
        .collect()
}

fn neighbor_spec(field: &str, neighbor: &ARPNeighbor) -> Result<NeighborSpec, NetworkError> {
    let text = neighbor
        .toIPAddress
        .as_ref()
        .map(|a| a.address.as_str())
        .unwrap_or_default();
    let ip: IpAddr = text.parse().map_err(|_| {
        NetworkError::invalid(
            format!("{field}.toIPAddress.address"),
            text,
            "not an IP address",
        )
    })?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(NetworkError::invalid(
            format!("{field}.toIPAddress.address"),
            text,
            "not a unicast address",
        ));
    }
    if neighbor.device.is_empty() {
        return Err(NetworkError::invalid(
            format!("{field}.device"),
            "",
            "a neighbour needs the link it is on",
        ));
    }
    let device = interface_name(&format!("{field}.device"), &neighbor.device)?;
    let lladdr = match neighbor.lladdr.as_str() {
        "" => None,
        text => Some(
            text.parse::<Mac>()
                .map_err(|reason| NetworkError::invalid(format!("{field}.lladdr"), text, reason))?,
        ),
    };
    let state = match neighbor.state {
        0 => NUD_PERMANENT,
        state @ 1..=0xff => state as u16,
        state => {
            return Err(NetworkError::invalid(
                format!("{field}.state"),
                state.to_string(),
                "NUD_* state bits are 1 to 0xff",
            ));
        }
    };
    let flags = u8::try_from(neighbor.flags).map_err(|_| {
        NetworkError::invalid(
            format!("{field}.flags"),
            neighbor.flags.to_string(),
            "NTF_* flag bits are 0 to 0xff",
        )
    })?;
    Ok(NeighborSpec {
        ip,
        device,
        lladdr,
        state,
        flags,
    })
}

fn ip_net(field: &str, address: &IPAddress) -> Result<IpNet, NetworkError> {
    let addr: IpAddr = address.address.parse().map_err(|_| {
        NetworkError::invalid(
            format!("{field}.address"),
            &address.address,
            "not an IP address",
        )
    })?;
    let prefix_len: u8 = address.mask.parse().map_err(|_| {
        NetworkError::invalid(
            format!("{field}.mask"),
            &address.mask,
            "expected a prefix length such as 24",
        )
    })?;
    IpNet::new(addr, prefix_len).map_err(|reason| {
        NetworkError::invalid(
            field,
            format!("{}/{}", address.address, address.mask),
            reason,
        )
    })
}

fn ip_address_to_proto(net: &IpNet) -> IPAddress {
    IPAddress {
        family: family_to_proto(net.family()),
        address: net.addr.to_string(),
        mask: net.prefix_len.to_string(),
        ..Default::default()
    }
}

fn family(field: &str, family: EnumOrUnknown<IPFamily>) -> Result<Family, NetworkError> {
    match family.enum_value() {
        Ok(IPFamily::v4) => Ok(Family::V4),
        Ok(IPFamily::v6) => Ok(Family::V6),
        Err(other) => Err(NetworkError::invalid(
            field,
            other.to_string(),
            "expected v4 (0) or v6 (1)",
        )),
    }
}

fn family_to_proto(family: Family) -> EnumOrUnknown<IPFamily> {
    EnumOrUnknown::new(match family {
        Family::V4 => IPFamily::v4,
        Family::V6 => IPFamily::v6,
    })
}

/// Checks a link name the way the kernel does (`dev_valid_name`).
fn interface_name(field: &str, name: &str) -> Result<String, NetworkError> {
    let reason = if name.len() > MAX_IFNAME_LEN {
        Some("a link name has at most 15 bytes")
    } else if name == "." || name == ".." {
        Some("not a link name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        Some("a link name has no '/', ':' or white space")
    } else if name.is_empty() {
        Some("a link name cannot be empty")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetworkError::invalid(field, name, reason)),
        None => Ok(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(address: &str, mask: &str) -> IPAddress {
        IPAddress {
            address: address.into(),
            mask: mask.into(),
            ..Default::default()
        }
    }

    fn iface() -> Interface {
        Interface {
            name: "eth0".into(),
            hwAddr: "52:54:00:12:34:56".into(),
            mtu: 1500,
            IPAddresses: vec![address("10.0.2.15", "24"), address("2001:db8::2", "64")],
            ..Default::default()
        }
    }

    fn route(dest: &str, gateway: &str, device: &str) -> Route {
        Route {
            dest: dest.into(),
            gateway: gateway.into(),
            device: device.into(),
            ..Default::default()
        }
    }

    fn invalid_field(err: NetworkError) -> String {
        match err {
            NetworkError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn an_interface_found_by_mac() {
        let spec = interface_spec(Some(&iface())).unwrap();
        assert_eq!(
            spec.selector,
            LinkSelector::Mac("52:54:00:12:34:56".parse().unwrap())
        );
        assert_eq!(spec.mac, None);
        assert_eq!(spec.name.as_deref(), Some("eth0"));
        assert_eq!(spec.mtu, Some(1500));
        assert_eq!(
            spec.addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            ["10.0.2.15/24", "2001:db8::2/64"]
        );
    }

    #[test]
    fn pci_path_wins_and_the_mac_becomes_the_wanted_one() {
        let mut i = iface();
        i.devicePath = "02/00".into();
        let spec = interface_spec(Some(&i)).unwrap();
        assert_eq!(
            spec.selector,
            LinkSelector::PciPath("02/00".parse().unwrap())
        );
        assert_eq!(spec.mac, Some("52:54:00:12:34:56".parse().unwrap()));
    }

    #[test]
    fn by_name_only_when_nothing_else_is_given_and_zero_keeps() {
        let i = Interface {
            device: "eth1".into(),
            ..Default::default()
        };
        let spec = interface_spec(Some(&i)).unwrap();
        assert_eq!(spec.selector, LinkSelector::Name("eth1".into()));
        assert_eq!((spec.name, spec.mtu), (None, None));
        assert!(spec.addresses.is_empty());
        let err = interface_spec(Some(&Interface::default())).unwrap_err();
        assert_eq!(invalid_field(err), "interface");
        assert_eq!(
            invalid_field(interface_spec(None).unwrap_err()),
            "interface"
        );
    }

    #[test]
    fn bad_interface_fields_are_named_with_their_value() {
        type Case = (fn(&mut Interface), &'static str);
        let cases: Vec<Case> = vec![
            (|i| i.hwAddr = "52:54:00:12:34".into(), "interface.hwAddr"),
            (|i| i.devicePath = "zz".into(), "interface.devicePath"),
            (|i| i.name = "a-name-much-too-long".into(), "interface.name"),
            (|i| i.name = "eth/0".into(), "interface.name"),
            (|i| i.mtu = 1 << 40, "interface.mtu"),
            (
                |i| i.IPAddresses[1] = address("10.0.2.300", "24"),
                "interface.IPAddresses[1].address",
            ),
            (
                |i| i.IPAddresses[0] = address("10.0.2.15", ""),
                "interface.IPAddresses[0].mask",
            ),
            (
                |i| i.IPAddresses[0] = address("10.0.2.15", "33"),
                "interface.IPAddresses[0]",
            ),
            (
                |i| i.IPAddresses[0] = address("224.0.0.1", "4"),
                "interface.IPAddresses[0]",
            ),
        ];
        for (mutate, field) in cases {
            let mut i = iface();
            mutate(&mut i);
            let err = interface_spec(Some(&i)).unwrap_err();
            let text = err.to_string();
            assert_eq!(invalid_field(err), field, "{text}");
        }
        let mut i = iface();
        i.IPAddresses[1] = address("10.0.2.300", "24");
        let text = interface_spec(Some(&i)).unwrap_err().to_string();
        assert!(text.contains("\"10.0.2.300\""), "{text}");
    }

    #[test]
    fn interface_state_reports_in_kata_field_names() {
        let state = InterfaceState {
            name: "eth0".into(),
            mac: Some("52:54:00:12:34:56".parse().unwrap()),
            mtu: 1500,
            addresses: vec![IpNet::new("10.0.2.15".parse().unwrap(), 24).unwrap()],
            kind: String::new(),
            flags: 0x1043,
        };
        let proto = interface_to_proto(&state);
        assert_eq!(proto.name, "eth0");
        assert_eq!(proto.device, "eth0");
        assert_eq!(proto.hwAddr, "52:54:00:12:34:56");
        assert_eq!(proto.mtu, 1500);
        assert_eq!(proto.raw_flags, 0x1043);
        assert_eq!(proto.IPAddresses.len(), 1);
        assert_eq!(proto.IPAddresses[0].address, "10.0.2.15");
        assert_eq!(proto.IPAddresses[0].mask, "24");
        assert_eq!(proto.IPAddresses[0].family.enum_value(), Ok(IPFamily::v4));
    }

    #[test]
    fn routes_convert_both_ways() {
        let mut default_v6 = route("", "2001:db8::1", "eth0");
        default_v6.family = IPFamily::v6.into();
        let mut link = route("10.0.2.0/24", "", "eth0");
        link.scope = 253;
        link.source = "10.0.2.15".into();
        let specs = route_specs(&[route("", "10.0.2.2", "eth0"), link, default_v6]).unwrap();
        assert!(specs[0].dest.is_default());
        assert_eq!(specs[0].gateway, Some("10.0.2.2".parse().unwrap()));
        assert_eq!(specs[1].dest.to_string(), "10.0.2.0/24");
        assert_eq!(specs[1].scope, 253);
        assert_eq!(specs[1].source, Some("10.0.2.15".parse().unwrap()));
        assert_eq!(specs[2].family(), Family::V6);
        assert_eq!(specs[0].to_string(), "default via 10.0.2.2 dev eth0");

        let back = route_to_proto(&specs[0]);
        assert_eq!(back.dest, "");
        assert_eq!(back.gateway, "10.0.2.2");
        assert_eq!(back.device, "eth0");
        assert_eq!(route_to_proto(&specs[1]).dest, "10.0.2.0/24");
        assert_eq!(
            route_to_proto(&specs[2]).family.enum_value(),
            Ok(IPFamily::v6)
        );
        // A full-length source prefix is the address.
        let mut r = route("10.0.3.0/24", "", "eth0");
        r.source = "10.0.2.15/32".into();
        assert_eq!(
            route_specs(&[r]).unwrap()[0].source,
            Some("10.0.2.15".parse().unwrap())
        );
    }

    #[test]
    fn bad_routes_name_the_field() {
        let cases: Vec<(Route, &str)> = vec![
            (route("10.0.0.1/24", "", "eth0"), "routes[0].dest"),
            (route("10.0.0.0/40", "", "eth0"), "routes[0].dest"),
            (route("bogus", "", "eth0"), "routes[0].dest"),
            (route("2001:db8::/64", "", "eth0"), "routes[0].dest"),
            (route("", "10.0.2.256", "eth0"), "routes[0].gateway"),
            (route("", "2001:db8::1", "eth0"), "routes[0].gateway"),
            (route("", "0.0.0.0", "eth0"), "routes[0].gateway"),
            (route("", "10.0.2.2", ""), "routes[0].device"),
            (
                Route {
                    source: "10.0.2.0/24".into(),
                    ..route("", "10.0.2.2", "eth0")
                },
                "routes[0].source",
            ),
            (
                Route {
                    scope: 256,
                    ..route("", "10.0.2.2", "eth0")
                },
                "routes[0].scope",
            ),
            (
                Route {
                    family: EnumOrUnknown::from_i32(7),
                    ..route("", "10.0.2.2", "eth0")
                },
                "routes[0].family",
            ),
        ];
        for (r, field) in cases {
            let err = route_specs(std::slice::from_ref(&r)).unwrap_err();
            let text = err.to_string();
            assert_eq!(invalid_field(err), field, "{r:?}: {text}");
        }
        // The index is the route's.
        let err = route_specs(&[route("", "10.0.2.2", "eth0"), route("x", "", "eth0")]);
        assert_eq!(invalid_field(err.unwrap_err()), "routes[1].dest");
    }

    #[test]
    fn neighbours_convert_and_default_to_permanent() {
        let neighbor = ARPNeighbor {
            toIPAddress: Some(address("10.0.2.2", "32")).into(),
            device: "eth0".into(),
            lladdr: "52:55:0a:00:02:02".into(),
            ..Default::default()
        };
        let spec = &neighbor_specs(std::slice::from_ref(&neighbor)).unwrap()[0];
        assert_eq!(spec.state, NUD_PERMANENT);
        assert_eq!(spec.lladdr, Some("52:55:0a:00:02:02".parse().unwrap()));
        type Case = (fn(&mut ARPNeighbor), &'static str);
        let cases: Vec<Case> = vec![
            (
                |n| n.toIPAddress = Default::default(),
                "neighbors[0].toIPAddress.address",
            ),
            (
                |n| n.toIPAddress = Some(address("x", "")).into(),
                "neighbors[0].toIPAddress.address",
            ),
            (|n| n.device = String::new(), "neighbors[0].device"),
            (|n| n.lladdr = "52:55".into(), "neighbors[0].lladdr"),
            (|n| n.state = 0x100, "neighbors[0].state"),
            (|n| n.flags = -1, "neighbors[0].flags"),
        ];
        for (mutate, field) in cases {
            let mut n = neighbor.clone();
            mutate(&mut n);
            assert_eq!(invalid_field(neighbor_specs(&[n]).unwrap_err()), field);
        }
    }
}

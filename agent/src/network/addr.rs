//! The small values of networking, parsed and validated once: MAC addresses, interface
//! addresses (`10.0.2.15/24`) and route prefixes (`10.0.2.0/24`, `default`).
//!
//! Parsing returns a short reason on failure; the RPC layer adds the field name and
//! the offending value to make the error a request can be answered with.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The address family of an address, prefix or route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The longest prefix of the family: 32 or 128.
    pub fn max_prefix_len(self) -> u8 {
        match self {
            Self::V4 => 32,
            Self::V6 => 128,
        }
    }

    /// The all-zero address of the family.
    pub fn unspecified(self) -> IpAddr {
        match self {
            Self::V4 => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            Self::V6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// An Ethernet MAC address. Parsed from six colon-separated hex bytes in either case;
/// printed in lower case, as iproute2 and Go's `net.HardwareAddr` print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The MAC in `bytes`, when they are exactly six.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(Self)
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts
                .next()
                .ok_or("expected six colon-separated hex bytes")?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("expected six colon-separated hex bytes".into());
            }
            *byte =
                u8::from_str_radix(part, 16).map_err(|_| format!("{part:?} is not a hex byte"))?;
        }
        if parts.next().is_some() {
            return Err("expected six colon-separated hex bytes".into());
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// An address assigned to an interface with its prefix length: `10.0.2.15/24`. Host bits
/// are of course allowed. Addresses that can never be an interface's (unspecified,
/// multicast, the IPv4 limited broadcast) are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The interface's address, host bits included.
    pub addr: IpAddr,
    /// The length of the on-link network's prefix, in bits.
    pub prefix_len: u8,
}

impl IpNet {
    /// Validates `addr` as an interface address with `prefix_len`.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, String> {
        let family = Family::of(&addr);
        if prefix_len > family.max_prefix_len() {
            return Err(format!(
                "prefix length {prefix_len} is longer than {} bits",
                family.max_prefix_len()
            ));
        }
        if addr.is_unspecified() {
            return Err("the unspecified address cannot be assigned".into());
        }
        if addr.is_multicast() {
            return Err("a multicast address cannot be assigned".into());
        }
        if let IpAddr::V4(v4) = addr
            && v4.is_broadcast()
        {
            return Err("the broadcast address cannot be assigned".into());
        }
        Ok(Self { addr, prefix_len })
    }

    /// The address's family.
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// An IPv6 link-local address (fe80::/10).
    pub fn is_ipv6_link_local(&self) -> bool {
        matches!(self.addr, IpAddr::V6(v6) if v6.is_unicast_link_local())
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A route destination: a network prefix whose host bits are zero. Length 0 is the
/// default route of its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The network address (host bits zero); the unspecified address for a default route.
    pub addr: IpAddr,
    /// The prefix length in bits; 0 for a default route.
    pub len: u8,
}

impl Prefix {
    /// The default route's destination in `family`.
    pub fn default_route(family: Family) -> Self {
        Self {
            addr: family.unspecified(),
            len: 0,
        }
    }

    /// Validates `addr/len` as a network prefix.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, String> {
        let family = Family::of(&addr);
        if len > family.max_prefix_len() {
            return Err(format!(
                "prefix length {len} is longer than {} bits",
                family.max_prefix_len()
            ));
        }
        let network = mask(addr, len);
        if network != addr {
            return Err(format!(
                "host bits are set (the network is {network}/{len})"
            ));
        }
        Ok(Self { addr, len })
    }

    /// The prefix's family.
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// Whether this is a default route's destination (length 0).
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// Parses `default`, `a.b.c.d/n`, `a:b::/n`, or a bare address (a host route).
    /// `family` picks the default route's family; an explicit address must match it.
    pub fn parse(s: &str, family: Family) -> Result<Self, String> {
        if s.is_empty() || s == "default" {
            return Ok(Self::default_route(family));
        }
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        if Family::of(&addr) != family {
            return Err(format!(
                "it is {} but the family is {family}",
                Family::of(&addr)
            ));
        }
        let len = match len {
            Some(len) => len
                .parse::<u8>()
                .map_err(|_| format!("{len:?} is not a prefix length"))?,
            None => family.max_prefix_len(),
        };
        Self::new(addr, len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `addr` with every bit past the first `len` cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let keep = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & keep).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let keep = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & keep).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_in_either_case_and_print_lower_case() {
        let mac: Mac = "52:54:00:AB:cd:0F".parse().unwrap();
        assert_eq!(mac.0, [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]);
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:11",
            "52-54-00-ab-cd-0f",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
            "52:54:00:ab:cd:+f",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Mac::from_bytes(&[1, 2, 3, 4, 5, 6]),
            Some(Mac([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(Mac::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn interface_addresses_keep_host_bits_and_refuse_the_unassignable() {
        let net = IpNet::new("10.0.2.15".parse().unwrap(), 24).unwrap();
        assert_eq!(net.to_string(), "10.0.2.15/24");
        assert!(IpNet::new("10.0.2.15".parse().unwrap(), 33).is_err());
        assert!(IpNet::new("2001:db8::1".parse().unwrap(), 128).is_ok());
        assert!(IpNet::new("2001:db8::1".parse().unwrap(), 129).is_err());
        for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(IpNet::new(bad.parse().unwrap(), 24).is_err(), "{bad}");
        }
        assert!(
            IpNet::new("fe80::1".parse().unwrap(), 64)
                .unwrap()
                .is_ipv6_link_local()
        );
        assert!(!net.is_ipv6_link_local());
    }

    #[test]
    fn prefixes_parse_defaults_hosts_and_networks() {
        let v4 = Family::V4;
        assert_eq!(Prefix::parse("", v4).unwrap(), Prefix::default_route(v4));
        assert_eq!(
            Prefix::parse("default", v4).unwrap().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            Prefix::parse("default", Family::V6).unwrap().to_string(),
            "::/0"
        );
        assert_eq!(
            Prefix::parse("0.0.0.0/0", v4).unwrap(),
            Prefix::default_route(v4)
        );
        assert_eq!(
            Prefix::parse("10.0.0.0/24", v4).unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert_eq!(
            Prefix::parse("10.0.2.2", v4).unwrap().to_string(),
            "10.0.2.2/32"
        );
        assert_eq!(
            Prefix::parse("2001:db8::/32", Family::V6)
                .unwrap()
                .to_string(),
            "2001:db8::/32"
        );
        let err = Prefix::parse("10.0.0.1/24", v4).unwrap_err();
        assert!(
            err.contains("host bits") && err.contains("10.0.0.0/24"),
            "{err}"
        );
        assert!(Prefix::parse("10.0.0.0/33", v4).is_err());
        assert!(Prefix::parse("10.0.0.0/x", v4).is_err());
        assert!(Prefix::parse("10.0.0.300/24", v4).is_err());
        assert!(
            Prefix::parse("2001:db8::/32", v4)
                .unwrap_err()
                .contains("family")
        );
    }
}

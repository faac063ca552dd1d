//! `update-interface`, `update-routes`, `list-interfaces`, `list-routes` and
//! `add-arp-neighbors`: the guest's network.
//!
//! Each change can be given with flags (iproute2-like route and neighbour specs) or as a
//! JSON file in Kata's field names, the same JSON that `--json` prints: a `types.Interface`
//! for `update-interface`, `{"Routes": [...]}` (or a bare array) for `update-routes`,
//! `{"ARPNeighbors": [...]}` (or a bare array) for `add-arp-neighbors`. The agent checks
//! the values; hull-ctl only turns the flags into messages.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use hull_protocols::AgentClient;
use hull_protocols::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::output::{Report, to_json};

/// `RT_SCOPE_LINK`, the scope iproute2 gives a route without a gateway.
const RT_SCOPE_LINK: u32 = 253;
/// `RTNH_F_ONLINK`.
const RTNH_F_ONLINK: u32 = 4;

/// Network commands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum NetworkCommand {
    /// AgentService.UpdateInterface: configure one NIC (found by MAC, PCI path or name):
    /// name, MTU, addresses, flags; it is brought up.
    UpdateInterface(UpdateInterfaceArgs),
    /// AgentService.UpdateRoutes: replace the guest's routes with these.
    UpdateRoutes(UpdateRoutesArgs),
    /// AgentService.ListInterfaces: every link with its configured addresses.
    ListInterfaces,
    /// AgentService.ListRoutes: the configured routes (not the kernel's own).
    ListRoutes,
    /// AgentService.AddARPNeighbors: add or replace static ARP / NDP entries.
    AddArpNeighbors(AddArpNeighborsArgs),
}

/// `update-interface` options. Flags override the fields of `--file`.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct UpdateInterfaceArgs {
    /// A JSON `types.Interface` in Kata's field names (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Find the link by this MAC (`hwAddr`).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// Find the link by PCI path (`devicePath`, e.g. 02/00); `--mac` is then the MAC it
    /// is given.
    #[arg(long, value_name = "PATH")]
    pub pci_path: Option<String>,
    /// Find the link by its current name (`device`), when neither of the above is given.
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// The name the link gets.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The MTU.
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u64>,
    /// An address with its prefix length, e.g. 10.0.2.15/24; repeat for more. The link
    /// gets exactly these.
    #[arg(long = "address", value_name = "ADDR/LEN")]
    pub addresses: Vec<String>,
    /// IFF_* flags (`raw_flags`), decimal or 0x hex.
    #[arg(long, value_name = "FLAGS", value_parser = parse_u32)]
    pub raw_flags: Option<u32>,
}

/// `update-routes` options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct UpdateRoutesArgs {
    /// A JSON `{"Routes": [...]}` or array of `types.Route` (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["routes", "none"])]
    pub file: Option<PathBuf>,
    /// A route: `DEST [via GW] dev DEV [src ADDR] [scope link|host|global|N] [mtu N]
    /// [onlink]`; DEST is `default`, a prefix or an address. Repeat for more.
    #[arg(long = "route", value_name = "SPEC")]
    pub routes: Vec<String>,
    /// Remove every configured route.
    #[arg(long, conflicts_with = "routes")]
    pub none: bool,
}

/// `add-arp-neighbors` options.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AddArpNeighborsArgs {
    /// A JSON `{"ARPNeighbors": [...]}` or array of `types.ARPNeighbor` (`-` for stdin).
    #[arg(long, value_name = "FILE", conflicts_with = "neighbors")]
    pub file: Option<PathBuf>,
    /// A neighbour: `ADDR [lladdr MAC] dev DEV [state N] [flags N]`. Repeat for more.
    #[arg(
        long = "neighbor",
        value_name = "SPEC",
        required_unless_present = "file"
    )]
    pub neighbors: Vec<String>,
}

/// Runs a network command.
pub async fn run(client: &AgentClient, command: &NetworkCommand) -> anyhow::Result<Outcome> {
    match command {
        NetworkCommand::UpdateInterface(args) => {
            let answer = client.update_interface(interface_from_args(args)?).await?;
            Ok(Outcome::ok(InterfaceReport(InterfaceJson::from(&answer))))
        }
        NetworkCommand::UpdateRoutes(args) => {
            let answer = client.update_routes(routes_from_args(args)?).await?;
            Ok(Outcome::ok(RoutesReport::from(&answer)))
        }
        NetworkCommand::ListInterfaces => {
            let answer = client.list_interfaces().await?;
            Ok(Outcome::ok(InterfacesReport {
                interfaces: answer.iter().map(InterfaceJson::from).collect(),
            }))
        }
        NetworkCommand::ListRoutes => {
            let answer = client.list_routes().await?;
            Ok(Outcome::ok(RoutesReport::from(&answer)))
        }
        NetworkCommand::AddArpNeighbors(args) => {
            let neighbors = neighbors_from_args(args)?;
            let added = neighbors.len();
            client.add_arp_neighbors(neighbors).await?;
            Ok(Outcome::ok(NeighborsReport { added }))
        }
    }
}

// ----- JSON in Kata's field names -----

/// An IP family: Kata's JSON has the enum's number; names are accepted too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FamilyJson {
    Number(i32),
    Name(String),
}

impl Default for FamilyJson {
    fn default() -> Self {
        Self::Number(0)
    }
}

impl FamilyJson {
    fn to_proto(&self) -> anyhow::Result<IPFamily> {
        match self {
            Self::Number(0) => Ok(IPFamily::v4),
            Self::Number(1) => Ok(IPFamily::v6),
            Self::Name(n) if n == "v4" => Ok(IPFamily::v4),
            Self::Name(n) if n == "v6" => Ok(IPFamily::v6),
            other => bail!("family {other:?}: expected 0, 1, \"v4\" or \"v6\""),
        }
    }

    fn of(family: IPFamily) -> Self {
        Self::Number(family as i32)
    }
}

/// `types.IPAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpAddressJson {
    #[serde(default)]
    pub family: FamilyJson,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub mask: String,
}

/// `types.Interface`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceJson {
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "IPAddresses", alias = "ipAddresses", default)]
    pub ip_addresses: Vec<IpAddressJson>,
    #[serde(default)]
    pub mtu: u64,
    #[serde(rename = "hwAddr", default)]
    pub hw_addr: String,
    #[serde(rename = "devicePath", alias = "pciPath", default)]
    pub device_path: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(alias = "rawFlags", default)]
    pub raw_flags: u32,
}

/// `types.Route`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteJson {
    #[serde(default)]
    pub dest: String,
    #[serde(default)]
    pub gateway: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub scope: u32,
    #[serde(default)]
    pub family: FamilyJson,
    #[serde(default)]
    pub flags: u32,
    #[serde(default)]
    pub mtu: u32,
}

/// `types.ARPNeighbor`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborJson {
    #[serde(rename = "toIPAddress", default)]
    pub to_ip_address: Option<IpAddressJson>,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub lladdr: String,
    #[serde(default)]
    pub state: i32,
    #[serde(default)]
    pub flags: i32,
}

/// A list given bare or wrapped in its message (`{"Routes": [...]}`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ListJson<T> {
    Bare(Vec<T>),
    Routes {
        #[serde(rename = "Routes")]
        routes: Vec<T>,
    },
    Neighbors {
        #[serde(rename = "ARPNeighbors")]
        neighbors: Vec<T>,
    },
}

impl<T> ListJson<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Self::Bare(v) => v,
            Self::Routes { routes } => routes,
            Self::Neighbors { neighbors } => neighbors,
        }
    }
}

impl IpAddressJson {
    fn to_proto(&self) -> anyhow::Result<IPAddress> {
        Ok(IPAddress {
            family: self.family.to_proto()?.into(),
            address: self.address.clone(),
            mask: self.mask.clone(),
            ..Default::default()
        })
    }
}

impl From<&IPAddress> for IpAddressJson {
    fn from(a: &IPAddress) -> Self {
        Self {
            family: FamilyJson::of(a.family.enum_value_or_default()),
            address: a.address.clone(),
            mask: a.mask.clone(),
        }
    }
}

impl InterfaceJson {
    fn to_proto(&self) -> anyhow::Result<Interface> {
        Ok(Interface {
            device: self.device.clone(),
            name: self.name.clone(),
            IPAddresses: self
                .ip_addresses
                .iter()
                .map(IpAddressJson::to_proto)
                .collect::<anyhow::Result<_>>()?,
            mtu: self.mtu,
            hwAddr: self.hw_addr.clone(),
            devicePath: self.device_path.clone(),
            type_: self.kind.clone(),
            raw_flags: self.raw_flags,
            ..Default::default()
        })
    }
}

impl From<&Interface> for InterfaceJson {
    fn from(i: &Interface) -> Self {
        Self {
            device: i.device.clone(),
            name: i.name.clone(),
            ip_addresses: i.IPAddresses.iter().map(IpAddressJson::from).collect(),
            mtu: i.mtu,
            hw_addr: i.hwAddr.clone(),
            device_path: i.devicePath.clone(),
            kind: i.type_.clone(),
            raw_flags: i.raw_flags,
        }
    }
}

impl RouteJson {
    fn to_proto(&self) -> anyhow::Result<Route> {
        Ok(Route {
            dest: self.dest.clone(),
            gateway: self.gateway.clone(),
            device: self.device.clone(),
            source: self.source.clone(),
            scope: self.scope,
            family: self.family.to_proto()?.into(),
            flags: self.flags,
            mtu: self.mtu,
            ..Default::default()
        })
    }
}

impl From<&Route> for RouteJson {
    fn from(r: &Route) -> Self {
        Self {
            dest: r.dest.clone(),
            gateway: r.gateway.clone(),
            device: r.device.clone(),
            source: r.source.clone(),
            scope: r.scope,
            family: FamilyJson::of(r.family.enum_value_or_default()),
            flags: r.flags,
            mtu: r.mtu,
        }
    }
}

impl NeighborJson {
    fn to_proto(&self) -> anyhow::Result<ARPNeighbor> {
        Ok(ARPNeighbor {
            toIPAddress: self
                .to_ip_address
                .as_ref()
                .map(IpAddressJson::to_proto)
                .transpose()?
                .into(),
            device: self.device.clone(),
            lladdr: self.lladdr.clone(),
            state: self.state,
            flags: self.flags,
            ..Default::default()
        })
    }
}

// ----- flags to messages -----

fn interface_from_args(args: &UpdateInterfaceArgs) -> anyhow::Result<Interface> {
    let mut json: InterfaceJson = match &args.file {
        Some(path) => read_json(path)?,
        None => InterfaceJson::default(),
    };
    if let Some(mac) = &args.mac {
        json.hw_addr = mac.clone();
    }
    if let Some(path) = &args.pci_path {
        json.device_path = path.clone();
    }
    if let Some(device) = &args.device {
        json.device = device.clone();
    }
    if let Some(name) = &args.name {
        json.name = name.clone();
    }
    if let Some(mtu) = args.mtu {
        json.mtu = mtu;
    }
    if !args.addresses.is_empty() {
        json.ip_addresses = args
            .addresses
            .iter()
            .map(|a| address_arg(a))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(flags) = args.raw_flags {
        json.raw_flags = flags;
    }
    if json.hw_addr.is_empty() && json.device_path.is_empty() && json.device.is_empty() {
        bail!("say which link to configure: --mac, --pci-path or --device (or in --file)");
    }
    json.to_proto()
}

/// `10.0.2.15/24` as an `IPAddress`.
fn address_arg(text: &str) -> anyhow::Result<IpAddressJson> {
    let (address, mask) = text
        .split_once('/')
        .with_context(|| format!("--address {text:?}: expected ADDRESS/PREFIX_LENGTH"))?;
    Ok(IpAddressJson {
        family: FamilyJson::of(family_of_text(address)),
        address: address.to_owned(),
        mask: mask.to_owned(),
    })
}

fn routes_from_args(args: &UpdateRoutesArgs) -> anyhow::Result<Vec<Route>> {
    if let Some(path) = &args.file {
        let list: ListJson<RouteJson> = read_json(path)?;
        return list.into_vec().iter().map(RouteJson::to_proto).collect();
    }
    if args.routes.is_empty() && !args.none {
        bail!("give --route (repeatable), --file, or --none to remove every route");
    }
    args.routes.iter().map(|spec| route_spec(spec)).collect()
}

/// `DEST [via GW] dev DEV [src ADDR] [scope S] [mtu N] [onlink]`.
pub fn route_spec(spec: &str) -> anyhow::Result<Route> {
    let context = || format!("--route {spec:?}");
    let mut words = spec.split_whitespace();
    let dest = words
        .next()
        .with_context(|| format!("{}: empty", context()))?;
    let mut route = Route {
        dest: if dest == "default" {
            String::new()
        } else {
            dest.to_owned()
        },
        ..Default::default()
    };
    let mut scope = None;
    while let Some(word) = words.next() {
        let mut value = || {
            words
                .next()
                .with_context(|| format!("{}: {word} needs a value", context()))
        };
        match word {
            "via" => route.gateway = value()?.to_owned(),
            "dev" => route.device = value()?.to_owned(),
            "src" => route.source = value()?.to_owned(),
            "mtu" => {
                route.mtu = value()?
                    .parse()
                    .with_context(|| format!("{}: mtu", context()))?
            }
            "scope" => {
                scope = Some(match value()? {
                    "global" | "universe" => 0,
                    "site" => 200,
                    "link" => RT_SCOPE_LINK,
                    "host" => 254,
                    n => n
                        .parse()
                        .with_context(|| format!("{}: scope {n:?}", context()))?,
                })
            }
            "onlink" => route.flags |= RTNH_F_ONLINK,
            other => bail!(
                "{}: unknown word {other:?} (expected via, dev, src, scope, mtu or onlink)",
                context()
            ),
        }
    }
    if route.device.is_empty() {
        bail!("{}: a route needs `dev DEVICE`", context());
    }
    // Like iproute2: a route without a gateway is a link route.
    route.scope = scope.unwrap_or(if route.gateway.is_empty() {
        RT_SCOPE_LINK
    } else {
        0
    });
    let address = [&route.dest, &route.gateway, &route.source]
        .into_iter()
        .find(|a| !a.is_empty())
        .map(|a| a.split('/').next().unwrap_or_default().to_owned());
    route.family = address
        .map(|a| family_of_text(&a))
        .unwrap_or(IPFamily::v4)
        .into();
    Ok(route)
}

fn neighbors_from_args(args: &AddArpNeighborsArgs) -> anyhow::Result<Vec<ARPNeighbor>> {
    if let Some(path) = &args.file {
        let list: ListJson<NeighborJson> = read_json(path)?;
        return list.into_vec().iter().map(NeighborJson::to_proto).collect();
    }
    args.neighbors
        .iter()
        .map(|spec| neighbor_spec(spec))
        .collect()
}

/// `ADDR [lladdr MAC] dev DEV [state N] [flags N]`.
pub fn neighbor_spec(spec: &str) -> anyhow::Result<ARPNeighbor> {
    let context = || format!("--neighbor {spec:?}");
    let mut words = spec.split_whitespace();
    let address = words
        .next()
        .with_context(|| format!("{}: empty", context()))?;
    let mut neighbor = ARPNeighbor {
        toIPAddress: Some(IPAddress {
            family: family_of_text(address).into(),
            address: address.to_owned(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    while let Some(word) = words.next() {
        let value = words
            .next()
            .with_context(|| format!("{}: {word} needs a value", context()))?;
        let number = || -> anyhow::Result<i32> {
            let n = parse_u32(value).map_err(anyhow::Error::msg)?;
            i32::try_from(n).with_context(|| format!("{}: {word} {value}", context()))
        };
        match word {
            "lladdr" => neighbor.lladdr = value.to_owned(),
            "dev" => neighbor.device = value.to_owned(),
            "state" => neighbor.state = number()?,
            "flags" => neighbor.flags = number()?,
            other => bail!(
                "{}: unknown word {other:?} (expected lladdr, dev, state or flags)",
                context()
            ),
        }
    }
    if neighbor.device.is_empty() {
        bail!("{}: a neighbour needs `dev DEVICE`", context());
    }
    Ok(neighbor)
}

fn family_of_text(address: &str) -> IPFamily {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => IPFamily::v6,
        _ if address.contains(':') => IPFamily::v6,
        _ => IPFamily::v4,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A number in decimal or `0x` hex.
fn parse_u32(s: &str) -> Result<u32, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("{s:?} is not a number (decimal or 0x hex)"))
}

// ----- reports -----

/// `update-interface` result: the interface as the agent reports it, in Kata's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceReport(pub InterfaceJson);

impl Report for InterfaceReport {
    fn human(&self) -> String {
        interface_line(&self.0)
    }
    fn json(&self) -> serde_json::Value {
        to_json(&self.0)
    }
}

/// `list-interfaces` result. JSON: `{"Interfaces": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfacesReport {
    #[serde(rename = "Interfaces")]
    pub interfaces: Vec<InterfaceJson>,
}

impl Report for InterfacesReport {
    fn human(&self) -> String {
        self.interfaces
            .iter()
            .map(interface_line)
            .collect::<Vec<_>>()
            .join("\n")
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `list-routes` and `update-routes` result. JSON: `{"Routes": [...]}`, which
/// `update-routes --file` takes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutesReport {
    #[serde(rename = "Routes")]
    pub routes: Vec<RouteJson>,
}

impl From<&Vec<Route>> for RoutesReport {
    fn from(routes: &Vec<Route>) -> Self {
        Self {
            routes: routes.iter().map(RouteJson::from).collect(),
        }
    }
}

impl Report for RoutesReport {
    fn human(&self) -> String {
        if self.routes.is_empty() {
            return "no routes".to_owned();
        }
        self.routes
            .iter()
            .map(route_line)
            .collect::<Vec<_>>()
            .join("\n")
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `add-arp-neighbors` result. JSON: `{"added": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeighborsReport {
    pub added: usize,
}

impl Report for NeighborsReport {
    fn human(&self) -> String {
        format!("{} neighbour(s) added", self.added)
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `eth0 52:54:00:12:34:56 mtu 1500 <UP,BROADCAST> 10.0.2.15/24`.
fn interface_line(i: &InterfaceJson) -> String {
    let mut line = format!(
        "{} {} mtu {} <{}>",
        i.name,
        if i.hw_addr.is_empty() {
            "-"
        } else {
            &i.hw_addr
        },
        i.mtu,
        flag_names(i.raw_flags)
    );
    if !i.kind.is_empty() {
        line.push_str(&format!(" {}", i.kind));
    }
    for a in &i.ip_addresses {
        line.push_str(&format!(" {}/{}", a.address, a.mask));
    }
    line
}

/// `default via 10.0.2.2 dev eth0`, iproute2 style.
fn route_line(r: &RouteJson) -> String {
    let mut line = if r.dest.is_empty() {
        "default".to_owned()
    } else {
        r.dest.clone()
    };
    if !r.gateway.is_empty() {
        line.push_str(&format!(" via {}", r.gateway));
    }
    line.push_str(&format!(" dev {}", r.device));
    if !r.source.is_empty() {
        line.push_str(&format!(" src {}", r.source));
    }
    match r.scope {
        0 => {}
        RT_SCOPE_LINK => line.push_str(" scope link"),
        254 => line.push_str(" scope host"),
        n => line.push_str(&format!(" scope {n}")),
    }
    if r.mtu != 0 {
        line.push_str(&format!(" mtu {}", r.mtu));
    }
    if r.flags & RTNH_F_ONLINK != 0 {
        line.push_str(" onlink");
    }
    line
}

fn flag_names(flags: u32) -> String {
    const NAMES: [(u32, &str); 10] = [
        (0x1, "UP"),
        (0x2, "BROADCAST"),
        (0x8, "LOOPBACK"),
        (0x10, "POINTOPOINT"),
        (0x40, "RUNNING"),
        (0x80, "NOARP"),
        (0x100, "PROMISC"),
        (0x200, "ALLMULTI"),
        (0x1000, "MULTICAST"),
        (0x10000, "LOWER_UP"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Format, render};

    #[test]
    fn route_specs_read_like_iproute2() {
        let r = route_spec("default via 10.0.2.2 dev eth0").unwrap();
        assert_eq!(
            (
                r.dest.as_str(),
                r.gateway.as_str(),
                r.device.as_str(),
                r.scope
            ),
            ("", "10.0.2.2", "eth0", 0)
        );
        assert_eq!(r.family.enum_value(), Ok(IPFamily::v4));
        let r = route_spec("10.0.2.0/24 dev eth0 src 10.0.2.15 mtu 1400").unwrap();
        assert_eq!(r.scope, RT_SCOPE_LINK, "a link route by default");
        assert_eq!((r.source.as_str(), r.mtu), ("10.0.2.15", 1400));
        let r = route_spec("default via fe80::1 dev eth0 onlink scope 7").unwrap();
        assert_eq!(r.family.enum_value(), Ok(IPFamily::v6));
        assert_eq!((r.flags, r.scope), (RTNH_F_ONLINK, 7));
        for bad in [
            "",
            "default via 10.0.2.2",
            "default dev",
            "default dev eth0 bogus 1",
        ] {
            assert!(route_spec(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn neighbour_specs_and_addresses() {
        let n = neighbor_spec("10.0.2.2 lladdr 52:55:0a:00:02:02 dev eth0 state 0x80").unwrap();
        assert_eq!(n.toIPAddress.address, "10.0.2.2");
        assert_eq!(
            (n.lladdr.as_str(), n.device.as_str()),
            ("52:55:0a:00:02:02", "eth0")
        );
        assert_eq!(n.state, 0x80);
        assert!(neighbor_spec("10.0.2.2 lladdr 52:55:0a:00:02:02").is_err());
        assert!(neighbor_spec("10.0.2.2 dev eth0 state lots").is_err());
        let a = address_arg("2001:db8::2/64").unwrap();
        assert_eq!(a.family, FamilyJson::Number(1));
        assert!(address_arg("10.0.2.15").is_err());
    }

    #[test]
    fn interface_flags_override_the_file_and_need_a_selector() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("iface.json");
        std::fs::write(
            &file,
            r#"{"name":"eth0","hwAddr":"52:54:00:12:34:56","mtu":1500,
                "IPAddresses":[{"family":0,"address":"10.0.2.15","mask":"24"}],"raw_flags":4099}"#,
        )
        .unwrap();
        let mut args = UpdateInterfaceArgs {
            file: Some(file),
            mac: None,
            pci_path: None,
            device: None,
            name: None,
            mtu: Some(1400),
            addresses: vec![],
            raw_flags: None,
        };
        let i = interface_from_args(&args).unwrap();
        assert_eq!((i.name.as_str(), i.mtu, i.raw_flags), ("eth0", 1400, 4099));
        assert_eq!(i.IPAddresses[0].address, "10.0.2.15");
        args.file = None;
        let err = interface_from_args(&args).unwrap_err().to_string();
        assert!(err.contains("--mac"), "{err}");
    }

    #[test]
    fn json_lists_are_taken_bare_or_wrapped_and_unknown_fields_refused() {
        let wrapped: ListJson<RouteJson> = serde_json::from_str(
            r#"{"Routes":[{"dest":"","gateway":"10.0.2.2","device":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(wrapped.into_vec()[0].gateway, "10.0.2.2");
        let bare: ListJson<NeighborJson> = serde_json::from_str(
            r#"[{"toIPAddress":{"address":"10.0.2.2"},"device":"eth0","lladdr":"52:55:0a:00:02:02"}]"#,
        )
        .unwrap();
        assert_eq!(bare.into_vec()[0].device, "eth0");
        assert!(serde_json::from_str::<InterfaceJson>(r#"{"hwaddr":"x"}"#).is_err());
        let named: RouteJson = serde_json::from_str(r#"{"family":"v6","device":"eth0"}"#).unwrap();
        assert_eq!(
            named.to_proto().unwrap().family.enum_value(),
            Ok(IPFamily::v6)
        );
    }

    #[test]
    fn reports_print_like_iproute2_and_json_in_kata_names() {
        let routes = RoutesReport::from(&vec![
            route_spec("default via 10.0.2.2 dev eth0").unwrap(),
            route_spec("10.0.2.0/24 dev eth0 src 10.0.2.15").unwrap(),
        ]);
        assert_eq!(
            render(&routes, Format::Human),
            "default via 10.0.2.2 dev eth0\n10.0.2.0/24 dev eth0 src 10.0.2.15 scope link\n"
        );
        assert_eq!(routes.json()["Routes"][0]["gateway"], "10.0.2.2");
        assert_eq!(routes.json()["Routes"][1]["scope"], RT_SCOPE_LINK);

        let iface = InterfaceJson {
            name: "eth0".into(),
            hw_addr: "52:54:00:12:34:56".into(),
            mtu: 1500,
            raw_flags: 0x11043,
            ip_addresses: vec![address_arg("10.0.2.15/24").unwrap()],
            ..Default::default()
        };
        let report = InterfacesReport {
            interfaces: vec![iface],
        };
        assert_eq!(
            render(&report, Format::Human),
            "eth0 52:54:00:12:34:56 mtu 1500 <UP,BROADCAST,RUNNING,MULTICAST,LOWER_UP> 10.0.2.15/24\n"
        );
        let json = report.json();
        assert_eq!(json["Interfaces"][0]["hwAddr"], "52:54:00:12:34:56");
        assert_eq!(json["Interfaces"][0]["IPAddresses"][0]["mask"], "24");
        assert_eq!(json["Interfaces"][0]["raw_flags"], 0x11043);
    }
}

//! The network module against a real kernel, without touching the host's network: each
//! test runs on its own thread moved into a fresh network namespace (`unshare
//! CLONE_NEWNET`, which needs root), with its own tokio runtime, so every netlink socket
//! it opens lives in that namespace. The namespace ends with the thread. The links are
//! veth pairs (the host kernel has no `dummy`); each pair is brought up on both ends, so
//! routes through them are not marked link-down.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use super::addr::{IpNet, Mac, Prefix};
use super::interface::{InterfaceSpec, InterfaceState, LinkSelector};
use super::neighbor::{NUD_PERMANENT, NeighborSpec};
use super::netlink::{Link, Netlink, neighbour_destination};
use super::route::RouteEntry;
use super::{Loopback, Network, NetworkError, NetworkSettings};

const IFF_UP: u32 = 0x1;
const IFF_NOARP: u32 = 0x80;
/// IFF_RUNNING, IFF_LOWER_UP, IFF_DORMANT: operational state, which the kernel updates
/// shortly after a link comes up, so a link bounced by a rollback regains them a moment
/// later.
const OPERATIONAL: u32 = 0x40 | 0x10000 | 0x20000;
const RT_SCOPE_LINK: u8 = 253;

/// Runs `test` in a new network namespace on a thread of its own.
fn in_netns<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let outcome = std::thread::spawn(move || {
        // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only this thread into
        // a new network namespace, which the thread's end releases.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            panic!(
                "cannot create a network namespace (these tests need root): {}",
                std::io::Error::last_os_error()
            );
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        runtime.block_on(test());
    })
    .join();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The test's own view of the namespace, beside the [`Network`] under test.
struct Ns {
    nl: Netlink,
}

impl Ns {
    fn new() -> Self {
        Self {
            nl: Netlink::connect().expect("netlink"),
        }
    }

    /// Creates the veth pair `a`/`b`, both up; returns `a`.
    async fn veth(&self, a: &str, b: &str) -> Link {
        self.nl
            .handle()
            .link()
            .add(rtnetlink::LinkVeth::new(a, b).build())
            .execute()
            .await
            .expect("creating a veth pair");
        for name in [a, b] {
            let link = self.link(name).await;
            self.nl
                .set_link(
                    format!("bringing {name} up"),
                    rtnetlink::LinkUnspec::new_with_index(link.index)
                        .up()
                        .build(),
                )
                .await
                .expect("link up");
        }
        self.link(a).await
    }

    async fn link(&self, name: &str) -> Link {
        self.nl
            .link_by_name(name)
            .await
            .expect("listing links")
            .unwrap_or_else(|| panic!("no link {name}"))
    }

    async fn has_link(&self, name: &str) -> bool {
        self.nl.link_by_name(name).await.expect("links").is_some()
    }

    /// Every address of link `index` as the kernel has it, the kernel's own included.
    async fn all_addresses(&self, index: u32) -> Vec<IpNet> {
        let mut list: Vec<IpNet> = self
            .nl
            .addresses(Some(index))
            .await
            .expect("addresses")
            .into_iter()
            .map(|a| a.net)
            .collect();
        list.sort_by_key(|a| a.to_string());
        list
    }

    /// The link-layer address of the neighbour `ip` on link `index`, if there is one.
    async fn neighbour(&self, index: u32, ip: &str) -> Option<Vec<u8>> {
        let ip: IpAddr = ip.parse().unwrap();
        let entries = self.nl.neighbours(index, ip).await.expect("neighbours");
        let entry = entries.first()?;
        assert_eq!(neighbour_destination(entry), Some(ip));
        Some(
            entry
                .attributes
                .iter()
                .find_map(|a| match a {
                    rtnetlink::packet_route::neighbour::NeighbourAttribute::LinkLayerAddress(l) => {
                        Some(l.clone())
                    }
                    _ => None,
                })
                .unwrap_or_default(),
        )
    }

    /// Disables IPv6 on link `name` through this namespace's /proc/sys/net.
    fn disable_ipv6(&self, name: &str) {
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1")
            .expect("disabling IPv6");
    }
}

fn net(text: &str) -> IpNet {
    let (addr, len) = text.split_once('/').unwrap();
    IpNet::new(addr.parse().unwrap(), len.parse().unwrap()).unwrap()
}

fn spec_by_mac(mac: Mac) -> InterfaceSpec {
    InterfaceSpec {
        selector: LinkSelector::Mac(mac),
        mac: None,
        name: Some("eth0".into()),
        mtu: Some(1400),
        addresses: vec![net("10.1.0.2/24"), net("2001:db8::2/64")],
        raw_flags: 0,
    }
}

fn route(dest: &str, gateway: Option<&str>, device: &str) -> RouteEntry {
    let gw: Option<IpAddr> = gateway.map(|g| g.parse().unwrap());
    let family = match (dest, gw) {
        ("default", Some(IpAddr::V6(_))) => super::addr::Family::V6,
        ("default", _) => super::addr::Family::V4,
        (d, _) if d.contains(':') => super::addr::Family::V6,
        _ => super::addr::Family::V4,
    };
    RouteEntry {
        dest: Prefix::parse(dest, family).unwrap(),
        gateway: gw,
        device: device.into(),
        source: None,
        scope: 0,
        flags: 0,
        mtu: 0,
    }
}

fn sorted(mut routes: Vec<RouteEntry>) -> Vec<String> {
    let mut list: Vec<String> = routes.drain(..).map(|r| format!("{r:?}")).collect();
    list.sort();
    list
}

/// The configuration `list` holds, without the operational flags.
fn configured_states(list: Vec<InterfaceState>) -> Vec<InterfaceState> {
    list.into_iter()
        .map(|mut i| {
            i.flags &= !OPERATIONAL;
            i
        })
        .collect()
}

fn configured_state(mut state: InterfaceState) -> InterfaceState {
    state.flags &= !OPERATIONAL;
    state
}

fn sorted_addresses(state: &InterfaceState) -> Vec<String> {
    let mut list: Vec<String> = state.addresses.iter().map(|a| a.to_string()).collect();
    list.sort();
    list
}

/// v0 configured as eth0 with 10.1.0.2/24 and 2001:db8::2/64, MTU 1400, up.
async fn configured(ns: &Ns, network: &Network) -> (Link, InterfaceState) {
    let v0 = ns.veth("v0", "v1").await;
    let state = network
        .update_interface(&spec_by_mac(v0.mac.unwrap()))
        .await
        .expect("UpdateInterface");
    (v0, state)
}

#[test]
fn loopback_is_brought_up_once() {
    in_netns(|| async {
        let network = Network::default();
        assert_eq!(network.start().await.unwrap(), Loopback::BroughtUp);
        assert_eq!(network.start().await.unwrap(), Loopback::AlreadyUp);
        let list = network.list_interfaces().await.unwrap();
        let lo = list.iter().find(|i| i.name == "lo").expect("lo listed");
        assert_ne!(lo.flags & IFF_UP, 0, "{lo:?}");
        assert!(lo.addresses.contains(&IpNet {
            addr: "127.0.0.1".parse().unwrap(),
            prefix_len: 8
        }));
    });
}

#[test]
fn update_interface_by_mac_sets_everything_and_lists_exactly_that() {
    in_netns(|| async {
        let ns = Ns::new();
        let network = Network::default();
        let (v0, state) = configured(&ns, &network).await;

        assert_eq!(state.name, "eth0");
        assert_eq!(state.mac, v0.mac);
        assert_eq!(state.mtu, 1400);
        assert_eq!(state.kind, "veth");
        assert_ne!(state.flags & IFF_UP, 0);
        assert_eq!(state.flags & IFF_NOARP, 0);
        assert_eq!(sorted_addresses(&state), ["10.1.0.2/24", "2001:db8::2/64"]);
        assert!(!ns.has_link("v0").await);

        let listed = network.list_interfaces().await.unwrap();
        let eth0 = listed
            .iter()
            .find(|i| i.name == "eth0")
            .expect("eth0 listed");
        assert_eq!(
            configured_state(eth0.clone()),
            configured_state(state.clone())
        );
        assert_eq!(
            listed.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["eth0", "lo", "v1"]
        );

        // A second update replaces the addresses: old ones go, the kernel's own IPv6
        // link-local address stays (and is not reported).
        let mut spec = spec_by_mac(v0.mac.unwrap());
        spec.addresses = vec![net("10.1.0.3/24"), net("10.1.0.4/24")];
        spec.raw_flags = IFF_UP | IFF_NOARP;
        let state = network.update_interface(&spec).await.unwrap();
        assert_eq!(sorted_addresses(&state), ["10.1.0.3/24", "10.1.0.4/24"]);
        assert_ne!(state.flags & IFF_NOARP, 0, "NOARP follows raw_flags");
        let everything = ns.all_addresses(v0.index).await;
        assert!(
            everything.iter().any(|a| a.is_ipv6_link_local()),
            "the kernel's link-local address was removed: {everything:?}"
        );
        assert!(!everything.contains(&net("10.1.0.2/24")));
    });
}

#[test]
fn unknown_mac_is_not_found_and_changes_nothing() {
    in_netns(|| async {
        let ns = Ns::new();
        let network = Network::default();
        let (_, before) = configured(&ns, &network).await;
        let err = network
            .update_interface(&spec_by_mac("02:00:00:00:00:99".parse().unwrap()))
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::NotFound(_)), "{err}");
        assert!(err.to_string().contains("02:00:00:00:00:99"), "{err}");
        let after = configured_states(network.list_interfaces().await.unwrap());
        assert!(after.contains(&configured_state(before)));
    });
}

#[test]
fn a_rejected_mtu_rolls_back_the_rename_and_the_routes() {
    in_netns(|| async {
        let ns = Ns::new();
        let network = Network::default();
        let (v0, before) = configured(&ns, &network).await;
        let routes = network
            .update_routes(&[route("default", Some("10.1.0.1"), "eth0")])
            .await
            .unwrap();
        assert_eq!(routes.len(), 1);

        // Renaming needs the link down, which also drops its routes; the MTU then fails.
        let spec = InterfaceSpec {
            name: Some("wan0".into()),
            mtu: Some(70000),
            addresses: vec![net("10.9.9.9/24")],
            ..spec_by_mac(v0.mac.unwrap())
        };
        let err = network.update_interface(&spec).await.unwrap_err();
        assert_eq!(err.errno(), Some(libc::EINVAL), "{err}");
        let text = err.to_string();
        assert!(text.contains("MTU") && text.contains("70000"), "{text}");
        assert!(text.contains("accepts 68 to 65535"), "{text}");

        let after = configured_states(network.list_interfaces().await.unwrap());
        assert!(after.contains(&configured_state(before)), "{after:#?}");
        assert!(!ns.has_link("wan0").await);
        assert_eq!(network.list_routes().await.unwrap(), routes);
    });
}

#[test]
fn an_address_the_kernel_refuses_rolls_back_the_others() {
    in_netns(|| async {
        let ns = Ns::new();
        let network = Network::default();
        let (v0, before) = configured(&ns, &network).await;
        // ::1 passes validation but the kernel refuses it on anything but loopback,
        // after the MTU and the first address were applied.
        let spec = InterfaceSpec {
            mtu: Some(1300),
            addresses: vec![net("10.2.0.2/24"), net("::1/128")],
            ..spec_by_mac(v0.mac.unwrap())
        };
        let err = network.update_interface(&spec).await.unwrap_err();
        assert_eq!(err.errno(), Some(libc::EADDRNOTAVAIL), "{err}");
        assert!(err.to_string().contains("::1/128"), "{err}");
        let after = configured_states(network.list_interfaces().await.unwrap());
        assert!(after.contains(&configured_state(before)), "{after:#?}");
    });
}

#[test]
fn a_wanted_name_held_by_another_link_is_swapped() {
    in_netns(|| async {
        let ns = Ns::new();
        let network = Network::default();
        let a = ns.veth("a0", "a1").await;
        let b = ns.veth("b0", "b1").await;
        let spec = InterfaceSpec {
            name: Some("a0".into()),
            mtu: None,
            addresses: vec![],
            ..spec_by_mac(b.mac.unwrap())
        };
        let state = network.update_interface(&spec).await.unwrap();
        assert_eq!(state.name, "a0");
        assert_eq!(state.mac, b.mac);
        let old_a = ns.link("b0").await;
        assert_eq!(old_a.index, a.index, "the holder took our old name");
        assert!(old_a.is_up(), "and kept its up state");

        // Loopback's name is not for taking.
        let spec = InterfaceSpec {
            name: Some("lo".into()),
            ..spec
        };
        let err = network.update_interface(&spec).await.unwrap_err();
        assert!(matches!(err, NetworkError::Invalid { .. }), "{err}");
        assert!(ns.link("lo").await.is_loopback());
    });
}

#[test]
fn a_link_is_found_by_name_or_by_pci_path_and_given_the_wanted_mac() {
    in_netns(|| async {
        let ns = Ns::new();
        let v0 = ns.veth("v0", "v1").await;
        let sysfs = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(
            sysfs
                .path()
                .join("devices/pci0000:00/0000:00:05.0/virtio3/net/v0"),
        )
        .unwrap();
        let network = Network::new(NetworkSettings {
            sysfs: sysfs.path().to_path_buf(),
            hotplug_timeout: Duration::from_millis(200),
        });
        let wanted: Mac = "02:00:00:00:05:00".parse().unwrap();
        let spec = InterfaceSpec {
            selector: LinkSelector::PciPath("05".parse().unwrap()),
            mac: Some(wanted),
            name: None,
            mtu: None,
            addresses: vec![net("10.5.0.2/24")],
            raw_flags: 0,
        };
        let state = network.update_interface(&spec).await.unwrap();
        assert_eq!((state.name.as_str(), state.mac), ("v0", Some(wanted)));
        assert_eq!(ns.link("v0").await.index, v0.index);

        let missing = InterfaceSpec {
            selector: LinkSelector::PciPath("06".parse().unwrap()),
            ..spec.clone()
        };
        let err = network.update_interface(&missing).await.unwrap_err();
        assert!(matches!(err, NetworkError::NotFound(_)), "{err}");

        let by_name = InterfaceSpec {
            selector: LinkSelector::Name("v0".into()),
            mac: None,
            mtu: Some(1280),
            ..spec
        };
        assert_eq!(network.update_interface(&by_name).await.unwrap().mtu, 1280);
    });
}

#[test]
fn update_routes_replaces_the_table_in_a_working_order() {
    in_netns(|| async {
        let ns = Ns::new();
        let network = Network::default();
        configured(&ns, &network).await;

        // The gateway 10.7.0.1 is reachable only through the link route after it in the
        // request: link routes must go in first.
        let mut mtu_route = route("10.5.0.0/16", Some("10.1.0.254"), "eth0");
        mtu_route.mtu = 1300;
        let mut subnet = route("10.1.0.0/24", None, "eth0");
        subnet.scope = RT_SCOPE_LINK;
        subnet.source = Some("10.1.0.2".parse().unwrap());
        let mut link_route = route("10.7.0.0/24", None, "eth0");
        link_route.scope = RT_SCOPE_LINK;
        let wanted = vec![
            route("default", Some("10.7.0.1"), "eth0"),
            mtu_route,
            subnet,
            link_route,
            route("2001:db8:1::/48", Some("2001:db8::1"), "eth0"),
        ];
        let answered = network.update_routes(&wanted).await.unwrap();
        assert_eq!(sorted(answered.clone()), sorted(wanted.clone()));
        assert_eq!(network.list_routes().await.unwrap(), answered);

        // A second update removes what the first one set.
        let second = vec![subnet_route(), route("default", Some("10.1.0.1"), "eth0")];
        let answered = network.update_routes(&second).await.unwrap();
        assert_eq!(sorted(answered), sorted(second));

        // An empty list removes every managed route.
        assert!(network.update_routes(&[]).await.unwrap().is_empty());
    });
}

fn subnet_route() -> RouteEntry {
    let mut subnet = route("10.1.0.0/24", None, "eth0");
    subnet.scope = RT_SCOPE_LINK;
    subnet
}

#[test]
fn a_route_the_kernel_refuses_restores_the_previous_routes() {
    in_netns(|| async {
        let ns = Ns::new();
        let network = Network::default();
        configured(&ns, &network).await;
        let before = network
            .update_routes(&[route("default", Some("10.1.0.1"), "eth0")])
            .await
            .unwrap();

        // Valid on its face, but nothing leads to 10.99.0.1.
        let err = network
            .update_routes(&[
                route("10.3.0.0/16", Some("10.1.0.9"), "eth0"),
                route("default", Some("10.99.0.1"), "eth0"),
            ])
            .await
            .unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENETUNREACH), "{err}");
        assert!(err.to_string().contains("10.99.0.1"), "{err}");
        assert_eq!(network.list_routes().await.unwrap(), before);

        let err = network
            .update_routes(&[route("default", Some("10.1.0.1"), "nosuch0")])
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::NotFound(_)), "{err}");
        assert!(err.to_string().contains("routes[0].device"), "{err}");
        assert_eq!(network.list_routes().await.unwrap(), before);
    });
}

#[test]
fn arp_neighbors_are_added_and_a_failure_restores_the_entries() {
    in_netns(|| async {
        let ns = Ns::new();
        let network = Network::default();
        let (v0, _) = configured(&ns, &network).await;
        let mac_x: Mac = "02:00:00:00:00:0a".parse().unwrap();
        let mac_y: Mac = "02:00:00:00:00:0b".parse().unwrap();
        let neighbor = |ip: &str, device: &str, mac: Mac| NeighborSpec {
            ip: ip.parse().unwrap(),
            device: device.into(),
            lladdr: Some(mac),
            state: NUD_PERMANENT,
            flags: 0,
        };
        network
            .add_arp_neighbors(&[
                neighbor("10.1.0.11", "eth0", mac_x),
                neighbor("2001:db8::11", "eth0", mac_x),
            ])
            .await
            .unwrap();
        assert_eq!(
            ns.neighbour(v0.index, "10.1.0.11").await,
            Some(mac_x.0.to_vec())
        );
        assert_eq!(
            ns.neighbour(v0.index, "2001:db8::11").await,
            Some(mac_x.0.to_vec())
        );

        // The kernel refuses IPv6 neighbours on a link with IPv6 disabled: the entries
        // written before (one replaced, one new) are put back as they were.
        ns.disable_ipv6("v1");
        let err = network
            .add_arp_neighbors(&[
                neighbor("10.1.0.11", "eth0", mac_y),
                neighbor("10.1.0.12", "eth0", mac_y),
                neighbor("2001:db8::12", "v1", mac_y),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::Kernel { .. }), "{err}");
        assert!(err.to_string().contains("2001:db8::12"), "{err}");
        assert_eq!(
            ns.neighbour(v0.index, "10.1.0.11").await,
            Some(mac_x.0.to_vec())
        );
        assert_eq!(ns.neighbour(v0.index, "10.1.0.12").await, None);

        let err = network
            .add_arp_neighbors(&[neighbor("10.1.0.13", "nosuch0", mac_y)])
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::NotFound(_)), "{err}");
    });
}

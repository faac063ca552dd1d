//! Network namespaces for tests that must not touch the host's network: a thread moves
//! itself into a fresh namespace (what it spawns inherits it), and makes a veth pair
//! there through rtnetlink. The namespace ends with the last thread or process in it.

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};

/// Moves the calling thread (and the processes it spawns from now on) into a new
/// network namespace. Fails the test, saying root is needed, if it cannot.
pub fn enter_new_network_namespace() {
    // SAFETY: unshare(2) takes no pointers; CLONE_NEWNET moves only this thread into a
    // new network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        panic!(
            "cannot create a network namespace (this test needs root): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A veth pair made by [`veth_pair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPair {
    /// The end left down, for the agent to configure.
    pub name: String,
    /// Its MAC, lower-case colon-separated hex.
    pub mac: String,
    /// The other end, up.
    pub peer: String,
}

/// Creates the veth pair `name`/`peer` in the calling thread's network namespace, with
/// `peer` up, on a runtime of its own (netlink sockets belong to the namespace they are
/// opened in).
pub fn veth_pair(name: &str, peer: &str) -> VethPair {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for netlink");
    runtime.block_on(make_veth_pair(name, peer))
}

async fn make_veth_pair(name: &str, peer: &str) -> VethPair {
    let (connection, handle, _) = rtnetlink::new_connection().expect("a netlink socket");
    tokio::spawn(connection);
    handle
        .link()
        .add(rtnetlink::LinkVeth::new(name, peer).build())
        .execute()
        .await
        .unwrap_or_else(|e| panic!("creating the veth pair {name}/{peer}: {e}"));
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .expect("listing links");
    let named = |wanted: &str| {
        links
            .iter()
            .find(|m| {
                m.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::IfName(n) if n == wanted))
            })
            .unwrap_or_else(|| panic!("link {wanted} after creating it"))
    };
    handle
        .link()
        .set(
            rtnetlink::LinkUnspec::new_with_index(named(peer).header.index)
                .up()
                .build(),
        )
        .execute()
        .await
        .unwrap_or_else(|e| panic!("setting {peer} up: {e}"));
    let mac = named(name)
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(bytes) => Some(bytes.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} has no MAC"));
    VethPair {
        name: name.to_string(),
        mac: mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        peer: peer.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_veth_pair_in_a_fresh_namespace() {
        let pair = std::thread::spawn(|| {
            super::enter_new_network_namespace();
            super::veth_pair("t0", "t1")
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        assert_eq!((pair.name.as_str(), pair.peer.as_str()), ("t0", "t1"));
        assert_eq!(pair.mac.len(), 17, "{}", pair.mac);
        assert_eq!(pair.mac, pair.mac.to_lowercase());
        // The host's namespace has no such link.
        assert!(!std::path::Path::new("/sys/class/net/t0").exists());
    }
}

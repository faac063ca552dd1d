//! The test kit: fixtures shared by hull's host tests (the agent's, hull-ctl's, the
//! runtime's) and by the end-to-end tests' bad-input tables.
//!
//! | module | what |
//! | --- | --- |
//! | [`agent`] | [`HostAgent`]: the `hull-agent` binary on a Unix socket, plain, in a fresh network namespace with a veth pair, or in private mount and UTS namespaces |
//! | [`in_process`] | [`InProcessAgent`]: the agent's server run by the test itself, on its runtime or on a thread in a fresh network namespace |
//! | [`cli`] | running `hull-ctl` with the test's arguments only |
//! | [`interfaces`] | comparing listed interfaces without the flags the kernel changes |
//! | [`netns`] | a thread in a new network namespace, and a veth pair made there |
//! | [`rootfs`] | [`BusyboxRootfs`], a temporary busybox root; the host's cgroup2 root |
//! | [`spec`] | [`container_spec`]: the least a busybox container's spec needs, in protobuf |
//! | [`refusal`] | bad-input tables: one row per request, expected code and message fragment |
//! | [`require`] | checks that fail a test naming what this host lacks (root, a tool, a file) |
//!
//! Every fixture owns what it started: dropping it (also while a test panics) kills its
//! processes, stops its threads and removes its temporary files.

// The test kit is a dev-dependency only: its fixtures run inside tests, where a failed
// `expect` is a failed test naming what went wrong, which is exactly what a fixture
// that cannot set up should do. The workspace's unwrap/expect lints are for production
// code, so they are allowed here once rather than on every call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod cli;
pub mod in_process;
pub mod interfaces;
pub mod netns;
pub mod refusal;
pub mod require;
pub mod rootfs;
pub mod spec;

use std::sync::atomic::{AtomicU32, Ordering};

pub use agent::HostAgent;
pub use in_process::InProcessAgent;
pub use refusal::{Refusal, assert_refused, check_all, check_refused, refusal};
pub use rootfs::{BusyboxRootfs, cgroup_root};
pub use spec::container_spec;

/// `name-<pid>-<n>`: a name no other test of this run (or of a concurrent run) uses.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits up to `deadline` for `socket` to appear, failing the test with `what` if it
/// does not.
pub(crate) fn wait_for_socket(socket: &std::path::Path, what: &str) {
    let deadline = std::time::Duration::from_secs(10);
    let start = std::time::Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < deadline,
            "{what}: no socket at {} after {deadline:?}",
            socket.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_names_differ() {
        let a = super::unique("x");
        let b = super::unique("x");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("x-{}-", std::process::id())), "{a}");
    }
}

//! hull-agent: the guest agent of hull, serving the Kata Containers agent API over ttRPC.
//!
//! The path of a request: [`server`] accepts it, [`rpc`] turns protobuf into domain calls
//! on the [`sandbox`], which owns the guest's state: storages ([`storage`], with [`device`]
//! to find disks, [`mount`] and [`fs`] to mount them confined beneath the agent's
//! directory), the [`network`], and what `CreateSandbox` set up. [`config`] is read once
//! at start-up; [`logging`] sends structured logs to the console or to the host over vsock;
//! [`stdio_ports`] takes the vsock connections that carry processes' stdio (Kata's passfd io).
//! Containers live in the `hull-container` crate (spec → plan → a re-exec'd helper builds
//! them; reaping and stdio in `hull_container::process`), which the runc-compatible CLI
//! `hull-runtime` (its own crate, `runtime/`) shares. Host-facing guest services beside
//! the sandbox: [`fs::copy`] (`CopyFile`), [`guest_clock`] (`SetGuestDateTime`),
//! [`entropy`] (`ReseedRandomDev`) and [`metrics`] (`GetMetrics`).

/// The cargo features this hull-agent was built with, as `hull-agent --version` lists them.
pub const BUILD_FEATURES: &[&str] = &[
    #[cfg(feature = "policy")]
    hull_common::agent_build::POLICY_FEATURE,
];

pub mod allocator;
pub mod config;
pub mod debug_console;
pub mod device;
pub mod diagnostic;
pub mod entropy;
pub mod error;
pub mod fs;
pub mod guest_clock;
pub mod hooks;
pub mod iptables;
pub mod logging;
pub mod mem_agent;
pub mod metrics;
pub mod mount;
pub mod network;
pub mod policy;
pub mod rpc;
pub mod sandbox;
pub mod server;
pub mod stdio_ports;
pub mod storage;
pub mod swap;

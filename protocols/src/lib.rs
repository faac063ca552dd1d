//! Hull's agent API: Kata-compatible protobuf messages and ttRPC services,
//! plus the host-side plumbing to reach the agent.
//!
//! # Generated modules
//!
//! Built at compile time from `protos/*.proto` by `ttrpc-codegen` (pure Rust,
//! no `protoc`), with async client and async server code:
//!
//! | module | contents |
//! | --- | --- |
//! | [`agent`] | `AgentService` request/response messages (`grpc` package) |
//! | [`agent_ttrpc`] | `AgentServiceClient`, trait `AgentService`, `create_agent_service` |
//! | [`health`] | `CheckRequest`, `HealthCheckResponse`, `VersionCheckResponse` |
//! | [`health_ttrpc`] | `HealthClient`, trait `Health`, `create_health` |
//! | [`oci`] | the OCI runtime spec (`Spec`, `Process`, `Linux`, ...) |
//! | [`types`] | network types (`Interface`, `Route`, `ARPNeighbor`, ...; `types` package) |
//! | [`csi`] | volume statistics (`VolumeStatsResponse`, ...) |
//!
//! `google.protobuf.Empty` maps to [`protobuf::well_known_types::empty::Empty`].
//! The crates the generated code is written against are re-exported
//! ([`ttrpc`], [`protobuf`], [`async_trait`]) so that users implement the
//! service traits with exactly the same versions.
//!
//! # Hand-written modules
//!
//! - [`address`]: [`address::AgentAddress`] (`unix://`, `vsock://`, `hvsock://`).
//! - [`dial`]: [`dial::connect`], a retrying connector returning a ttRPC client.
//! - [`client`]: [`client::AgentClient`], a typed client with a method for every RPC,
//!   per-call timeouts and errors that keep the ttRPC status.
//! - [`oci_json`]: the OCI runtime spec both ways, `config.json` ⇄ [`oci`].

#[allow(
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    clippy::restriction,
    rustdoc::all
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/hull_protocols/mod.rs"));
}

pub use generated::{agent, agent_ttrpc, csi, health, health_ttrpc, oci, types};

pub mod address;
pub mod client;
pub mod dial;
pub mod oci_json;

pub use address::AgentAddress;
pub use client::{AgentClient, ClientError, Stream};
pub use dial::DialError;

pub use async_trait;
pub use oci_spec;
pub use protobuf;
pub use ttrpc;

/// Full ttRPC service names, as they appear in method paths
/// (`/grpc.AgentService/CreateContainer`).
pub mod service_names {
    /// `grpc.AgentService`.
    pub const AGENT_SERVICE: &str = "grpc.AgentService";
    /// `grpc.Health`.
    pub const HEALTH: &str = "grpc.Health";
}

//! hull-agent: the guest agent of hull, serving the Kata Containers agent API over ttRPC.
//!
//! The path of a request: [`server`] accepts it, [`rpc`] turns protobuf into domain calls
//! on the [`sandbox`], which owns the guest's state (its [`network`] among it). [`config`] is read once at start-up;
//! [`logging`] sends structured logs to the console or to the host over vsock.

pub mod config;
pub mod debug_console;
pub mod error;
pub mod guest;
pub mod logging;
pub mod network;
pub mod rpc;
pub mod sandbox;
pub mod server;

//! What hull's fuzz targets share: the agent's request path from a ttRPC frame to its
//! domain types, without the handlers that would act on the guest (mount, create
//! containers, touch the network).
//!
//! [`frames`] reads frames exactly as ttRPC's server connection does
//! (`GenMessage::read_from`: header, oversize check, body), decodes each request's
//! envelope and hands the payload to [`dispatch`], which decodes it as the method's request
//! message and runs the agent's RPC-layer conversion the real handler starts with.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use hull_agent::device::container::{ContainerDevice, check_in_spec};
use hull_agent::diagnostic::LogType;
use hull_agent::mem_agent::config::{CompactConfig, MemcgConfig};
use hull_agent::rpc::{
    IMPLEMENTED_AGENT_METHODS, container, cpu_mem, guest, guest_admin, network, sandbox, storage,
    volume,
};
use hull_agent::storage::{StorageRegistry, StorageSpec};
use hull_protocols::agent;
use hull_protocols::health;
use protobuf::Message;
use ttrpc::proto::{GenMessage, GenMessageError, MESSAGE_TYPE_DATA, MESSAGE_TYPE_REQUEST};

/// The agent's directory, against which storage mount points are checked.
pub const RUN_DIR: &str = "/run/kata-containers";

/// Checks every storage the way the sandbox does before mounting anything.
fn check_storages(storages: &[agent::Storage]) {
    let registry = StorageRegistry::new();
    for s in storages {
        if let Ok(request) = storage::storage_request(s) {
            let _ = StorageSpec::check(&request, &registry, Path::new(RUN_DIR));
        }
    }
}

fn decode<M: Message>(payload: &[u8]) -> Option<M> {
    M::parse_from_bytes(payload).ok()
}

/// Decodes `payload` as the request message of `service`/`method` and converts it the way
/// the agent's handler does before acting. Returns whether the method is one the agent
/// serves (an unknown method is answered by ttRPC itself).
pub fn dispatch(service: &str, method: &str, payload: &[u8]) -> bool {
    match (service, method) {
        ("grpc.Health", "Check" | "Version") => {
            let _ = decode::<health::CheckRequest>(payload);
        }
        ("grpc.AgentService", method) => return agent_method(method, payload),
        _ => return false,
    }
    true
}

fn agent_method(method: &str, payload: &[u8]) -> bool {
    match method {
        "CreateSandbox" => {
            if let Some(req) = decode::<agent::CreateSandboxRequest>(payload) {
                let _ = sandbox::sandbox_request(&req);
                check_storages(&req.storages);
            }
        }
        "CreateContainer" => {
            if let Some(req) = decode::<agent::CreateContainerRequest>(payload) {
                if let Ok(request) = container::container_request(&req)
                    && let Ok(devices) = ContainerDevice::parse_all(&request.devices)
                {
                    let _ = check_in_spec(&request.spec, &devices);
                }
                check_storages(&req.storages);
            }
        }
        "ExecProcess" => {
            if let Some(req) = decode::<agent::ExecProcessRequest>(payload) {
                let _ = container::exec_process(&req);
            }
        }
        "SignalProcess" => {
            if let Some(req) = decode::<agent::SignalProcessRequest>(payload) {
                let _ = container::signal(req.signal);
            }
        }
        "UpdateContainer" => {
            if let Some(req) = decode::<agent::UpdateContainerRequest>(payload) {
                let _ = container::resources(req.resources.as_ref());
            }
        }
        "TtyWinResize" => {
            if let Some(req) = decode::<agent::TtyWinResizeRequest>(payload) {
                let _ = container::window_size(req.row, req.column);
            }
        }
        "UpdateInterface" => {
            if let Some(req) = decode::<agent::UpdateInterfaceRequest>(payload) {
                let _ = network::interface_spec(req.interface.as_ref());
            }
        }
        "UpdateRoutes" => {
            if let Some(req) = decode::<agent::UpdateRoutesRequest>(payload) {
                let routes = req.routes.as_ref().map(|r| r.Routes.as_slice());
                let _ = network::route_specs(routes.unwrap_or_default());
            }
        }
        "AddARPNeighbors" => {
            if let Some(req) = decode::<agent::AddARPNeighborsRequest>(payload) {
                let neighbors = req.neighbors.as_ref().map(|n| n.ARPNeighbors.as_slice());
                let _ = network::neighbor_specs(neighbors.unwrap_or_default());
            }
        }
        "GetGuestDetails" => {
            let _ = decode::<agent::GuestDetailsRequest>(payload);
        }
        "DestroySandbox" => {
            let _ = decode::<agent::DestroySandboxRequest>(payload);
        }
        "ListInterfaces" => {
            let _ = decode::<agent::ListInterfacesRequest>(payload);
        }
        "ListRoutes" => {
            let _ = decode::<agent::ListRoutesRequest>(payload);
        }
        "StartContainer" => {
            let _ = decode::<agent::StartContainerRequest>(payload);
        }
        "RemoveContainer" => {
            let _ = decode::<agent::RemoveContainerRequest>(payload);
        }
        "WaitProcess" => {
            let _ = decode::<agent::WaitProcessRequest>(payload);
        }
        "StatsContainer" => {
            let _ = decode::<agent::StatsContainerRequest>(payload);
        }
        "PauseContainer" => {
            let _ = decode::<agent::PauseContainerRequest>(payload);
        }
        "ResumeContainer" => {
            let _ = decode::<agent::ResumeContainerRequest>(payload);
        }
        "WriteStdin" => {
            let _ = decode::<agent::WriteStreamRequest>(payload);
        }
        "ReadStdout" | "ReadStderr" => {
            let _ = decode::<agent::ReadStreamRequest>(payload);
        }
        "CloseStdin" => {
            let _ = decode::<agent::CloseStdinRequest>(payload);
        }
        "GetOOMEvent" => {
            let _ = decode::<agent::GetOOMEventRequest>(payload);
        }
        "UpdateEphemeralMounts" => {
            if let Some(req) = decode::<agent::UpdateEphemeralMountsRequest>(payload) {
                let _ = volume::ephemeral_updates(&req);
                check_storages(&req.storages);
            }
        }
        "CopyFile" => {
            if let Some(req) = decode::<agent::CopyFileRequest>(payload) {
                let _ = guest::copy_request(req);
            }
        }
        "SetGuestDateTime" => {
            if let Some(req) = decode::<agent::SetGuestDateTimeRequest>(payload) {
                let _ = guest::wall_time(&req);
            }
        }
        "OnlineCPUMem" => {
            if let Some(req) = decode::<agent::OnlineCPUMemRequest>(payload) {
                let _ = cpu_mem::online_request(&req);
            }
        }
        "MemHotplugByProbe" => {
            if let Some(req) = decode::<agent::MemHotplugByProbeRequest>(payload) {
                let _ = cpu_mem::probe_addresses(&req);
            }
        }
        "MemAgentMemcgSet" => {
            if let Some(req) = decode::<agent::MemAgentMemcgConfig>(payload) {
                let _ = guest_admin::memcg_update(&req).apply(&MemcgConfig::default());
            }
        }
        "MemAgentCompactSet" => {
            if let Some(req) = decode::<agent::MemAgentCompactConfig>(payload) {
                let _ = guest_admin::compact_update(&req).apply(&CompactConfig::default());
            }
        }
        "GetDiagnosticData" => {
            if let Some(req) = decode::<agent::GetDiagnosticDataRequest>(payload) {
                let _ = LogType::parse(&req.log_type);
            }
        }
        "GetIPTables" => {
            let _ = decode::<agent::GetIPTablesRequest>(payload);
        }
        "SetIPTables" => {
            let _ = decode::<agent::SetIPTablesRequest>(payload);
        }
        "GetVolumeStats" => {
            let _ = decode::<agent::VolumeStatsRequest>(payload);
        }
        "ResizeVolume" => {
            let _ = decode::<agent::ResizeVolumeRequest>(payload);
        }
        "AddSwap" => {
            let _ = decode::<agent::AddSwapRequest>(payload);
        }
        "AddSwapPath" => {
            let _ = decode::<agent::AddSwapPathRequest>(payload);
        }
        "RemoveStaleVirtiofsShareMounts" => {
            let _ = decode::<agent::RemoveStaleVirtiofsShareMountsRequest>(payload);
        }
        "GetMetrics" => {
            let _ = decode::<agent::GetMetricsRequest>(payload);
        }
        "ReseedRandomDev" => {
            let _ = decode::<agent::ReseedRandomDevRequest>(payload);
        }
        // The Rego text itself is the `policy` target's.
        "SetPolicy" => {
            let _ = decode::<agent::SetPolicyRequest>(payload);
        }
        _ => return false,
    }
    true
}

/// One input for the per-method target: the first byte picks the method (an index into
/// the agent's own [`IMPLEMENTED_AGENT_METHODS`]), the rest is the request message.
pub fn agent_requests(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let method = IMPLEMENTED_AGENT_METHODS[usize::from(pick) % IMPLEMENTED_AGENT_METHODS.len()];
    dispatch("grpc.AgentService", method, payload);
}

/// A policy as `SetPolicy` carries it: compiled as Rego, and when it compiles, asked
/// about an ExecProcess request (the JSON input Kata's policies see).
pub fn policy(data: &[u8]) {
    let Ok(rego) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut policy) = hull_agent::policy::Policy::from_rego(rego) {
        let input = serde_json::json!({
            "container_id": "c1",
            "exec_id": "e1",
            "process": { "Args": ["sh", "-c", "true"], "Cwd": "/" },
        });
        let _ = policy.check("ExecProcessRequest", &input);
    }
}

/// Polls a future over an in-memory reader, which never waits, to its end.
fn run_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// What a connection's reader made of a byte stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Requests whose envelope decoded and whose method exists.
    pub dispatched: usize,
    /// Frames refused for an oversized length (the body was skipped).
    pub oversized: usize,
    /// Data frames on a stream no request opened.
    pub orphan_data: usize,
}

/// Reads `bytes` as a ttRPC connection's inbound stream: frame after frame (requests and
/// data frames of interleaved streams) until the stream ends or a frame is truncated.
pub fn frames(bytes: &[u8]) -> FrameStats {
    let mut reader = bytes;
    let mut stats = FrameStats::default();
    // Stream id → the method its request named.
    let mut streams: HashMap<u32, String> = HashMap::new();
    while let Some(read) = run_ready(GenMessage::read_from(&mut reader)) {
        let message = match read {
            Ok(message) => message,
            Err(GenMessageError::ReturnError(..)) => {
                stats.oversized += 1;
                continue;
            }
            Err(GenMessageError::InternalError(_)) => break,
        };
        match message.header.type_ {
            MESSAGE_TYPE_REQUEST => {
                let Ok(request) = ttrpc::Request::parse_from_bytes(&message.payload) else {
                    continue;
                };
                if dispatch(&request.service, &request.method, &request.payload) {
                    stats.dispatched += 1;
                    streams.insert(message.header.stream_id, request.method.clone());
                }
            }
            MESSAGE_TYPE_DATA if !streams.contains_key(&message.header.stream_id) => {
                stats.orphan_data += 1;
            }
            _ => {}
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u32, type_: u8, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(&[type_, 0]);
        out.extend_from_slice(body);
        out
    }

    fn request(method: &str) -> Vec<u8> {
        ttrpc::Request {
            service: "grpc.AgentService".into(),
            method: method.into(),
            ..Default::default()
        }
        .write_to_bytes()
        .unwrap()
    }

    #[test]
    fn frames_dispatch_requests_skip_oversized_frames_and_stop_at_a_truncated_one() {
        let mut bytes = frame(1, MESSAGE_TYPE_REQUEST, &request("StartContainer"));
        bytes.extend(frame(3, MESSAGE_TYPE_DATA, b"x"));
        bytes.extend(frame(1, MESSAGE_TYPE_DATA, b"y"));
        // A frame of 5 MiB (over ttRPC's 4 MiB limit): refused, its body skipped, and the
        // connection reads on.
        bytes.extend(frame(5, MESSAGE_TYPE_REQUEST, &vec![0; 5 << 20]));
        bytes.extend(frame(9, MESSAGE_TYPE_REQUEST, &request("WaitProcess")));
        assert_eq!(
            frames(&bytes),
            FrameStats {
                dispatched: 2,
                oversized: 1,
                orphan_data: 1
            }
        );
        // An oversized header whose body never comes ends the connection.
        let cut = [
            0x00,
            0x50,
            0x00,
            0x00,
            0,
            0,
            0,
            5,
            MESSAGE_TYPE_REQUEST,
            0,
            1,
            2,
        ];
        assert_eq!(frames(&cut), FrameStats::default());
        let whole = frame(7, MESSAGE_TYPE_REQUEST, &request("ReadStdout"));
        assert_eq!(frames(&whole[..whole.len() - 1]).dispatched, 0);
        assert_eq!(frames(&whole).dispatched, 1);
    }

    #[test]
    fn every_method_the_agent_serves_is_decoded() {
        for method in IMPLEMENTED_AGENT_METHODS {
            assert!(
                dispatch("grpc.AgentService", method, b""),
                "{method} is not decoded by the fuzz targets"
            );
        }
        assert!(!dispatch("grpc.AgentService", "NoSuchMethod", b""));
    }

    #[test]
    fn unknown_services_are_not_dispatched() {
        assert!(!dispatch("grpc.Nope", "Check", b""));
        assert!(dispatch("grpc.Health", "Check", b""));
        assert!(dispatch("grpc.AgentService", "CreateSandbox", b"\xff"));
    }
}

//! The agent's RPC layer on the host: the real `hull-agent` binary serving on a Unix
//! socket, driven by the typed client and by hand-made ttRPC frames.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use hull_testkit::HostAgent;
use protobuf::Message;
use ttrpc::Code;

fn start_agent() -> HostAgent {
    HostAgent::start(env!("CARGO_BIN_EXE_hull-agent"))
}

const MESSAGE_TYPE_REQUEST: u8 = 1;
const MESSAGE_TYPE_RESPONSE: u8 = 2;

fn frame(stream_id: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + payload.len());
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(payload);
    out
}

fn request(service: &str, method: &str, payload: &[u8]) -> Vec<u8> {
    let mut req = ttrpc::Request::new();
    req.service = service.to_string();
    req.method = method.to_string();
    req.payload = payload.to_vec();
    req.write_to_bytes().unwrap()
}

/// Reads one response frame and returns its stream id and status.
fn read_response(stream: &mut UnixStream) -> (u32, ttrpc::Status) {
    let mut header = [0u8; 10];
    stream.read_exact(&mut header).expect("response header");
    let len = u32::from_be_bytes(header[0..4].try_into().unwrap()) as usize;
    let stream_id = u32::from_be_bytes(header[4..8].try_into().unwrap());
    assert_eq!(header[8], MESSAGE_TYPE_RESPONSE, "frame type");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).expect("response body");
    let response = ttrpc::Response::parse_from_bytes(&body).expect("response protobuf");
    (stream_id, response.status.into_option().unwrap_or_default())
}

#[tokio::test]
async fn health_check_and_version_answer() {
    let agent = start_agent();
    agent.assert_serving().await;
    let version = agent
        .client()
        .await
        .version()
        .await
        .expect("Health.Version");
    assert_eq!(version.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(!version.grpc_version.is_empty());
}

#[tokio::test]
async fn guest_details_report_this_machines_memory_block_size() {
    let agent = start_agent();
    let details = agent
        .client()
        .await
        .guest_details()
        .await
        .expect("GetGuestDetails");
    let expected = std::fs::read_to_string("/sys/devices/system/memory/block_size_bytes")
        .map(|s| u64::from_str_radix(s.trim(), 16).unwrap())
        .unwrap_or(0);
    assert_eq!(details.mem_block_size_bytes, expected);
    let agent_details = details.agent_details.into_option().expect("agent details");
    assert_eq!(agent_details.version, env!("CARGO_PKG_VERSION"));
    assert!(
        !agent_details.init_daemon,
        "on the host the agent is not under hull-init"
    );
}

#[tokio::test]
async fn unknown_methods_and_services_get_clear_errors() {
    let agent = start_agent();
    let mut raw = agent.raw();
    raw.write_all(&frame(
        1,
        MESSAGE_TYPE_REQUEST,
        &request("grpc.AgentService", "NoSuchMethod", &[]),
    ))
    .unwrap();
    let (id, status) = read_response(&mut raw);
    assert_eq!(id, 1);
    assert_eq!(status.code(), Code::UNIMPLEMENTED);
    assert!(
        status.message.contains("NoSuchMethod"),
        "{}",
        status.message
    );

    raw.write_all(&frame(
        3,
        MESSAGE_TYPE_REQUEST,
        &request("grpc.NoSuchService", "Check", &[]),
    ))
    .unwrap();
    let (id, status) = read_response(&mut raw);
    assert_eq!(id, 3);
    assert_eq!(status.code(), Code::INVALID_ARGUMENT);
    assert!(
        status.message.contains("grpc.NoSuchService"),
        "{}",
        status.message
    );
    agent.assert_serving().await;
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_agent_keeps_serving() {
    let agent = start_agent();
    let mut raw = agent.raw();

    // A request frame whose payload is not a ttRPC Request.
    raw.write_all(&frame(1, MESSAGE_TYPE_REQUEST, &[0xff; 16]))
        .unwrap();
    let (_, status) = read_response(&mut raw);
    assert_eq!(status.code(), Code::INVALID_ARGUMENT, "{}", status.message);

    // A valid Request whose inner payload is not the method's message.
    raw.write_all(&frame(
        3,
        MESSAGE_TYPE_REQUEST,
        &request("grpc.AgentService", "GetGuestDetails", &[0xff; 8]),
    ))
    .unwrap();
    let (id, status) = read_response(&mut raw);
    assert_eq!(id, 3);
    assert_ne!(
        status.code(),
        Code::OK,
        "a garbage payload must not succeed"
    );

    // Client-initiated streams must have odd ids.
    raw.write_all(&frame(
        4,
        MESSAGE_TYPE_REQUEST,
        &request("grpc.Health", "Check", &[]),
    ))
    .unwrap();
    let (id, status) = read_response(&mut raw);
    assert_eq!(id, 4);
    assert_eq!(status.code(), Code::INVALID_ARGUMENT);

    // The same connection still works after all that.
    raw.write_all(&frame(
        5,
        MESSAGE_TYPE_REQUEST,
        &request("grpc.Health", "Check", &[]),
    ))
    .unwrap();
    let (id, status) = read_response(&mut raw);
    assert_eq!(id, 5);
    assert_eq!(status.code(), Code::OK, "{}", status.message);
    agent.assert_serving().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_the_agent_keeps_serving() {
    let agent = start_agent();
    let mut raw = agent.raw();
    let too_big = vec![0u8; ttrpc::proto::MESSAGE_LENGTH_MAX + 1];
    let writer = {
        let mut raw = raw.try_clone().unwrap();
        std::thread::spawn(move || raw.write_all(&frame(1, MESSAGE_TYPE_REQUEST, &too_big)))
    };
    let (id, status) = read_response(&mut raw);
    assert_eq!(id, 1);
    assert_eq!(status.code(), Code::INVALID_ARGUMENT);
    assert!(status.message.contains("length"), "{}", status.message);
    writer
        .join()
        .unwrap()
        .expect("the agent reads (and discards) the oversized payload");
    agent.assert_serving().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_call_leaves_the_agent_serving() {
    let agent = start_agent();
    for cut in [3usize, 10, 14] {
        let mut raw = agent.raw();
        let full = frame(
            1,
            MESSAGE_TYPE_REQUEST,
            &request("grpc.Health", "Check", &[]),
        );
        raw.write_all(&full[..cut]).unwrap();
        drop(raw);
    }
    agent.assert_serving().await;
}

#[tokio::test]
async fn destroy_sandbox_answers_then_the_agent_exits_with_status_zero() {
    let mut agent = start_agent();
    agent
        .client()
        .await
        .destroy_sandbox()
        .await
        .expect("DestroySandbox");
    let status = agent.wait_for_exit();
    assert!(status.success(), "agent exit status {status}");
    assert!(!agent.socket().exists(), "the socket file is removed");
}

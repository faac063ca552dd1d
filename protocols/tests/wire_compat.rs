//! Checks of the generated descriptors against the Kata agent API: service
//! and method names (they form the ttRPC method paths) and a sample of field
//! numbers that a runtime depends on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use hull_protocols::protobuf::MessageFull;
use hull_protocols::protobuf::reflect::{FileDescriptor, MessageDescriptor};
use hull_protocols::{agent, health, oci, types};

/// Every AgentService RPC, in declaration order.
const AGENT_RPCS: &[&str] = &[
    "CreateContainer",
    "StartContainer",
    "RemoveContainer",
    "ExecProcess",
    "SignalProcess",
    "WaitProcess",
    "UpdateContainer",
    "UpdateEphemeralMounts",
    "StatsContainer",
    "PauseContainer",
    "ResumeContainer",
    "RemoveStaleVirtiofsShareMounts",
    "GetDiagnosticData",
    "WriteStdin",
    "ReadStdout",
    "ReadStderr",
    "CloseStdin",
    "TtyWinResize",
    "UpdateInterface",
    "UpdateRoutes",
    "ListInterfaces",
    "ListRoutes",
    "AddARPNeighbors",
    "GetIPTables",
    "SetIPTables",
    "GetMetrics",
    "MemAgentMemcgSet",
    "MemAgentCompactSet",
    "CreateSandbox",
    "DestroySandbox",
    "OnlineCPUMem",
    "ReseedRandomDev",
    "GetGuestDetails",
    "MemHotplugByProbe",
    "SetGuestDateTime",
    "CopyFile",
    "GetOOMEvent",
    "AddSwap",
    "AddSwapPath",
    "GetVolumeStats",
    "ResizeVolume",
    "SetPolicy",
];

fn methods(file: &FileDescriptor, service: &str) -> Vec<(String, String, String)> {
    let svc = file
        .services()
        .find(|s| s.proto().name() == service)
        .unwrap_or_else(|| panic!("service {service} missing"));
    svc.methods()
        .map(|m| {
            (
                m.proto().name().to_owned(),
                m.proto().input_type().to_owned(),
                m.proto().output_type().to_owned(),
            )
        })
        .collect()
}

fn field(msg: &MessageDescriptor, name: &str) -> i32 {
    msg.field_by_name(name)
        .unwrap_or_else(|| panic!("{}.{name} missing", msg.full_name()))
        .number()
}

#[test]
fn packages_and_services() {
    let a = agent::file_descriptor();
    assert_eq!(a.package(), "grpc");
    let names: Vec<_> = methods(a, "AgentService")
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(names, AGENT_RPCS);

    let h = health::file_descriptor();
    assert_eq!(h.package(), "grpc");
    let hm = methods(h, "Health");
    assert_eq!(
        hm,
        [
            (
                "Check".into(),
                ".grpc.CheckRequest".into(),
                ".grpc.HealthCheckResponse".into()
            ),
            (
                "Version".into(),
                ".grpc.CheckRequest".into(),
                ".grpc.VersionCheckResponse".into()
            ),
        ]
    );
    assert_eq!(types::file_descriptor().package(), "types");
    assert_eq!(oci::file_descriptor().package(), "grpc");
}

#[test]
fn request_and_response_types() {
    let m = methods(agent::file_descriptor(), "AgentService");
    let find = |name: &str| m.iter().find(|x| x.0 == name).cloned().unwrap_or_default();
    assert_eq!(find("CreateContainer").2, ".google.protobuf.Empty");
    assert_eq!(find("WaitProcess").2, ".grpc.WaitProcessResponse");
    assert_eq!(find("UpdateInterface").2, ".types.Interface");
    assert_eq!(find("GetVolumeStats").2, ".grpc.VolumeStatsResponse");
    assert_eq!(find("WriteStdin").1, ".grpc.WriteStreamRequest");
    assert_eq!(find("ReadStderr").1, ".grpc.ReadStreamRequest");
    assert_eq!(find("GetGuestDetails").1, ".grpc.GuestDetailsRequest");
    assert_eq!(find("MemAgentMemcgSet").1, ".grpc.MemAgentMemcgConfig");
}

#[test]
fn sample_field_numbers() {
    let d = agent::CreateContainerRequest::descriptor();
    assert_eq!(field(&d, "OCI"), 6);
    assert_eq!(field(&d, "shared_mounts"), 8);
    assert_eq!(field(&d, "stderr_port"), 11);
    let s = agent::Storage::descriptor();
    assert_eq!(field(&s, "mount_point"), 6);
    assert_eq!(field(&s, "fs_group"), 7);
    assert_eq!(field(&s, "shared"), 8);
    assert_eq!(field(&agent::FSGroup::descriptor(), "group_id"), 2);
    assert_eq!(
        field(&agent::ReseedRandomDevRequest::descriptor(), "data"),
        2
    );
    assert_eq!(
        field(&agent::CreateSandboxRequest::descriptor(), "kernel_modules"),
        7
    );
    assert_eq!(
        field(&agent::AgentDetails::descriptor(), "extra_features"),
        6
    );
    assert_eq!(
        field(&agent::SetGuestDateTimeRequest::descriptor(), "Usec"),
        2
    );
    assert_eq!(field(&oci::Spec::descriptor(), "Linux"), 8);
    assert_eq!(field(&oci::Linux::descriptor(), "IntelRdt"), 13);
    assert_eq!(field(&oci::LinuxSyscall::descriptor(), "errnoret"), 3);
    assert_eq!(field(&types::Interface::descriptor(), "raw_flags"), 8);
    assert_eq!(field(&types::Route::descriptor(), "mtu"), 8);
    assert_eq!(field(&types::ARPNeighbor::descriptor(), "toIPAddress"), 1);
}

#[test]
fn encoding_matches_hand_computed_bytes() {
    use hull_protocols::protobuf::Message;
    // SignalProcessRequest{container_id:"c", exec_id:"", signal:9}
    let mut req = agent::SignalProcessRequest::new();
    req.container_id = "c".into();
    req.signal = 9;
    let bytes = req.write_to_bytes().expect("encode");
    assert_eq!(bytes, [0x0a, 0x01, b'c', 0x18, 0x09]);
}

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use hull_protocols::agent::{
    CopyFileRequest, CreateContainerRequest, ExecProcessRequest, Storage, StringUser,
};
use hull_protocols::oci::{LinuxSyscall, Mount, Process, Spec, linux_syscall};
use serde_json::json;

use super::*;

#[test]
fn fields_keep_their_proto_names_and_unset_messages_are_null() {
    let req = ExecProcessRequest {
        container_id: "c1".into(),
        exec_id: "e1".into(),
        process: Some(Process {
            Args: vec!["/bin/sh".into(), "-c".into()],
            Terminal: true,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let input = input(&req).unwrap();
    assert_eq!(input["container_id"], json!("c1"));
    assert_eq!(input["string_user"], Value::Null);
    assert_eq!(input["stdin_port"], json!(0));
    assert_eq!(input["process"]["Args"], json!(["/bin/sh", "-c"]));
    assert_eq!(input["process"]["Terminal"], json!(true));
    assert_eq!(input["process"]["Env"], json!([]));
    let with_user = ExecProcessRequest {
        string_user: Some(StringUser {
            uid: "1000".into(),
            ..Default::default()
        })
        .into(),
        ..req
    };
    let input = super::input(&with_user).unwrap();
    assert_eq!(input["string_user"]["uid"], json!("1000"));
    assert_eq!(input["string_user"]["additionalGids"], json!([]));
}

#[test]
fn keywords_get_rusts_trailing_underscore_and_maps_are_objects() {
    let req = CreateContainerRequest {
        OCI: Some(Spec {
            Mounts: vec![Mount {
                destination: "/proc".into(),
                type_: "proc".into(),
                ..Default::default()
            }],
            Annotations: [("io.kubernetes.cri.sandbox-id".to_string(), "p".to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        })
        .into(),
        storages: vec![Storage {
            driver: "virtio-fs".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let input = input(&req).unwrap();
    let mount = &input["OCI"]["Mounts"][0];
    assert_eq!(mount["type_"], json!("proc"));
    assert_eq!(mount["destination"], json!("/proc"));
    assert_eq!(
        input["OCI"]["Annotations"],
        json!({"io.kubernetes.cri.sandbox-id": "p"})
    );
    assert_eq!(input["storages"][0]["driver"], json!("virtio-fs"));
}

#[test]
fn a_oneof_is_an_object_under_its_name_or_null() {
    let unset = LinuxSyscall::default();
    assert_eq!(message_value(&unset)["ErrnoRet"], Value::Null);
    let set = LinuxSyscall {
        ErrnoRet: Some(linux_syscall::ErrnoRet::Errnoret(38)),
        ..Default::default()
    };
    let value = message_value(&set);
    assert_eq!(value["ErrnoRet"], json!({"errnoret": 38}));
    assert!(value.get("errnoret").is_none(), "{value}");
}

#[test]
fn copy_file_is_shown_as_kata_preprocesses_it() {
    let link = CopyFileRequest {
        path: "/run/kata-containers/shared/containers/x".into(),
        file_mode: libc::S_IFLNK | 0o777,
        data: b"..data/token".to_vec(),
        ..Default::default()
    };
    let input = input(&link).unwrap();
    assert_eq!(input["file_type"], json!("Symlink"));
    assert_eq!(input["symlink_target"], json!("..data/token"));
    assert!(input.get("data").is_none());
    let bad_link = CopyFileRequest {
        data: vec![0xff, 0xfe],
        ..link
    };
    assert!(matches!(
        super::input(&bad_link),
        Err(PolicyError::Input { .. })
    ));
    let file = CopyFileRequest {
        file_mode: libc::S_IFREG | 0o644,
        data: vec![1, 2],
        ..Default::default()
    };
    let input = super::input(&file).unwrap();
    assert_eq!(input["file_type"], json!("Regular"));
    assert_eq!(input["symlink_target"], Value::Null);
}

#[test]
fn every_agent_method_has_a_request_type() {
    let types = request_types();
    assert!(types.len() >= 42, "{}", types.len());
    let exec = types.iter().find(|(m, _)| m == "ExecProcess").unwrap();
    assert_eq!(exec.1.name(), "ExecProcessRequest");
    let stdout = types.iter().find(|(m, _)| m == "ReadStdout").unwrap();
    assert_eq!(stdout.1.name(), READ_STREAM_REQUEST);
}

//! Sandbox creation and storages on the host, with real mounts kept out of the host's
//! mount namespace:
//!
//! - the `hull-agent` binary runs under `unshare --mount --uts --propagation private`, so
//!   its mounts, its `/etc/resolv.conf` bind mount and its hostname are its own; the test
//!   looks at them through `/proc/PID/mountinfo` and `/proc/PID/root`;
//! - the reference-counting scenarios drive [`Storages`] in-process: the test re-executes
//!   its own binary under `unshare` to run them (a thread cannot safely leave the
//!   namespace its blocking pool lives in).
//!
//! They need root and util-linux (`unshare`, `nsenter`); without them they fail, saying so.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hull_agent::device::DeviceWaiter;
use hull_agent::mount::mount_points;
use hull_agent::rpc::storage::parse_storage;
use hull_agent::storage::{StorageError, Storages};
use hull_protocols::agent::{CreateSandboxRequest, FSGroup, Storage};
use hull_testkit::agent::Isolation;
use hull_testkit::{HostAgent, assert_refused, refusal, require};
use ttrpc::Code;

/// Fails the test, with the reason, unless mounts can be tested here.
fn require_mount_privileges() {
    require::root("testing mounts");
    require::tool("unshare", "util-linux");
    require::tool("nsenter", "util-linux");
}

/// A `hull-agent` in its own mount and UTS namespaces, its directory
/// `run/kata-containers` in the temporary directory, a 1 s hot-plug wait.
fn start_agent() -> HostAgent {
    HostAgent::builder(env!("CARGO_BIN_EXE_hull-agent"))
        .isolation(Isolation::MountNamespace)
        .run_dir("run/kata-containers")
        .env("HULL_AGENT_HOTPLUG_TIMEOUT", "1")
        .start()
}

/// Mount points of the agent's namespace beneath its temporary directory, and its
/// `/etc/resolv.conf`.
fn mounts_of(agent: &HostAgent) -> Vec<PathBuf> {
    let pid = agent.mount_namespace_pid();
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("the agent's mountinfo");
    mount_points(&mountinfo)
        .into_iter()
        .filter(|p| p.starts_with(agent.dir()) || p == Path::new("/etc/resolv.conf"))
        .collect()
}

fn storage(driver: &str, mount_point: &Path) -> Storage {
    Storage {
        driver: driver.into(),
        mount_point: mount_point.display().to_string(),
        ..Default::default()
    }
}

fn ephemeral(mount_point: &Path) -> Storage {
    Storage {
        source: "tmpfs".into(),
        fstype: "tmpfs".into(),
        options: vec!["size=1m".into()],
        ..storage("ephemeral", mount_point)
    }
}

#[tokio::test]
async fn create_sandbox_sets_up_storages_dns_and_hostname_and_destroy_takes_them_down() {
    require_mount_privileges();
    let mut agent = start_agent();
    let run = agent.run_dir().to_path_buf();
    let memory = run.join("sandbox/ephemeral/memory");
    let local = run.join("sandbox/local/data");
    let nested = run.join("sandbox/ephemeral/memory/nested");
    let req = CreateSandboxRequest {
        hostname: "hull-sandbox".into(),
        dns: vec!["nameserver 10.0.0.1".into(), "search example.test".into()],
        storages: vec![
            ephemeral(&memory),
            Storage {
                options: vec!["mode=0750".into()],
                ..storage("local", &local)
            },
            // Mounted inside the first: the teardown must go newest first.
            ephemeral(&nested),
        ],
        sandbox_pidns: true,
        sandbox_id: "sb-host".into(),
        guest_hook_path: "/usr/share/oci/hooks".into(),
        ..Default::default()
    };
    let client = agent.client().await;
    client.create_sandbox(&req).await.expect("CreateSandbox");

    let mounts = mounts_of(&agent);
    assert!(mounts.contains(&memory), "{mounts:?}");
    assert!(mounts.contains(&nested), "{mounts:?}");
    assert!(!mounts.contains(&local), "local storages are directories");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&local)
            .expect("the local directory")
            .permissions(),
    );
    assert_eq!(mode & 0o7777, 0o750);
    assert!(
        !mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap()).contains(&memory),
        "the agent's mounts stay in its namespace"
    );
    assert_eq!(
        std::fs::read_to_string(agent.in_agent(Path::new("/etc/resolv.conf"))).unwrap(),
        "nameserver 10.0.0.1\nsearch example.test\n"
    );
    let hostname = Command::new("nsenter")
        .args(["--target", &agent.pid().to_string(), "--uts", "hostname"])
        .output()
        .expect("nsenter hostname");
    assert_eq!(
        String::from_utf8_lossy(&hostname.stdout).trim(),
        "hull-sandbox"
    );

    let details = client.guest_details().await.expect("GetGuestDetails");
    let handlers = details
        .agent_details
        .into_option()
        .unwrap()
        .storage_handlers;
    for driver in ["virtio-fs", "local", "ephemeral", "blk", "nvdimm"] {
        assert!(
            handlers.iter().any(|h| h == driver),
            "{driver}: {handlers:?}"
        );
    }

    assert_refused(
        "a second CreateSandbox",
        client.create_sandbox(&req).await,
        Code::FAILED_PRECONDITION,
        "already exists",
    );

    agent.keep_mount_namespace();
    client.destroy_sandbox().await.expect("DestroySandbox");
    assert!(agent.wait_for_exit().success());
    let left: Vec<PathBuf> = mounts_of(&agent);
    assert!(left.is_empty(), "mounts left behind: {left:?}");
}

#[tokio::test]
async fn bad_storages_get_clear_errors_and_nothing_is_mounted() {
    require_mount_privileges();
    let agent = start_agent();
    let run = agent.run_dir().to_path_buf();
    std::fs::create_dir_all(&run).unwrap();
    let outside = agent.dir().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink("/", run.join("to-slash")).unwrap();
    std::os::unix::fs::symlink("../../outside", run.join("to-sibling")).unwrap();
    std::os::unix::fs::symlink("loop", run.join("loop")).unwrap();

    let sandbox = |storage: Storage| CreateSandboxRequest {
        storages: vec![ephemeral(&run.join("sandbox/ok")), storage],
        ..Default::default()
    };
    // One row per request: a storage added to a good one, or a bad hostname or DNS.
    let cases: Vec<(CreateSandboxRequest, Code, String)> = vec![
        (
            sandbox(storage("watchable-bind", &run.join("x"))),
            Code::INVALID_ARGUMENT,
            "unsupported storage driver \"watchable-bind\"; supported: virtio-fs".into(),
        ),
        (
            sandbox(ephemeral(Path::new("/etc/hull-test"))),
            Code::INVALID_ARGUMENT,
            "must be under".into(),
        ),
        (
            sandbox(ephemeral(&run.join("sandbox/../../../etc"))),
            Code::INVALID_ARGUMENT,
            "'..'".into(),
        ),
        (
            sandbox(ephemeral(&run.join("to-slash/tmp/hull-escape"))),
            Code::INVALID_ARGUMENT,
            "resolves outside".into(),
        ),
        (
            sandbox(ephemeral(&run.join("to-sibling/escaped"))),
            Code::INVALID_ARGUMENT,
            "resolves outside".into(),
        ),
        (
            sandbox(ephemeral(&run.join("loop/x"))),
            Code::INVALID_ARGUMENT,
            "symbolic links".into(),
        ),
        (
            sandbox(Storage {
                fstype: "ext4".into(),
                source: "not/a/pci/path".into(),
                ..storage("blk", &run.join("blk"))
            }),
            Code::INVALID_ARGUMENT,
            "invalid PCI path".into(),
        ),
        (
            sandbox(Storage {
                fstype: "ext4".into(),
                source: "/dev/hullnosuchdisk".into(),
                ..storage("mmioblk", &run.join("mmio"))
            }),
            Code::DEADLINE_EXCEEDED,
            "hullnosuchdisk did not appear within 1s".into(),
        ),
        (
            sandbox(Storage {
                source: "tmpfs".into(),
                fstype: "tmpfs".into(),
                options: vec!["remount".into()],
                ..storage("ephemeral", &run.join("sandbox/remount"))
            }),
            Code::INVALID_ARGUMENT,
            "remount".into(),
        ),
        (
            sandbox(Storage {
                source: "tmpfs".into(),
                fstype: "tmpfs".into(),
                options: vec!["size=lots".into()],
                ..storage("ephemeral", &run.join("sandbox/badsize"))
            }),
            Code::INVALID_ARGUMENT,
            "sandbox/badsize".into(),
        ),
        (
            sandbox(Storage {
                fs_group: Some(FSGroup {
                    group_id: 1,
                    ..Default::default()
                })
                .into(),
                options: vec!["mode=8".into()],
                ..storage("local", &run.join("sandbox/local/bad"))
            }),
            Code::INVALID_ARGUMENT,
            "mode=8".into(),
        ),
        (
            CreateSandboxRequest {
                hostname: "has space".into(),
                ..Default::default()
            },
            Code::INVALID_ARGUMENT,
            "invalid hostname".into(),
        ),
        (
            CreateSandboxRequest {
                dns: vec!["nameserver 1.1.1.1\nnameserver 6.6.6.6".into()],
                ..Default::default()
            },
            Code::INVALID_ARGUMENT,
            "line break".into(),
        ),
    ];
    let client = agent.client().await;
    for (bad, code, needle) in cases {
        let described = format!("{bad:?}");
        refusal(&described, client.create_sandbox(&bad), code, needle)
            .assert()
            .await;
        let mounts = mounts_of(&agent);
        assert!(
            mounts.is_empty(),
            "{described}: mounts left after a refused CreateSandbox: {mounts:?}"
        );
        agent.assert_serving().await;
    }
    assert!(!Path::new("/tmp/hull-escape").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

    // After every refusal, a good request still works.
    client
        .create_sandbox(&sandbox(ephemeral(&run.join("sandbox/second"))))
        .await
        .expect("CreateSandbox after refusals");
    assert_eq!(mounts_of(&agent).len(), 2);
}

/// Runs `scenario` (an ignored test of this file) in a fresh process inside a private
/// mount namespace, and fails if it fails.
fn run_in_private_namespace(scenario: &str) {
    let exe = std::env::current_exe().expect("current exe");
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([
            "--ignored",
            "--exact",
            scenario,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HULL_STORAGE_SCENARIO", "1")
        .output()
        .expect("re-run under unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{scenario} failed:\n{stdout}\n{stderr}"
    );
}

/// The scenarios refuse to run outside [`run_in_private_namespace`]: their mounts would
/// land in the host's namespace.
fn scenario_guard() {
    assert_eq!(
        std::env::var("HULL_STORAGE_SCENARIO").as_deref(),
        Ok("1"),
        "run through run_in_private_namespace, not directly"
    );
}

fn storages(run: &Path) -> Storages {
    Storages::new(run, DeviceWaiter::guest(Duration::from_secs(1)))
}

fn mounted_here(path: &Path) -> bool {
    mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
        .contains(&path.to_path_buf())
}

#[test]
fn reference_counting_unmounts_with_the_last_user() {
    require_mount_privileges();
    run_in_private_namespace("scenario_reference_counting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by reference_counting_unmounts_with_the_last_user"]
async fn scenario_reference_counting() {
    scenario_guard();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let storages = storages(&run);
    let shared = parse_storage(&storages, &ephemeral(&run.join("sandbox/shm"))).unwrap();

    let first = storages
        .acquire(std::slice::from_ref(&shared), Some("c1"))
        .await
        .unwrap();
    std::fs::write(run.join("sandbox/shm/data"), "kept").unwrap();
    let second = storages
        .acquire(std::slice::from_ref(&shared), Some("c2"))
        .await
        .unwrap();
    assert_eq!(storages.held().await, vec![(run.join("sandbox/shm"), 2)]);
    assert_eq!(first, second);

    storages.release(&first).await.unwrap();
    assert!(mounted_here(&run.join("sandbox/shm")), "one user is left");
    assert_eq!(
        std::fs::read_to_string(run.join("sandbox/shm/data")).unwrap(),
        "kept",
        "the second user sees the same mount"
    );
    storages.release(&second).await.unwrap();
    assert!(
        !mounted_here(&run.join("sandbox/shm")),
        "the last user is gone"
    );
    assert!(storages.held().await.is_empty());

    let err = storages.release(&second).await.unwrap_err();
    assert!(matches!(err, StorageError::NotHeld { .. }), "{err}");

    // Another driver at a mount point in use is refused, not stacked.
    let tmpfs = storages
        .acquire(std::slice::from_ref(&shared), None)
        .await
        .unwrap();
    let local = parse_storage(&storages, &storage("local", &run.join("sandbox/shm"))).unwrap();
    let err = storages.acquire(&[local], None).await.unwrap_err();
    assert!(matches!(err, StorageError::Conflict { .. }), "{err}");
    storages.release(&tmpfs).await.unwrap();
}

#[test]
fn a_container_release_leaves_no_mount_behind() {
    require_mount_privileges();
    run_in_private_namespace("scenario_container_release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_container_release_leaves_no_mount_behind"]
async fn scenario_container_release() {
    scenario_guard();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let storages = storages(&run);
    // A read-only layer, as another storage would provide it.
    std::fs::create_dir_all(run.join("layers/base/etc")).unwrap();
    std::fs::write(run.join("layers/base/etc/os-release"), "hull").unwrap();
    let sandbox = storages
        .acquire(
            &[parse_storage(&storages, &ephemeral(&run.join("c1"))).unwrap()],
            None,
        )
        .await
        .unwrap();

    let container = [
        Storage {
            fstype: "overlay".into(),
            options: vec![
                format!("lowerdir={}", run.join("layers/base").display()),
                "io.katacontainers.fs-opt.overlay-rw".into(),
            ],
            ..storage("overlayfs", &run.join("c1/rootfs"))
        },
        Storage {
            fs_group: Some(FSGroup {
                group_id: 4242,
                ..Default::default()
            })
            .into(),
            ..ephemeral(&run.join("c1/volumes/cache"))
        },
    ]
    .iter()
    .map(|s| parse_storage(&storages, s).unwrap())
    .collect::<Vec<_>>();
    let held = storages.acquire(&container, Some("c1")).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(run.join("c1/rootfs/etc/os-release")).unwrap(),
        "hull"
    );
    std::fs::write(run.join("c1/rootfs/etc/written"), "upper").unwrap();
    assert!(
        run.join("c1/upper/etc/written").exists(),
        "writes go to the upper layer"
    );
    let cache = std::fs::metadata(run.join("c1/volumes/cache")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&cache), 4242);

    storages.release(&held).await.unwrap();
    let left: Vec<PathBuf> =
        mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap())
            .into_iter()
            .filter(|p| p.starts_with(run.join("c1")) && *p != run.join("c1"))
            .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(mounted_here(&run.join("c1")), "the sandbox's storage stays");

    // An overlay-rw layer needs a container.
    let err = storages.acquire(&container[..1], None).await.unwrap_err();
    assert!(err.to_string().contains("needs a container"), "{err}");
    // A failed request takes back what it mounted before failing.
    let mixed = [
        parse_storage(&storages, &ephemeral(&run.join("c1/partial"))).unwrap(),
        container[0].clone(),
    ];
    storages.acquire(&mixed, None).await.unwrap_err();
    assert!(!mounted_here(&run.join("c1/partial")));

    assert!(storages.release_all().await.is_empty());
    assert!(!mounted_here(&run.join("c1")));
    drop(sandbox);
}

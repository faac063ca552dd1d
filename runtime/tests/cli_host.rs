//! `hull-runtime`, the runc-compatible CLI, driving real busybox containers on the host:
//! create / state / start / exec / kill / delete, `run`, `--no-pivot`, a user namespace.
//! Needs root and a cgroup2 hierarchy (`HULL_TEST_CGROUP_ROOT`, or `/sys/fs/cgroup/unified`
//! on a hybrid host, or `/sys/fs/cgroup`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hull_testkit::cgroup_root;
use hull_testkit::rootfs::{lay_out_busybox_root, require_containers};

const BIN: &str = env!("CARGO_BIN_EXE_hull-runtime");

struct Bundle {
    dir: tempfile::TempDir,
    state_root: PathBuf,
    out: PathBuf,
}

impl Bundle {
    fn new(args: &[&str], patch: impl FnOnce(&mut serde_json::Value)) -> Self {
        require_containers();
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        lay_out_busybox_root(&rootfs);
        std::fs::create_dir_all(rootfs.join("out")).unwrap();
        std::fs::write(rootfs.join("etc/secret"), "x").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        let cgroup = format!(
            "/hull-cli-test/{}",
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let mut config = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/bin"],
                "cwd": "/",
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"},
            "hostname": "cli-box",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                {"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}
            ],
            "linux": {
                "cgroupsPath": cgroup,
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                    {"type": "uts"}, {"type": "mount"}
                ],
                "maskedPaths": ["/etc/secret"]
            }
        });
        patch(&mut config);
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .unwrap();
        let state_root = dir.path().join("state");
        Self {
            dir,
            state_root,
            out,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--root")
            .arg(&self.state_root)
            .arg("--cgroup-root")
            .arg(cgroup_root())
            .args(args)
            .current_dir(self.dir.path());
        cmd
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hull-runtime")
    }

    /// `create` leaves the container holding the caller's stdio (as runc does): give it
    /// files, and wait for the command, not for its output to close.
    fn create(&self, args: &[&str]) -> std::process::ExitStatus {
        let log = std::fs::File::create(self.dir.path().join("create.log")).unwrap();
        self.command(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .expect("run hull-runtime create")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "hull-runtime {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state JSON")
    }

    fn wait_status(&self, id: &str, wanted: &str) {
        let start = Instant::now();
        loop {
            let status = self.state(id)["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if status == wanted {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "status {status}, wanted {wanted}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whatever a test left behind (it failed half-way) is killed and deleted: every
/// container still in the state directory, then the temporary directory.
impl Drop for Bundle {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.state_root) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let _ = self
                .command(&["delete", "--force", &id])
                .stdin(Stdio::null())
                .output();
        }
    }
}

#[test]
fn create_start_exec_kill_delete() {
    let b = Bundle::new(
        &["sh", "-c", "hostname > /out/host; exec sleep 1000"],
        |_| {},
    );
    let id = format!("cli-{}", std::process::id());
    let pid_file = b.dir.path().join("pid");
    let status = b.create(&[
        "create",
        "--bundle",
        b.dir.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(b.dir.path().join("create.log")).unwrap_or_default()
    );
    let state = b.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    let pid: i64 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    assert_eq!(state["pid"].as_i64(), Some(pid));
    assert!(!b.out.join("host").exists(), "ran before start");
    // A second create with the same id fails.
    assert!(!b.create(&["create", &id]).success());

    b.ok(&["start", &id]);
    b.wait_status(&id, "running");
    let start = Instant::now();
    // The shell creates the file before hostname writes into it: wait for the text.
    while std::fs::read_to_string(b.out.join("host"))
        .unwrap_or_default()
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(b.out.join("host")).unwrap(),
        "cli-box\n"
    );
    // start twice fails.
    assert!(!b.cli(&["start", &id]).status.success());

    let exec = b.cli(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo in-$(hostname); cat /etc/secret; exit 5",
    ]);
    assert_eq!(exec.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "in-cli-box\n");

    // delete without --force refuses a running container.
    assert!(!b.cli(&["delete", &id]).status.success());
    b.ok(&["kill", &id, "KILL"]);
    b.wait_status(&id, "stopped");
    b.ok(&["delete", &id]);
    assert!(!b.cli(&["state", &id]).status.success());
    assert!(!b.cli(&["kill", &id]).status.success());
}

#[test]
fn run_with_no_pivot_reports_the_exit_status() {
    let b = Bundle::new(
        &[
            "sh",
            "-c",
            "echo out; test -s /etc/secret || exit 7; exit 1",
        ],
        |_| {},
    );
    let id = format!("clirun-{}", std::process::id());
    let out = b.cli(&[
        "run",
        "--no-pivot",
        "--bundle",
        b.dir.path().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        !b.state_root.join(&id).exists(),
        "run deletes the container"
    );
}

#[test]
fn a_user_namespace_maps_root() {
    let b = Bundle::new(&["sh", "-c", "id -u; cat /proc/self/uid_map"], |c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        c["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    let id = format!("cliuser-{}", std::process::id());
    let out = b.cli(&["run", "--bundle", b.dir.path().to_str().unwrap(), &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(map, vec!["0", "100000", "65536"]);
}

#[test]
fn bad_bundles_fail_clearly() {
    let b = Bundle::new(&["true"], |c| {
        c["root"]["path"] = serde_json::json!("missing-rootfs");
    });
    let out = b.cli(&["create", "--bundle", b.dir.path().to_str().unwrap(), "bad1"]);
    // (fails before any container holds the output)
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing-rootfs"));
    assert!(!b.state_root.join("bad1").exists());
    let out = b.cli(&["state", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

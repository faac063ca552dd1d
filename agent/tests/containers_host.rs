//! Real containers on the host: the `hull-agent` binary on a Unix socket, driven over
//! ttRPC, running busybox (`/bin/busybox`, Debian's busybox-static) in a temporary rootfs.
//!
//! Needs root (namespaces, mounts) and a cgroup2 hierarchy: `HULL_TEST_CGROUP_ROOT`, or
//! `/sys/fs/cgroup/unified` (hybrid hosts), or `/sys/fs/cgroup`. On a host whose cgroup2
//! has no controllers enabled, memory/CPU/pids limits cannot be tested here (the VM tests
//! cover them); the freezer, `cgroup.procs`, `cgroup.kill` and `cpu.stat` work anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use hull_protocols::agent::*;
use hull_protocols::client::{AgentClient, ClientError, Stream};
use hull_protocols::oci;
use hull_testkit::rootfs::require_containers;
use hull_testkit::{
    BusyboxRootfs, HostAgent, assert_refused, cgroup_root, container_spec, refusal, unique,
};
use sha2::{Digest, Sha256};
use ttrpc::Code;

/// A `hull-agent` with its directory at `bundles/` and containers under this host's
/// cgroup2 root.
fn start_agent() -> HostAgent {
    require_containers();
    HostAgent::builder(env!("CARGO_BIN_EXE_hull-agent"))
        .run_dir("bundles")
        .env("HULL_AGENT_CGROUP_ROOT", cgroup_root())
        .start()
}

/// A client whose calls may take a minute (a container's whole run).
async fn client(agent: &HostAgent) -> AgentClient {
    agent.client().await.with_timeout(Duration::from_secs(60))
}

/// A busybox rootfs with a root user, secrets to mask and directories to make read-only.
fn busybox_rootfs() -> BusyboxRootfs {
    let rootfs = BusyboxRootfs::new();
    for dir in ["data", "secretdir", "root"] {
        rootfs.dir(dir);
    }
    rootfs.file("etc/secret", "top secret\n");
    rootfs.file("secretdir/file", "hidden\n");
    rootfs.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    rootfs
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> oci::Mount {
    oci::Mount {
        destination: dest.into(),
        type_: typ.into(),
        source: source.into(),
        options: options.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// A spec close to what containerd/Kata send, running `args` in `rootfs`.
fn spec(rootfs: &Path, cgroup: &str, args: &[&str]) -> oci::Spec {
    let namespaces = ["mount", "pid", "ipc", "uts", "network"];
    let mut spec = container_spec(rootfs, cgroup, args, &namespaces);
    let process = spec.Process.mut_or_insert_default();
    process.Env.push("HOME=/root".into());
    process.NoNewPrivileges = true;
    let linux = spec.Linux.mut_or_insert_default();
    linux.MaskedPaths = vec![
        "/proc/kcore".into(),
        "/etc/secret".into(),
        "/secretdir".into(),
    ];
    linux.ReadonlyPaths = vec!["/proc/sys".into(), "/data".into()];
    spec.Hostname = "hull-box".into();
    spec.Mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev"]),
    ];
    spec
}

fn code(err: &ClientError) -> Option<Code> {
    err.rpc_code()
}

/// One container driven through the agent.
struct Ctr<'a> {
    client: &'a AgentClient,
    id: String,
}

fn stream(stderr: bool) -> Stream {
    if stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    }
}

impl<'a> Ctr<'a> {
    async fn create(
        client: &'a AgentClient,
        id: &str,
        spec: oci::Spec,
    ) -> Result<Ctr<'a>, ClientError> {
        client
            .create_container(&create_request(id, spec, false))
            .await?;
        Ok(Ctr {
            client,
            id: id.to_string(),
        })
    }

    async fn start(&self) -> Result<(), ClientError> {
        self.client.start_container(&self.id).await
    }

    async fn wait(&self, exec_id: &str) -> i32 {
        self.client
            .wait_process(&self.id, exec_id)
            .await
            .expect("WaitProcess")
    }

    async fn read(&self, exec_id: &str, stderr: bool) -> Result<Vec<u8>, ClientError> {
        self.client
            .read_stream(&self.id, exec_id, stream(stderr), 65536)
            .await
    }

    async fn read_all(&self, exec_id: &str, stderr: bool) -> Vec<u8> {
        self.client
            .read_to_end(&self.id, exec_id, stream(stderr))
            .await
            .expect("read stream")
            .bytes
    }

    async fn write(&self, exec_id: &str, data: &[u8]) -> u32 {
        self.client
            .write_stdin(&self.id, exec_id, data)
            .await
            .expect("WriteStdin")
    }

    async fn close_stdin(&self, exec_id: &str) {
        self.client
            .close_stdin(&self.id, exec_id)
            .await
            .expect("CloseStdin");
    }

    async fn signal(&self, exec_id: &str, signal: u32) -> Result<(), ClientError> {
        self.client.signal_process(&self.id, exec_id, signal).await
    }

    async fn exec(&self, exec_id: &str, args: &[&str], terminal: bool) -> Result<(), ClientError> {
        self.client
            .exec_process(&exec_request(&self.id, exec_id, args, terminal))
            .await
    }

    async fn remove(&self) -> Result<(), ClientError> {
        self.client.remove_container(&self.id, 10).await
    }

    /// Runs to completion: (exit status, stdout, stderr).
    async fn run(&self) -> (i32, String, String) {
        self.start().await.expect("StartContainer");
        let (out, err) = tokio::join!(self.read_all("", false), self.read_all("", true));
        let status = self.wait("").await;
        (
            status,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )
    }
}

/// ExecProcess of `args` (PATH=/bin, cwd /, root) as `exec_id` in `container_id`.
fn exec_request(
    container_id: &str,
    exec_id: &str,
    args: &[&str],
    terminal: bool,
) -> ExecProcessRequest {
    let mut process = oci::Process::new();
    process.Args = args.iter().map(|s| s.to_string()).collect();
    process.Env = vec!["PATH=/bin".into()];
    process.Cwd = "/".into();
    process.Terminal = terminal;
    process.User = Some(oci::User::new()).into();
    ExecProcessRequest {
        container_id: container_id.into(),
        exec_id: exec_id.into(),
        process: Some(process).into(),
        ..Default::default()
    }
}

/// Creates, runs and removes a container running `script` with `sh -c`.
async fn run_script(
    agent: &HostAgent,
    rootfs: &BusyboxRootfs,
    script: &str,
    patch: impl FnOnce(&mut oci::Spec),
) -> (i32, String, String) {
    let client = client(agent).await;
    let id = unique("run");
    let mut s = spec(
        rootfs.path(),
        &format!("/hull-test/{id}"),
        &["sh", "-c", script],
    );
    patch(&mut s);
    let ctr = Ctr::create(&client, &id, s).await.expect("CreateContainer");
    let result = ctr.run().await;
    ctr.remove().await.expect("RemoveContainer");
    result
}

#[tokio::test]
async fn lifecycle_runs_the_workload_only_at_start() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let id = unique("life");
    let cgroup = format!("/hull-test/{id}");
    let s = spec(
        rootfs.path(),
        &cgroup,
        &[
            "sh",
            "-c",
            "touch /root/started; echo hello; echo oops >&2; exit 3",
        ],
    );
    let ctr = Ctr::create(&client, &id, s).await.expect("CreateContainer");
    let cgroup_dir = cgroup_root().join(cgroup.trim_start_matches('/'));
    assert!(cgroup_dir.join("cgroup.procs").exists(), "cgroup created");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !rootfs.path().join("root/started").exists(),
        "the workload ran before StartContainer"
    );
    let (status, out, err) = ctr.run().await;
    assert_eq!(
        (status, out.as_str(), err.as_str()),
        (3, "hello\n", "oops\n")
    );
    assert!(rootfs.path().join("root/started").exists());
    // A second start is refused: the container has stopped.
    let e = ctr.start().await.unwrap_err();
    assert_eq!(code(&e), Some(Code::FAILED_PRECONDITION), "{e}");
    ctr.remove().await.expect("RemoveContainer");
    assert!(!cgroup_dir.exists(), "cgroup removed");
    // The container is gone.
    let e = ctr.remove().await.unwrap_err();
    assert_eq!(code(&e), Some(Code::NOT_FOUND), "{e}");
    agent.assert_serving().await;
}

#[tokio::test]
async fn namespaces_hostname_and_rootfs_are_the_containers() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let (status, out, err) = run_script(
        &agent,
        &rootfs,
        "echo pid=$$; hostname; ls /; cat /proc/self/mountinfo | wc -l >/dev/null; test -c /dev/null && echo devnull; test -L /dev/ptmx && echo ptmx",
        |_| {},
    )
    .await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("hull-box\n"), "{out}");
    assert!(
        out.contains("secretdir"),
        "the container sees its rootfs: {out}"
    );
    assert!(out.contains("devnull\n") && out.contains("ptmx\n"), "{out}");
}

#[tokio::test]
async fn exec_joins_the_container_and_reports_exit_codes() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let id = unique("exec");
    let s = spec(
        rootfs.path(),
        &format!("/hull-test/{id}"),
        &["sleep", "1000"],
    );
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    // Exec before start is refused.
    let e = ctr.exec("early", &["true"], false).await.unwrap_err();
    assert_eq!(code(&e), Some(Code::FAILED_PRECONDITION), "{e}");
    ctr.start().await.unwrap();
    ctr.exec(
        "e1",
        &[
            "sh",
            "-c",
            "hostname; ps -o pid,args | grep -c sleep; exit 7",
        ],
        false,
    )
    .await
    .unwrap();
    let out = ctr.read_all("e1", false).await;
    assert_eq!(ctr.wait("e1").await, 7);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("hull-box\n"), "{out}");
    // A duplicate exec id is refused.
    ctr.exec("e2", &["sleep", "1000"], false).await.unwrap();
    let e = ctr.exec("e2", &["true"], false).await.unwrap_err();
    assert_eq!(code(&e), Some(Code::ALREADY_EXISTS), "{e}");
    ctr.signal("e2", 9).await.unwrap();
    assert_eq!(ctr.wait("e2").await, 137);
    // A missing executable fails the exec, not later.
    let e = ctr
        .exec("e3", &["no-such-binary"], false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no-such-binary"), "{e}");
    ctr.signal("", 9).await.unwrap();
    assert_eq!(ctr.wait("").await, 137);
    ctr.remove().await.unwrap();
    agent.assert_serving().await;
}

#[tokio::test]
async fn signals_reach_handlers_and_kill_everything() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    // An init with a TERM handler exits through it.
    let id = unique("sig");
    let s = spec(
        rootfs.path(),
        &format!("/hull-test/{id}"),
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    ctr.start().await.unwrap();
    assert_eq!(ctr.read("", false).await.unwrap(), b"ready\n");
    ctr.signal("", 0).await.unwrap_err();
    ctr.signal(&id, 15).await.unwrap();
    assert_eq!(ctr.wait("").await, 42);
    ctr.remove().await.unwrap();

    // Without a handler, SIGTERM to an init is made SIGKILL (as Kata does); an empty
    // exec id signals every process, exec'd ones included.
    let id = unique("sig");
    let s = spec(
        rootfs.path(),
        &format!("/hull-test/{id}"),
        &["sleep", "1000"],
    );
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    ctr.start().await.unwrap();
    ctr.exec("x", &["sleep", "1000"], false).await.unwrap();
    ctr.signal("", 9).await.unwrap();
    assert_eq!(ctr.wait("x").await, 137);
    assert_eq!(ctr.wait("").await, 137);
    ctr.remove().await.unwrap();

    let id = unique("sig");
    let s = spec(
        rootfs.path(),
        &format!("/hull-test/{id}"),
        &["sleep", "1000"],
    );
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    ctr.start().await.unwrap();
    ctr.signal(&id, 15).await.unwrap();
    assert_eq!(ctr.wait("").await, 137);
    ctr.remove().await.unwrap();

    // The same with an empty exec id (every process): the init is not left running.
    let id = unique("sig");
    let s = spec(
        rootfs.path(),
        &format!("/hull-test/{id}"),
        &["sleep", "1000"],
    );
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    ctr.start().await.unwrap();
    ctr.signal("", 15).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), ctr.wait(""))
        .await
        .expect("SIGTERM to every process ends an init without a handler");
    assert_eq!(status, 137);
    ctr.remove().await.unwrap();
}

#[tokio::test]
async fn user_groups_rlimits_and_capabilities_apply() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let (status, out, err) = run_script(
        &agent,
        &rootfs,
        "id -u; id -g; id -G; ulimit -n; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; grep CapBnd /proc/self/status",
        |s| {
            let p = s.Process.as_mut().unwrap();
            p.User = Some(oci::User {
                UID: 1000,
                GID: 1001,
                AdditionalGids: vec![1002, 1003],
                ..Default::default()
            })
            .into();
            p.Rlimits = vec![oci::POSIXRlimit {
                Type: "RLIMIT_NOFILE".into(),
                Hard: 123,
                Soft: 123,
                ..Default::default()
            }];
            // A non-root process keeps capabilities across execve only as ambient ones.
            p.Capabilities = Some(oci::LinuxCapabilities {
                Bounding: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
                Effective: vec!["CAP_KILL".into()],
                Permitted: vec!["CAP_KILL".into()],
                Inheritable: vec!["CAP_KILL".into()],
                Ambient: vec!["CAP_KILL".into()],
                ..Default::default()
            })
            .into();
        },
    )
    .await;
    assert_eq!(status, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1001");
    assert!(
        lines[2].contains("1002") && lines[2].contains("1003"),
        "{out}"
    );
    assert_eq!(lines[3], "123");
    // CAP_KILL is bit 5.
    assert_eq!(
        lines[4].split_whitespace().nth(1),
        Some("0000000000000020"),
        "{out}"
    );
    assert!(lines[5].ends_with('1'), "{out}");
    // CAP_CHOWN (bit 0) and CAP_KILL.
    assert_eq!(
        lines[6].split_whitespace().nth(1),
        Some("0000000000000021"),
        "{out}"
    );
}

#[tokio::test]
async fn root_keeps_only_the_capabilities_it_is_given() {
    // Docker's way: root, the same set bounding, effective and permitted, none inheritable.
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let set = vec!["CAP_CHOWN".to_string(), "CAP_KILL".to_string()];
    let (status, out, err) = run_script(
        &agent,
        &rootfs,
        "grep -E '^Cap(Inh|Prm|Eff|Bnd)' /proc/self/status",
        |s| {
            s.Process.as_mut().unwrap().Capabilities = Some(oci::LinuxCapabilities {
                Bounding: set.clone(),
                Effective: set.clone(),
                Permitted: set.clone(),
                ..Default::default()
            })
            .into();
        },
    )
    .await;
    assert_eq!(status, 0, "{err}");
    let masks: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    // CapInh none; CapPrm, CapEff, CapBnd: CAP_CHOWN (bit 0) and CAP_KILL (bit 5).
    assert_eq!(
        masks,
        [
            "0000000000000000",
            "0000000000000021",
            "0000000000000021",
            "0000000000000021"
        ],
        "{out}"
    );
}

#[tokio::test]
async fn seccomp_profile_denies_mkdir_with_eperm() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let (status, out, err) = run_script(
        &agent,
        &rootfs,
        "mkdir /tmp/x && echo made; touch /tmp/y && echo touched",
        |s| {
            s.Linux.as_mut().unwrap().Seccomp = Some(oci::LinuxSeccomp {
                DefaultAction: "SCMP_ACT_ALLOW".into(),
                Syscalls: vec![oci::LinuxSyscall {
                    Names: vec!["mkdir".into(), "mkdirat".into()],
                    Action: "SCMP_ACT_ERRNO".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .into();
        },
    )
    .await;
    assert_eq!(status, 0, "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(out, "touched\n");
}

#[tokio::test]
async fn readonly_rootfs_masked_and_readonly_paths_hold() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let (status, out, err) = run_script(
        &agent,
        &rootfs,
        "touch /newfile 2>&1 || echo rootfs-ro; \
         cat /etc/secret; echo secret-done; \
         ls /secretdir; echo dir-done; \
         touch /data/x 2>&1 || echo data-ro; \
         touch /tmp/ok && echo tmp-rw",
        |s| s.Root.as_mut().unwrap().Readonly = true,
    )
    .await;
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("rootfs-ro\n"), "{out}");
    assert!(
        out.contains("\nsecret-done\n") || out.starts_with("secret-done"),
        "{out}"
    );
    assert!(!out.contains("top secret"), "{out}");
    assert!(!out.contains("file\n"), "{out}");
    assert!(
        out.contains("data-ro\n") && out.contains("tmp-rw\n"),
        "{out}"
    );
    assert!(!rootfs.path().join("newfile").exists());
}

#[tokio::test]
async fn path_escapes_are_refused_or_confined() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    // A destination that climbs out of the rootfs is refused outright.
    let id = unique("esc");
    let mut s = spec(rootfs.path(), &format!("/hull-test/{id}"), &["true"]);
    s.Mounts
        .push(mount("/../../../tmp/evil", "tmpfs", "tmpfs", &[]));
    let e = Ctr::create(&client, &id, s).await.err().expect("refused");
    assert_eq!(code(&e), Some(Code::INVALID_ARGUMENT), "{e}");

    // A symlink in the rootfs pointing outside is resolved inside the rootfs.
    let host_dir = tempfile::tempdir().unwrap();
    symlink(host_dir.path(), rootfs.path().join("abs-link")).unwrap();
    // The same path inside the rootfs, where the link must lead.
    let mirror = rootfs
        .path()
        .join(host_dir.path().strip_prefix("/").unwrap());
    std::fs::create_dir_all(&mirror).unwrap();
    symlink("../../../../../../../..", rootfs.path().join("rel-link")).unwrap();
    let (status, out, err) =
        run_script(&agent, &rootfs, "grep -c inner /proc/self/mountinfo", |s| {
            // /tmp is a tmpfs in the container; the link goes through the rootfs's /tmp.
            s.Mounts.retain(|m| m.destination != "/tmp");
            s.Mounts
                .push(mount("/abs-link/inner", "tmpfs", "tmpfs", &[]));
            s.Mounts
                .push(mount("/rel-link/etc-inner", "tmpfs", "tmpfs", &[]));
        })
        .await;
    assert_eq!((status, out.as_str()), (0, "2\n"), "{err}");
    assert!(
        !host_dir.path().join("inner").exists(),
        "a mount escaped through a symlink"
    );
    assert!(!Path::new("/etc-inner").exists());
    assert!(
        mirror.join("inner").is_dir() && rootfs.path().join("etc-inner").is_dir(),
        "the symlinks were followed inside the rootfs"
    );
    agent.assert_serving().await;
}

#[tokio::test]
async fn stdin_echoes_through_cat_and_big_output_arrives_whole() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let id = unique("echo");
    let s = spec(rootfs.path(), &format!("/hull-test/{id}"), &["cat"]);
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    ctr.start().await.unwrap();
    // 4 MiB of patterned bytes in, the same out, with reads and writes interleaved.
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    let writer = async {
        for chunk in data.chunks(100_000) {
            assert_eq!(ctr.write("", chunk).await as usize, chunk.len());
        }
        ctr.close_stdin("").await;
    };
    let (_, echoed) = tokio::join!(writer, ctr.read_all("", false));
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "bytes lost or reordered");
    assert_eq!(ctr.wait("").await, 0);
    ctr.remove().await.unwrap();

    // 16 MiB of random output; the container reports its own hash on stderr.
    let (status, out, err) = {
        let id = unique("big");
        let s = spec(
            rootfs.path(),
            &format!("/hull-test/{id}"),
            &[
                "sh",
                "-c",
                "head -c 16777216 /dev/urandom > /tmp/blob; sha256sum /tmp/blob >&2; cat /tmp/blob",
            ],
        );
        let ctr = Ctr::create(&client, &id, s).await.unwrap();
        ctr.start().await.unwrap();
        let (out, err) = tokio::join!(ctr.read_all("", false), ctr.read_all("", true));
        let status = ctr.wait("").await;
        ctr.remove().await.unwrap();
        (status, out, String::from_utf8_lossy(&err).into_owned())
    };
    assert_eq!(status, 0, "{err}");
    assert_eq!(out.len(), 16 << 20);
    let ours = hex(&Sha256::digest(&out));
    assert_eq!(err.split_whitespace().next(), Some(ours.as_str()), "{err}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn terminal_mode_gives_a_tty_that_resizes() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let id = unique("tty");
    let mut s = spec(
        rootfs.path(),
        &format!("/hull-test/{id}"),
        &[
            "sh",
            "-c",
            "test -t 0 && echo is-a-tty; read line; stty size; echo got:$line",
        ],
    );
    s.Process.as_mut().unwrap().Terminal = true;
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    ctr.start().await.unwrap();
    let first = ctr.read("", false).await.unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("is-a-tty"),
        "{first:?}"
    );
    client.tty_win_resize(&id, "", 33, 101).await.unwrap();
    ctr.write("", b"hi\n").await;
    let rest = ctr.read_all("", false).await;
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("33 101"), "{text}");
    assert!(text.contains("got:hi"), "{text}");
    assert_eq!(ctr.wait("").await, 0);
    // A process on a terminal has no separate stderr.
    let e = ctr.read("", true).await.unwrap_err();
    assert_eq!(code(&e), Some(Code::FAILED_PRECONDITION), "{e}");
    ctr.remove().await.unwrap();
}

#[tokio::test]
async fn pause_resume_and_stats_use_the_cgroup() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let id = unique("pause");
    let cgroup = format!("/hull-test/{id}");
    let s = spec(
        rootfs.path(),
        &cgroup,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo busy-done; sleep 1000",
        ],
    );
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    ctr.start().await.unwrap();
    assert_eq!(ctr.read("", false).await.unwrap(), b"busy-done\n");
    let stats = client.stats_container(&id).await.unwrap();
    let cpu = stats.cgroup_stats.cpu_stats.cpu_usage.total_usage;
    // Nanoseconds: the busy loop alone takes well over a millisecond of CPU (a figure
    // left in cgroup v2's microseconds would read a thousand times too small).
    assert!(cpu >= 1_000_000, "cpu usage {cpu} ns");
    assert!(stats.cgroup_stats.pids_stats.current >= 1);

    let events = cgroup_root()
        .join(cgroup.trim_start_matches('/'))
        .join("cgroup.events");
    client.pause_container(&id).await.unwrap();
    assert!(
        std::fs::read_to_string(&events)
            .unwrap()
            .contains("frozen 1")
    );
    let e = client.pause_container(&id).await.unwrap_err();
    assert_eq!(code(&e), Some(Code::FAILED_PRECONDITION), "{e}");
    client.resume_container(&id).await.unwrap();
    assert!(
        std::fs::read_to_string(&events)
            .unwrap()
            .contains("frozen 0")
    );
    // Remove a paused container works too.
    client.pause_container(&id).await.unwrap();
    ctr.remove().await.unwrap();
}

#[tokio::test]
async fn the_helper_runs_from_a_read_only_view_not_the_writable_agent_binary() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let id = unique("cve");
    let cgroup = format!("/hull-test/{id}");
    let s = spec(rootfs.path(), &cgroup, &["true"]);
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    // Before start, the container's init process is still the helper.
    let procs = std::fs::read_to_string(
        cgroup_root()
            .join(cgroup.trim_start_matches('/'))
            .join("cgroup.procs"),
    )
    .unwrap();
    let pid: i32 = procs
        .lines()
        .next()
        .expect("a process")
        .trim()
        .parse()
        .unwrap();
    // Root may mount: the helper runs from a detached read-only bind of the binary
    // (no memfd copy), which cannot be written through /proc/<pid>/exe.
    let exe = format!("/proc/{pid}/exe");
    let link = std::fs::read_link(&exe).unwrap();
    assert!(
        !link.to_string_lossy().contains("memfd:"),
        "a memfd copy where a read-only bind was expected: {}",
        link.display()
    );
    let mount = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
    assert!(
        mount
            .flags()
            .contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the helper's binary is on a writable mount"
    );
    let agent_binary = env!("CARGO_BIN_EXE_hull-agent");
    let before = std::fs::read(agent_binary).unwrap();
    let write = std::fs::OpenOptions::new()
        .write(true)
        .open(&exe)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"\x7fELF-overwritten"));
    assert!(write.is_err(), "the helper binary was writable");
    assert!(
        std::fs::read(agent_binary).unwrap() == before,
        "the agent binary changed"
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("\nUid:\t0"), "{status}");
    ctr.start().await.unwrap();
    assert_eq!(ctr.wait("").await, 0);
    ctr.remove().await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_the_agent_keeps_serving() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let c = &client;

    // Calls about a container that does not exist.
    let ghost = "no-such-container";
    let exec_in_ghost = exec_request(ghost, "x", &["true"], false);
    let rows = vec![
        refusal(
            "StartContainer",
            c.start_container(ghost),
            Code::NOT_FOUND,
            "",
        ),
        refusal(
            "RemoveContainer",
            c.remove_container(ghost, 10),
            Code::NOT_FOUND,
            "",
        ),
        refusal(
            "SignalProcess",
            c.signal_process(ghost, "", 9),
            Code::NOT_FOUND,
            "",
        ),
        refusal(
            "ReadStdout",
            c.read_stdout(ghost, "", 65536),
            Code::NOT_FOUND,
            "",
        ),
        refusal(
            "ExecProcess",
            c.exec_process(&exec_in_ghost),
            Code::NOT_FOUND,
            "",
        ),
        refusal(
            "WaitProcess",
            c.wait_process(ghost, ""),
            Code::NOT_FOUND,
            "",
        ),
        refusal(
            "StatsContainer",
            c.stats_container(ghost),
            Code::NOT_FOUND,
            "",
        ),
    ];
    for row in rows {
        row.assert().await;
    }

    // CreateContainer requests that are wrong in themselves.
    let bad = |patch: fn(&mut oci::Spec)| {
        let mut s = spec(rootfs.path(), "", &["true"]);
        patch(&mut s);
        create_request(&unique("bad"), s, false)
    };
    let missing_rootfs = {
        let id = unique("bad");
        let s = spec(
            Path::new("/nonexistent/rootfs"),
            &format!("/hull-test/{id}"),
            &["true"],
        );
        create_request(&id, s, false)
    };
    let bogus_namespace = bad(|s| s.Linux.as_mut().unwrap().Namespaces[0].Type = "bogus".into());
    let no_args = bad(|s| s.Process.as_mut().unwrap().Args.clear());
    let no_process = bad(|s| s.Process = protobuf::MessageField::none());
    let no_spec = CreateContainerRequest {
        container_id: "no-spec".into(),
        ..Default::default()
    };
    // Fields this agent does not act on are refused, not dropped.
    let sandbox_pidns = create_request(&unique("bad"), spec(rootfs.path(), "", &["true"]), true);
    let escape = create_request("../escape", spec(rootfs.path(), "", &["true"]), false);
    // Stdio ports need the stdio listener (agent.passfd_listener_port), off here.
    let stdio_port = CreateContainerRequest {
        stdout_port: 1030,
        ..create_request(&unique("bad"), spec(rootfs.path(), "", &["true"]), false)
    };
    let rows = vec![
        refusal(
            "a missing rootfs",
            c.create_container(&missing_rootfs),
            Code::INVALID_ARGUMENT,
            "/nonexistent/rootfs",
        ),
        refusal(
            "an unknown namespace type",
            c.create_container(&bogus_namespace),
            Code::INVALID_ARGUMENT,
            "",
        ),
        refusal(
            "a process without args",
            c.create_container(&no_args),
            Code::INVALID_ARGUMENT,
            "",
        ),
        refusal(
            "no process",
            c.create_container(&no_process),
            Code::INVALID_ARGUMENT,
            "",
        ),
        refusal(
            "no OCI spec",
            c.create_container(&no_spec),
            Code::INVALID_ARGUMENT,
            "",
        ),
        refusal(
            "sandbox_pidns without a sandbox pid namespace",
            c.create_container(&sandbox_pidns),
            Code::INVALID_ARGUMENT,
            "sandbox_pidns",
        ),
        refusal(
            "an id that is a path",
            c.create_container(&escape),
            Code::INVALID_ARGUMENT,
            "",
        ),
        refusal(
            "a stdio port without the stdio listener",
            c.create_container(&stdio_port),
            Code::FAILED_PRECONDITION,
            "agent.passfd_listener_port",
        ),
    ];
    for row in rows {
        row.assert().await;
    }

    // A workload that does not exist fails at create, leaving no cgroup behind.
    let id = unique("bad");
    let e = Ctr::create(
        &client,
        &id,
        spec(rootfs.path(), &format!("/hull-test/{id}"), &["/bin/nope"]),
    )
    .await
    .err()
    .unwrap();
    assert!(e.to_string().contains("/bin/nope"), "{e}");
    assert!(
        !cgroup_root().join("hull-test").join(&id).exists(),
        "cgroup left behind"
    );

    // Calls a live container cannot take.
    let id = unique("dup");
    let ctr = Ctr::create(
        &client,
        &id,
        spec(
            rootfs.path(),
            &format!("/hull-test/{id}"),
            &["sleep", "100"],
        ),
    )
    .await
    .unwrap();
    let duplicate = create_request(
        &id,
        spec(rootfs.path(), &format!("/hull-test/{id}"), &["true"]),
        false,
    );
    let rows = vec![
        refusal(
            "a duplicate id",
            c.create_container(&duplicate),
            Code::ALREADY_EXISTS,
            "",
        ),
        refusal(
            "an unknown process of a known container",
            ctr.read("nope", false),
            Code::NOT_FOUND,
            "",
        ),
        refusal(
            "a bad signal number",
            ctr.signal("", 1000),
            Code::INVALID_ARGUMENT,
            "",
        ),
    ];
    for row in rows {
        row.assert().await;
    }
    ctr.remove().await.unwrap();
    agent.assert_serving().await;
}

#[tokio::test]
async fn get_oom_event_is_a_long_poll() {
    let agent = start_agent();
    let client = agent
        .client()
        .await
        .with_timeout(Duration::from_millis(500));
    let e = client.get_oom_event().await.unwrap_err();
    // No container was OOM-killed: the call is still waiting when the client gives up.
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    agent.assert_serving().await;
}

/// The limits this host's cgroup2 can enforce: hugetlb is enabled here; pids (and
/// memory, cpu) only where the controller is available (the VM tests cover them).
#[tokio::test]
async fn limits_are_written_to_the_cgroup_and_updated() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let controllers =
        std::fs::read_to_string(cgroup_root().join("cgroup.controllers")).unwrap_or_default();
    let id = unique("limits");
    let cgroup = format!("/hull-test/{id}");
    let dir = cgroup_root().join(cgroup.trim_start_matches('/'));
    let mut s = spec(rootfs.path(), &cgroup, &["sleep", "1000"]);
    let has_hugetlb = controllers.split_whitespace().any(|c| c == "hugetlb")
        && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if has_hugetlb {
        s.Linux.as_mut().unwrap().Resources = Some(oci::LinuxResources {
            HugepageLimits: vec![oci::LinuxHugepageLimit {
                Pagesize: "2MB".into(),
                Limit: 4 << 20,
                ..Default::default()
            }],
            ..Default::default()
        })
        .into();
    }
    let ctr = Ctr::create(&client, &id, s).await.unwrap();
    if has_hugetlb {
        assert_eq!(
            std::fs::read_to_string(dir.join("hugetlb.2MB.max"))
                .unwrap()
                .trim(),
            (4u64 << 20).to_string()
        );
    }
    ctr.start().await.unwrap();
    if has_hugetlb {
        let resources = oci::LinuxResources {
            HugepageLimits: vec![oci::LinuxHugepageLimit {
                Pagesize: "2MB".into(),
                Limit: 8 << 20,
                ..Default::default()
            }],
            ..Default::default()
        };
        client.update_container(&id, resources).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("hugetlb.2MB.max"))
                .unwrap()
                .trim(),
            (8u64 << 20).to_string()
        );
    }
    let resources = oci::LinuxResources {
        Pids: Some(oci::LinuxPids {
            Limit: 42,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let result = client.update_container(&id, resources).await;
    if controllers.split_whitespace().any(|c| c == "pids") {
        result.unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("pids.max"))
                .unwrap()
                .trim(),
            "42"
        );
    } else {
        // No pids controller on this host: a clear error, not a silent success.
        let e = result.unwrap_err();
        assert!(e.to_string().contains("pids"), "{e}");
    }
    // Updating a container that does not exist.
    let e = client
        .update_container("no-such-container", oci::LinuxResources::new())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(Code::NOT_FOUND), "{e}");
    ctr.remove().await.unwrap();
}

/// A storage given with CreateContainer is mounted for the container (here an
/// `ephemeral` tmpfs under the agent's run directory, bound into the container) and
/// released by RemoveContainer.
#[tokio::test]
async fn container_storages_are_held_until_remove() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let id = unique("vol");
    let volume = agent.run_dir().join(&id).join("volume");
    let mut s = spec(
        rootfs.path(),
        &format!("/hull-test/{id}"),
        &[
            "sh",
            "-c",
            "echo kept > /vol/file && grep -c ' /vol ' /proc/self/mountinfo",
        ],
    );
    s.Mounts.push(mount(
        "/vol",
        "bind",
        &volume.display().to_string(),
        &["rbind", "rw"],
    ));
    let req = CreateContainerRequest {
        container_id: id.clone(),
        exec_id: id.clone(),
        OCI: Some(s).into(),
        storages: vec![Storage {
            driver: "ephemeral".into(),
            source: "tmpfs".into(),
            fstype: "tmpfs".into(),
            options: vec!["size=1m".into()],
            mount_point: volume.display().to_string(),
            ..Default::default()
        }],
        ..Default::default()
    };
    client
        .create_container(&req)
        .await
        .expect("CreateContainer with a storage");
    let ctr = Ctr {
        client: &client,
        id: id.clone(),
    };
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", volume.display()))
    };
    assert!(
        mounted(),
        "the storage is mounted while the container lives"
    );
    let (status, out, err) = ctr.run().await;
    assert_eq!((status, out.as_str()), (0, "1\n"), "{err}");
    assert_eq!(
        std::fs::read_to_string(volume.join("file")).unwrap(),
        "kept\n"
    );
    ctr.remove().await.unwrap();
    assert!(!mounted(), "RemoveContainer released the storage");
}

fn create_request(id: &str, spec: oci::Spec, sandbox_pidns: bool) -> CreateContainerRequest {
    CreateContainerRequest {
        container_id: id.into(),
        exec_id: id.into(),
        OCI: Some(spec).into(),
        sandbox_pidns,
        ..Default::default()
    }
}

#[tokio::test]
async fn containers_that_ask_share_the_sandbox_pid_namespace() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let create = |req: CreateContainerRequest| {
        let client = &client;
        async move { client.create_container(&req).await }
    };
    let show_pid1 = ["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"];

    // Before CreateSandbox asked for one, there is no sandbox pid namespace to join.
    let early = unique("pidns-early");
    let err = create(create_request(
        &early,
        spec(rootfs.path(), &format!("/hull-test/{early}"), &show_pid1),
        true,
    ))
    .await
    .expect_err("no sandbox pid namespace yet");
    assert_eq!(code(&err), Some(Code::INVALID_ARGUMENT), "{err}");
    assert!(err.to_string().contains("sandbox_pidns"), "{err}");

    let req = CreateSandboxRequest {
        sandbox_id: unique("pidns-sandbox"),
        sandbox_pidns: true,
        ..Default::default()
    };
    client
        .create_sandbox(&req)
        .await
        .expect("CreateSandbox with sandbox_pidns");

    // The first container that asks creates the namespace; its init is pid 1 there.
    let holder_id = unique("pidns-holder");
    create(create_request(
        &holder_id,
        spec(
            rootfs.path(),
            &format!("/hull-test/{holder_id}"),
            &["sleep", "300"],
        ),
        true,
    ))
    .await
    .expect("the holder");
    let holder = Ctr {
        client: &client,
        id: holder_id.clone(),
    };
    holder.start().await.expect("start the holder");

    // A later one joins it and sees the holder's init as pid 1.
    let joiner_id = unique("pidns-joiner");
    create(create_request(
        &joiner_id,
        spec(
            rootfs.path(),
            &format!("/hull-test/{joiner_id}"),
            &show_pid1,
        ),
        true,
    ))
    .await
    .expect("the joiner");
    let joiner = Ctr {
        client: &client,
        id: joiner_id,
    };
    let (status, out, err) = joiner.run().await;
    assert_eq!(status, 0, "{err}");
    assert_eq!(out.trim(), "sleep 300", "pid 1 of the shared namespace");

    // One that does not ask keeps a pid namespace of its own.
    let alone_id = unique("pidns-alone");
    create(create_request(
        &alone_id,
        spec(rootfs.path(), &format!("/hull-test/{alone_id}"), &show_pid1),
        false,
    ))
    .await
    .expect("a container with its own pid namespace");
    let alone = Ctr {
        client: &client,
        id: alone_id,
    };
    let (status, out, err) = alone.run().await;
    assert_eq!(status, 0, "{err}");
    assert!(
        !out.trim().is_empty() && !out.contains("sleep 300"),
        "its own process is pid 1, not the holder: {out}"
    );

    for ctr in [&joiner, &alone, &holder] {
        ctr.remove().await.expect("RemoveContainer");
    }
    agent.assert_serving().await;
}

/// As Kata's agent: CreateSandbox makes the pod's IPC and UTS namespaces (the latter
/// named with its hostname) and every container listing `ipc`/`uts` joins them; the
/// spec's own hostname gives way to the pod's.
#[tokio::test]
async fn containers_of_a_pod_share_its_ipc_and_uts_namespaces() {
    require_containers();
    let agent = HostAgent::builder(env!("CARGO_BIN_EXE_hull-agent"))
        .run_dir("bundles")
        .env("HULL_AGENT_CGROUP_ROOT", cgroup_root())
        .isolation(hull_testkit::agent::Isolation::MountNamespace)
        .start();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let req = CreateSandboxRequest {
        sandbox_id: unique("pod-ns"),
        hostname: "pod-ns".into(),
        ..Default::default()
    };
    client.create_sandbox(&req).await.expect("CreateSandbox");
    let show = [
        "sh",
        "-c",
        "hostname; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts",
    ];
    let mut seen = Vec::new();
    for name in ["pod-ns-a", "pod-ns-b"] {
        let id = unique(name);
        let ctr = Ctr::create(
            &client,
            &id,
            spec(rootfs.path(), &format!("/hull-test/{id}"), &show),
        )
        .await
        .expect("CreateContainer");
        let (status, out, err) = ctr.run().await;
        assert_eq!(status, 0, "{err}");
        ctr.remove().await.expect("RemoveContainer");
        seen.push(out);
    }
    assert_eq!(seen[0], seen[1], "one IPC and UTS namespace for the pod");
    let lines: Vec<&str> = seen[0].lines().collect();
    assert_eq!(lines.first(), Some(&"pod-ns"), "{}", seen[0]);
    let agents = |kind: &str| {
        std::fs::read_link(format!("/proc/{}/ns/{kind}", agent.pid()))
            .unwrap()
            .display()
            .to_string()
    };
    assert!(
        lines.len() == 3 && lines[1].starts_with("ipc:"),
        "{}",
        seen[0]
    );
    assert_ne!(lines[1], agents("ipc"), "not the agent's IPC namespace");
    assert_ne!(lines[2], agents("uts"), "not the agent's UTS namespace");
    agent.assert_serving().await;
}

#[tokio::test]
async fn guest_hooks_run_around_the_container_lifecycle() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let hooks = tempfile::tempdir().unwrap();
    let log = hooks.path().join("log");
    let hook = |kind: &str, body: String| {
        std::fs::create_dir_all(hooks.path().join(kind)).unwrap();
        let path = hooks.path().join(kind).join("hook");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // Each hook appends "<kind> <state JSON>"; prestart refuses containers named bad-*.
    for kind in ["prestart", "poststart", "poststop"] {
        let refuse = if kind == "prestart" {
            "case \"$state\" in *'\"id\":\"bad-'*) echo refused >&2; exit 5;; esac"
        } else {
            ""
        };
        hook(
            kind,
            format!(
                "state=$(cat); {refuse}\necho \"{kind} $state\" >> {}",
                log.display()
            ),
        );
    }
    let req = CreateSandboxRequest {
        sandbox_id: unique("hooks-sandbox"),
        guest_hook_path: hooks.path().display().to_string(),
        ..Default::default()
    };
    client
        .create_sandbox(&req)
        .await
        .expect("CreateSandbox with guest hooks");

    let id = unique("hooked");
    let ctr = Ctr::create(
        &client,
        &id,
        spec(rootfs.path(), &format!("/hull-test/{id}"), &["true"]),
    )
    .await
    .expect("CreateContainer");
    let (status, _, err) = ctr.run().await;
    assert_eq!(status, 0, "{err}");
    ctr.remove().await.expect("RemoveContainer");
    let text = std::fs::read_to_string(&log).expect("the hooks ran");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, (kind, status)) in lines.iter().zip([
        ("prestart", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ]) {
        assert!(line.starts_with(kind), "{text}");
        let state: serde_json::Value = serde_json::from_str(&line[kind.len() + 1..]).unwrap();
        assert_eq!(state["id"], id.as_str());
        assert_eq!(state["status"], status);
    }

    // A failing prestart hook fails CreateContainer and leaves no container behind.
    let bad = unique("bad");
    let err = Ctr::create(
        &client,
        &bad,
        spec(rootfs.path(), &format!("/hull-test/{bad}"), &["true"]),
    )
    .await
    .err()
    .expect("the prestart hook refuses it");
    assert_eq!(code(&err), Some(Code::FAILED_PRECONDITION), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
    let gone = Ctr {
        client: &client,
        id: bad,
    };
    assert_eq!(
        gone.start().await.err().and_then(|e| code(&e)),
        Some(Code::NOT_FOUND)
    );
    agent.assert_serving().await;
}

/// A spec's hooks run as Kata's agent runs them: prestart, createRuntime, poststart and
/// poststop in the agent's namespaces, createContainer in the container's before
/// `pivot_root`, startContainer inside it at the start; each reads the OCI state.
#[tokio::test]
async fn spec_hooks_run_where_and_when_oci_says() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("log");
    // Every hook appends "<kind> <status> <id>"; startContainer's lands in the rootfs.
    let hook = |kind: &str, file: &Path, extra: &str| oci::Hook {
        Path: "/bin/sh".into(),
        Args: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "state=$(cat); {extra} echo \"{kind} $state\" >> {}",
                file.display()
            ),
        ],
        Env: vec!["PATH=/bin:/usr/bin".into()],
        Timeout: 5,
        ..Default::default()
    };
    let hooks = |refuse_start: bool| oci::Hooks {
        Prestart: vec![hook("prestart", &log, "")],
        CreateRuntime: vec![hook("createRuntime", &log, "")],
        CreateContainer: vec![hook("createContainer", &log, "")],
        StartContainer: vec![hook(
            "startContainer",
            Path::new("/root/hooks"),
            if refuse_start {
                "echo no start >&2; exit 9;"
            } else {
                ""
            },
        )],
        Poststart: vec![hook("poststart", &log, "")],
        Poststop: vec![hook("poststop", &log, "")],
        ..Default::default()
    };
    let id = unique("spec-hooks");
    let mut s = spec(rootfs.path(), &format!("/hull-test/{id}"), &["true"]);
    s.Hooks = Some(hooks(false)).into();
    let ctr = Ctr::create(&client, &id, s).await.expect("CreateContainer");
    let (status, _, err) = ctr.run().await;
    assert_eq!(status, 0, "{err}");
    ctr.remove().await.expect("RemoveContainer");
    let text = std::fs::read_to_string(&log).expect("the hooks ran");
    let kinds: Vec<(&str, serde_json::Value)> = text
        .lines()
        .map(|line| {
            let (kind, json) = line.split_once(' ').unwrap();
            (kind, serde_json::from_str(json).unwrap())
        })
        .collect();
    let order: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        order,
        [
            "createContainer",
            "prestart",
            "createRuntime",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    for ((kind, state), status) in kinds
        .iter()
        .zip(["created", "created", "created", "running", "stopped"])
    {
        assert_eq!(state["id"], id.as_str(), "{kind}");
        assert_eq!(state["status"], status, "{kind}");
        assert!(state["bundle"].as_str().unwrap().ends_with(&id), "{kind}");
    }
    // startContainer ran inside the container: its file is in the rootfs.
    let inside = std::fs::read_to_string(rootfs.path().join("root/hooks")).unwrap();
    assert!(inside.starts_with("startContainer {"), "{inside}");

    // A failing startContainer hook fails StartContainer, naming the hook.
    let id = unique("spec-hooks-refused");
    let mut s = spec(rootfs.path(), &format!("/hull-test/{id}"), &["true"]);
    s.Hooks = Some(hooks(true)).into();
    let ctr = Ctr::create(&client, &id, s).await.expect("CreateContainer");
    let err = ctr
        .start()
        .await
        .expect_err("the startContainer hook refuses");
    assert_eq!(code(&err), Some(Code::FAILED_PRECONDITION), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("startContainer hook /bin/sh") && text.contains("no start"),
        "{text}"
    );
    let _ = ctr.remove().await;
    agent.assert_serving().await;
}

/// A process that cannot run as asked is the request's fault: INVALID_ARGUMENT, with
/// runc's words, at CreateContainer (the executable is looked up before the start gate),
/// at StartContainer (when only `execve` finds out) and at ExecProcess.
#[tokio::test]
async fn a_process_that_cannot_run_is_an_invalid_argument() {
    let agent = start_agent();
    let rootfs = busybox_rootfs();
    let client = client(&agent).await;
    std::fs::write(rootfs.path().join("etc/not-executable"), "data\n").unwrap();
    let script = rootfs.path().join("bin/no-interpreter");
    std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = |what: &str, answer: Result<(), ClientError>, words: &str| {
        assert_refused(what, answer, Code::INVALID_ARGUMENT, words);
    };

    for (args, words) in [
        (
            "/bin/nope",
            "container setup failed: /bin/nope: no such file or directory",
        ),
        (
            "no-such-binary",
            "container setup failed: no-such-binary: executable file not found in $PATH",
        ),
        (
            "/etc/not-executable",
            "container setup failed: /etc/not-executable: permission denied",
        ),
    ] {
        let id = unique("noexec");
        let cgroup = format!("/hull-test/{id}");
        let answer = Ctr::create(&client, &id, spec(rootfs.path(), &cgroup, &[args]))
            .await
            .map(drop);
        refused("CreateContainer", answer, words);
        assert!(
            !cgroup_root().join("hull-test").join(&id).exists(),
            "cgroup left behind"
        );
    }

    // The file is there, but execve cannot run it: StartContainer says so.
    let id = unique("nointerp");
    let cgroup = format!("/hull-test/{id}");
    let ctr = Ctr::create(
        &client,
        &id,
        spec(rootfs.path(), &cgroup, &["/bin/no-interpreter"]),
    )
    .await
    .unwrap();
    refused(
        "StartContainer",
        ctr.start().await,
        "/bin/no-interpreter: no such file or directory",
    );
    ctr.remove().await.unwrap();

    let id = unique("execs");
    let cgroup = format!("/hull-test/{id}");
    let ctr = Ctr::create(
        &client,
        &id,
        spec(rootfs.path(), &cgroup, &["sleep", "1000"]),
    )
    .await
    .unwrap();
    ctr.start().await.unwrap();
    refused(
        "ExecProcess",
        ctr.exec("e1", &["no-such-binary"], false).await,
        "no-such-binary: executable file not found in $PATH",
    );
    let mut process = oci::Process::new();
    process.Args = vec!["true".into()];
    process.Env = vec!["PATH=/bin".into()];
    process.Cwd = "/no/such/dir".into();
    process.User = Some(oci::User::new()).into();
    let req = ExecProcessRequest {
        container_id: id.clone(),
        exec_id: "e2".into(),
        process: Some(process).into(),
        ..Default::default()
    };
    refused(
        "ExecProcess in a missing cwd",
        client.exec_process(&req).await,
        "working directory /no/such/dir: ENOENT",
    );
    // The container is unharmed.
    ctr.exec("e3", &["true"], false).await.unwrap();
    assert_eq!(ctr.wait("e3").await, 0);
    ctr.signal("", 9).await.unwrap();
    assert_eq!(ctr.wait("").await, 137);
    ctr.remove().await.unwrap();
    agent.assert_serving().await;
}

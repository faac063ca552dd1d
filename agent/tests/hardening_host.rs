//! What a hostile or careless peer can cost the agent, on the host: the real `hull-agent`
//! on a Unix socket, attacked with raw connections and hand-made ttRPC frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hull_agent::server::limits::{FRAME_BUDGET, MAX_CONNECTIONS, MAX_FRAME};
use hull_testkit::HostAgent;
use hull_testkit::agent::AgentBuilder;
use protobuf::Message;

/// A `hull-agent` (the test kit's fixture) with an open-file soft limit of 256, below
/// the hard one, so that raising it shows.
fn builder() -> AgentBuilder {
    HostAgent::builder(env!("CARGO_BIN_EXE_hull-agent"))
        .run_dir("run")
        .nofile(256, None)
}

/// [`builder`], started.
fn start() -> HostAgent {
    builder().start()
}

/// A raw connection whose reads give up after 200 ms.
fn raw(agent: &HostAgent) -> UnixStream {
    let stream = agent.raw();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    stream
}

fn header(len: u32, stream_id: u32) -> Vec<u8> {
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.push(1);
    out.push(0);
    out
}

/// Whether the agent closed `stream` (end of file or reset), as opposed to keeping it
/// open and silent.
fn closed_by_agent(stream: &mut UnixStream) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn health_check_frame(stream_id: u32) -> Vec<u8> {
    let mut req = ttrpc::Request::new();
    req.service = "grpc.Health".into();
    req.method = "Check".into();
    let body = req.write_to_bytes().unwrap();
    let mut out = header(u32::try_from(body.len()).unwrap(), stream_id);
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn the_open_file_soft_limit_is_raised_to_the_hard_one() {
    let agent = start();
    agent.assert_serving().await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "{line}");
    assert_ne!(fields[3], "256", "{line}");
}

/// Partly sent maximal frames: past the budget, the stalled ones are closed (each would
/// pin a 4 MiB buffer), and the agent keeps serving.
#[tokio::test]
async fn stalled_partial_frames_cannot_pin_more_than_the_budget() {
    let agent = start();
    let holders = FRAME_BUDGET / MAX_FRAME as usize;
    let mut conns = Vec::new();
    for _ in 0..holders + 2 {
        let mut conn = raw(&agent);
        conn.write_all(&header(MAX_FRAME, 1)).unwrap();
        conn.write_all(&[0u8; 1000]).unwrap();
        conns.push(conn);
        std::thread::sleep(Duration::from_millis(20));
    }
    let closed = conns.iter_mut().map(closed_by_agent).filter(|&c| c).count();
    assert_eq!(closed, 2, "connections closed out of {}", holders + 2);
    agent.assert_serving().await;
}

/// One connection more than the cap: the longest idle one is closed and the new one is
/// served.
#[tokio::test]
async fn past_the_connection_cap_the_longest_idle_one_is_shed() {
    let agent = start();
    let mut conns: Vec<UnixStream> = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        conns.push(raw(&agent));
    }
    // Let the agent admit them all, in order.
    std::thread::sleep(Duration::from_millis(300));
    let mut newest = raw(&agent);
    newest.write_all(&health_check_frame(1)).unwrap();
    newest
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = [0u8; 10];
    newest
        .read_exact(&mut answer)
        .expect("the newest connection is served");
    assert!(
        closed_by_agent(&mut conns[0]),
        "the oldest idle connection stayed open"
    );
    assert!(!closed_by_agent(&mut conns[MAX_CONNECTIONS - 1]));
}

/// An agent that finds a dead predecessor's marker (as after hull-init restarted a
/// crashed agent) refuses CreateContainer until CreateSandbox, naming it.
#[tokio::test]
async fn after_a_restart_create_container_needs_create_sandbox() {
    use hull_agent::sandbox::leftovers::MARKER;
    use hull_protocols::agent::CreateContainerRequest;
    use hull_protocols::oci;
    // A pid that no longer runs.
    let mut gone = Command::new("/bin/true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let builder = builder();
    let run = builder.dir().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join(MARKER), dead_pid.to_string()).unwrap();
    let agent = builder.start();
    let client = agent.client().await;
    let spec = oci::Spec {
        Version: "1.0.2".into(),
        Process: Some(oci::Process {
            Args: vec!["/bin/true".into()],
            Cwd: "/".into(),
            ..Default::default()
        })
        .into(),
        Root: Some(oci::Root {
            Path: "/nonexistent-rootfs".into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    let req = CreateContainerRequest {
        container_id: "c1".into(),
        exec_id: "c1".into(),
        OCI: Some(spec).into(),
        ..Default::default()
    };
    let err = client.create_container(&req).await.unwrap_err();
    assert_eq!(
        err.rpc_code(),
        Some(ttrpc::Code::FAILED_PRECONDITION),
        "{err}"
    );
    assert!(err.to_string().contains("CreateSandbox"), "{err}");
}

/// A request whose payload is not the method's message is answered INVALID_ARGUMENT
/// naming the method (ttRPC itself answers UNKNOWN "Unpack request error").
#[tokio::test]
async fn an_undecodable_payload_is_invalid_argument_naming_the_method() {
    let agent = start();
    let mut raw = raw(&agent);
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = ttrpc::Request::new();
    req.service = "grpc.AgentService".into();
    req.method = "GetGuestDetails".into();
    req.payload = vec![0xff; 8];
    let body = req.write_to_bytes().unwrap();
    let mut frame = header(u32::try_from(body.len()).unwrap(), 1);
    frame.extend_from_slice(&body);
    raw.write_all(&frame).unwrap();
    let mut head = [0u8; 10];
    raw.read_exact(&mut head).unwrap();
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut body = vec![0u8; len];
    raw.read_exact(&mut body).unwrap();
    let response = ttrpc::Response::parse_from_bytes(&body).unwrap();
    let status = response.status.into_option().unwrap_or_default();
    assert_eq!(
        status.code(),
        ttrpc::Code::INVALID_ARGUMENT,
        "{}",
        status.message
    );
    assert!(
        status
            .message
            .contains("/grpc.AgentService/GetGuestDetails"),
        "{}",
        status.message
    );
}

/// CPU time (user + system, clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit_once(')').unwrap().1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of stat, 12 and 13 after "pid (comm)".
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of file descriptors, the agent neither spins accepting nor floods its log: it
/// backs off and logs once per interval.
#[tokio::test]
async fn out_of_file_descriptors_the_agent_backs_off_and_logs_rarely() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let agent = builder()
        .nofile(256, Some(40))
        .stderr(Stdio::from(log.reopen().unwrap()))
        .start();
    agent.assert_serving().await;
    // More connections than the agent has descriptors for: the last ones wait in the
    // listen backlog while accept(2) fails with EMFILE.
    let conns: Vec<UnixStream> = (0..60).map(|_| raw(&agent)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(agent.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(agent.pid()) - before;
    let text = std::fs::read_to_string(log.path()).unwrap();
    let failures = text.matches("cannot accept connections").count();
    drop(conns);
    assert!(
        used < 50,
        "the agent used {used} ticks in 2 s at EMFILE: it spins"
    );
    assert!(
        (1..=2).contains(&failures),
        "{failures} accept-failure lines in the log (wanted 1 or 2):\n{text}"
    );
    assert!(text.contains("fd_exhaustion=true"), "{text}");
}

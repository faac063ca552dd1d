//! A small QMP client: QEMU's JSON machine protocol on a Unix socket, for hot-plugging
//! devices, vCPUs and memory into a running guest and querying it, as Kata's runtimes do.
//!
//! [`Qmp::connect`] reads the greeting and leaves capabilities negotiation
//! (`qmp_capabilities`), so the connection is in command mode. [`Qmp::execute`] sends one
//! command and returns its `return` value; a QMP error comes back as
//! [`QmpError::Command`] with QEMU's class and description. Asynchronous events that
//! arrive meanwhile are kept, in order, for [`Qmp::wait_event`] and [`Qmp::take_events`].
//! Every read is bounded by a timeout.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a command may take unless told otherwise.
pub const DEFAULT_QMP_TIMEOUT: Duration = Duration::from_secs(30);

/// What can go wrong talking QMP.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached within the connect timeout.
    #[error("cannot connect to QMP at {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The last connect error.
        #[source]
        source: std::io::Error,
    },

    /// Reading or writing the socket failed.
    #[error("QMP I/O: {0}")]
    Io(#[from] std::io::Error),

    /// QEMU closed the connection.
    #[error("QMP connection closed by QEMU")]
    Closed,

    /// Nothing (or not the awaited thing) arrived in time.
    #[error("QMP: no {what} within {timeout:?}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// For how long.
        timeout: Duration,
    },

    /// QEMU sent something that is not QMP.
    #[error("QMP protocol: {0}")]
    Protocol(String),

    /// The guest answered a hot-plug with a failure (`ACPI_DEVICE_OST` status not 0).
    #[error("the guest refused the hot-plug of {device}: {event}")]
    Refused {
        /// The device id.
        device: String,
        /// The whole event.
        event: String,
    },

    /// The command failed; QEMU's error class (e.g. `GenericError`, `DeviceNotFound`) and
    /// description.
    #[error("QMP {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// One QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    stream: UnixStream,
    /// Bytes read but not yet split into lines.
    pending: Vec<u8>,
    /// Events received and not yet taken.
    events: VecDeque<Value>,
    /// The bound on one command.
    timeout: Duration,
    /// QEMU's version from the greeting (`major.minor.micro`).
    version: String,
    next_id: u64,
}

impl Qmp {
    /// Connects to the QMP socket at `path`, retrying until `timeout` (QEMU creates it as
    /// it starts), reads the greeting and negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, QmpError> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(source) if start.elapsed() >= timeout => {
                    return Err(QmpError::Connect {
                        path: path.to_path_buf(),
                        source,
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let mut qmp = Self {
            stream,
            pending: Vec::new(),
            events: VecDeque::new(),
            timeout: DEFAULT_QMP_TIMEOUT,
            version: String::new(),
            next_id: 0,
        };
        let greeting = match qmp.read_message(start + timeout, "greeting") {
            Err(QmpError::Timeout { what, .. }) => return Err(QmpError::Timeout { what, timeout }),
            other => other?,
        };
        let version = greeting
            .pointer("/QMP/version/qemu")
            .ok_or_else(|| QmpError::Protocol(format!("not a QMP greeting: {greeting}")))?;
        qmp.version = format!(
            "{}.{}.{}",
            version["major"], version["minor"], version["micro"]
        );
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Sets the bound on each later command.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// QEMU's version, from the greeting.
    pub fn qemu_version(&self) -> &str {
        &self.version
    }

    /// Runs `command` with `arguments` (a JSON object, or `None`) and returns its
    /// `return` value; a QMP error is [`QmpError::Command`] with QEMU's class and text.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        self.next_id += 1;
        let id = format!("hull-{}", self.next_id);
        let mut request = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.stream.write_all(line.as_bytes())?;
        tracing::debug!(%command, "QMP request");
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.read_message(deadline, &format!("answer to {command}"))?;
            if message.get("event").is_some() {
                self.events.push_back(message);
                continue;
            }
            if message.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                return Err(QmpError::Protocol(format!(
                    "answer for another request to {command}: {message}"
                )));
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let text = |key: &str| {
                    error
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string()
                };
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: text("class"),
                    desc: text("desc"),
                });
            }
            return Err(QmpError::Protocol(format!(
                "neither return nor error: {message}"
            )));
        }
    }

    /// Waits up to `timeout` for an event named `name` for which `matches` holds (given
    /// its `data`, `Null` when it has none), and returns the whole event. Events received
    /// before, skipped or not, stay queued except the one returned.
    pub fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, QmpError> {
        let is_it = |event: &Value| {
            event.get("event").and_then(Value::as_str) == Some(name)
                && matches(event.get("data").unwrap_or(&Value::Null))
        };
        if let Some(at) = self.events.iter().position(is_it) {
            return Ok(self.events.remove(at).unwrap_or(Value::Null));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let message = match self.read_message(deadline, &format!("{name} event")) {
                Err(QmpError::Timeout { .. }) => {
                    return Err(QmpError::Timeout {
                        what: format!("{name} event"),
                        timeout,
                    });
                }
                other => other?,
            };
            if message.get("event").is_none() {
                return Err(QmpError::Protocol(format!(
                    "unexpected message while waiting for {name}: {message}"
                )));
            }
            if is_it(&message) {
                return Ok(message);
            }
            self.events.push_back(message);
        }
    }

    /// Plugs a vCPU into the first free slot `query-hotpluggable-cpus` offers, with its
    /// driver and topology, as device `id`.
    pub fn plug_vcpu(&mut self, id: &str) -> Result<(), QmpError> {
        let cpus = self.execute("query-hotpluggable-cpus", None)?;
        let free = cpus
            .as_array()
            .and_then(|all| all.iter().find(|c| c.get("qom-path").is_none()))
            .ok_or_else(|| QmpError::Protocol(format!("no free vCPU slot in {cpus}")))?;
        let mut args = json!({ "driver": free["type"], "id": id });
        for (key, value) in free["props"].as_object().into_iter().flatten() {
            args[key] = value.clone();
        }
        self.execute("device_add", Some(args))?;
        Ok(())
    }

    /// Plugs a `size_mib` pc-dimm `id` backed by shared memory (vhost-user daemons map
    /// all guest RAM, so hot-plugged RAM must be shareable like the boot RAM); returns its
    /// guest physical address.
    pub fn plug_dimm(&mut self, id: &str, size_mib: u64) -> Result<u64, QmpError> {
        let backend = format!("{id}-mem");
        self.execute(
            "object-add",
            Some(json!({
                "qom-type": "memory-backend-memfd",
                "id": backend,
                "size": size_mib << 20,
                "share": true,
            })),
        )?;
        self.execute(
            "device_add",
            Some(json!({ "driver": "pc-dimm", "id": id, "memdev": backend })),
        )?;
        let devices = self.execute("query-memory-devices", None)?;
        devices
            .as_array()
            .and_then(|all| all.iter().find(|d| d["data"]["id"] == id))
            .and_then(|d| d["data"]["addr"].as_u64())
            .ok_or_else(|| {
                QmpError::Protocol(format!("{id} not in query-memory-devices: {devices}"))
            })
    }

    /// Waits up to `timeout` for the guest's ACPI `_OST` answer to the hot-plug of
    /// `device`; an answer other than success is a [`QmpError::Refused`].
    pub fn wait_acpi_ost(&mut self, device: &str, timeout: Duration) -> Result<(), QmpError> {
        let event = self.wait_event("ACPI_DEVICE_OST", timeout, |data| {
            data["info"]["device"] == device
        })?;
        if event["data"]["info"]["status"] != 0 {
            return Err(QmpError::Refused {
                device: device.to_string(),
                event: event.to_string(),
            });
        }
        Ok(())
    }

    /// Every event received and not yet taken, oldest first.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Reads one JSON message, waiting until `deadline` at most.
    fn read_message(&mut self, deadline: Instant, what: &str) -> Result<Value, QmpError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                return serde_json::from_str(text)
                    .map_err(|e| QmpError::Protocol(format!("{e}: {text}")));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.timeout_error(what));
            }
            self.stream.set_read_timeout(Some(deadline - now))?;
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(QmpError::Closed),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(self.timeout_error(what));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn timeout_error(&self, what: &str) -> QmpError {
        QmpError::Timeout {
            what: what.to_string(),
            timeout: self.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A fake QEMU: greets, then answers each request line with what `reply` says
    /// (several lines allowed), until the client hangs up.
    fn fake_qemu(
        dir: &Path,
        reply: impl Fn(&Value) -> Vec<Value> + Send + 'static,
    ) -> (PathBuf, std::thread::JoinHandle<Vec<Value>>) {
        let path = dir.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            writeln!(
                writer,
                r#"{{"QMP": {{"version": {{"qemu": {{"micro": 0, "minor": 2, "major": 7}}, "package": ""}}, "capabilities": ["oob"]}}}}"#
            )
            .unwrap();
            let mut seen = Vec::new();
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let request: Value = serde_json::from_str(&line).unwrap();
                for answer in reply(&request) {
                    writeln!(writer, "{answer}").unwrap();
                }
                seen.push(request);
            }
            seen
        });
        (path, handle)
    }

    fn ok(request: &Value, value: Value) -> Value {
        json!({ "return": value, "id": request["id"] })
    }

    #[test]
    fn negotiates_and_returns_results_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake_qemu(dir.path(), |request| match request["execute"].as_str() {
            Some("query-status") => vec![ok(request, json!({"status": "running"}))],
            Some("device_del") => vec![json!({
                "error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"},
                "id": request["id"],
            })],
            _ => vec![ok(request, json!({}))],
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(qmp.qemu_version(), "7.2.0");
        let status = qmp.execute("query-status", None).unwrap();
        assert_eq!(status["status"], "running");
        let err = qmp
            .execute("device_del", Some(json!({"id": "x"})))
            .unwrap_err();
        match &err {
            QmpError::Command {
                command,
                class,
                desc,
            } => {
                assert_eq!(command, "device_del");
                assert_eq!(class, "DeviceNotFound");
                assert!(desc.contains("not found"), "{desc}");
            }
            other => panic!("expected a command error, got {other:?}"),
        }
        assert!(err.to_string().contains("DeviceNotFound"), "{err}");
        drop(qmp);
        let seen = server.join().unwrap();
        assert_eq!(seen[0]["execute"], "qmp_capabilities");
        assert_eq!(seen[2]["arguments"], json!({"id": "x"}));
    }

    #[test]
    fn events_are_kept_and_awaited() {
        let dir = tempfile::tempdir().unwrap();
        let (path, server) = fake_qemu(dir.path(), |request| match request["execute"].as_str() {
            Some("device_del") => vec![
                json!({"event": "ACPI_DEVICE_OST", "data": {"info": {"device": "d1"}}}),
                ok(request, json!({})),
                json!({"event": "DEVICE_DELETED", "data": {"device": "other"}}),
                json!({"event": "DEVICE_DELETED", "data": {"device": "d1"}}),
            ],
            _ => vec![ok(request, json!({}))],
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        qmp.execute("device_del", Some(json!({"id": "d1"})))
            .unwrap();
        let deleted = qmp
            .wait_event("DEVICE_DELETED", Duration::from_secs(5), |data| {
                data["device"] == "d1"
            })
            .unwrap();
        assert_eq!(deleted["data"]["device"], "d1");
        let ost = qmp
            .wait_event("ACPI_DEVICE_OST", Duration::from_secs(5), |_| true)
            .unwrap();
        assert_eq!(ost["data"]["info"]["device"], "d1");
        let rest = qmp.take_events();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0]["data"]["device"], "other");
        let err = qmp
            .wait_event("DEVICE_DELETED", Duration::from_millis(100), |_| true)
            .unwrap_err();
        assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
        drop(qmp);
        server.join().unwrap();
    }

    #[test]
    fn a_silent_qemu_times_out_and_a_missing_socket_fails_to_connect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let err = Qmp::connect(&path, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, QmpError::Timeout { .. }), "{err:?}");
        drop(listener);
        let err = Qmp::connect(&dir.path().join("none"), Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, QmpError::Connect { .. }), "{err:?}");
    }
}

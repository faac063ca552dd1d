//! `GetDiagnosticData`: data the host asks for by `log_type`. Kata's agent defines one
//! type, `termination_log`: the container's Kubernetes termination message, the file
//! that the annotation `io.kubernetes.container.terminationMessagePath` names inside the
//! container, read at its bind mount's source in the guest (at most 4 KiB, as
//! Kubernetes caps it; a file not written yet reads as empty).

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// The annotation naming the termination message's path inside the container.
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// Kubernetes caps termination messages at 4 KiB.
pub const TERMINATION_MESSAGE_MAX: u64 = 4096;

/// The log types of `GetDiagnosticData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    /// A container's termination message.
    TerminationLog,
}

impl LogType {
    /// Every type, by its wire name.
    pub const ALL: &[(&str, LogType)] = &[("termination_log", LogType::TerminationLog)];

    /// The type named `name`.
    pub fn parse(name: &str) -> Result<Self, DiagnosticError> {
        Self::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| DiagnosticError::UnknownType {
                name: name.to_string(),
            })
    }
}

/// What can go wrong collecting diagnostic data.
#[derive(Debug, thiserror::Error)]
pub enum DiagnosticError {
    /// The log type is not one this agent knows.
    #[error("unsupported diagnostic log_type {name:?} (supported: termination_log)")]
    UnknownType {
        /// The type asked for.
        name: String,
    },
    /// The container's spec has no termination message annotation.
    #[error("container {container} has no {TERMINATION_MESSAGE_PATH} annotation")]
    NoTerminationPath {
        /// The container's id.
        container: String,
    },
    /// No mount of the container's spec has the termination message path as destination.
    #[error("container {container}: no mount for the termination message path {path}")]
    NoTerminationMount {
        /// The container's id.
        container: String,
        /// The path inside the container.
        path: String,
    },
    /// The termination message could not be read.
    #[error("reading the termination message {path}: {source}")]
    Read {
        /// The guest file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A container's termination message, as its spec places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationLog {
    /// The path inside the container (the annotation's value).
    pub path: String,
    /// The source of the bind mount at that path: the file in the guest.
    pub source: Option<PathBuf>,
}

/// Where a container's termination message is, as its spec says (`None`: the spec has
/// no annotation for one).
pub fn termination_log_of(spec: &Spec) -> Option<TerminationLog> {
    let path = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(TERMINATION_MESSAGE_PATH))?;
    let destination = Path::new(path);
    let source = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| m.destination() == destination)
        .find_map(|m| m.source().clone());
    Some(TerminationLog {
        path: path.clone(),
        source,
    })
}

/// Container `container`'s termination message, from what [`termination_log_of`] found.
pub fn container_termination_log(
    container: &str,
    log: Option<&TerminationLog>,
) -> Result<String, DiagnosticError> {
    let log = log.ok_or_else(|| DiagnosticError::NoTerminationPath {
        container: container.to_string(),
    })?;
    let source = log
        .source
        .as_deref()
        .ok_or_else(|| DiagnosticError::NoTerminationMount {
            container: container.to_string(),
            path: log.path.clone(),
        })?;
    read_termination_log(source)
}

/// Reads a termination message: at most [`TERMINATION_MESSAGE_MAX`] bytes, invalid
/// UTF-8 replaced; a file not there yet reads as empty.
pub fn read_termination_log(path: &Path) -> Result<String, DiagnosticError> {
    use std::io::Read;
    let read_error = |source| DiagnosticError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(read_error(e)),
    };
    let mut bytes = Vec::new();
    file.take(TERMINATION_MESSAGE_MAX)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(annotation: Option<&str>) -> Spec {
        let mut value = serde_json::json!({
            "ociVersion": "1.0.2",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev/termination-log", "type": "bind",
                 "source": "/run/kata-containers/shared/containers/c1-termination-log"}
            ]
        });
        if let Some(path) = annotation {
            value["annotations"] = serde_json::json!({ TERMINATION_MESSAGE_PATH: path });
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn log_types_are_parsed_by_their_wire_name() {
        assert_eq!(
            LogType::parse("termination_log").unwrap(),
            LogType::TerminationLog
        );
        let error = LogType::parse("dmesg").unwrap_err();
        assert!(error.to_string().contains("\"dmesg\""), "{error}");
    }

    #[test]
    fn the_termination_log_is_found_at_its_mount_source() {
        let found = termination_log_of(&spec(Some("/dev/termination-log"))).unwrap();
        assert_eq!(
            found.source,
            Some(PathBuf::from(
                "/run/kata-containers/shared/containers/c1-termination-log"
            ))
        );
        assert_eq!(termination_log_of(&spec(None)), None);
        assert!(matches!(
            container_termination_log("c1", None),
            Err(DiagnosticError::NoTerminationPath { .. })
        ));
        let unmounted = termination_log_of(&spec(Some("/elsewhere")));
        assert!(matches!(
            container_termination_log("c1", unmounted.as_ref()),
            Err(DiagnosticError::NoTerminationMount { .. })
        ));
        // Not written yet: empty.
        assert_eq!(container_termination_log("c1", Some(&found)).unwrap(), "");
    }

    #[test]
    fn the_termination_log_is_capped_and_may_be_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert_eq!(read_termination_log(&path).unwrap(), "");
        std::fs::write(&path, vec![b'x'; 10_000]).unwrap();
        assert_eq!(read_termination_log(&path).unwrap().len(), 4096);
        std::fs::write(&path, b"bye \xff").unwrap();
        assert_eq!(read_termination_log(&path).unwrap(), "bye \u{fffd}");
    }
}

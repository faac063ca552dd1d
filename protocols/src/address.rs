//! Agent addresses: where the agent listens, or where a host tool dials it.
//!
//! Three URI forms are understood:
//!
//! | form | meaning |
//! | --- | --- |
//! | `unix:///abs/path` | a Unix stream socket (tests, local agents) |
//! | `vsock://CID:PORT` | an `AF_VSOCK` socket; `CID` may be `-1` or `any` (`VMADDR_CID_ANY`, for listening) |
//! | `hvsock:///abs/path:PORT` | hybrid vsock: the host-side Unix socket of a VMM (Firecracker, Cloud Hypervisor, vhost-device-vsock); the client sends `CONNECT <PORT>\n` and expects `OK <n>\n` |
//!
//! [`AgentAddress`] implements [`FromStr`] and [`Display`]; the two round-trip.
//! The `unix://` and `vsock://` renderings are also what
//! `ttrpc::asynchronous::Server::bind` accepts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// `VMADDR_CID_ANY`: listen on every CID. Written `-1` (or `any`) in addresses.
pub const VSOCK_CID_ANY: u32 = u32::MAX;

/// `VMADDR_CID_HOST`: the host, seen from a guest.
pub const VSOCK_CID_HOST: u32 = 2;

/// Vsock port the agent's ttRPC server listens on, by convention.
pub const DEFAULT_AGENT_VSOCK_PORT: u32 = 1024;

/// Scheme prefix of a Unix socket address.
pub const UNIX_SCHEME: &str = "unix";
/// Scheme prefix of a vsock address.
pub const VSOCK_SCHEME: &str = "vsock";
/// Scheme prefix of a hybrid vsock address.
pub const HYBRID_VSOCK_SCHEME: &str = "hvsock";

/// Where the agent listens (guest side) or how to reach it (host side).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentAddress {
    /// A Unix stream socket at an absolute path.
    Unix(PathBuf),
    /// An `AF_VSOCK` address. `cid == VSOCK_CID_ANY` means "any" (listening).
    Vsock {
        /// Context id of the peer (or `VSOCK_CID_ANY`).
        cid: u32,
        /// Vsock port.
        port: u32,
    },
    /// Hybrid vsock: the VMM's Unix socket plus the guest vsock port to reach
    /// through it with a `CONNECT <port>` handshake.
    HybridVsock {
        /// Absolute path of the VMM's host-side Unix socket.
        path: PathBuf,
        /// Guest vsock port to connect to.
        port: u32,
    },
}

impl AgentAddress {
    /// The conventional guest listening address: `vsock://-1:1024`.
    pub fn default_guest_listen() -> Self {
        Self::Vsock {
            cid: VSOCK_CID_ANY,
            port: DEFAULT_AGENT_VSOCK_PORT,
        }
    }

    /// The URI scheme of this address (`unix`, `vsock` or `hvsock`).
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::Unix(_) => UNIX_SCHEME,
            Self::Vsock { .. } => VSOCK_SCHEME,
            Self::HybridVsock { .. } => HYBRID_VSOCK_SCHEME,
        }
    }
}

/// Why an address string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The string was empty (or only whitespace).
    #[error(
        "agent address is empty; expected unix:///PATH, vsock://CID:PORT or hvsock:///PATH:PORT"
    )]
    Empty,
    /// No `scheme://` prefix.
    #[error(
        "agent address {input:?} has no scheme; expected unix:///PATH, vsock://CID:PORT or hvsock:///PATH:PORT"
    )]
    MissingScheme {
        /// The whole input.
        input: String,
    },
    /// A scheme other than `unix`, `vsock` or `hvsock`.
    #[error(
        "agent address {input:?} has unsupported scheme {scheme:?}; expected unix, vsock or hvsock"
    )]
    UnsupportedScheme {
        /// The whole input.
        input: String,
        /// The scheme found.
        scheme: String,
    },
    /// The socket path is missing or not absolute.
    #[error(
        "agent address {input:?}: socket path {path:?} must be absolute (e.g. {scheme}:///run/agent.sock)"
    )]
    RelativePath {
        /// The whole input.
        input: String,
        /// The scheme of the address.
        scheme: &'static str,
        /// The path found.
        path: String,
    },
    /// `vsock://` without `CID:PORT`, or `hvsock://` without `:PORT`.
    #[error("agent address {input:?} has no port; expected {expected}")]
    MissingPort {
        /// The whole input.
        input: String,
        /// The expected form.
        expected: &'static str,
    },
    /// The port is not a decimal u32.
    #[error("agent address {input:?}: port {value:?} is not a number in 0..=4294967295")]
    InvalidPort {
        /// The whole input.
        input: String,
        /// The port text found.
        value: String,
    },
    /// The CID is not a decimal u32, `-1` or `any`.
    #[error(
        "agent address {input:?}: CID {value:?} is not a number in 0..=4294967295, -1 or \"any\""
    )]
    InvalidCid {
        /// The whole input.
        input: String,
        /// The CID text found.
        value: String,
    },
}

impl FromStr for AgentAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let input = s.trim();
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        let Some((scheme, rest)) = input.split_once("://") else {
            return Err(AddressError::MissingScheme {
                input: input.to_owned(),
            });
        };
        match scheme {
            UNIX_SCHEME => Ok(Self::Unix(absolute_path(input, UNIX_SCHEME, rest)?)),
            VSOCK_SCHEME => {
                let Some((cid, port)) = rest.rsplit_once(':') else {
                    return Err(AddressError::MissingPort {
                        input: input.to_owned(),
                        expected: "vsock://CID:PORT",
                    });
                };
                Ok(Self::Vsock {
                    cid: parse_cid(input, cid)?,
                    port: parse_port(input, port)?,
                })
            }
            HYBRID_VSOCK_SCHEME => {
                let Some((path, port)) = rest.rsplit_once(':') else {
                    return Err(AddressError::MissingPort {
                        input: input.to_owned(),
                        expected: "hvsock:///PATH:PORT",
                    });
                };
                Ok(Self::HybridVsock {
                    path: absolute_path(input, HYBRID_VSOCK_SCHEME, path)?,
                    port: parse_port(input, port)?,
                })
            }
            other => Err(AddressError::UnsupportedScheme {
                input: input.to_owned(),
                scheme: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for AgentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{UNIX_SCHEME}://{}", path.display()),
            Self::Vsock { cid, port } if *cid == VSOCK_CID_ANY => {
                write!(f, "{VSOCK_SCHEME}://-1:{port}")
            }
            Self::Vsock { cid, port } => write!(f, "{VSOCK_SCHEME}://{cid}:{port}"),
            Self::HybridVsock { path, port } => {
                write!(f, "{HYBRID_VSOCK_SCHEME}://{}:{port}", path.display())
            }
        }
    }
}

fn absolute_path(input: &str, scheme: &'static str, path: &str) -> Result<PathBuf, AddressError> {
    let p = Path::new(path);
    // `Path::is_absolute` accepts "/" alone; a socket cannot live there, but
    // that is for connect/bind to report.
    if path.is_empty() || !p.is_absolute() {
        return Err(AddressError::RelativePath {
            input: input.to_owned(),
            scheme,
            path: path.to_owned(),
        });
    }
    Ok(p.to_path_buf())
}

fn parse_port(input: &str, value: &str) -> Result<u32, AddressError> {
    parse_u32(value).ok_or_else(|| AddressError::InvalidPort {
        input: input.to_owned(),
        value: value.to_owned(),
    })
}

fn parse_cid(input: &str, value: &str) -> Result<u32, AddressError> {
    if value == "-1" || value.eq_ignore_ascii_case("any") {
        return Ok(VSOCK_CID_ANY);
    }
    parse_u32(value).ok_or_else(|| AddressError::InvalidCid {
        input: input.to_owned(),
        value: value.to_owned(),
    })
}

/// Strict decimal u32: digits only (no sign, no whitespace).
fn parse_u32(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<AgentAddress, AddressError> {
        s.parse()
    }

    #[test]
    fn parses_unix() {
        assert_eq!(
            parse("unix:///run/hull/agent.sock"),
            Ok(AgentAddress::Unix(PathBuf::from("/run/hull/agent.sock")))
        );
        // Surrounding whitespace (e.g. from an env file) is ignored.
        assert_eq!(
            parse("  unix:///tmp/a.sock\n"),
            Ok(AgentAddress::Unix(PathBuf::from("/tmp/a.sock")))
        );
    }

    #[test]
    fn parses_vsock() {
        assert_eq!(
            parse("vsock://3:1024"),
            Ok(AgentAddress::Vsock { cid: 3, port: 1024 })
        );
        assert_eq!(
            parse("vsock://-1:1024"),
            Ok(AgentAddress::Vsock {
                cid: VSOCK_CID_ANY,
                port: 1024
            })
        );
        assert_eq!(
            parse("vsock://ANY:5"),
            Ok(AgentAddress::Vsock {
                cid: VSOCK_CID_ANY,
                port: 5
            })
        );
        assert_eq!(
            parse("vsock://4294967295:4294967295"),
            Ok(AgentAddress::Vsock {
                cid: u32::MAX,
                port: u32::MAX
            })
        );
    }

    #[test]
    fn parses_hybrid_vsock() {
        assert_eq!(
            parse("hvsock:///run/vc/vm/abc/kata.hvsock:1024"),
            Ok(AgentAddress::HybridVsock {
                path: PathBuf::from("/run/vc/vm/abc/kata.hvsock"),
                port: 1024
            })
        );
        // Only the last colon separates the port.
        assert_eq!(
            parse("hvsock:///tmp/a:b.sock:7"),
            Ok(AgentAddress::HybridVsock {
                path: PathBuf::from("/tmp/a:b.sock"),
                port: 7
            })
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "unix:///run/hull/agent.sock",
            "vsock://3:1024",
            "vsock://-1:1024",
            "hvsock:///run/vm.sock:1024",
        ] {
            let addr = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(addr.to_string(), s);
            assert_eq!(parse(&addr.to_string()), Ok(addr));
        }
        assert_eq!(
            parse("vsock://any:1").map(|a| a.to_string()),
            Ok("vsock://-1:1".into())
        );
        assert_eq!(
            AgentAddress::default_guest_listen().to_string(),
            "vsock://-1:1024"
        );
    }

    #[test]
    fn rejects_empty_and_schemeless() {
        assert_eq!(parse(""), Err(AddressError::Empty));
        assert_eq!(parse("   "), Err(AddressError::Empty));
        assert!(matches!(
            parse("/run/agent.sock"),
            Err(AddressError::MissingScheme { .. })
        ));
        assert!(matches!(
            parse("3:1024"),
            Err(AddressError::MissingScheme { .. })
        ));
    }

    #[test]
    fn rejects_unknown_scheme() {
        match parse("tcp://127.0.0.1:80") {
            Err(AddressError::UnsupportedScheme { scheme, .. }) => assert_eq!(scheme, "tcp"),
            other => panic!("unexpected {other:?}"),
        }
        // Schemes are case sensitive, like ttrpc's.
        assert!(matches!(
            parse("UNIX:///a"),
            Err(AddressError::UnsupportedScheme { .. })
        ));
    }

    #[test]
    fn rejects_relative_or_missing_paths() {
        assert!(matches!(
            parse("unix://"),
            Err(AddressError::RelativePath { .. })
        ));
        assert!(matches!(
            parse("unix://run/agent.sock"),
            Err(AddressError::RelativePath { .. })
        ));
        assert!(matches!(
            parse("hvsock://vm.sock:1024"),
            Err(AddressError::RelativePath { .. })
        ));
        assert!(matches!(
            parse("hvsock://:1024"),
            Err(AddressError::RelativePath { .. })
        ));
    }

    #[test]
    fn rejects_bad_ports() {
        assert!(matches!(
            parse("vsock://3"),
            Err(AddressError::MissingPort { .. })
        ));
        assert!(matches!(
            parse("hvsock:///run/vm.sock"),
            Err(AddressError::RelativePath { .. }) | Err(AddressError::MissingPort { .. })
        ));
        for bad in [
            "vsock://3:",
            "vsock://3:-1",
            "vsock://3:+5",
            "vsock://3:4294967296",
            "vsock://3:10x",
            "hvsock:///run/vm.sock:",
            "hvsock:///run/vm.sock:port",
        ] {
            assert!(
                matches!(parse(bad), Err(AddressError::InvalidPort { .. })),
                "{bad}: {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn rejects_bad_cids() {
        for bad in [
            "vsock://:1024",
            "vsock://-2:1024",
            "vsock://x:1",
            "vsock://4294967296:1",
        ] {
            assert!(
                matches!(parse(bad), Err(AddressError::InvalidCid { .. })),
                "{bad}: {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let msg = parse("vsock://3:abc")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("vsock://3:abc") && msg.contains("\"abc\""),
            "{msg}"
        );
        let msg = parse("ftp://x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("\"ftp\""), "{msg}");
    }
}

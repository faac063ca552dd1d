//! Command-line definition.

use std::time::Duration;

use clap::Parser;
use hull_protocols::AgentAddress;

use crate::commands::Command;
use crate::output::Format;

/// Default per-call timeout, seconds.
pub const DEFAULT_TIMEOUT_SECS: &str = "30";
/// Default time to keep retrying the connection, seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: &str = "10";

/// Talk to a hull (or Kata-compatible) guest agent over ttRPC.
#[derive(Debug, Parser)]
#[command(name = "hull-ctl", version, about, long_about = None)]
pub struct Cli {
    /// Agent address: unix:///PATH, vsock://CID:PORT or hvsock:///PATH:PORT.
    #[arg(long, env = "HULL_AGENT_ADDR", value_name = "ADDR")]
    pub addr: AgentAddress,

    /// Timeout of each RPC, in seconds (0 = none).
    #[arg(long, global = true, value_name = "SECS", default_value = DEFAULT_TIMEOUT_SECS, value_parser = parse_secs)]
    pub timeout: Duration,

    /// How long to keep retrying the connection, in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value = DEFAULT_CONNECT_TIMEOUT_SECS, value_parser = parse_secs)]
    pub connect_timeout: Duration,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// More logs on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The output format selected by the flags.
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            Format::Human
        }
    }
}

/// Parses a non-negative number of seconds, fractions allowed ("0.5").
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a valid duration (must be finite and >= 0)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{HealthCommand, NetworkCommand, SandboxCommand};
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hull-ctl").chain(args.iter().copied()))
    }

    #[test]
    fn minimal_invocation_uses_defaults() {
        let cli = parse(&["--addr", "unix:///run/a.sock", "check"]).expect("parse");
        assert_eq!(cli.addr, AgentAddress::Unix("/run/a.sock".into()));
        assert_eq!(cli.timeout, Duration::from_secs(30));
        assert_eq!(cli.connect_timeout, Duration::from_secs(10));
        assert_eq!(cli.format(), Format::Human);
        assert!(matches!(cli.command, Command::Health(HealthCommand::Check)));
    }

    #[test]
    fn all_options() {
        let cli = parse(&[
            "--addr",
            "hvsock:///run/vm.sock:1024",
            "--timeout",
            "2.5",
            "--connect-timeout",
            "0",
            "--json",
            "-vv",
            "guest-details",
        ])
        .expect("parse");
        assert_eq!(
            cli.addr,
            AgentAddress::HybridVsock {
                path: "/run/vm.sock".into(),
                port: 1024
            }
        );
        assert_eq!(cli.timeout, Duration::from_millis(2500));
        assert_eq!(cli.connect_timeout, Duration::ZERO);
        assert_eq!(cli.format(), Format::Json);
        assert_eq!(cli.verbose, 2);
        assert!(matches!(
            cli.command,
            Command::Sandbox(SandboxCommand::GuestDetails)
        ));
    }

    #[test]
    fn every_command_parses() {
        for (name, check) in [
            (
                "check",
                (|c| matches!(c, Command::Health(HealthCommand::Check))) as fn(&Command) -> bool,
            ),
            ("version", |c| {
                matches!(c, Command::Health(HealthCommand::Version))
            }),
            ("guest-details", |c| {
                matches!(c, Command::Sandbox(SandboxCommand::GuestDetails))
            }),
            ("destroy-sandbox", |c| {
                matches!(c, Command::Sandbox(SandboxCommand::DestroySandbox))
            }),
            (
                "set-policy",
                |c| matches!(c, Command::Sandbox(SandboxCommand::SetPolicy { file }) if file.as_os_str() == "p.rego"),
            ),
            ("list-interfaces", |c| {
                matches!(c, Command::Network(NetworkCommand::ListInterfaces))
            }),
            ("list-routes", |c| {
                matches!(c, Command::Network(NetworkCommand::ListRoutes))
            }),
        ] {
            let args: &[&str] = if name == "set-policy" {
                &[name, "p.rego"]
            } else {
                &[name]
            };
            let cli = parse(&[&["--addr", "vsock://3:1024"], args].concat()).expect(name);
            assert!(check(&cli.command), "{name}: {:?}", cli.command);
        }
    }

    #[test]
    fn network_changes_take_flags_or_a_file() {
        let cli = parse(&[
            "--addr",
            "vsock://3:1024",
            "update-interface",
            "--mac",
            "52:54:00:12:34:56",
            "--name",
            "eth0",
            "--address",
            "10.0.2.15/24",
            "--address",
            "2001:db8::2/64",
            "--raw-flags",
            "0x1003",
        ])
        .expect("update-interface");
        let Command::Network(NetworkCommand::UpdateInterface(args)) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(args.addresses.len(), 2);
        assert_eq!(args.raw_flags, Some(0x1003));

        let cli = parse(&[
            "--addr",
            "vsock://3:1024",
            "update-routes",
            "--route",
            "default via 10.0.2.2 dev eth0",
        ])
        .expect("update-routes");
        assert!(matches!(
            cli.command,
            Command::Network(NetworkCommand::UpdateRoutes(_))
        ));
        let err = parse(&[
            "--addr",
            "vsock://3:1024",
            "update-routes",
            "--file",
            "r.json",
            "--route",
            "default dev eth0",
        ])
        .expect_err("a file and routes");
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        let err =
            parse(&["--addr", "vsock://3:1024", "add-arp-neighbors"]).expect_err("no neighbours");
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        parse(&[
            "--addr",
            "vsock://3:1024",
            "add-arp-neighbors",
            "--neighbor",
            "10.0.2.2 lladdr 52:55:0a:00:02:02 dev eth0",
        ])
        .expect("add-arp-neighbors");
    }

    #[test]
    fn lifecycle_commands_parse() {
        use crate::commands::ContainerCommand as C;
        let addr = ["--addr", "vsock://3:1024"];
        let parse_with =
            |args: &[&str]| parse(&[addr.as_slice(), args].concat()).map(|cli| cli.command);
        let Command::Sandbox(SandboxCommand::CreateSandbox(args)) =
            parse_with(&["create-sandbox", "--hostname", "box", "--shared-fs"]).unwrap()
        else {
            panic!("create-sandbox")
        };
        assert_eq!(args.shared_fs.as_deref(), Some("kataShared"));
        let Command::Sandbox(SandboxCommand::CreateSandbox(args)) =
            parse_with(&["create-sandbox", "--shared-fs", "myTag"]).unwrap()
        else {
            panic!("create-sandbox TAG")
        };
        assert_eq!(args.shared_fs.as_deref(), Some("myTag"));
        assert!(matches!(
            parse_with(&["create-container", "c1", "--bundle", "/b"]).unwrap(),
            Command::Container(C::CreateContainer(_))
        ));
        assert_eq!(
            parse_with(&["create-container", "c1"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        let Command::Container(C::Exec(exec)) =
            parse_with(&["exec", "c1", "e1", "-t", "--", "sh", "-c", "echo hi"]).unwrap()
        else {
            panic!("exec")
        };
        assert_eq!(exec.command, ["sh", "-c", "echo hi"]);
        assert!(exec.tty && !exec.detach);
        assert_eq!(
            parse_with(&["exec", "c1", "e1"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        let Command::Container(C::Signal { args, .. }) =
            parse_with(&["signal", "c1", "e1", "TERM"]).unwrap()
        else {
            panic!("signal")
        };
        assert_eq!(args, ["e1", "TERM"]);
        assert!(parse_with(&["signal", "c1", "e1", "TERM", "x"]).is_err());
        assert!(parse_with(&["signal", "c1"]).is_err());
        assert!(matches!(
            parse_with(&["wait", "c1"]).unwrap(),
            Command::Container(C::Wait { exec_id: None, .. })
        ));
        for args in [
            &["start", "c1"][..],
            &["stats", "c1"],
            &["remove", "c1", "--stop-timeout", "5"],
            &["run", "c1", "--bundle", "/b", "--rm"],
        ] {
            assert!(
                matches!(parse_with(args).unwrap(), Command::Container(_)),
                "{args:?}"
            );
        }
    }

    #[test]
    fn guest_service_commands_parse() {
        use crate::commands::GuestCommand as G;
        let addr = ["--addr", "vsock://3:1024"];
        let parse_with =
            |args: &[&str]| parse(&[addr.as_slice(), args].concat()).map(|cli| cli.command);
        let Command::Guest(G::CopyFile(copy)) = parse_with(&[
            "copy-file",
            "-r",
            "/tmp/x",
            "/run/kata-containers/shared/containers/x",
        ])
        .unwrap() else {
            panic!("copy-file")
        };
        assert!(copy.recursive);
        assert_eq!(copy.guest_path, "/run/kata-containers/shared/containers/x");
        assert_eq!(
            parse_with(&["copy-file", "/tmp/x"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        let Command::Guest(G::SetTime(time)) = parse_with(&["set-time", "--now"]).unwrap() else {
            panic!("set-time --now")
        };
        assert!(time.now && time.secs.is_none());
        let Command::Guest(G::SetTime(time)) = parse_with(&["set-time", "1700000000.5"]).unwrap()
        else {
            panic!("set-time SECS")
        };
        assert_eq!(time.secs, Some(1_700_000_000.5));
        assert_eq!(
            parse_with(&["set-time"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse_with(&["set-time", "--now", "5"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        let Command::Guest(G::Reseed(reseed)) = parse_with(&["reseed"]).unwrap() else {
            panic!("reseed")
        };
        assert_eq!(reseed.bytes, crate::commands::guest::DEFAULT_RESEED_BYTES);
        let Command::Guest(G::Reseed(reseed)) = parse_with(&["reseed", "--bytes", "0"]).unwrap()
        else {
            panic!("reseed --bytes")
        };
        assert_eq!(reseed.bytes, 0);
        assert!(matches!(
            parse_with(&["metrics", "--json"]).unwrap(),
            Command::Guest(G::Metrics)
        ));
    }

    #[test]
    fn options_may_follow_the_command() {
        // Options other than --addr are global: accepted after the command.
        let cli = parse(&[
            "--addr",
            "vsock://3:1024",
            "version",
            "--json",
            "--timeout",
            "1",
        ])
        .expect("parse");
        assert_eq!(cli.format(), Format::Json);
        assert_eq!(cli.timeout, Duration::from_secs(1));
    }

    #[test]
    fn bad_address_is_reported() {
        let err = parse(&["--addr", "tcp://1.2.3.4:5", "check"]).expect_err("bad addr");
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        let text = err.to_string();
        assert!(text.contains("unsupported scheme \"tcp\""), "{text}");
    }

    #[test]
    fn bad_timeouts_are_reported() {
        for bad in ["-1", "abc", "inf", "NaN"] {
            let opt = format!("--timeout={bad}");
            let err = parse(&["--addr", "vsock://3:1", &opt, "check"]).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::ValueValidation, "{bad}");
        }
    }

    #[test]
    fn missing_address_or_command() {
        // Make sure the environment does not supply the address.
        if std::env::var_os("HULL_AGENT_ADDR").is_none() {
            let err = parse(&["check"]).expect_err("no addr");
            assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        }
        let err = parse(&["--addr", "vsock://3:1"]).expect_err("no command");
        assert_eq!(err.kind(), ErrorKind::MissingSubcommand);
    }

    #[test]
    fn parse_secs_accepts_fractions() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_secs(" 3 "), Ok(Duration::from_secs(3)));
        assert!(parse_secs("").is_err());
    }

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

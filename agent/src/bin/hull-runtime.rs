//! `hull-runtime`: a runc-compatible command line over hull's container layer, for OCI
//! conformance suites on a host. See [`hull_agent::runtime_cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = hull_agent::runtime_cli::main_with_args(std::env::args_os().skip(1));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

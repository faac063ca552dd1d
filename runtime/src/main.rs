//! `hull-runtime`: a runc-compatible command line over hull's container layer
//! (`hull-container`), for OCI conformance suites on a host. The commands, the state
//! directory and how a container is built are described in [`cli`].

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = cli::main_with_args(std::env::args_os().skip(1));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

//! `hull-ctl`: a small command-line client of the hull guest agent.
//!
//! It speaks the Kata-compatible agent API over ttRPC (Unix socket, vsock
//! or hybrid vsock) through `hull_protocols::client`.
//!
//! ```text
//! hull-ctl --addr unix:///run/hull/agent.sock check
//! HULL_AGENT_ADDR=hvsock:///run/vm/hvsock:1024 hull-ctl --json guest-details
//! ```

mod cli;
mod commands;
mod output;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use hull_protocols::AgentClient;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(None) => ExitCode::SUCCESS,
        // A process's status: 0-255 as it is, anything else (there is none on Linux) 255.
        Ok(Some(status)) => ExitCode::from(u8::try_from(status).unwrap_or(u8::MAX)),
        Err(err) => {
            // One line, whole chain: "error: outer: inner: ...".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; warnings only unless `-v` (debug) or `-vv` (trace).
fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Runs the command; `Some(status)` when hull-ctl should exit with a process's status.
fn run(cli: Cli) -> anyhow::Result<Option<i32>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        tracing::debug!(addr = %cli.addr, "connecting");
        let client = AgentClient::connect(&cli.addr, cli.connect_timeout)
            .await?
            .with_timeout(cli.timeout);
        let outcome = commands::run(&client, &cli.command, cli.format()).await?;
        print!("{}", output::render(outcome.report.as_ref(), cli.format()));
        match outcome.failure {
            Some(failure) => Err(anyhow::anyhow!(failure)),
            None => Ok(outcome.exit_status),
        }
    })
}

//! The `hull-agent` binary. Exit status: 0 after `DestroySandbox` or SIGTERM (hull-init
//! then powers the VM off), 1 when serving failed, 2 for a configuration error.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use hull_agent::config::{AgentConfig, DEBUG_CONSOLE_MARKER};
use hull_agent::logging::{self, LogOutput};
use hull_agent::sandbox::Sandbox;
use hull_agent::server;

fn main() -> ExitCode {
    // A re-exec'd container helper never gets past this line.
    hull_agent::container::helper::run_if_helper();
    let config = match AgentConfig::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hull-agent: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let log_output = logging::init(&config);
    match run(config, log_output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("hull-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: AgentConfig, log_output: LogOutput) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        if let LogOutput::VsockPort {
            port,
            lines,
            dropped,
        } = log_output
        {
            tokio::spawn(logging::serve_on_vsock(port, lines, dropped));
        }
        if config.debug_console_requested {
            if config.debug_console_enabled(Path::new("/")) {
                tracing::error!(
                    "agent.debug_console: this agent was built without a debug console"
                );
            } else {
                tracing::warn!(
                    marker = DEBUG_CONSOLE_MARKER,
                    "agent.debug_console ignored: the image was not built with a debug console"
                );
            }
        }
        tracing::debug!(?config, "configuration");
        let sandbox = Arc::new(Sandbox::from_config(&config));
        let ending = server::serve(&config, sandbox).await?;
        tracing::info!(?ending, "agent exiting");
        Ok(())
    })
}

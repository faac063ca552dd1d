//! The `hull-agent` binary. Exit status: 0 after `DestroySandbox` or SIGTERM (hull-init
//! then powers the VM off), 1 when serving failed, 2 for a configuration error.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use hull_agent::config::{AgentConfig, DEBUG_CONSOLE_MARKER};
use hull_agent::debug_console;
use hull_agent::logging::{self, LogOutput};
use hull_agent::network::{Loopback, Network, NetworkSettings};
use hull_agent::sandbox::Sandbox;
use hull_agent::server;
use hull_agent::stdio_ports::{self, StdioConnections};

fn main() -> ExitCode {
    // A re-exec'd container helper never gets past this line.
    hull_container::helper::run_if_helper();
    let config = match AgentConfig::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hull-agent: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let log_output = logging::init(&config);
    raise_open_file_limit();
    keep_freed_buffers();
    match run(config, log_output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("hull-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Largest allocation the C allocator serves from its heap rather than a mapping of its
/// own: above a ReadStdout answer (1 MiB) with its protobuf and ttRPC framing.
const MMAP_THRESHOLD: libc::c_int = 2 << 20;
/// Free memory the allocator keeps at the top of a heap before giving it back.
const TRIM_THRESHOLD: libc::c_int = 4 << 20;

/// Lets a large ReadStdout answer reuse memory: each one takes about three buffers of
/// its size (the bytes read, the protobuf message, the ttRPC frame). By default glibc
/// maps the first, then gives the heap's top back once more than about twice that is
/// free, so every answer touched fresh pages: ~750 page faults per MiB, which under
/// TCG cost more than the copies. With fixed thresholds at most [`TRIM_THRESHOLD`] of
/// freed memory stays with each heap.
fn keep_freed_buffers() {
    for (param, value, name) in [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "M_MMAP_THRESHOLD"),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD, "M_TRIM_THRESHOLD"),
    ] {
        // SAFETY: mallopt only changes the allocator's tunables; any value is accepted
        // or refused (0) without touching memory of ours.
        if unsafe { libc::mallopt(param, value) } == 0 {
            tracing::debug!(param = name, value, "mallopt refused");
        }
    }
}

/// Raises the soft limit on open files to the hard limit (the kernel's default soft
/// limit, 1024, is reached by a few hundred connections and containers' stdio).
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "raised the open-file limit"),
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the open-file limit"),
    }
}

/// A previous agent (crashed, restarted by hull-init) left mounts, cgroups and
/// processes: tear them down and make CreateContainer wait for a new CreateSandbox.
/// Only under hull-init, in a guest, is the marker written and the teardown done: on a
/// host the directory and the cgroup root may be shared with other programs (a marker
/// found there still makes CreateContainer wait for CreateSandbox).
fn clean_up_after_a_previous_agent(config: &AgentConfig, sandbox: &Sandbox) {
    use hull_agent::sandbox::leftovers;
    // Read before this agent writes its own marker.
    let previous = leftovers::previous_instance(&config.run_dir);
    if config.under_init
        && let Err(e) = leftovers::mark_instance(&config.run_dir)
    {
        tracing::warn!(error = %e, dir = %config.run_dir.display(), "cannot write the agent's marker");
    }
    if !previous {
        return;
    }
    if !config.under_init {
        tracing::warn!(
            dir = %config.run_dir.display(),
            "a previous agent died: not under hull-init, its leftovers are not touched; CreateSandbox is needed again"
        );
        sandbox.mark_lost();
    } else {
        let found = leftovers::tear_down(&config.run_dir, Some(&config.cgroup_root));
        tracing::warn!(
            mounts = found.mounts,
            cgroups = found.cgroups,
            processes = found.processes,
            "a previous agent died: its sandbox and containers were torn down; CreateSandbox is needed again"
        );
        for failure in &found.failures {
            tracing::error!(%failure, "tearing down the previous agent's leftovers");
        }
        sandbox.mark_lost();
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
                tokio::spawn(debug_console::serve_on_vsock(config.debug_console_vport));
            } else {
                tracing::warn!(
                    marker = DEBUG_CONSOLE_MARKER,
                    "agent.debug_console ignored: the image was not built with a debug console"
                );
            }
        }
        tracing::debug!(?config, "configuration");
        let network = Network::new(NetworkSettings {
            hotplug_timeout: config.hotplug_timeout,
            ..NetworkSettings::default()
        });
        // The agent keeps serving without loopback: the runtime can still see why.
        match network.start().await {
            Ok(Loopback::BroughtUp) => tracing::info!("loopback lo is up"),
            Ok(Loopback::AlreadyUp) => tracing::info!("loopback lo was already up"),
            Err(e) => tracing::error!(error = %e, "cannot bring loopback lo up"),
        }
        let mut sandbox = Sandbox::with_config(&config).with_network(network);
        if let Some(port) = config.passfd_listener_port {
            let connections = Arc::new(StdioConnections::new(port));
            tokio::spawn(stdio_ports::serve_on_vsock(connections.clone()));
            sandbox = sandbox.with_stdio_connections(connections);
        }
        let sandbox = Arc::new(sandbox);
        clean_up_after_a_previous_agent(&config, &sandbox);
        let ending = server::serve(&config, sandbox).await?;
        tracing::info!(?ending, "agent exiting");
        Ok(())
    })
}

//! Boot sequence of PID 1: console, signals, mounts, config, hostname, then
//! the supervisor; every way out ends in [`shutdown::run`].

use tracing::{debug, error, info, warn};

use crate::config::{self, Config, ShutdownAction};
use crate::shutdown::{self, Reason};
use crate::signals::{self, Signals};
use crate::{console, hostname, logger, mountinfo, mounts, supervisor, uptime_ms};
use hull_common::cmdline::PROC_CMDLINE;

pub fn run() -> ! {
    // Before any file is opened: a closed fd 2 would make that file "stderr".
    let fds = console::fill_std_fds();
    logger::install();
    // Before anything else can happen: while blocked, a SIGTERM sent during
    // boot stays pending instead of being dropped by the kernel.
    let blocked = signals::block();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        uptime_ms = uptime_ms(),
        "starting"
    );
    if let Err(e) = blocked {
        error!(error = %e, "cannot set up signal handling");
        shutdown::run(Reason::BootFailure, None, ShutdownAction::default());
    }

    let mounted = mounts::mount_all();
    // Reattach even when a mount failed, so the error reaches the console.
    let fds = console::reattach(fds);
    if let Err(e) = mounted {
        error!(error = %e, "required mount failed");
        shutdown::run(Reason::BootFailure, None, ShutdownAction::default());
    }
    if fds.any_detached() {
        warn!("/dev/console cannot be opened, log lines may be lost");
    }

    log_root();
    let config = load_config();
    info!(
        debug = config.debug,
        hostname = config.hostname.as_str(),
        agent_restarts = config.agent_restarts,
        shutdown = config.shutdown.as_str(),
        "config"
    );
    match hostname::set(&config.hostname) {
        Ok(()) => debug!(hostname = config.hostname.as_str(), "hostname set"),
        Err(e) => warn!(hostname = config.hostname.as_str(), error = %e, "cannot set hostname"),
    }
    // Ctrl-Alt-Del then sends SIGINT to init instead of rebooting at once.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        warn!(error = %e, "cannot disable Ctrl-Alt-Del reboot");
    }

    let signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot set up signal handling");
            shutdown::run(Reason::BootFailure, None, ShutdownAction::default());
        }
    };
    info!(uptime_ms = uptime_ms(), "boot complete");
    let reason = supervisor::run(&signals, config.agent_restarts);
    shutdown::run(reason, Some(&signals), config.shutdown)
}

/// One line saying what `/` is (type, device, options: `dax=always` shows a DAX root).
fn log_root() {
    match std::fs::read(mountinfo::PROC_SELF_MOUNTINFO)
        .ok()
        .and_then(|data| mountinfo::describe_root(&data))
    {
        Some(root) => info!(
            fstype = root.fstype.as_str(),
            source = root.source.as_str(),
            device = root.device.as_str(),
            options = root.options.as_str(),
            "root"
        ),
        None => warn!("cannot describe the root mount"),
    }
}

fn load_config() -> Config {
    let text = match std::fs::read(PROC_CMDLINE) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            warn!(path = PROC_CMDLINE, error = %e, "cannot read kernel command line, using defaults");
            return Config::default();
        }
    };
    let (config, warnings) = config::parse(&text);
    logger::set_debug(config.debug);
    debug!(cmdline = text.trim_end(), "kernel command line");
    for w in warnings {
        warn!(detail = %w, "kernel command line");
    }
    config
}

//! Boot sequence of PID 1: console, signals, mounts, config, hostname, then
//! the supervisor; every way out ends in [`shutdown::run`].

use alloc::string::String;
use alloc::vec::Vec;

use hull_common::cmdline::PROC_CMDLINE;
use hull_common::mountinfo::{self, MountInfoEntry};
use tracing::{debug, error, info, warn};

use crate::config::{self, Config, ShutdownAction};
use crate::shutdown::{self, Reason};
use crate::signals::{self, Signals};
use crate::{console, fs, hostname, logger, mounts, supervisor, uptime_ms};

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
    if let Err(e) = rustix::system::reboot(rustix::system::RebootCommand::CadOff) {
        warn!(error = %e, "cannot disable Ctrl-Alt-Del reboot");
    }

    let signals = Signals::new();
    info!(uptime_ms = uptime_ms(), "boot complete");
    let reason = supervisor::run(&signals, config.agent_restarts);
    shutdown::run(reason, Some(&signals), config.shutdown)
}

/// One line saying what `/` is (type, device, options: `dax=always` shows a DAX root).
fn log_root() {
    match fs::read(mountinfo::PROC_SELF_MOUNTINFO)
        .ok()
        .and_then(|data| describe_root(&data))
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

/// What the boot log says about the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDescription {
    pub fstype: String,
    pub source: String,
    /// `major:minor` of the device.
    pub device: String,
    /// Per-mount options then superblock options, without repeats (as /proc/mounts shows
    /// them): e.g. `ro,relatime,dax=always`.
    pub options: String,
}

/// Describes the mount visible at `/` (the last one stacked there).
pub fn describe_root(data: &[u8]) -> Option<RootDescription> {
    let entries: Vec<MountInfoEntry> = mountinfo::parse_lenient(data);
    let entry = shutdown::root(&entries)?;
    let mut options: Vec<&str> = Vec::new();
    for o in entry
        .options
        .split(',')
        .chain(entry.super_options.split(','))
    {
        if !o.is_empty() && !options.contains(&o) {
            options.push(o);
        }
    }
    Some(RootDescription {
        options: options.join(","),
        fstype: entry.fstype.clone(),
        source: entry.source.clone(),
        device: entry.device(),
    })
}

fn load_config() -> Config {
    let text = match fs::read(PROC_CMDLINE) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_top_root_mount_with_superblock_options() {
        let data = b"1 1 0:2 / / rw - rootfs rootfs rw\n\
            22 1 259:1 / / ro,relatime - ext4 /dev/root ro,dax=always\n\
            23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,mode=755\n";
        let root = describe_root(data).unwrap();
        assert_eq!(
            root,
            RootDescription {
                fstype: "ext4".into(),
                source: "/dev/root".into(),
                device: "259:1".into(),
                options: "ro,relatime,dax=always".into(),
            }
        );
        assert_eq!(
            describe_root(b"23 22 0:5 / /dev rw - devtmpfs d rw\n"),
            None
        );
    }
}

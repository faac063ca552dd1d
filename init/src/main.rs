//! hull-init: PID 1 of the hull guest VM.
//!
//! Mounts the API filesystems, reads its few settings from the kernel command
//! line, sets the hostname, starts and supervises `/usr/bin/hull-agent`, reaps
//! every zombie, and powers the VM off when the agent exits with status 0, on
//! SIGTERM/SIGPWR/SIGINT (Ctrl-Alt-Del), or when the agent keeps crashing.
//!
//! Run as anything but PID 1 it refuses to do anything (exit status 1), except
//! `--check-config [CMDLINE]`, a dry run that prints the parsed configuration.
//!
//! `no_main`: std's runtime start-up aborts the process when fd 0, 1 or 2 is
//! closed and /dev/null cannot be opened, which is exactly the situation of an
//! init on a root without /dev/console (the kernel then starts init with no
//! open fds). For PID 1 that abort is a kernel panic; so init provides the C
//! `main` itself and repairs its standard fds in `console::fill_std_fds`.
#![cfg_attr(not(test), no_main)]
// Unit tests do not reach the boot path; dead code is still checked in the binary.
#![cfg_attr(test, allow(dead_code))]

mod boot;
use hull_common::cmdline;
mod config;
mod console;
mod hostname;
mod logger;
mod mountinfo;
mod mounts;
mod reaper;
mod shutdown;
mod signals;
mod supervisor;
#[cfg(test)]
mod test_support;

use std::io::Write as _;

use nix::time::{ClockId, clock_gettime};

/// Milliseconds since boot (CLOCK_MONOTONIC), for log lines.
pub(crate) fn uptime_ms() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
            secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
        })
        .unwrap_or(0)
}

// SAFETY (of `no_mangle`): with `no_main` this is the binary's only `main`
// symbol, with the signature the C runtime calls it with.
#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    real_main()
}

fn real_main() -> libc::c_int {
    let pid = std::process::id();
    if pid == 1 {
        boot::run();
    }
    // Not PID 1: never touch the system. The kernel hands PID 1 stray
    // command-line words as arguments, so arguments are read only here.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("--check-config") => check_config(args.get(1).map(String::as_str)),
        _ => {
            eprintln!(
                "hull-init: refusing to run as pid {pid}: hull-init must be PID 1 of a hull guest VM \
                 (it mounts filesystems, kills every process and powers the machine off).\n\
                 usage: hull-init --check-config [CMDLINE]   parse CMDLINE (default: /proc/cmdline) and print the result"
            );
            1
        }
    };
    let _ = std::io::stdout().flush();
    code
}

/// Dry run: parse a command line and print what init would use.
fn check_config(cmdline: Option<&str>) -> libc::c_int {
    let text = match cmdline {
        Some(text) => text.to_owned(),
        None => match std::fs::read(cmdline::PROC_CMDLINE) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                eprintln!("hull-init: cannot read {}: {e}", cmdline::PROC_CMDLINE);
                return 1;
            }
        },
    };
    let (config, warnings) = config::parse(&text);
    println!("{config}");
    for w in &warnings {
        println!("warning: {w}");
    }
    0
}

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
//! `no_std`: every module uses `core`, `alloc` and `rustix` (raw Linux system
//! calls) only. The static guest build (cfg `nolibc`, set by `build.rs` for
//! `+crt-static`) links no libc and no std: [`start`] holds its `_start`, its
//! allocator and its panic handler (README.md, "Size", says why). Every other
//! build (unit tests, clippy, a plain `cargo build`) links std and glibc, which
//! call the C `main` below; the code above the entry point is the same.
//!
//! `no_main` in both: init must start even with fds 0, 1 and 2 closed (the
//! kernel starts it so on a root without /dev/console), which std's start-up
//! would turn into an abort, a kernel panic for PID 1; init repairs its
//! standard fds itself in `console::fill_std_fds`.
#![no_std]
#![cfg_attr(not(test), no_main)]
// Unit tests do not reach the boot path; dead code is still checked in the binary.
#![cfg_attr(test, allow(dead_code))]

extern crate alloc;
#[cfg(any(test, not(nolibc)))]
extern crate std;

#[cfg(all(nolibc, not(panic = "abort")))]
compile_error!(
    "the static (+crt-static) hull-init has no unwinder: build it with the `guest` profile (panic = \"abort\")"
);

mod boot;
use hull_common::cmdline;
mod clock;
mod config;
mod console;
mod fs;
mod hostname;
mod logger;
mod mounts;
mod reaper;
mod shutdown;
mod signals;
#[cfg(all(nolibc, not(test)))]
mod start;
mod supervisor;
mod sys;
#[cfg(test)]
mod test_support;

use alloc::string::String;
use alloc::vec::Vec;
use core::ffi::{CStr, c_char};

pub(crate) use clock::uptime_ms;

/// The C `main` that glibc's start-up calls in builds that link std.
#[cfg(all(not(test), not(nolibc)))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: core::ffi::c_int, argv: *const *const c_char) -> core::ffi::c_int {
    // SAFETY: glibc passes `argc` valid NUL-terminated strings in `argv`.
    let args = unsafe { args_from_raw(argc as usize, argv) };
    real_main(&args)
}

/// The program arguments behind `argv`, without `argv[0]`.
///
/// # Safety
/// `argv` must point to `argc` valid NUL-terminated strings that live for the
/// whole run (the initial stack's, or glibc's copy of it).
pub(crate) unsafe fn args_from_raw(argc: usize, argv: *const *const c_char) -> Vec<&'static [u8]> {
    (1..argc)
        .filter_map(|i| {
            // SAFETY: `i < argc`, so `argv.add(i)` is inside the array (caller's contract).
            let arg = unsafe { *argv.add(i) };
            // SAFETY: each non-null entry is a NUL-terminated string living for the run.
            (!arg.is_null()).then(|| unsafe { CStr::from_ptr(arg) }.to_bytes())
        })
        .collect()
}

/// Everything after the C runtime (or `_start`): returns the exit status, unless PID 1.
pub(crate) fn real_main(args: &[&[u8]]) -> core::ffi::c_int {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    if pid == 1 {
        boot::run();
    }
    // Not PID 1: never touch the system. The kernel hands PID 1 stray
    // command-line words as arguments, so arguments are read only here.
    match args.first().copied() {
        Some(b"--check-config") => check_config(args.get(1).copied()),
        _ => {
            console::eprint(&alloc::format!(
                "hull-init: refusing to run as pid {pid}: hull-init must be PID 1 of a hull guest VM \
                 (it mounts filesystems, kills every process and powers the machine off).\n\
                 usage: hull-init --check-config [CMDLINE]   parse CMDLINE (default: /proc/cmdline) and print the result\n"
            ));
            1
        }
    }
}

/// Dry run: parse a command line and print what init would use.
fn check_config(cmdline: Option<&[u8]>) -> core::ffi::c_int {
    let text = match cmdline {
        Some(text) => String::from_utf8_lossy(text).into_owned(),
        None => match fs::read(cmdline::PROC_CMDLINE) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                console::eprint(&alloc::format!(
                    "hull-init: cannot read {}: {e}\n",
                    cmdline::PROC_CMDLINE
                ));
                return 1;
            }
        },
    };
    let (config, warnings) = config::parse(&text);
    let mut out = alloc::format!("{config}\n");
    for w in &warnings {
        out.push_str(&alloc::format!("warning: {w}\n"));
    }
    console::print(&out);
    0
}

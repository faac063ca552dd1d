//! The `vmm-lite` binary: exit statuses and the messages for bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::process::{Command, Output};

use iced_x86::code_asm::*;
use vmm_lite::payload::{self, Payload, TempFile};

fn vmm_lite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmm-lite"))
        .args(args)
        .output()
        .expect("running vmm-lite")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn payload_file(build: impl FnOnce(&mut Payload)) -> TempFile {
    let mut p = Payload::new().unwrap();
    build(&mut p);
    let code = p.assemble().unwrap();
    TempFile::with_bytes("cli.elf", &payload::elf64(&code)).unwrap()
}

#[test]
fn guest_reset_exits_zero_with_the_console_on_stdout() {
    let kernel = payload_file(|p| {
        p.print("up\n").unwrap();
        p.asm.mov(al, 0xfeu32).unwrap();
        p.asm.out(0x64, al).unwrap();
        p.spin().unwrap();
    });
    let out = vmm_lite(&[
        "--kernel",
        kernel.0.to_str().unwrap(),
        "--mem",
        "32M",
        "--timeout",
        "10",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "up\n");
}

#[test]
fn console_goes_to_a_file_and_the_done_code_is_the_exit_status() {
    let kernel = payload_file(|p| {
        p.print("to file\n").unwrap();
        p.done(7).unwrap();
    });
    let console = TempFile::with_bytes("console.log", b"").unwrap();
    let out = vmm_lite(&[
        "--kernel",
        kernel.0.to_str().unwrap(),
        "--console",
        console.0.to_str().unwrap(),
        "--debug-exit",
        "--timeout",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(std::fs::read_to_string(&console.0).unwrap(), "to file\n");
}

#[test]
fn triple_fault_exits_nonzero_with_a_clear_message() {
    let kernel = payload_file(|p| p.asm.ud2().unwrap());
    let out = vmm_lite(&["--kernel", kernel.0.to_str().unwrap(), "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("triple fault"), "{}", stderr(&out));
}

#[test]
fn watchdog_exits_nonzero() {
    let kernel = payload_file(|p| p.spin().unwrap());
    let out = vmm_lite(&["--kernel", kernel.0.to_str().unwrap(), "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("watchdog"), "{}", stderr(&out));
}

#[test]
fn bad_input_is_named() {
    let out = vmm_lite(&["--kernel", "/nonexistent/bzImage"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("kernel /nonexistent/bzImage"),
        "{}",
        stderr(&out)
    );

    let kernel = payload_file(|p| p.done(0).unwrap());
    let k = kernel.0.to_str().unwrap();
    let out = vmm_lite(&["--kernel", k, "--mem", "33M"]);
    assert!(
        stderr(&out).contains("multiple of 2 MiB"),
        "{}",
        stderr(&out)
    );
    let out = vmm_lite(&["--kernel", k, "--mem", "lots"]);
    assert!(stderr(&out).contains("not a size"), "{}", stderr(&out));
    let out = vmm_lite(&["--kernel", k, "--vcpus", "0"]);
    assert!(stderr(&out).contains("vCPUs must be"), "{}", stderr(&out));
    let out = vmm_lite(&["--kernel", k, "--initrd", "/nonexistent/initrd"]);
    assert!(
        stderr(&out).contains("initrd /nonexistent/initrd"),
        "{}",
        stderr(&out)
    );

    let odd = TempFile::with_bytes("odd.img", &[0u8; 4096]).unwrap();
    let out = vmm_lite(&["--kernel", k, "--pmem", odd.0.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("2 MiB"), "{}", stderr(&out));
    let out = vmm_lite(&["--kernel", k, "--disk", "/nonexistent/disk.img"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/disk.img"),
        "{}",
        stderr(&out)
    );
}

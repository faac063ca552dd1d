//! Payload tests of the boot path, the serial port, the i8042, fatal exits, the watchdog
//! and several vCPUs, under this machine's /dev/kvm. Each payload is a few dozen
//! instructions and ends on the done port (see `vmm_lite::payload`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::time::Duration;

use iced_x86::code_asm::*;
use vmm_lite::payload::{self, Payload, require_kvm, run_elf};
use vmm_lite::{Error, ExitReason};

#[test]
fn serial_output_appears_and_the_done_code_comes_back() {
    require_kvm();
    let mut p = Payload::new().unwrap();
    p.print("hello from vmm-lite\n").unwrap();
    p.done(0x2a).unwrap();
    let run = p.run(|_| {}).unwrap();
    assert_eq!(run.code(), Some(0x2a), "{run:?}");
    assert_eq!(run.console, "hello from vmm-lite\n");
    assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
}

#[test]
fn boot_state_is_linux_64bit_protocol_with_boot_params_in_rsi() {
    require_kvm();
    // boot_params.hdr.boot_flag (offset 0x1fe) is 0xaa55 and hdr.header (0x202) is "HdrS";
    // e820_entries (0x1e8) is 3; the command line pointer (0x228) points at the words
    // vmm-lite adds.
    let mut p = Payload::new().unwrap();
    let mut fail = p.asm.create_label();
    p.asm.cmp(word_ptr(rsi + 0x1fe), 0xaa55).unwrap();
    p.asm.jne(fail).unwrap();
    p.asm.cmp(dword_ptr(rsi + 0x202), 0x5372_6448).unwrap();
    p.asm.jne(fail).unwrap();
    p.asm.cmp(byte_ptr(rsi + 0x1e8), 3).unwrap();
    p.asm.jne(fail).unwrap();
    p.asm.mov(eax, dword_ptr(rsi + 0x228)).unwrap();
    p.asm
        .cmp(dword_ptr(rax), u32::from_le_bytes(*b"quie"))
        .unwrap();
    p.asm.jne(fail).unwrap();
    p.asm.mov(rax, cr0).unwrap();
    p.asm.bt(eax, 31).unwrap(); // paging on
    p.asm.jnc(fail).unwrap();
    p.done(0).unwrap();
    p.asm.set_label(&mut fail).unwrap();
    p.done(1).unwrap();
    let run = p.run(|c| c.cmdline = "quiet".into()).unwrap();
    assert_eq!(run.code(), Some(0), "{run:?}");
}

#[test]
fn pvh_note_boots_32bit_with_start_info_in_ebx() {
    require_kvm();
    let mut a = CodeAssembler::new(32).unwrap();
    let mut fail = a.create_label();
    a.cmp(dword_ptr(ebx), 0x336e_c578).unwrap(); // hvm_start_info magic
    a.jne(fail).unwrap();
    a.mov(dx, 0xf4u32).unwrap();
    a.mov(eax, 0x32u32).unwrap();
    a.out(dx, eax).unwrap();
    let mut spin = a.create_label();
    a.set_label(&mut spin).unwrap();
    a.jmp(spin).unwrap();
    a.set_label(&mut fail).unwrap();
    a.mov(dx, 0xf4u32).unwrap();
    a.mov(eax, 1u32).unwrap();
    a.out(dx, eax).unwrap();
    a.jmp(spin).unwrap();
    let code = a.assemble(payload::LOAD_ADDR).unwrap();
    let run = run_elf(&payload::elf_pvh(&code), |_| {});
    assert_eq!(run.code(), Some(0x32), "{run:?}");
}

#[test]
fn i8042_reset_ends_the_vm_cleanly() {
    require_kvm();
    let mut p = Payload::new().unwrap();
    p.print("bye\n").unwrap();
    p.asm.mov(al, 0xfeu32).unwrap();
    p.asm.out(0x64, al).unwrap();
    p.spin().unwrap();
    let run = p.run(|_| {}).unwrap();
    assert!(matches!(run.result, Ok(ExitReason::Reset)), "{run:?}");
    assert_eq!(run.console, "bye\n");
}

#[test]
fn triple_fault_is_a_clear_error() {
    require_kvm();
    // The IDT is empty (limit 7): #UD → #GP → #DF → shutdown.
    let mut p = Payload::new().unwrap();
    p.asm.ud2().unwrap();
    let run = p.run(|_| {}).unwrap();
    match &run.result {
        Err(Error::Vcpu(message)) => assert!(message.contains("triple fault"), "{message}"),
        other => panic!("expected a triple-fault error, got {other:?}"),
    }
}

#[test]
fn watchdog_stops_a_hung_payload() {
    require_kvm();
    let mut p = Payload::new().unwrap();
    p.spin().unwrap();
    let run = p
        .run(|c| c.watchdog = Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        matches!(run.result, Err(Error::Watchdog(d)) if d == Duration::from_millis(300)),
        "{run:?}"
    );
    assert!(run.elapsed < Duration::from_secs(3), "{:?}", run.elapsed);
}

#[test]
fn second_vcpu_starts_on_init_sipi() {
    require_kvm();
    // AP code (real mode) at 0x3000: report 0x55 on the done port.
    let mut ap = CodeAssembler::new(16).unwrap();
    ap.mov(dx, 0xf4u32).unwrap();
    ap.mov(eax, 0x55u32).unwrap();
    ap.out(dx, eax).unwrap();
    let mut spin = ap.create_label();
    ap.set_label(&mut spin).unwrap();
    ap.jmp(spin).unwrap();
    let ap_code = ap.assemble(0x3000).unwrap();

    let mut p = Payload::new().unwrap();
    for (i, byte) in ap_code.iter().enumerate() {
        p.asm
            .mov(byte_ptr(0x3000 + i as u64), u32::from(*byte))
            .unwrap();
    }
    p.map_mmio_gap().unwrap();
    const ICR_LOW: u64 = 0xfee0_0300;
    const ICR_HIGH: u64 = 0xfee0_0310;
    p.store32(ICR_HIGH, 1 << 24).unwrap(); // destination: APIC id 1
    p.store32(ICR_LOW, 0x4500).unwrap(); // INIT, assert
    p.store32(ICR_LOW, 0x4600 | 0x03).unwrap(); // SIPI, vector 0x03 → 0x3000
    p.spin().unwrap();
    let run = p.run(|c| c.vcpus = 2).unwrap();
    assert_eq!(run.code(), Some(0x55), "{run:?}");
}

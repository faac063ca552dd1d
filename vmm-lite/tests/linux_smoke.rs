//! Linux smoke test under this machine's /dev/kvm: vmm-lite boots hull's bzImage with
//! `nokaslr earlyprintk=serial` and the decompressor brings up its serial console within a
//! bound. On PVM that is as far as Linux gets in useful time (see the field guide); it
//! proves bzImage loading, boot_params (the decompressor found `earlyprintk=serial` through
//! them), the 64-bit entry and the serial port. Fails, naming the fix, when the kernel is
//! not built.
//!
//! What "brings up" means: a decompressor built with KASLR prints `KASLR disabled: 'nokaslr'
//! on cmdline.`; hull's kernel has neither KASLR nor verbose boot, so its decompressor
//! prints nothing and the evidence is its `early_serial_init`: the 8 register writes that
//! program COM1 (line control, interrupts, FIFO, modem control, the divisor latch).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vmm_lite::config::Console;
use vmm_lite::payload::SharedBuffer;
use vmm_lite::{ExitReason, Vm, VmConfig};

/// Measured here: hull's kernel programs COM1 after ~2.5 s (and not at all in 8 s without
/// `earlyprintk=serial`; it prints no text within 4 minutes), Debian's 6.1 cloud kernel
/// prints its KASLR line after 3.5-7.3 s.
const BOUND: Duration = Duration::from_secs(30);
/// The line a KASLR-capable decompressor prints with `nokaslr earlyprintk=serial`.
const KASLR_LINE: &str = "KASLR disabled";
/// Register writes of the decompressor's `early_serial_init`.
const EARLY_SERIAL_INIT_WRITES: u64 = 8;

fn kernel() -> PathBuf {
    let path = std::env::var_os("HULL_KERNEL").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/kernel/bzImage"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "the guest kernel {} is not built: run `./run kernel` (or set HULL_KERNEL)",
        path.display()
    );
    path
}

#[test]
fn bzimage_brings_up_the_decompressors_serial_console() {
    let console = SharedBuffer::default();
    let mut config = VmConfig::new(kernel());
    config.cmdline = "nokaslr earlyprintk=serial console=ttyS0".into();
    config.mem_bytes = 256 << 20;
    config.console = Console::Writer(Box::new(console.clone()));
    config.watchdog = Some(BOUND);
    let started = Instant::now();
    let vm = Vm::build(config).expect("building the VM");
    let stop = vm.exit_handle();
    let serial = vm.serial_activity();
    let runner = std::thread::spawn(move || vm.run());
    let mut seen = None;
    while started.elapsed() < BOUND && !runner.is_finished() {
        if console.text().contains(KASLR_LINE) {
            seen = Some((started.elapsed(), "the KASLR line"));
            break;
        }
        // Give a KASLR kernel time to print after programming the port.
        if serial.register_writes() >= EARLY_SERIAL_INIT_WRITES
            && console.text().is_empty()
            && started.elapsed() > Duration::from_secs(1)
        {
            std::thread::sleep(Duration::from_millis(500));
            if console.text().is_empty() {
                seen = Some((started.elapsed(), "COM1 programmed by early_serial_init"));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.request(ExitReason::Stopped);
    let result = runner.join().expect("the VM thread panicked");
    let text = console.text();
    let writes = serial.register_writes();
    let Some((took, what)) = seen else {
        panic!(
            "the decompressor's serial console did not come up within {BOUND:?} \
             ({writes} COM1 register writes, {result:?}); console:\n{text}"
        );
    };
    eprintln!("{what} after {took:?} ({writes} COM1 register writes); console:\n{text}");
    assert!(
        matches!(result, Ok(ExitReason::Stopped)),
        "the VM did not stop cleanly: {result:?}"
    );
}

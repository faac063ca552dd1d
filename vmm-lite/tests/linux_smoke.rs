//! Linux smoke test under this machine's /dev/kvm: vmm-lite boots hull's bzImage with
//! `nokaslr earlyprintk=serial` and the decompressor brings up its serial console within a
//! bound. On PVM that is as far as Linux gets in useful time (see the field guide); it
//! proves bzImage loading, boot_params (the decompressor found `earlyprintk=serial` through
//! them), the 64-bit entry and the serial port. Fails, naming the fix, when the kernel is
//! not built.
//!
//! The evidence is the decompressor's first serial line: hull's kernel is built with
//! `CONFIG_X86_VERBOSE_BOOTUP`, so its decompressor prints `early console in
//! extract_kernel` (then its layout and `Decompressing Linux...`); a kernel with KASLR
//! prints `KASLR disabled: 'nokaslr' on cmdline.` first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vmm_lite::config::Console;
use vmm_lite::payload::SharedBuffer;
use vmm_lite::{ExitReason, Vm, VmConfig};

/// Measured here: hull's kernel prints its first line after ~2.5 s, Debian's 6.1 cloud
/// kernel its KASLR line after 3.5-7.3 s.
const BOUND: Duration = Duration::from_secs(30);
/// The decompressor's first line, by kind of kernel: verbose boot, or KASLR.
const FIRST_LINES: [&str; 2] = ["early console in extract_kernel", "KASLR disabled"];

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
        let text = console.text();
        if let Some(line) = FIRST_LINES.iter().find(|line| text.contains(**line)) {
            seen = Some((started.elapsed(), *line));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.request(ExitReason::Stopped);
    let result = runner.join().expect("the VM thread panicked");
    let text = console.text();
    let writes = serial.register_writes();
    let Some((took, line)) = seen else {
        panic!(
            "the decompressor printed none of {FIRST_LINES:?} within {BOUND:?} \
             ({writes} COM1 register writes, {result:?}); console:\n{text}"
        );
    };
    eprintln!("{line:?} after {took:?} ({writes} COM1 register writes); console:\n{text}");
    assert!(
        matches!(result, Ok(ExitReason::Stopped)),
        "the VM did not stop cleanly: {result:?}"
    );
}

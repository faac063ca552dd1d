//! Linux smoke test under this machine's /dev/kvm: vmm-lite boots hull's bzImage and the
//! decompressor's first serial line appears within a bound. On PVM that is as far as Linux
//! gets in useful time (see the field guide); it proves bzImage loading, boot_params, the
//! 64-bit entry and the serial port. Fails, naming the fix, when the kernel is not built.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vmm_lite::config::Console;
use vmm_lite::payload::SharedBuffer;
use vmm_lite::{ExitReason, Vm, VmConfig};

/// Measured here: 7.3 s for Debian's 6.1 cloud kernel while a kernel build loaded both
/// cores; the field guide saw ~15 s.
const BOUND: Duration = Duration::from_secs(30);
/// The decompressor's line with `nokaslr earlyprintk=serial`.
const FIRST_LINE: &str = "KASLR disabled";

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
fn bzimage_reaches_the_decompressors_first_serial_line() {
    let console = SharedBuffer::default();
    let mut config = VmConfig::new(kernel());
    config.cmdline = "nokaslr earlyprintk=serial console=ttyS0".into();
    config.mem_bytes = 256 << 20;
    config.console = Console::Writer(Box::new(console.clone()));
    config.watchdog = Some(BOUND);
    let started = Instant::now();
    let vm = Vm::build(config).expect("building the VM");
    let stop = vm.exit_handle();
    let runner = std::thread::spawn(move || vm.run());
    let mut seen = None;
    while started.elapsed() < BOUND && !runner.is_finished() {
        if console.text().contains(FIRST_LINE) {
            seen = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.request(ExitReason::Stopped);
    let result = runner.join().expect("the VM thread panicked");
    let text = console.text();
    let Some(took) = seen else {
        panic!(
            "no {FIRST_LINE:?} on the serial console within {BOUND:?} ({result:?}); console:\n{text}"
        );
    };
    eprintln!("{FIRST_LINE:?} after {took:?}; console so far:\n{text}");
    assert!(
        matches!(result, Ok(ExitReason::Stopped)),
        "the VM did not stop cleanly: {result:?}"
    );
}

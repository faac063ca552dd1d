//! The kernel command line as hull-common splits it (hull-init and the agent read it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for param in hull_common::cmdline::params(text) {
            std::hint::black_box((param.key, param.value));
        }
    }
});

//! /proc/self/mountinfo as hull-common parses it (strict, lenient, and field unescaping).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hull_common::mountinfo::parse(data);
    for entry in hull_common::mountinfo::parse_lenient(data) {
        let _ = entry.is_read_only();
        let _ = entry.device();
        let _ = entry.mount_point_path();
    }
    let _ = hull_common::mountinfo::unescape(data);
});

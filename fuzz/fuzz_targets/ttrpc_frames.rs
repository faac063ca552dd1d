//! ttRPC framing and dispatch as the agent's server reads a connection: frame headers
//! (oversized, truncated, interleaved streams), request envelopes, each method's request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_fuzz::frames(data);
});

//! Each AgentService request message through the RPC layer's conversion to domain types:
//! the first byte picks the method, the rest is decoded as its request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_fuzz::agent_requests(data);
});

//! SetPolicy's Rego text as the agent compiles it (regorus behind hull-agent's policy
//! module), and, when it compiles, one request checked against it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hull_fuzz::policy(data);
});

//! The static guest build of hull-init has no C runtime: `src/start.rs` provides `_start`.
//!
//! With `+crt-static` rustc links a static PIE through `cc`; here the C start files are
//! left out (`-nostartfiles`, no glibc at all: `-nostdlib`) and the link is made a plain
//! static executable (`--no-pie`), so nothing has to relocate the binary at start-up.
//! The `nolibc` cfg tells the code which build it is.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(nolibc)");
    println!("cargo::rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if features.split(',').any(|f| f == "crt-static") {
        println!("cargo::rustc-cfg=nolibc");
        for arg in ["-nostartfiles", "-nostdlib", "-static", "-Wl,--no-pie"] {
            println!("cargo::rustc-link-arg-bins={arg}");
        }
    }
}

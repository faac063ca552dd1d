//! Default locations inside the hull repository (for a binary run from its checkout).

use std::path::{Path, PathBuf};

use crate::arch::Arch;

/// The workspace root, as seen when this crate was compiled.
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `<workspace>/kernel-config`.
pub fn default_config_dir() -> PathBuf {
    root().join("kernel-config")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => root().join("target"),
    }
}

/// Where `just guest` puts a guest binary: `<target>/<triple>/guest/<name>`.
pub fn default_guest_binary(arch: Arch, name: &str) -> PathBuf {
    target_dir()
        .join(arch.rust_target())
        .join("guest")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_into_the_workspace() {
        assert!(default_config_dir().join("00-base.conf").is_file());
        let init = default_guest_binary(Arch::X86_64, "hull-init");
        assert!(init.ends_with("x86_64-unknown-linux-gnu/guest/hull-init"));
    }
}

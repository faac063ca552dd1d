//! The kernel cache key.

use sha2::{Digest, Sha256};

use crate::arch::Arch;

/// Version of the build recipe. Bump it whenever the way a kernel is built changes without
/// any key input changing (make invocation, environment, copied artifacts...), so that old
/// cache entries are not reused.
pub const RECIPE_VERSION: u32 = 1;

/// Everything a kernel build depends on.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// SHA-256 (hex) of the source tarball's bytes.
    pub source_sha256: &'a str,
    /// The merged fragment text handed to kconfig.
    pub merged_fragments: &'a str,
    /// The guest architecture.
    pub arch: Arch,
    /// Whether the debug fragment is included (`--debug`).
    pub debug: bool,
    /// The recipe version, normally [`RECIPE_VERSION`].
    pub recipe_version: u32,
}

impl<'a> KeyInputs<'a> {
    /// Inputs with the current [`RECIPE_VERSION`].
    pub fn new(source_sha256: &'a str, merged_fragments: &'a str, arch: Arch, debug: bool) -> Self {
        KeyInputs {
            source_sha256,
            merged_fragments,
            arch,
            debug,
            recipe_version: RECIPE_VERSION,
        }
    }
}

/// The cache key: SHA-256 (hex) over every input, each as `name`, NUL, length (u64 LE),
/// bytes, so that no two different input sets produce the same byte stream.
pub fn cache_key(inputs: &KeyInputs<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update([0u8]);
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    field(
        "hull-image kernel recipe",
        &inputs.recipe_version.to_le_bytes(),
    );
    field("source sha256", inputs.source_sha256.as_bytes());
    field("arch", inputs.arch.name().as_bytes());
    field("debug", &[u8::from(inputs.debug)]);
    field("fragments", inputs.merged_fragments.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const FRAGS: &str = "# ---- 00-base.conf\nCONFIG_PRINTK=y\nCONFIG_TTY=y\n";

    fn key(src: &str, frags: &str, debug: bool, recipe: u32) -> String {
        cache_key(&KeyInputs {
            source_sha256: src,
            merged_fragments: frags,
            arch: Arch::X86_64,
            debug,
            recipe_version: recipe,
        })
    }

    #[test]
    fn key_is_stable() {
        // A golden value: if this changes, every user's cache is invalidated. That is fine
        // when intended (bump RECIPE_VERSION instead where possible), never by accident.
        assert_eq!(
            key(SRC, FRAGS, false, 1),
            "d350094430833a9929341daba707bd902a8f00d0c93a005c9ab6e6df6fefc0c7"
        );
        assert_eq!(key(SRC, FRAGS, false, 1), key(SRC, FRAGS, false, 1));
        assert_eq!(
            cache_key(&KeyInputs::new(SRC, FRAGS, Arch::X86_64, false)),
            key(SRC, FRAGS, false, RECIPE_VERSION)
        );
    }

    #[test]
    fn key_is_sensitive_to_every_input() {
        let base = key(SRC, FRAGS, false, 1);
        let one_line_changed = FRAGS.replace("CONFIG_TTY=y", "# CONFIG_TTY is not set");
        let other_src = SRC.replace('0', "1");
        let variants = [
            key(SRC, &one_line_changed, false, 1),
            key(SRC, &format!("{FRAGS}CONFIG_X=y\n"), false, 1),
            key(&other_src, FRAGS, false, 1),
            key(SRC, FRAGS, true, 1),
            key(SRC, FRAGS, false, 2),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(&base, v, "variant {i}");
            assert_eq!(v.len(), 64);
        }
    }
}

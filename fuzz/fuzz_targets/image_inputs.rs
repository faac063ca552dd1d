//! The image builder's inputs: kernel-config fragments, a built kernel's .config checked
//! against them, and manifest JSON read back from a file.
#![no_main]

use std::sync::OnceLock;

use hull_image::kernel::{check, fragment};
use hull_image::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

/// One manifest file per process, rewritten for every input.
fn manifest_file() -> &'static tempfile::NamedTempFile {
    static FILE: OnceLock<tempfile::NamedTempFile> = OnceLock::new();
    // In memory where there is a tmpfs: a disk-backed /tmp makes this target 20x slower.
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    FILE.get_or_init(|| match tempfile::NamedTempFile::new_in(&dir) {
        Ok(file) => file,
        Err(e) => panic!("cannot create the manifest file: {e}"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        // A fragment, and the same text as the .config it is checked against.
        if let Ok(requirements) = fragment::parse_fragment("fuzz.config", text) {
            let _ = check::check(&requirements, text);
        }
        let _ = check::parse_dotconfig(text);
    } else {
        let file = manifest_file();
        if std::fs::write(file.path(), rest).is_err() {
            return;
        }
        if let Ok(manifest) = Manifest::read(file.path()) {
            let _ = manifest.to_json();
        }
    }
});

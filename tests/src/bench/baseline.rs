//! The baseline programs, built from `tests/baseline/` with the host's C compiler into a
//! scratch directory: the bare initrd (its `/init` prints one line and powers the VM off)
//! and `guest-helper`, which a container runs to measure the guest without the agent in
//! the way (raw vsock throughput, fork+exec).

use std::path::PathBuf;

use anyhow::{Context, Result};
use hull_e2e::artifacts::workspace_root;
use hull_e2e::guest_helper::{build_guest_helper, compile_c};
use tempfile::TempDir;

/// What the bare `/init` prints once it runs.
pub const BARE_INIT_LINE: &str = "bare-init: running";

/// The built programs; removed with this value.
pub struct Baselines {
    pub bare_initrd: PathBuf,
    pub guest_helper: PathBuf,
    _dir: TempDir,
}

impl Baselines {
    /// Compiles both programs (`cc`, static) and packs the bare initrd.
    pub fn build() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("hull-bench-")
            .tempdir()
            .context("creating the baseline directory")?;
        let sources = workspace_root().join("tests/baseline");
        let bare_init = dir.path().join("bare-init");
        compile_c(
            &sources.join("bare-init.c"),
            &bare_init,
            &["-static", "-nostdlib", "-Os", "-s"],
        )?;
        let guest_helper = build_guest_helper(dir.path())?;
        let init = std::fs::read(&bare_init)?;
        let bare_initrd = dir.path().join("bare-initrd.cpio");
        std::fs::write(&bare_initrd, cpio_newc(&[("init", 0o100_755, &init)]))
            .context("writing the bare initrd")?;
        Ok(Self {
            bare_initrd,
            guest_helper,
            _dir: dir,
        })
    }
}

/// An uncompressed initramfs ("newc" cpio) holding `files`: (name, mode, contents).
pub fn cpio_newc(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0,
            0,
            0,
            0, // dev and rdev
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0, // check
        ];
        out.extend_from_slice(b"070701");
        for field in fields {
            out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(out);
        out.extend_from_slice(data);
        pad4(out);
    }
    fn pad4(out: &mut Vec<u8>) {
        while out.len() % 4 != 0 {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    for (ino, (name, mode, data)) in (1..).zip(files) {
        entry(&mut out, ino, name, *mode, data);
    }
    entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_newc_and_aligned() {
        let archive = cpio_newc(&[("init", 0o100_755, b"abc")]);
        assert!(archive.starts_with(b"070701"));
        // Header (110) + "init\0" (5) padded to 116, then 3 bytes padded to 120.
        assert_eq!(&archive[110..115], b"init\0");
        assert_eq!(&archive[116..119], b"abc");
        assert_eq!(&archive[120..126], b"070701");
        assert!(archive.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(archive.len() % 4, 0);
        // The mode field (second) is 0o100755 in hex.
        assert_eq!(&archive[14..22], b"000081ed");
    }
}

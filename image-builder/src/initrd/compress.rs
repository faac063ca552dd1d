//! Reproducible gzip: fixed level, and a fixed header (mtime 0, no file name, fixed OS byte).

use std::io::Write;

use flate2::{Compression, GzBuilder};

/// Compression level: fixed, so the output depends on the input bytes only (and the
/// pinned flate2/miniz_oxide version).
pub const LEVEL: u32 = 9;

/// The gzip header's OS byte: 3 = Unix, whatever machine builds the image.
pub const OS_UNIX: u8 = 3;

/// Gzip-compresses `data` reproducibly.
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .operating_system(OS_UNIX)
        .write(Vec::with_capacity(data.len() / 2), Compression::new(LEVEL));
    enc.write_all(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn header_is_fixed_and_output_round_trips() {
        let data = b"hull hull hull hull hull".repeat(100);
        let gz = gzip(&data).unwrap();
        // ID1 ID2 CM FLG MTIME(4) XFL OS
        assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]); // deflate, no FNAME/FEXTRA/FCOMMENT
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]); // mtime 0
        assert_eq!(gz[9], OS_UNIX);
        assert_eq!(gzip(&data).unwrap(), gz);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}

//! The NVDIMM "pfn" info block (`struct nd_pfn_sb` of the kernel's `drivers/nvdimm/pfn.h`).
//!
//! Put 4 KiB into a pmem namespace (a QEMU `nvdimm` or a `virtio-pmem` device), it turns
//! the namespace into an fsdax device: the kernel's `nd_pfn_probe` reads it, checks the
//! signature, the checksum and that `parent_uuid` matches the namespace (all zero for the
//! label-less "io" namespaces VMMs create), then exposes `/dev/pmemN` starting `dataoff`
//! bytes into the namespace, with `struct page`s so that filesystems can map it with DAX.
//!
//! Fields, all little-endian, at these offsets:
//!
//! | offset | size | field | value here |
//! |---|---|---|---|
//! | 0 | 16 | signature | `NVDIMM_PFN_INFO\0` |
//! | 16 | 16 | uuid | derived from the image inputs |
//! | 32 | 16 | parent_uuid | zero (io namespace) |
//! | 48 | 4 | flags | 0 |
//! | 52 | 2 | version_major | 0 |
//! | 54 | 2 | version_minor | 2 (start_pad, end_trunc and align are valid) |
//! | 56 | 8 | dataoff | 2 MiB |
//! | 64 | 8 | npfns | 0 (unused in RAM mode) |
//! | 72 | 4 | mode | 1 = `PFN_MODE_RAM`: the memmap lives in guest RAM |
//! | 76 | 4 | start_pad | 0 |
//! | 80 | 4 | end_trunc | 0 (so the namespace must be 2 MiB-aligned in size) |
//! | 84 | 4 | align | 2 MiB |
//! | 88 | 4006 | (page_size, page_struct_size, padding) | zero |
//! | 4088 | 8 | checksum | `nd_fletcher64` of the block with this field zero |
//!
//! Version 0.2 keeps the kernel from reading `page_size`/`page_struct_size` (it fills in
//! its own for versions below 0.4).

/// Size of the block.
pub const SIZE: usize = 4096;
/// Offset of the block in the namespace (the kernel reads it at `SZ_4K`).
pub const OFFSET: u64 = 4096;
/// `PFN_SIG`.
pub const SIGNATURE: &[u8; 16] = b"NVDIMM_PFN_INFO\0";
/// `PFN_MODE_RAM`.
pub const MODE_RAM: u32 = 1;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 4088;
/// The major version written.
pub const VERSION_MAJOR: u16 = 0;
/// The minor version written: 2, so that `start_pad`, `end_trunc` and `align` are read
/// and `page_size`/`page_struct_size` are not.
pub const VERSION_MINOR: u16 = 2;

/// What varies between info blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PfnInfo {
    /// The block's own uuid, derived from the image inputs.
    pub uuid: [u8; 16],
    /// Where the data (what `/dev/pmemN` shows) starts in the namespace.
    pub dataoff: u64,
    /// Alignment of the mapping.
    pub align: u32,
}

/// The kernel's `nd_fletcher64(addr, len, le=true)`: 32-bit little-endian words summed into
/// a 32-bit low half, whose running values are summed into the high half.
pub fn fletcher64(data: &[u8]) -> u64 {
    let mut lo32: u32 = 0;
    let mut hi32: u64 = 0;
    for word in data.chunks_exact(4) {
        lo32 = lo32.wrapping_add(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        hi32 = hi32.wrapping_add(u64::from(lo32));
    }
    (hi32 << 32) | u64::from(lo32)
}

/// Encodes the block, checksum included.
pub fn encode(info: &PfnInfo) -> [u8; SIZE] {
    let mut b = [0u8; SIZE];
    b[0..16].copy_from_slice(SIGNATURE);
    b[16..32].copy_from_slice(&info.uuid);
    // parent_uuid (32..48) and flags (48..52) stay zero.
    b[52..54].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
    b[54..56].copy_from_slice(&VERSION_MINOR.to_le_bytes());
    b[56..64].copy_from_slice(&info.dataoff.to_le_bytes());
    // npfns (64..72) stays zero.
    b[72..76].copy_from_slice(&MODE_RAM.to_le_bytes());
    // start_pad (76..80) and end_trunc (80..84) stay zero.
    b[84..88].copy_from_slice(&info.align.to_le_bytes());
    let sum = fletcher64(&b);
    b[CHECKSUM_OFFSET..].copy_from_slice(&sum.to_le_bytes());
    b
}

/// Checks a block the way the kernel's `nd_pfn_validate` starts: signature and checksum.
pub fn verify(block: &[u8]) -> bool {
    if block.len() != SIZE || &block[..16] != SIGNATURE {
        return false;
    }
    let mut copy = block.to_vec();
    let mut stored = [0u8; 8];
    stored.copy_from_slice(&copy[CHECKSUM_OFFSET..]);
    copy[CHECKSUM_OFFSET..].fill(0);
    fletcher64(&copy) == u64::from_le_bytes(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PfnInfo {
        PfnInfo {
            uuid: *b"0123456789abcdef",
            dataoff: 2 << 20,
            align: 2 << 20,
        }
    }

    #[test]
    fn fletcher64_matches_the_kernel_definition() {
        assert_eq!(fletcher64(&[]), 0);
        // Words 1, 2, 3: lo = 1, 3, 6; hi = 1 + 3 + 6 = 10.
        let words: Vec<u8> = [1u32, 2, 3].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(fletcher64(&words), (10 << 32) | 6);
        // The low half wraps at 32 bits, the high half accumulates the wrapped values.
        let words: Vec<u8> = [u32::MAX, 2].iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(fletcher64(&words), ((u64::from(u32::MAX) + 1) << 32) | 1);
    }

    #[test]
    fn fields_at_their_offsets() {
        let b = encode(&info());
        assert_eq!(&b[0..16], b"NVDIMM_PFN_INFO\0");
        assert_eq!(&b[16..32], b"0123456789abcdef");
        assert!(b[32..52].iter().all(|&x| x == 0), "parent_uuid and flags");
        assert_eq!(u16::from_le_bytes([b[52], b[53]]), 0);
        assert_eq!(u16::from_le_bytes([b[54], b[55]]), 2);
        assert_eq!(&b[56..64], &(2u64 << 20).to_le_bytes());
        assert_eq!(&b[64..72], &[0; 8], "npfns");
        assert_eq!(&b[72..76], &1u32.to_le_bytes(), "PFN_MODE_RAM");
        assert_eq!(&b[76..84], &[0; 8], "start_pad, end_trunc");
        assert_eq!(&b[84..88], &(2u32 << 20).to_le_bytes());
        assert!(b[88..CHECKSUM_OFFSET].iter().all(|&x| x == 0));
    }

    #[test]
    fn checksum_covers_the_block_with_the_field_zeroed() {
        let b = encode(&info());
        let mut zeroed = b;
        zeroed[CHECKSUM_OFFSET..].fill(0);
        let sum = fletcher64(&zeroed);
        assert_ne!(sum, 0);
        assert_eq!(&b[CHECKSUM_OFFSET..], &sum.to_le_bytes());
        assert!(verify(&b));
        // Any flipped bit breaks it.
        for at in [0, 20, 60, 85, 2000, CHECKSUM_OFFSET + 3] {
            let mut bad = b;
            bad[at] ^= 0x10;
            assert!(!verify(&bad), "flip at {at}");
        }
    }

    #[test]
    fn checksum_value_is_stable() {
        // Pinned: a change of layout or checksum shows up here first.
        let b = encode(&info());
        let sum = u64::from_le_bytes(b[CHECKSUM_OFFSET..].try_into().unwrap());
        assert_eq!(sum, expected_checksum());
    }

    /// The checksum computed independently, word by word, from the field values.
    fn expected_checksum() -> u64 {
        let mut words = [0u32; SIZE / 4];
        let sig = b"NVDIMM_PFN_INFO\0";
        let uuid = b"0123456789abcdef";
        for i in 0..4 {
            words[i] = u32::from_le_bytes(sig[4 * i..4 * i + 4].try_into().unwrap());
            words[4 + i] = u32::from_le_bytes(uuid[4 * i..4 * i + 4].try_into().unwrap());
        }
        words[13] = 2 << 16; // version_major 0 (low half), version_minor 2 (high half)
        words[14] = 2 << 20; // dataoff, low word
        words[18] = 1; // mode
        words[21] = 2 << 20; // align
        let (mut lo, mut hi) = (0u32, 0u64);
        for w in words {
            lo = lo.wrapping_add(w);
            hi += u64::from(lo);
        }
        (hi << 32) | u64::from(lo)
    }
}

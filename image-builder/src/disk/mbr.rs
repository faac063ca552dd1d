//! A classic MBR (DOS) partition table with one Linux partition, written by hand so that no
//! partitioning tool (and no loop device) is needed.
//!
//! Sector 0 layout: 440 bytes of boot code (zero here), the 32-bit disk signature at 440,
//! two reserved bytes, four 16-byte partition entries at 446, and `55 AA` at 510. Linux
//! reads only the LBA fields; the CHS fields are filled the conventional way (255 heads,
//! 63 sectors per track, saturating at cylinder 1023) so that other tools do not complain.

use super::error::{DiskError, Result};

/// Bytes per sector of the partition table.
pub const SECTOR: u64 = 512;
/// The MBR partition type of a Linux filesystem.
pub const TYPE_LINUX: u8 = 0x83;
/// Offset of the disk signature.
pub const SIGNATURE_OFFSET: usize = 440;
/// Offset of the first partition entry.
pub const ENTRY_OFFSET: usize = 446;

/// One primary partition, in sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// First sector of the partition.
    pub start_lba: u32,
    /// Length of the partition in sectors.
    pub sectors: u32,
    /// The MBR partition type ([`TYPE_LINUX`]).
    pub kind: u8,
}

impl Partition {
    /// A Linux partition covering `[start, start + len)` bytes; both must be whole
    /// sectors and the end must be addressable with 32-bit LBAs.
    pub fn linux(start: u64, len: u64) -> Result<Partition> {
        let too_big = || DiskError::ImageTooLarge {
            bytes: start.saturating_add(len),
            max: u64::from(u32::MAX) * SECTOR,
        };
        if start % SECTOR != 0 || len % SECTOR != 0 || len == 0 {
            return Err(DiskError::Layout(format!(
                "partition [{start}, +{len}) is not made of whole, non-zero 512-byte sectors"
            )));
        }
        let start_lba = u32::try_from(start / SECTOR).map_err(|_| too_big())?;
        let sectors = u32::try_from(len / SECTOR).map_err(|_| too_big())?;
        start_lba.checked_add(sectors).ok_or_else(too_big)?;
        Ok(Partition {
            start_lba,
            sectors,
            kind: TYPE_LINUX,
        })
    }
}

/// The CHS triple of an LBA (255 heads, 63 sectors/track), saturated at 1023/254/63 like
/// every tool does beyond 8 GB.
pub fn chs(lba: u32) -> [u8; 3] {
    const HEADS: u32 = 255;
    const SPT: u32 = 63;
    let cylinder = lba / (HEADS * SPT);
    let (c, h, s) = if cylinder > 1023 {
        (1023, 254, 63)
    } else {
        (cylinder, (lba / SPT) % HEADS, lba % SPT + 1)
    };
    // Head, then sector in bits 0-5 with cylinder bits 8-9 in bits 6-7, then cylinder bits 0-7.
    [
        (h & 0xff) as u8,
        ((s & 0x3f) | ((c >> 2) & 0xc0)) as u8,
        (c & 0xff) as u8,
    ]
}

/// Encodes sector 0 with `part` as the only (first) partition entry.
pub fn encode(disk_signature: u32, part: &Partition) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    mbr[SIGNATURE_OFFSET..SIGNATURE_OFFSET + 4].copy_from_slice(&disk_signature.to_le_bytes());
    let e = &mut mbr[ENTRY_OFFSET..ENTRY_OFFSET + 16];
    e[0] = 0x00; // not bootable: the VMM loads the kernel itself
    e[1..4].copy_from_slice(&chs(part.start_lba));
    e[4] = part.kind;
    let last = part.start_lba + part.sectors - 1;
    e[5..8].copy_from_slice(&chs(last));
    e[8..12].copy_from_slice(&part.start_lba.to_le_bytes());
    e[12..16].copy_from_slice(&part.sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    mbr
}

/// Reads the first partition entry back (for tests and `hull-image` self-checks).
pub fn decode_first(mbr: &[u8]) -> Option<(u32, Partition)> {
    if mbr.len() < 512 || mbr[510] != 0x55 || mbr[511] != 0xaa {
        return None;
    }
    let u32_at = |off: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&mbr[off..off + 4]);
        u32::from_le_bytes(b)
    };
    Some((
        u32_at(SIGNATURE_OFFSET),
        Partition {
            kind: mbr[ENTRY_OFFSET + 4],
            start_lba: u32_at(ENTRY_OFFSET + 8),
            sectors: u32_at(ENTRY_OFFSET + 12),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_of_known_lbas() {
        assert_eq!(chs(0), [0, 1, 0]); // C0 H0 S1
        assert_eq!(chs(2048), [32, 33, 0]); // the usual 1 MiB start: C0 H32 S33
        assert_eq!(chs(6144), [97, 34, 0]); // 3 MiB: 6144 = 97*63 + 33
        assert_eq!(chs(16_450_560), [254, 0xff, 0xff]); // cylinder 1024: saturated
    }

    #[test]
    fn encodes_one_linux_partition_byte_exact() {
        let p = Partition::linux(3 << 20, 5 << 20).unwrap();
        assert_eq!((p.start_lba, p.sectors), (6144, 10240));
        let mbr = encode(0x1234_5678, &p);
        assert_eq!(&mbr[440..444], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(&mbr[444..446], &[0, 0]);
        let e = &mbr[446..462];
        assert_eq!(e[0], 0);
        assert_eq!(e[4], 0x83);
        assert_eq!(&e[8..12], &6144u32.to_le_bytes());
        assert_eq!(&e[12..16], &10240u32.to_le_bytes());
        assert_eq!(&e[5..8], &chs(6144 + 10240 - 1));
        // The other three entries and the boot code are empty.
        assert!(mbr[462..510].iter().all(|&b| b == 0));
        assert!(mbr[..440].iter().all(|&b| b == 0));
        assert_eq!(&mbr[510..], &[0x55, 0xaa]);
        assert_eq!(decode_first(&mbr), Some((0x1234_5678, p)));
    }

    #[test]
    fn rejects_unaligned_empty_and_huge_partitions() {
        assert!(Partition::linux(100, 512).is_err());
        assert!(Partition::linux(512, 100).is_err());
        assert!(Partition::linux(512, 0).is_err());
        assert!(matches!(
            Partition::linux(512, 3 << 40),
            Err(DiskError::ImageTooLarge { .. })
        ));
    }
}

//! The raw image: partition tables, the NVDIMM pfn block and the filesystem, laid out so
//! that one file boots from an NVDIMM with DAX, from virtio-pmem and from virtio-blk.
//!
//! ```text
//! offset 0        MBR #1: partition 1 = [3 MiB, end)        virtio-blk: /dev/vda1
//! offset 4 KiB    nd_pfn_sb: data starts at 2 MiB           pmem: /dev/pmem0 = [2 MiB, end)
//! offset 2 MiB    MBR #2: partition 1 = [1 MiB, end) of it  pmem: /dev/pmem0p1
//! offset 3 MiB    the filesystem, then (with --verity) its hash tree
//! ```
//!
//! The whole file is a multiple of 2 MiB: the kernel refuses (-EOPNOTSUPP, "resource end
//! misaligned") an fsdax namespace whose end is not 2 MiB-aligned, and the pfn block says
//! `end_trunc = 0`. Without the pfn header (`--no-dax-header`) the image is a plain disk:
//! MBR at 0 and the filesystem at 1 MiB.

mod error;
pub mod mbr;
pub mod pfn;
pub mod verity;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use self::error::DiskError;
use self::error::Result;
use crate::fsutil::{AtomicFile, io_err};

/// One mebibyte, the unit of the layout.
pub const MIB: u64 = 1 << 20;
/// Image size granularity (and pfn data alignment).
pub const ALIGN: u64 = 2 * MIB;
/// Where the pfn data (what `/dev/pmem0` shows) starts.
pub const PFN_DATAOFF: u64 = 2 * MIB;
/// Where the second MBR is: the first sector `/dev/pmem0` shows.
pub const MBR2_OFFSET: u64 = PFN_DATAOFF;
/// The filesystem's offset with the DAX header.
pub const FS_OFFSET_DAX: u64 = 3 * MIB;
/// The filesystem's offset in a plain image.
pub const FS_OFFSET_PLAIN: u64 = MIB;

/// Rounds `n` up to a multiple of `to`.
pub fn align_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Where everything goes in one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Whether the image carries the NVDIMM pfn block and second MBR (not `--no-dax-header`).
    pub dax_header: bool,
    /// Offset of partition 1 and of the filesystem in the file.
    pub fs_offset: u64,
    /// Size of the filesystem in bytes, a whole number of sectors.
    pub fs_bytes: u64,
    /// The dm-verity hash tree, right after the filesystem (0 without verity).
    pub hash_bytes: u64,
    /// Size of the whole file in bytes: a multiple of 2 MiB, at least the header, filesystem
    /// and hash tree.
    pub total_bytes: u64,
}

impl Layout {
    /// Plans an image for a filesystem of `fs_bytes` and a hash tree of `hash_bytes`,
    /// either just big enough (rounded up to 2 MiB) or of the fixed `size`.
    pub fn plan(
        dax_header: bool,
        fs_bytes: u64,
        hash_bytes: u64,
        size: Option<u64>,
    ) -> Result<Layout> {
        let fs_offset = if dax_header {
            FS_OFFSET_DAX
        } else {
            FS_OFFSET_PLAIN
        };
        if fs_bytes == 0 || fs_bytes % mbr::SECTOR != 0 || hash_bytes % mbr::SECTOR != 0 {
            return Err(DiskError::Layout(format!(
                "filesystem ({fs_bytes} bytes) and hash tree ({hash_bytes} bytes) must be \
                 non-empty whole sectors"
            )));
        }
        let needed = fs_offset + fs_bytes + hash_bytes;
        let total_bytes = match size {
            None => align_up(needed, ALIGN),
            Some(size) => {
                check_size(size)?;
                if size < needed {
                    return Err(DiskError::DoesNotFit {
                        needed: align_up(needed, ALIGN),
                        size,
                    });
                }
                size
            }
        };
        Ok(Layout {
            dax_header,
            fs_offset,
            fs_bytes,
            hash_bytes,
            total_bytes,
        })
    }

    /// Partition 1 runs from the filesystem to the end of the file.
    pub fn partition_bytes(&self) -> u64 {
        self.total_bytes - self.fs_offset
    }

    /// Where the hash tree starts, in 4 KiB blocks from the start of partition 1.
    pub fn hash_start_block(&self) -> u64 {
        self.fs_bytes / verity::BLOCK as u64
    }

    /// The header blocks and their offsets: MBR #1 (and, with the DAX header, the pfn
    /// block and MBR #2).
    pub fn headers(&self, ids: &Ids) -> Result<Vec<(u64, Vec<u8>)>> {
        let part = mbr::Partition::linux(self.fs_offset, self.partition_bytes())?;
        let mut out = vec![(0, mbr::encode(ids.disk_signature, &part).to_vec())];
        if self.dax_header {
            let info = pfn::PfnInfo {
                uuid: ids.pfn_uuid,
                dataoff: PFN_DATAOFF,
                align: ALIGN as u32,
            };
            out.push((pfn::OFFSET, pfn::encode(&info).to_vec()));
            let inner =
                mbr::Partition::linux(self.fs_offset - MBR2_OFFSET, self.partition_bytes())?;
            out.push((
                MBR2_OFFSET,
                mbr::encode(ids.disk_signature, &inner).to_vec(),
            ));
        }
        Ok(out)
    }
}

/// A user-given image size must be a positive multiple of 2 MiB.
pub fn check_size(size: u64) -> Result<()> {
    if size == 0 || size % ALIGN != 0 {
        return Err(DiskError::InvalidSize {
            size,
            reason: "it must be a positive multiple of 2 MiB (a pmem device whose size is \
                     not 2 MiB-aligned does not probe)"
                .into(),
        });
    }
    Ok(())
}

/// Identifiers written into the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// The MBR disk signature (partition 1's `PARTUUID` is `<signature as %08x>-01`),
    /// derived from the image inputs.
    pub disk_signature: u32,
    /// The pfn block's uuid, derived from the image inputs.
    pub pfn_uuid: [u8; 16],
}

/// Writes the image to `dest` atomically: headers, the filesystem file at its offset, the
/// hash tree after it; everything else reads as zero (the file is sparse where it can be).
pub fn write_image(
    dest: &Path,
    layout: &Layout,
    ids: &Ids,
    fs_image: &Path,
    hash_tree: Option<&[u8]>,
) -> Result<()> {
    let fs_len = crate::fsutil::file_size(fs_image)?;
    if fs_len != layout.fs_bytes {
        return Err(DiskError::Layout(format!(
            "{} is {fs_len} bytes, the layout expects {}",
            fs_image.display(),
            layout.fs_bytes
        )));
    }
    if hash_tree.map_or(0, |t| t.len() as u64) != layout.hash_bytes {
        return Err(DiskError::Layout(
            "hash tree size does not match the layout".into(),
        ));
    }
    let headers = layout.headers(ids)?;
    let mut out = AtomicFile::create(dest)?;
    let tmp = out.tmp_path().to_path_buf();
    {
        let f = out.file_mut()?;
        f.set_len(layout.total_bytes)
            .map_err(io_err("size", &tmp))?;
        for (offset, bytes) in &headers {
            f.seek(SeekFrom::Start(*offset))
                .map_err(io_err("seek in", &tmp))?;
            f.write_all(bytes).map_err(io_err("write", &tmp))?;
        }
        f.seek(SeekFrom::Start(layout.fs_offset))
            .map_err(io_err("seek in", &tmp))?;
        let mut src = fs::File::open(fs_image).map_err(io_err("open", fs_image))?;
        std::io::copy(&mut src, f).map_err(io_err("copy the filesystem into", &tmp))?;
        if let Some(tree) = hash_tree {
            f.write_all(tree).map_err(io_err("write", &tmp))?;
        }
    }
    out.set_mode(0o644)?;
    Ok(out.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Ids {
        Ids {
            disk_signature: 0xdead_beef,
            pfn_uuid: [9; 16],
        }
    }

    #[test]
    fn dax_layout_is_2mib_aligned_and_tight() {
        let l = Layout::plan(true, 5 * MIB + 4096, 0, None).unwrap();
        assert_eq!(l.fs_offset, 3 * MIB);
        // 3 MiB + 5 MiB + 4 KiB -> 10 MiB, not a 128 MiB step.
        assert_eq!(l.total_bytes, 10 * MIB);
        assert_eq!(l.partition_bytes(), 7 * MIB);
        let l = Layout::plan(true, MIB, 0, None).unwrap();
        assert_eq!(l.total_bytes, 4 * MIB);
        for fs in [4096, MIB, 7 * MIB + 512, 100 * MIB] {
            for hash in [0, 8192] {
                let l = Layout::plan(true, fs, hash, None).unwrap();
                assert_eq!(l.total_bytes % ALIGN, 0);
                assert!(l.total_bytes >= 3 * MIB + fs + hash);
                assert!(l.total_bytes < 3 * MIB + fs + hash + ALIGN);
            }
        }
    }

    #[test]
    fn plain_layout_starts_at_1mib() {
        let l = Layout::plan(false, 3 * MIB, 0, None).unwrap();
        assert_eq!((l.fs_offset, l.total_bytes), (MIB, 4 * MIB));
        let h = l.headers(&ids()).unwrap();
        assert_eq!(h.len(), 1);
        let (_, p) = mbr::decode_first(&h[0].1).unwrap();
        assert_eq!((p.start_lba, p.sectors), (2048, 6144));
    }

    #[test]
    fn both_mbrs_and_the_pfn_block() {
        let l = Layout::plan(true, 5 * MIB, 4096, None).unwrap();
        assert_eq!(l.total_bytes, 10 * MIB);
        assert_eq!(l.hash_start_block(), 5 * 256);
        let h = l.headers(&ids()).unwrap();
        let offsets: Vec<u64> = h.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, [0, 4096, 2 * MIB]);
        // MBR #1: partition 1 from 3 MiB to the end of the file.
        let (sig, p1) = mbr::decode_first(&h[0].1).unwrap();
        assert_eq!(sig, 0xdead_beef);
        assert_eq!((p1.start_lba, p1.sectors, p1.kind), (6144, 7 * 2048, 0x83));
        // MBR #2, as /dev/pmem0 sees it from 2 MiB: partition 1 from 1 MiB to its end.
        let (_, p2) = mbr::decode_first(&h[2].1).unwrap();
        assert_eq!((p2.start_lba, p2.sectors), (2048, 7 * 2048));
        assert_eq!(
            u64::from(p2.start_lba + p2.sectors) * 512 + MBR2_OFFSET,
            l.total_bytes
        );
        // The pfn block: valid, data at 2 MiB.
        assert!(pfn::verify(&h[1].1));
        assert_eq!(&h[1].1[56..64], &(2 * MIB).to_le_bytes());
        assert_eq!(&h[1].1[16..32], &[9; 16]);
    }

    #[test]
    fn fixed_size_must_fit_and_be_aligned() {
        let l = Layout::plan(true, 5 * MIB, 0, Some(64 * MIB)).unwrap();
        assert_eq!(l.total_bytes, 64 * MIB);
        assert_eq!(l.partition_bytes(), 61 * MIB);
        match Layout::plan(true, 5 * MIB, 0, Some(6 * MIB)) {
            Err(DiskError::DoesNotFit { needed, size }) => {
                assert_eq!((needed, size), (8 * MIB, 6 * MIB))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Layout::plan(true, MIB, 0, Some(9 * MIB)),
            Err(DiskError::InvalidSize { .. })
        ));
    }

    #[test]
    fn written_image_has_everything_where_planned() {
        let dir = tempfile::tempdir().unwrap();
        let fs_img = dir.path().join("fs");
        let fs_bytes: Vec<u8> = (0..2 * MIB).map(|i| (i % 251) as u8).collect();
        fs::write(&fs_img, &fs_bytes).unwrap();
        let tree = vec![0x5a; 8192];
        let l = Layout::plan(true, 2 * MIB, 8192, None).unwrap();
        let dest = dir.path().join("img");
        write_image(&dest, &l, &ids(), &fs_img, Some(&tree)).unwrap();
        let img = fs::read(&dest).unwrap();
        assert_eq!(img.len() as u64, 6 * MIB);
        assert_eq!(&img[510..512], &[0x55, 0xaa]);
        assert!(pfn::verify(&img[4096..8192]));
        assert!(img[512..4096].iter().all(|&b| b == 0));
        assert!(img[8192..2 * MIB as usize].iter().all(|&b| b == 0));
        assert_eq!(
            &img[2 * MIB as usize + 510..2 * MIB as usize + 512],
            &[0x55, 0xaa]
        );
        assert_eq!(&img[3 * MIB as usize..5 * MIB as usize], &fs_bytes[..]);
        assert_eq!(&img[5 * MIB as usize..5 * MIB as usize + 8192], &tree[..]);
        assert!(img[5 * MIB as usize + 8192..].iter().all(|&b| b == 0));
        // Only the final file is left.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}

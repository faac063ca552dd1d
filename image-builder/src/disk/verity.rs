//! A dm-verity hash tree (format version 1, SHA-256, 4 KiB blocks), computed here rather
//! than with `veritysetup`, so building a verified image needs no extra host tool.
//!
//! What the kernel's `dm-verity-target.c` expects, and so what this writes:
//!
//! - Every digest is `sha256(salt || block)` (version 1 puts the salt first).
//! - Level 0 holds the digests of the data blocks, 128 (4096 / 32) per hash block, each
//!   hash block zero-padded. Level `i + 1` holds the digests of level `i`'s hash blocks.
//!   There are `levels` levels: the smallest number with
//!   `(data_blocks - 1) >> (7 * levels) == 0`, so the top level is one block.
//! - On the hash device the levels are stored top first: the top level at `hash_start`,
//!   then the level below it, down to level 0 (`hash_level_block[]` in the kernel).
//! - The root hash is the digest of the top level's single block.
//!
//! No verity superblock is written: the table (`dm-mod.create=` on the kernel command
//! line, see [`VerityTree::dm_table`]) carries every parameter.

use std::io::Read;

use sha2::{Digest, Sha256};

/// Data and hash block size.
pub const BLOCK: usize = 4096;
/// SHA-256 digest size.
pub const DIGEST: usize = 32;
/// Digests per hash block.
pub const PER_BLOCK: usize = BLOCK / DIGEST;
/// Salt length (veritysetup's default).
pub const SALT_LEN: usize = 32;
/// The algorithm name in the dm table.
pub const ALGORITHM: &str = "sha256";

/// A computed tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerityTree {
    /// The salt put before every hashed block (image builds derive [`SALT_LEN`] bytes from
    /// their inputs).
    pub salt: Vec<u8>,
    /// Number of data blocks (4 KiB) the tree covers: the filesystem's size in blocks.
    pub data_blocks: u64,
    /// Number of hash levels.
    pub levels: u32,
    /// The hash blocks as stored on the hash device (top level first).
    pub hash_blocks: Vec<u8>,
    /// The root hash: the digest of the top level's single block.
    pub root_hash: [u8; DIGEST],
}

fn digest(salt: &[u8], block: &[u8]) -> [u8; DIGEST] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// Number of levels for `data_blocks` (the kernel's loop in `verity_ctr`).
pub fn levels_for(data_blocks: u64) -> u32 {
    let bits = PER_BLOCK.trailing_zeros();
    let mut levels = 0u32;
    if data_blocks > 0 {
        while bits * levels < 64 && (data_blocks - 1) >> (bits * levels) != 0 {
            levels += 1;
        }
    }
    levels
}

/// Hash blocks of level `i` (0 = the level over the data).
pub fn blocks_at_level(data_blocks: u64, level: u32) -> u64 {
    let shift = PER_BLOCK.trailing_zeros() * (level + 1);
    data_blocks.div_ceil(1u64 << shift)
}

/// Bytes of hash tree for `data_blocks` data blocks.
pub fn tree_bytes(data_blocks: u64) -> u64 {
    (0..levels_for(data_blocks))
        .map(|i| blocks_at_level(data_blocks, i))
        .sum::<u64>()
        * BLOCK as u64
}

/// Packs digests into zero-padded hash blocks.
fn pack(digests: &[[u8; DIGEST]]) -> Vec<u8> {
    let blocks = digests.len().div_ceil(PER_BLOCK);
    let mut out = vec![0u8; blocks * BLOCK];
    for (i, d) in digests.iter().enumerate() {
        out[i * DIGEST..(i + 1) * DIGEST].copy_from_slice(d);
    }
    out
}

/// Builds the tree over `data_blocks` blocks read from `data` (whose length must be at
/// least `data_blocks * 4096`; at least 2 blocks, so there is a tree).
pub fn build(mut data: impl Read, data_blocks: u64, salt: &[u8]) -> std::io::Result<VerityTree> {
    if data_blocks < 2 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "dm-verity needs at least two data blocks",
        ));
    }
    let mut leaf = Vec::with_capacity(usize::try_from(data_blocks).unwrap_or(0));
    let mut block = vec![0u8; BLOCK];
    for _ in 0..data_blocks {
        data.read_exact(&mut block)?;
        leaf.push(digest(salt, &block));
    }
    let levels = levels_for(data_blocks);
    // Level 0 first; each next level digests the hash blocks of the one below.
    let mut stored: Vec<Vec<u8>> = vec![pack(&leaf)];
    while stored.len() < levels as usize {
        let below = stored.last().map(Vec::as_slice).unwrap_or_default();
        let digests: Vec<[u8; DIGEST]> = below.chunks(BLOCK).map(|b| digest(salt, b)).collect();
        stored.push(pack(&digests));
    }
    let top = stored.last().map(Vec::as_slice).unwrap_or_default();
    debug_assert_eq!(top.len(), BLOCK);
    let root_hash = digest(salt, top);
    let mut hash_blocks = Vec::new();
    for level in stored.iter().rev() {
        hash_blocks.extend_from_slice(level);
    }
    Ok(VerityTree {
        salt: salt.to_vec(),
        data_blocks,
        levels,
        hash_blocks,
        root_hash,
    })
}

impl VerityTree {
    /// [`VerityTree::root_hash`] in lowercase hex, as the dm table and the manifest show it.
    pub fn root_hash_hex(&self) -> String {
        hex::encode(self.root_hash)
    }

    /// [`VerityTree::salt`] in lowercase hex, as the dm table takes it.
    pub fn salt_hex(&self) -> String {
        hex::encode(&self.salt)
    }

    /// The dm table line for a device whose data starts at block 0 and whose hash tree
    /// starts at block `hash_start_block` of `hash_dev`.
    pub fn dm_table(&self, data_dev: &str, hash_dev: &str, hash_start_block: u64) -> String {
        let sectors = self.data_blocks * (BLOCK as u64 / 512);
        format!(
            "0 {sectors} verity 1 {data_dev} {hash_dev} {BLOCK} {BLOCK} {} {hash_start_block} \
             {ALGORITHM} {} {}",
            self.data_blocks,
            self.root_hash_hex(),
            self.salt_hex()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_sizes_follow_the_kernel() {
        assert_eq!(levels_for(2), 1);
        assert_eq!(levels_for(128), 1);
        assert_eq!(levels_for(129), 2);
        assert_eq!(levels_for(128 * 128), 2);
        assert_eq!(levels_for(128 * 128 + 1), 3);
        assert_eq!(blocks_at_level(129, 0), 2);
        assert_eq!(blocks_at_level(129, 1), 1);
        assert_eq!(tree_bytes(129), 3 * 4096);
        assert_eq!(tree_bytes(256 * 1024), (2048 + 16 + 1) * 4096);
    }

    #[test]
    fn one_level_tree_by_hand() {
        let salt = [7u8; SALT_LEN];
        let data: Vec<u8> = (0..3 * BLOCK).map(|i| (i / BLOCK) as u8).collect();
        let t = build(&data[..], 3, &salt).unwrap();
        assert_eq!(t.levels, 1);
        let mut want = vec![0u8; BLOCK];
        for i in 0..3 {
            want[i * 32..(i + 1) * 32]
                .copy_from_slice(&digest(&salt, &data[i * BLOCK..(i + 1) * BLOCK]));
        }
        assert_eq!(t.hash_blocks, want);
        assert_eq!(t.root_hash, digest(&salt, &want));
    }

    #[test]
    fn two_level_tree_stores_the_top_first() {
        let salt = [1u8; SALT_LEN];
        let data = vec![0xabu8; 200 * BLOCK];
        let t = build(&data[..], 200, &salt).unwrap();
        assert_eq!(t.levels, 2);
        assert_eq!(t.hash_blocks.len(), 3 * BLOCK);
        let (top, level0) = t.hash_blocks.split_at(BLOCK);
        // Level 0: 200 equal digests over two blocks, the second padded with zeros.
        let d = digest(&salt, &data[..BLOCK]);
        assert_eq!(&level0[..32], &d);
        assert_eq!(&level0[BLOCK + 71 * 32..BLOCK + 72 * 32], &d);
        assert!(level0[BLOCK + 72 * 32..].iter().all(|&b| b == 0));
        // The top block digests the two level-0 blocks.
        assert_eq!(&top[..32], &digest(&salt, &level0[..BLOCK]));
        assert_eq!(&top[32..64], &digest(&salt, &level0[BLOCK..]));
        assert!(top[64..].iter().all(|&b| b == 0));
        assert_eq!(t.root_hash, digest(&salt, top));
    }

    #[test]
    fn table_line() {
        let t = build(&vec![0u8; 2 * BLOCK][..], 2, &[0u8; 4]).unwrap();
        let line = t.dm_table("/dev/vda1", "/dev/vda1", 2);
        assert!(
            line.starts_with("0 16 verity 1 /dev/vda1 /dev/vda1 4096 4096 2 2 sha256 "),
            "{line}"
        );
        assert!(line.ends_with(" 00000000"), "{line}");
    }

    #[test]
    fn short_input_is_an_error() {
        assert!(build(&vec![0u8; BLOCK][..], 2, &[]).is_err());
        assert!(build(&vec![0u8; BLOCK][..], 1, &[]).is_err());
    }
}

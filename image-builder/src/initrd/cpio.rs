//! A small writer for the "newc" cpio format (the one the kernel's initramfs unpacker reads).
//!
//! Each entry: a 110-byte ASCII header (`070701` then 13 fields of 8 hex digits: ino, mode,
//! uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize,
//! check), the NUL-terminated name padded to a multiple of 4 bytes (counting the header),
//! then the data padded to a multiple of 4. The archive ends with an entry named
//! `TRAILER!!!`, and is padded to a multiple of 512 bytes, as GNU cpio does.
//!
//! [`Archive`] holds entries by path and writes them reproducibly: sorted by path (so a
//! directory always precedes its contents), inode numbers 1, 2, 3... in that order, one
//! fixed mtime, uid and gid 0.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::fsutil::IoError;

/// What can go wrong building a newc archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// An archive entry could not be written to its stream.
    #[error(transparent)]
    Io(#[from] IoError),

    /// Two entries of an initrd or root tree want the same path.
    #[error("{path} is in the tree twice ({reason})")]
    DuplicateEntry {
        /// The path, relative to the root of the tree.
        path: String,
        /// How the two entries collide.
        reason: String,
    },

    /// An entry path is not acceptable.
    #[error("invalid initrd path `{path}`: {reason}")]
    InvalidEntryPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A value does not fit the newc cpio format.
    #[error("{what} {value} does not fit a newc cpio header (at most {max})")]
    CpioOverflow {
        /// The header field, for the message (`file size`, `name length`).
        what: &'static str,
        /// The value that does not fit.
        value: u64,
        /// The largest value the field holds.
        max: u64,
    },
}

type Result<T, E = CpioError> = std::result::Result<T, E>;

/// The magic of a newc header (no checksum; `070702` would be the crc variant).
pub const MAGIC: &[u8; 6] = b"070701";
/// Length of a newc header: the magic and 13 fields of 8 hex digits.
pub const HEADER_LEN: usize = 110;
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of a directory, in a header's `mode`.
pub const S_IFDIR: u32 = 0o040000;
/// File type bits of a regular file, in a header's `mode`.
pub const S_IFREG: u32 = 0o100000;
/// File type bits of a symbolic link, in a header's `mode`.
pub const S_IFLNK: u32 = 0o120000;
/// File type bits of a character device, in a header's `mode`.
pub const S_IFCHR: u32 = 0o020000;
/// File type bits of a block device, in a header's `mode`.
pub const S_IFBLK: u32 = 0o060000;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file, with its contents.
    File(Vec<u8>),
    /// A symbolic link, with its target (stored as the entry's data).
    Symlink(String),
    /// A character device node (created by the kernel's unpacker, so no root is needed here).
    CharDev {
        /// The device's major number.
        major: u32,
        /// The device's minor number.
        minor: u32,
    },
    /// A block device node.
    BlockDev {
        /// The device's major number.
        major: u32,
        /// The device's minor number.
        minor: u32,
    },
}

impl Kind {
    fn type_bits(&self) -> u32 {
        match self {
            Kind::Dir => S_IFDIR,
            Kind::File(_) => S_IFREG,
            Kind::Symlink(_) => S_IFLNK,
            Kind::CharDev { .. } => S_IFCHR,
            Kind::BlockDev { .. } => S_IFBLK,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            Kind::File(d) => d,
            Kind::Symlink(t) => t.as_bytes(),
            _ => &[],
        }
    }

    fn rdev(&self) -> (u32, u32) {
        match self {
            Kind::CharDev { major, minor } | Kind::BlockDev { major, minor } => (*major, *minor),
            _ => (0, 0),
        }
    }
}

/// One archive member, before inode and mtime are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Permission bits (`0o755`, `0o1777`...), without the file type.
    pub perm: u32,
    /// What the entry is, and its contents or device numbers.
    pub kind: Kind,
}

/// The fixed header fields of one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Inode number; [`Archive::write`] numbers entries 1, 2, 3... in archive order.
    pub ino: u32,
    /// File type and permission bits (`S_IF*` | perm).
    pub mode: u32,
    /// Owner uid (always 0 here).
    pub uid: u32,
    /// Owner gid (always 0 here).
    pub gid: u32,
    /// Link count: 2 for directories, 1 otherwise.
    pub nlink: u32,
    /// Modification time, in seconds since the Unix epoch.
    pub mtime: u32,
    /// Length of the data in bytes; [`Writer::write_record`] sets it from the data.
    pub filesize: u32,
    /// Major number of the device holding the file (0 here).
    pub devmajor: u32,
    /// Minor number of the device holding the file (0 here).
    pub devminor: u32,
    /// Major number of a device node (`rdev`); 0 for other entries.
    pub rdevmajor: u32,
    /// Minor number of a device node (`rdev`); 0 for other entries.
    pub rdevminor: u32,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn to_u32(what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| CpioError::CpioOverflow {
        what,
        value: v as u64,
        max: u64::from(u32::MAX),
    })
}

/// Writes newc records to a stream, tracking the offset for padding.
pub struct Writer<W: Write> {
    out: W,
    offset: u64,
}

impl<W: Write> Writer<W> {
    /// A writer at the start of `out` (offset 0).
    pub fn new(out: W) -> Writer<W> {
        Writer { out, offset: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, n: usize) -> io::Result<()> {
        self.put(&[0u8; 512][..n])
    }

    /// Writes one record: header, name, data. `h.filesize` is set from `data`.
    pub fn write_record(&mut self, mut h: Header, name: &str, data: &[u8]) -> Result<()> {
        h.filesize = to_u32("file size", data.len())?;
        let namesize = to_u32("name length", name.len() + 1)?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        for field in [
            h.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            h.filesize,
            h.devmajor,
            h.devminor,
            h.rdevmajor,
            h.rdevminor,
            namesize,
            0, // check: only used by the "070702" crc format
        ] {
            header.extend_from_slice(format!("{field:08X}").as_bytes());
        }
        let io = |source| IoError {
            action: "write cpio entry",
            path: name.into(),
            source,
        };
        self.put(&header).map_err(io)?;
        self.put(name.as_bytes()).map_err(io)?;
        self.put(&[0]).map_err(io)?;
        self.pad(pad4(HEADER_LEN + name.len() + 1)).map_err(io)?;
        self.put(data).map_err(io)?;
        self.pad(pad4(data.len())).map_err(io)?;
        Ok(())
    }

    /// Writes the trailer and pads the archive to a multiple of 512 bytes; returns the stream.
    pub fn finish(mut self) -> Result<W> {
        let h = Header {
            nlink: 1,
            ..Header::default()
        };
        self.write_record(h, TRAILER, &[])?;
        let rem = (self.offset % 512) as usize;
        let io = |source| IoError {
            action: "write cpio trailer",
            path: TRAILER.into(),
            source,
        };
        if rem != 0 {
            self.pad(512 - rem).map_err(io)?;
        }
        self.out.flush().map_err(io)?;
        Ok(self.out)
    }
}

/// Checks an archive path: relative (no leading `/`), no empty, `.` or `..` components.
pub fn check_path(path: &str) -> Result<()> {
    let bad = |reason: &str| CpioError::InvalidEntryPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.contains('\0') {
        return Err(bad("contains NUL"));
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err(bad("empty component (leading, trailing or double `/`)")),
            "." | ".." => return Err(bad("`.` and `..` are not allowed")),
            _ => {}
        }
    }
    Ok(())
}

/// Entries by path, written in a reproducible order.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<Vec<String>, Entry>,
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Archive {
        Archive::default()
    }

    /// Adds an entry at `path` (relative, e.g. `usr/bin/hull-agent`), creating missing
    /// parent directories with mode 0755. Adding a path twice is an error, except a
    /// directory over an identical directory.
    pub fn add(&mut self, path: &str, entry: Entry) -> Result<()> {
        check_path(path)?;
        let comps: Vec<String> = path.split('/').map(str::to_string).collect();
        for i in 1..comps.len() {
            let parent = comps[..i].to_vec();
            match self.entries.get(&parent) {
                None => {
                    self.entries.insert(
                        parent,
                        Entry {
                            perm: 0o755,
                            kind: Kind::Dir,
                        },
                    );
                }
                Some(Entry {
                    kind: Kind::Dir, ..
                }) => {}
                Some(_) => {
                    return Err(CpioError::DuplicateEntry {
                        path: comps[..i].join("/"),
                        reason: format!("it is not a directory, but {path} is below it"),
                    });
                }
            }
        }
        match self.entries.get(&comps) {
            None => {
                self.entries.insert(comps, entry);
                Ok(())
            }
            Some(existing) if existing.kind == Kind::Dir && entry.kind == Kind::Dir => {
                // A directory implied by a child, now given explicitly: its mode wins.
                self.entries.insert(comps, entry);
                Ok(())
            }
            Some(_) => Err(CpioError::DuplicateEntry {
                path: path.to_string(),
                reason: "added twice".to_string(),
            }),
        }
    }

    /// Paths in archive order.
    pub fn paths(&self) -> Vec<String> {
        self.entries.keys().map(|c| c.join("/")).collect()
    }

    /// Entries in archive order, with their paths.
    pub fn iter(&self) -> impl Iterator<Item = (String, &Entry)> {
        self.entries.iter().map(|(c, e)| (c.join("/"), e))
    }

    /// Number of entries, implied parent directories included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the archive: entries sorted by path components, inodes from 1, every
    /// entry owned by 0:0 with `mtime`.
    pub fn write<W: Write>(&self, out: W, mtime: u32) -> Result<W> {
        let mut w = Writer::new(out);
        for (ino, (comps, entry)) in (1u32..).zip(&self.entries) {
            let (rdevmajor, rdevminor) = entry.kind.rdev();
            let h = Header {
                ino,
                mode: entry.kind.type_bits() | (entry.perm & 0o7777),
                uid: 0,
                gid: 0,
                nlink: if entry.kind == Kind::Dir { 2 } else { 1 },
                mtime,
                rdevmajor,
                rdevminor,
                ..Header::default()
            };
            w.write_record(h, &comps.join("/"), entry.kind.data())?;
        }
        w.finish()
    }

    /// The archive as bytes.
    pub fn to_bytes(&self, mtime: u32) -> Result<Vec<u8>> {
        self.write(Vec::new(), mtime)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn file(perm: u32, data: &[u8]) -> Entry {
        Entry {
            perm,
            kind: Kind::File(data.to_vec()),
        }
    }

    #[test]
    fn one_record_byte_exact() {
        let mut w = Writer::new(Vec::new());
        let h = Header {
            ino: 1,
            mode: S_IFREG | 0o644,
            nlink: 1,
            mtime: 0x5f5e100,
            ..Header::default()
        };
        w.write_record(h, "a", b"hello").unwrap();
        let out = w.out;
        let mut want = Vec::new();
        want.extend_from_slice(b"070701");
        want.extend_from_slice(b"00000001"); // ino
        want.extend_from_slice(b"000081A4"); // mode 0100644
        want.extend_from_slice(b"00000000"); // uid
        want.extend_from_slice(b"00000000"); // gid
        want.extend_from_slice(b"00000001"); // nlink
        want.extend_from_slice(b"05F5E100"); // mtime
        want.extend_from_slice(b"00000005"); // filesize
        want.extend_from_slice(b"00000000"); // devmajor
        want.extend_from_slice(b"00000000"); // devminor
        want.extend_from_slice(b"00000000"); // rdevmajor
        want.extend_from_slice(b"00000000"); // rdevminor
        want.extend_from_slice(b"00000002"); // namesize "a\0"
        want.extend_from_slice(b"00000000"); // check
        assert_eq!(want.len(), HEADER_LEN);
        want.extend_from_slice(b"a\0"); // 112 bytes: already aligned
        want.extend_from_slice(b"hello\0\0\0"); // 5 bytes of data, 3 of padding
        assert_eq!(out, want);
    }

    #[test]
    fn name_padding_counts_the_header() {
        // 110 + "ab\0" = 113 -> 3 bytes of padding to 116.
        let mut w = Writer::new(Vec::new());
        w.write_record(Header::default(), "ab", b"").unwrap();
        assert_eq!(w.out.len(), 116);
        assert_eq!(&w.out[110..116], b"ab\0\0\0\0");
        // 110 + "abcd\0" = 115 -> 1 byte to 116; data of 4 needs none.
        let mut w = Writer::new(Vec::new());
        w.write_record(Header::default(), "abcd", b"1234").unwrap();
        assert_eq!(w.out.len(), 120);
    }

    #[test]
    fn device_and_trailer_records() {
        let mut a = Archive::new();
        a.add(
            "dev/console",
            Entry {
                perm: 0o600,
                kind: Kind::CharDev { major: 5, minor: 1 },
            },
        )
        .unwrap();
        let bytes = a.to_bytes(0).unwrap();
        // dev (dir), dev/console, trailer, padded to 512.
        assert_eq!(bytes.len(), 512);
        let second = &bytes[116..];
        assert_eq!(&second[..6], b"070701");
        assert_eq!(&second[6..14], b"00000002"); // ino
        assert_eq!(&second[14..22], b"00002180"); // S_IFCHR | 0600
        assert_eq!(&second[78..86], b"00000005"); // rdevmajor
        assert_eq!(&second[86..94], b"00000001"); // rdevminor
        let trailer_at = 116 + 124;
        let trailer = &bytes[trailer_at..];
        assert_eq!(&trailer[6..14], b"00000000"); // ino 0
        assert_eq!(&trailer[38..46], b"00000001"); // nlink 1
        assert_eq!(&trailer[94..102], b"0000000B"); // namesize "TRAILER!!!\0"
        assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
        assert!(bytes[trailer_at + 124..].iter().all(|&b| b == 0));
    }

    #[test]
    fn entries_are_sorted_parents_first_with_sequential_inodes() {
        let mut a = Archive::new();
        a.add("usr/bin/hull-agent", file(0o755, b"x")).unwrap();
        a.add("init", file(0o755, b"y")).unwrap();
        a.add(
            "tmp",
            Entry {
                perm: 0o1777,
                kind: Kind::Dir,
            },
        )
        .unwrap();
        a.add("usr-local", file(0o644, b"")).unwrap();
        a.add(
            "usr",
            Entry {
                perm: 0o700,
                kind: Kind::Dir,
            },
        )
        .unwrap();
        assert_eq!(
            a.paths(),
            [
                "init",
                "tmp",
                "usr",
                "usr/bin",
                "usr/bin/hull-agent",
                "usr-local"
            ]
        );
        let bytes = a.to_bytes(7).unwrap();
        let parsed = parse(&bytes);
        let got: Vec<(u32, &str, u32)> = parsed
            .iter()
            .map(|(h, n, _)| (h.ino, n.as_str(), h.mode))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "init", S_IFREG | 0o755),
                (2, "tmp", S_IFDIR | 0o1777),
                (3, "usr", S_IFDIR | 0o700),
                (4, "usr/bin", S_IFDIR | 0o755),
                (5, "usr/bin/hull-agent", S_IFREG | 0o755),
                (6, "usr-local", S_IFREG | 0o644),
                (0, TRAILER, 0),
            ]
        );
        assert!(parsed[..6].iter().all(|(h, _, _)| h.mtime == 7));
    }

    #[test]
    fn duplicates_and_bad_paths_are_rejected() {
        let mut a = Archive::new();
        a.add("etc/passwd", file(0o644, b"")).unwrap();
        assert!(matches!(
            a.add("etc/passwd", file(0o644, b"")),
            Err(CpioError::DuplicateEntry { .. })
        ));
        assert!(matches!(
            a.add("etc/passwd/x", file(0o644, b"")),
            Err(CpioError::DuplicateEntry { .. })
        ));
        for bad in ["", "/abs", "a//b", "a/../b", "./a", "a/"] {
            assert!(
                matches!(
                    a.add(bad, file(0o644, b"")),
                    Err(CpioError::InvalidEntryPath { .. })
                ),
                "{bad:?}"
            );
        }
    }

    /// A minimal newc reader for tests: (header, name, data) of each record.
    pub(crate) fn parse(bytes: &[u8]) -> Vec<(Header, String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            let hdr = &bytes[pos..pos + HEADER_LEN];
            assert_eq!(&hdr[..6], MAGIC);
            let field = |i: usize| {
                let s = std::str::from_utf8(&hdr[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let h = Header {
                ino: field(0),
                mode: field(1),
                uid: field(2),
                gid: field(3),
                nlink: field(4),
                mtime: field(5),
                filesize: field(6),
                devmajor: field(7),
                devminor: field(8),
                rdevmajor: field(9),
                rdevminor: field(10),
            };
            let namesize = field(11) as usize;
            let name_start = pos + HEADER_LEN;
            let name =
                String::from_utf8(bytes[name_start..name_start + namesize - 1].to_vec()).unwrap();
            let data_start = name_start + namesize + pad4(HEADER_LEN + namesize);
            let data = bytes[data_start..data_start + h.filesize as usize].to_vec();
            pos = data_start + h.filesize as usize + pad4(h.filesize as usize);
            let done = name == TRAILER;
            out.push((h, name, data));
            if done {
                break;
            }
        }
        out
    }
}

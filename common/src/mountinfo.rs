//! Parsing `/proc/PID/mountinfo`, the one parser hull-init and hull-agent share.
//!
//! Line format (proc(5)), fields separated by spaces:
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)   (4)   (5)     (6)      (7)   (8) (9)    (10)         (11)
//! ```
//!
//! mount ID, parent ID, `major:minor`, root of the mount within its filesystem, mount
//! point, per-mount options, zero or more optional fields (`shared:N`, `master:N`, ...),
//! a lone `-` separator, filesystem type, source, superblock options. The kernel escapes
//! space, tab, newline and backslash in paths (root, mount point, source) as `\ooo`
//! octal; [`MountInfoEntry`] holds them decoded.

use alloc::string::String;
use alloc::vec::Vec;

/// The calling process's mount table.
pub const PROC_SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfoEntry {
    /// Unique ID of the mount (field 1; may be reused after it is unmounted).
    pub id: u32,
    /// ID of the parent mount, or of this mount itself at the top of the tree (field 2).
    pub parent: u32,
    /// Major number of the device the filesystem lives on (field 3, before the `:`).
    pub major: u32,
    /// Minor number of the device the filesystem lives on (field 3, after the `:`).
    pub minor: u32,
    /// The directory of the filesystem that forms the root of this mount (decoded).
    pub root: Vec<u8>,
    /// Where it is mounted, as bytes: a path need not be UTF-8 (decoded).
    pub mount_point: Vec<u8>,
    /// Per-mount options, e.g. `rw,nosuid,relatime`.
    pub options: String,
    /// `shared:N`, `master:N`, `propagate_from:N`, `unbindable`, in order.
    pub optional_fields: Vec<String>,
    /// Filesystem type, e.g. `ext4`, `overlay`, `fuse.sshfs` (field 9).
    pub fstype: String,
    /// The mount source (decoded; non-UTF-8 bytes replaced).
    pub source: String,
    /// Superblock options, e.g. `rw,dax=always`.
    pub super_options: String,
}

/// Why a mountinfo line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountInfoError {
    /// The line ends before this field.
    #[error("mountinfo line has no {0} field")]
    MissingField(&'static str),
    /// A numeric field holds something else.
    #[error("mountinfo {field} {value:?} is not a number")]
    BadNumber {
        /// Which field, e.g. `"mount ID"` or `"major"`.
        field: &'static str,
        /// The text found there (non-UTF-8 bytes replaced).
        value: String,
    },
    /// The device field is not `major:minor`.
    #[error("mountinfo device {0:?} is not major:minor")]
    BadDevice(String),
    /// No lone `-` ends the optional fields.
    #[error("mountinfo line has no \"-\" separator after the optional fields")]
    NoSeparator,
}

impl MountInfoEntry {
    /// Whether the per-mount options include `ro`.
    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }

    /// `major:minor` of the device, as the kernel prints it.
    pub fn device(&self) -> String {
        alloc::format!("{}:{}", self.major, self.minor)
    }

    /// The mount point as a path.
    #[cfg(feature = "std")]
    pub fn mount_point_path(&self) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStringExt;
        std::path::PathBuf::from(std::ffi::OsString::from_vec(self.mount_point.clone()))
    }
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<MountInfoEntry, MountInfoError> {
    let mut fields = line.split(|b| *b == b' ').filter(|f| !f.is_empty());
    let mut next = |name: &'static str| fields.next().ok_or(MountInfoError::MissingField(name));
    let id = number("mount ID", next("mount ID")?)?;
    let parent = number("parent ID", next("parent ID")?)?;
    let device = next("major:minor")?;
    let (major, minor) = device
        .iter()
        .position(|b| *b == b':')
        .and_then(|colon| {
            let major = number("major", &device[..colon]).ok()?;
            let minor = number("minor", &device[colon + 1..]).ok()?;
            Some((major, minor))
        })
        .ok_or_else(|| MountInfoError::BadDevice(lossy(device)))?;
    let root = unescape(next("root")?);
    let mount_point = unescape(next("mount point")?);
    let options = lossy(next("mount options")?);
    let mut optional_fields = Vec::new();
    loop {
        match fields.next() {
            Some(b"-") => break,
            Some(field) => optional_fields.push(lossy(field)),
            None => return Err(MountInfoError::NoSeparator),
        }
    }
    let mut next = |name: &'static str| fields.next().ok_or(MountInfoError::MissingField(name));
    let fstype = lossy(next("filesystem type")?);
    let source = lossy(&unescape(next("mount source")?));
    // Older kernels may leave the superblock options out; treat as empty.
    let super_options = fields.next().map(lossy).unwrap_or_default();
    Ok(MountInfoEntry {
        id,
        parent,
        major,
        minor,
        root,
        mount_point,
        options,
        optional_fields,
        fstype,
        source,
        super_options,
    })
}

/// Every non-empty line, parsed, in file order (which is mount order: parents before
/// children, a mount before the ones stacked over it).
pub fn lines(data: &[u8]) -> impl Iterator<Item = Result<MountInfoEntry, MountInfoError>> + '_ {
    data.split(|b| *b == b'\n')
        .filter(|line| !line.iter().all(|b| *b == b' '))
        .map(parse_line)
}

/// All entries; the first malformed line is an error.
pub fn parse(data: &[u8]) -> Result<Vec<MountInfoEntry>, MountInfoError> {
    lines(data).collect()
}

/// All well-formed entries; malformed lines are skipped (for callers that must go on
/// with what the kernel gave them, such as init shutting down).
pub fn parse_lenient(data: &[u8]) -> Vec<MountInfoEntry> {
    lines(data).filter_map(Result::ok).collect()
}

fn number(field: &'static str, text: &[u8]) -> Result<u32, MountInfoError> {
    core::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| MountInfoError::BadNumber {
            field,
            value: lossy(text),
        })
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Decodes the kernel's `\ooo` octal escapes; anything else passes through.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && let Some(digits) = field.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const TABLE: &str = "\
1 1 0:2 / / rw - rootfs rootfs rw,size=117820k,nr_inodes=29455
14 1 0:19 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
17 16 0:21 / /dev/pts rw,nosuid,noexec,relatime shared:2 - devpts devpts rw,mode=620,ptmxmode=666
21 19 0:25 /sub\\134dir /run/kata\\040containers/shared rw,relatime master:7 propagate_from:9 - virtiofs kata\\011Shared rw
";

    #[test]
    fn parses_every_field() {
        let entries = parse(TABLE.as_bytes()).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(
            entries[0],
            MountInfoEntry {
                id: 1,
                parent: 1,
                major: 0,
                minor: 2,
                root: b"/".to_vec(),
                mount_point: b"/".to_vec(),
                options: "rw".into(),
                optional_fields: vec![],
                fstype: "rootfs".into(),
                source: "rootfs".into(),
                super_options: "rw,size=117820k,nr_inodes=29455".into(),
            }
        );
        assert_eq!(entries[2].optional_fields, vec!["shared:2"]);
        assert_eq!(entries[2].device(), "0:21");
    }

    #[test]
    fn escapes_are_decoded() {
        let share = &parse(TABLE.as_bytes()).unwrap()[3];
        assert_eq!(share.mount_point, b"/run/kata containers/shared");
        assert_eq!(share.root, b"/sub\\dir");
        assert_eq!(share.source, "kata\tShared");
        assert_eq!(share.optional_fields, vec!["master:7", "propagate_from:9"]);
        assert_eq!(share.fstype, "virtiofs");
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(br"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
        assert_eq!(unescape(br"trailing\04"), br"trailing\04");
        assert_eq!(unescape(br"\999\"), br"\999\");
        assert_eq!(unescape(br"\777"), br"\777");
    }

    #[test]
    fn the_separator_is_a_lone_dash() {
        // A `-` inside a field is no separator; an optional field may look like one.
        let entry = parse_line(b"5 1 8:1 / /a-b rw,x-y shared:1 - ext4 /dev/a-b rw").unwrap();
        assert_eq!(entry.mount_point, b"/a-b");
        assert_eq!(entry.fstype, "ext4");
        assert_eq!(entry.source, "/dev/a-b");
        // No superblock options (old kernels): empty, not an error.
        let entry = parse_line(b"5 1 8:1 / /a rw - ext4 /dev/a").unwrap();
        assert_eq!(entry.super_options, "");
    }

    #[test]
    fn malformed_lines_give_typed_errors() {
        assert_eq!(
            parse_line(b"garbage"),
            Err(MountInfoError::BadNumber {
                field: "mount ID",
                value: "garbage".into()
            })
        );
        assert_eq!(
            parse_line(b"1 2 3"),
            Err(MountInfoError::BadDevice("3".into()))
        );
        assert_eq!(
            parse_line(b"1 2 0:1 /"),
            Err(MountInfoError::MissingField("mount point"))
        );
        assert_eq!(
            parse_line(b"31 1 0:1 / /nodash rw shared:1"),
            Err(MountInfoError::NoSeparator)
        );
        assert_eq!(
            parse_line(b"31 1 0:1 / /a rw -"),
            Err(MountInfoError::MissingField("filesystem type"))
        );
        assert_eq!(
            parse_line(b"31 1 0:x / /a rw - t s o"),
            Err(MountInfoError::BadDevice("0:x".into()))
        );
        assert_eq!(
            parse(b"1 1 0:2 / / rw - rootfs rootfs rw\nx 1 0:1 / /a rw - t s o\n"),
            Err(MountInfoError::BadNumber {
                field: "mount ID",
                value: "x".into()
            })
        );
    }

    #[test]
    fn lenient_parse_skips_malformed_and_empty_lines() {
        let data = b"garbage\n\n1 2 3\nx 1 0:1 / /a rw - t s o\n30 1 0:1 / /ok rw - tmpfs none rw\n31 1 0:1 / /nodash rw shared:1\n";
        let entries = parse_lenient(data);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mount_point, b"/ok");
        assert!(parse_lenient(b"").is_empty());
        assert_eq!(parse(b"\n\n"), Ok(vec![]));
        let non_utf8 = b"40 1 0:1 / /\xff\xfe rw - tmpfs n\xffone rw\n";
        let entries = parse_lenient(non_utf8);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mount_point, b"/\xff\xfe");
    }

    #[test]
    fn read_only_and_device() {
        let entry =
            parse_line(b"22 1 259:1 / / ro,relatime - ext4 /dev/root ro,dax=always").unwrap();
        assert!(entry.is_read_only());
        assert_eq!(entry.device(), "259:1");
        let entry = parse_line(b"22 1 259:1 / / rw,errors=ro - ext4 /dev/root ro").unwrap();
        assert!(!entry.is_read_only());
    }

    #[cfg(feature = "std")]
    #[test]
    fn mount_point_as_path() {
        let entry = parse_line(b"63 43 0:39 / /run/a\\040b rw - tmpfs tmpfs rw").unwrap();
        assert_eq!(entry.mount_point_path(), std::path::Path::new("/run/a b"));
    }
}

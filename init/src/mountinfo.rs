//! Parsing `/proc/self/mountinfo` and planning the unmount order (pure logic).
//!
//! Line format (proc(5)):
//! `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
//! mount ID, parent ID, major:minor, root, mount point, mount options, optional
//! fields, `-`, filesystem type, source, super options. Paths escape space, tab,
//! newline and backslash as `\ooo` octal.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

pub const PROC_SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub id: u32,
    pub parent: u32,
    pub mount_point: PathBuf,
    /// Per-mount options, e.g. `rw,nosuid,relatime`.
    pub options: String,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    pub fn is_read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses mountinfo content; malformed lines are skipped.
pub fn parse(data: &[u8]) -> Vec<MountEntry> {
    data.split(|b| *b == b'\n').filter_map(parse_line).collect()
}

/// Reads and parses the calling process's mountinfo.
pub fn read() -> std::io::Result<Vec<MountEntry>> {
    std::fs::read(PROC_SELF_MOUNTINFO).map(|data| parse(&data))
}

fn parse_line(line: &[u8]) -> Option<MountEntry> {
    let mut fields = line.split(|b| *b == b' ').filter(|f| !f.is_empty());
    let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let parent = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let _major_minor = fields.next()?;
    let _root = fields.next()?;
    let mount_point = PathBuf::from(OsString::from_vec(unescape(fields.next()?)));
    let options = String::from_utf8_lossy(fields.next()?).into_owned();
    // Optional fields end at a lone "-".
    for field in fields.by_ref() {
        if field == b"-" {
            break;
        }
    }
    let fstype = String::from_utf8_lossy(fields.next()?).into_owned();
    let source = String::from_utf8_lossy(&unescape(fields.next()?)).into_owned();
    Some(MountEntry {
        id,
        parent,
        mount_point,
        options,
        fstype,
        source,
    })
}

/// Decodes the kernel's `\ooo` octal escapes; anything else passes through.
fn unescape(field: &[u8]) -> Vec<u8> {
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

/// What the boot log says about the root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootDescription {
    pub fstype: String,
    pub source: String,
    /// `major:minor` of the device.
    pub device: String,
    /// Per-mount options then superblock options, without repeats (as /proc/mounts shows
    /// them): e.g. `ro,relatime,dax=always`.
    pub options: String,
}

/// Describes the mount visible at `/` (the last one stacked there).
pub fn describe_root(data: &[u8]) -> Option<RootDescription> {
    let line = data
        .split(|b| *b == b'\n')
        .rfind(|l| parse_line(l).is_some_and(|e| e.mount_point == Path::new("/")))?;
    let entry = parse_line(line)?;
    let fields: Vec<&[u8]> = line
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    let device = String::from_utf8_lossy(fields.get(2)?).into_owned();
    let dash = fields.iter().position(|f| *f == b"-")?;
    let super_options = fields
        .get(dash + 3)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .unwrap_or_default();
    let mut options: Vec<&str> = Vec::new();
    for o in entry.options.split(',').chain(super_options.split(',')) {
        if !o.is_empty() && !options.contains(&o) {
            options.push(o);
        }
    }
    Some(RootDescription {
        options: options.join(","),
        fstype: entry.fstype,
        source: entry.source,
        device,
    })
}

/// True when `path` is a mount point in `entries`.
pub fn is_mount_point(entries: &[MountEntry], path: &Path) -> bool {
    entries.iter().any(|e| e.mount_point == path)
}

/// The mount currently visible at `/` (the last one stacked there).
pub fn root(entries: &[MountEntry]) -> Option<&MountEntry> {
    entries
        .iter()
        .rev()
        .find(|e| e.mount_point == Path::new("/"))
}

/// Whether shutdown should remount `/` read-only: not for the initramfs
/// (`rootfs`, which has no backing store) and not when it already is.
pub fn root_needs_ro_remount(root: &MountEntry) -> bool {
    root.fstype != "rootfs" && !root.is_read_only()
}

/// The order to unmount in: the reverse of mountinfo's order (children are
/// listed after their parents, later mounts after the ones they cover), with
/// every mount on `/` left out.
pub fn unmount_order(entries: &[MountEntry]) -> Vec<&MountEntry> {
    entries
        .iter()
        .rev()
        .filter(|e| e.mount_point != Path::new("/"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INITRAMFS: &str = "\
1 1 0:2 / / rw - rootfs rootfs rw,size=117820k,nr_inodes=29455
14 1 0:19 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
15 1 0:20 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw
16 1 0:5 / /dev rw,nosuid,relatime - devtmpfs devtmpfs rw,size=116972k,nr_inodes=29243,mode=755
17 16 0:21 / /dev/pts rw,nosuid,noexec,relatime shared:2 - devpts devpts rw,mode=620,ptmxmode=666
18 16 0:22 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw
19 1 0:23 / /run rw,nosuid,nodev - tmpfs tmpfs rw,mode=755
20 15 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
21 19 0:25 / /run/kata\\040containers/shared rw,relatime master:7 master:9 - virtiofs kataShared rw
";

    fn points(entries: &[&MountEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.mount_point.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn parses_fields() {
        let entries = parse(INITRAMFS.as_bytes());
        assert_eq!(entries.len(), 9);
        assert_eq!(
            entries[0],
            MountEntry {
                id: 1,
                parent: 1,
                mount_point: "/".into(),
                options: "rw".into(),
                fstype: "rootfs".into(),
                source: "rootfs".into(),
            }
        );
        let pts = &entries[4];
        assert_eq!((pts.id, pts.parent), (17, 16));
        assert_eq!(pts.fstype, "devpts");
        assert_eq!(pts.options, "rw,nosuid,noexec,relatime");
        let share = &entries[8];
        assert_eq!(share.mount_point, Path::new("/run/kata containers/shared"));
        assert_eq!(share.fstype, "virtiofs");
        assert_eq!(share.source, "kataShared");
    }

    #[test]
    fn describes_the_top_root_mount_with_superblock_options() {
        let data = b"1 1 0:2 / / rw - rootfs rootfs rw\n\
            22 1 259:1 / / ro,relatime - ext4 /dev/root ro,dax=always\n\
            23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,mode=755\n";
        let root = describe_root(data).unwrap();
        assert_eq!(
            root,
            RootDescription {
                fstype: "ext4".into(),
                source: "/dev/root".into(),
                device: "259:1".into(),
                options: "ro,relatime,dax=always".into(),
            }
        );
        assert_eq!(
            describe_root(b"23 22 0:5 / /dev rw - devtmpfs d rw\n"),
            None
        );
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(br"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
        assert_eq!(unescape(br"trailing\04"), br"trailing\04");
        assert_eq!(unescape(br"\999\"), br"\999\");
        assert_eq!(unescape(br"\777"), br"\777");
    }

    #[test]
    fn skips_malformed_lines() {
        let data = b"garbage\n\n1 2 3\nx 1 0:1 / /a rw - t s o\n30 1 0:1 / /ok rw - tmpfs none rw\n31 1 0:1 / /nodash rw shared:1\n";
        let entries = parse(data);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mount_point, Path::new("/ok"));
        assert!(parse(b"").is_empty());
        let non_utf8 = b"40 1 0:1 / /\xff\xfe rw - tmpfs n\xffone rw\n";
        assert_eq!(parse(non_utf8).len(), 1);
    }

    #[test]
    fn unmount_order_is_reverse_without_root() {
        let entries = parse(INITRAMFS.as_bytes());
        assert_eq!(
            points(&unmount_order(&entries)),
            vec![
                "/run/kata containers/shared",
                "/sys/fs/cgroup",
                "/run",
                "/dev/shm",
                "/dev/pts",
                "/dev",
                "/sys",
                "/proc",
            ]
        );
    }

    #[test]
    fn children_come_before_parents() {
        let entries = parse(INITRAMFS.as_bytes());
        let order = unmount_order(&entries);
        for (i, child) in order.iter().enumerate() {
            if let Some(j) = order.iter().position(|e| e.id == child.parent) {
                assert!(i < j, "{:?} after its parent", child.mount_point);
            }
        }
    }

    #[test]
    fn stacked_mounts_top_first() {
        let data = b"1 0 8:1 / / rw - ext4 /dev/vda1 rw\n\
                     2 1 0:30 / /mnt rw - tmpfs a rw\n\
                     3 2 0:31 / /mnt rw - tmpfs b rw\n";
        let entries = parse(data);
        let order = unmount_order(&entries);
        assert_eq!(
            order.iter().map(|e| e.source.as_str()).collect::<Vec<_>>(),
            vec!["b", "a"]
        );
        assert!(is_mount_point(&entries, Path::new("/mnt")));
        assert!(!is_mount_point(&entries, Path::new("/mn")));
    }

    #[test]
    fn root_remount_decision() {
        let initramfs = parse(INITRAMFS.as_bytes());
        let root_entry = root(&initramfs);
        assert_eq!(root_entry.map(|e| e.fstype.as_str()), Some("rootfs"));
        assert!(!root_entry.is_some_and(root_needs_ro_remount));

        let ext4 = parse(b"22 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw\n");
        assert!(root(&ext4).is_some_and(root_needs_ro_remount));

        let erofs = parse(b"22 1 254:1 / / ro,relatime - erofs /dev/pmem0p1 ro,dax=always\n");
        assert!(!root(&erofs).is_some_and(root_needs_ro_remount));

        // The topmost of several mounts on / decides.
        let stacked =
            parse(b"1 1 0:2 / / rw - rootfs rootfs rw\n2 1 8:1 / / rw - ext4 /dev/vda1 rw\n");
        assert_eq!(root(&stacked).map(|e| e.id), Some(2));
        assert!(unmount_order(&stacked).is_empty());

        assert!(root(&[]).is_none());
    }
}

//! `CopyFile`: the host puts a file, a directory or a symlink into the guest's shared
//! directory, as Kata's runtimes do when the sandbox has no shared file system (each file
//! of a volume, a ConfigMap or Secret update).
//!
//! The request carries the path (absolute, beneath the shared directory), `file_mode` (the
//! `st_mode` of the host's file: its type picks what is made, its permission bits are
//! applied), `dir_mode` (the permission bits of parent directories made on the way), the
//! owner (`uid`, `gid`; negative leaves it unchanged) and, for a regular file, one chunk:
//! `data` at `offset` of a file of `file_size` bytes. Kata's Go runtime sends a file in
//! chunks of 1 MiB, each request with the same fields apart from `offset` and `data`;
//! runtime-rs sends it whole.
//!
//! What is made, by the type bits of `file_mode`:
//!
//! - **regular file** (or no type bits): the chunks are written into a temporary file
//!   beside the destination ([`temporary_name`]); once it is `file_size` bytes long it
//!   gets its mode and owner and is renamed over the destination in one step (Kata's
//!   rule: the chunks come in order, so the last one completes the file). Until then the
//!   destination keeps what it had: nobody sees a partial file there. A chunk at offset
//!   0 starts the temporary file anew.
//! - **directory**: made if missing; an existing directory is kept with its contents,
//!   anything else at the path is replaced. It gets `file_mode`'s permission bits
//!   (setuid, setgid and sticky included) and the owner.
//! - **symlink**: `data` is the link's target (any target: like Kata, the agent does not
//!   judge where a link points, only never follows one out of the shared directory). It
//!   replaces whatever was at the path, atomically, and gets the owner.
//!
//! Parent directories that do not exist are made with `dir_mode`'s permission bits
//! (`0o777` of it, as Kata masks them) and the owner; existing ones are left as they are.
//! (Kata's agent changes the owner of the immediate parent even when it existed, the shared
//! directory itself included; hull leaves what it did not make alone.)
//!
//! Everything is resolved through [`crate::fs::confine`] beneath the shared directory
//! ([`Scope::Beneath`]): `..`, an absolute path elsewhere, and a symlink on the way that
//! points out are refused with the path named, and the last component is never followed.
//! Kata's agent (since 2026) confines `CopyFile` to the shared directory too; older agents
//! took anything beneath `/run/kata-containers`, but every runtime writes into the shared
//! directory only.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, symlinkat, unlinkat};

use super::confine::{ConfineError, ConfinedPath, ConfinedRoot, Scope};

/// Where `CopyFile` writes, beneath the agent's run directory: Kata's shared directory.
pub const SHARED_DIR: &str = "shared/containers";

/// Permission bits of directories made on the way (Kata's mask for `dir_mode`).
const IMPLICIT_DIR_MASK: u32 = 0o777;
/// Permission bits applied to what the request names (setuid, setgid, sticky included).
const FILE_MODE_MASK: u32 = 0o7777;
/// The longest file name Linux takes.
const NAME_MAX: usize = 255;
/// Marks the temporary file of an upload.
const TEMPORARY_SUFFIX: &str = ".hull-copy";

/// Why a `CopyFile` request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyFileError {
    /// The path is not beneath the shared directory, or resolving it would leave it.
    #[error(transparent)]
    Path(#[from] ConfineError),
    /// `file_mode` names a kind of file that cannot be copied.
    #[error(
        "{path}: file_mode {mode:#o} is not a regular file, a directory or a symlink; only those can be copied"
    )]
    UnsupportedType {
        /// The path requested.
        path: PathBuf,
        /// `file_mode` as sent.
        mode: u32,
    },
    /// The chunk does not fit the file it belongs to.
    #[error("{path}: {reason}")]
    InvalidChunk {
        /// The path requested.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// A symlink's target (`data`) cannot be one.
    #[error("{path}: invalid symlink target: {reason}")]
    InvalidSymlinkTarget {
        /// The path requested.
        path: PathBuf,
        /// What is wrong with the target.
        reason: &'static str,
    },
    /// The blocking task that carried the request out did not finish.
    #[error("{path}: the copy was interrupted: {reason}")]
    Interrupted {
        /// The path requested.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A system call on a file beneath the shared directory failed.
    #[error("{path}: {operation}: {errno}")]
    Os {
        /// The file worked on.
        path: PathBuf,
        /// The step that failed, e.g. `write`, `rename`.
        operation: &'static str,
        /// Its error.
        errno: Errno,
    },
}

/// One `CopyFile` request, as the host sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyRequest {
    /// Absolute guest path, beneath the shared directory.
    pub path: PathBuf,
    /// `st_mode` of the host's file: type and permission bits.
    pub file_mode: u32,
    /// Permission bits for parent directories made on the way.
    pub dir_mode: u32,
    /// Owner; negative leaves it unchanged.
    pub uid: i32,
    /// Group; negative leaves it unchanged.
    pub gid: i32,
    /// A regular file's size.
    pub file_size: i64,
    /// Where `data` starts within a regular file.
    pub offset: i64,
    /// A chunk of a regular file, or a symlink's target.
    pub data: Vec<u8>,
}

/// What the request makes, from `file_mode`'s type bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular,
    Directory,
    Symlink,
}

/// What a call did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// A chunk was stored; the file is not complete yet.
    Chunk,
    /// The file is complete and in place.
    File,
    /// The directory is in place.
    Directory,
    /// The symlink is in place.
    Symlink,
}

/// Carries out one `CopyFile` request beneath `shared_dir` (created if missing).
pub fn copy_file(shared_dir: &Path, request: &CopyRequest) -> Result<Copied, CopyFileError> {
    let kind = kind(request)?;
    let root = ConfinedRoot::create(shared_dir, Scope::Beneath)?;
    if !request.path.is_absolute() {
        return Err(ConfineError::OutsideRoot {
            path: request.path.clone(),
            root: root.path().to_path_buf(),
        }
        .into());
    }
    let relative = root.relative_beneath(&request.path)?;
    let Some(name) = relative.file_name() else {
        return Err(ConfineError::IsRoot {
            path: request.path.clone(),
            root: root.path().to_path_buf(),
        }
        .into());
    };
    let target = Target {
        request,
        owner: owner(request),
        parent: parent_directory(&root, request, &relative)?,
        name,
    };
    match kind {
        Kind::Directory => target.directory().map(|()| Copied::Directory),
        Kind::Symlink => target.symlink().map(|()| Copied::Symlink),
        Kind::Regular => target.chunk(),
    }
}

/// [`copy_file`] on the blocking pool, for async callers.
pub async fn copy_file_blocking(
    shared_dir: PathBuf,
    request: CopyRequest,
) -> Result<Copied, CopyFileError> {
    let path = request.path.clone();
    tokio::task::spawn_blocking(move || copy_file(&shared_dir, &request))
        .await
        .map_err(|e| CopyFileError::Interrupted {
            path,
            reason: e.to_string(),
        })?
}

fn kind(request: &CopyRequest) -> Result<Kind, CopyFileError> {
    let kind = SFlag::from_bits_truncate(request.file_mode) & SFlag::S_IFMT;
    // No type bits at all: a regular file, as Kata's agent takes it.
    if kind == SFlag::S_IFREG || kind.is_empty() {
        Ok(Kind::Regular)
    } else if kind == SFlag::S_IFDIR {
        Ok(Kind::Directory)
    } else if kind == SFlag::S_IFLNK {
        Ok(Kind::Symlink)
    } else {
        Err(CopyFileError::UnsupportedType {
            path: request.path.clone(),
            mode: request.file_mode,
        })
    }
}

fn owner(request: &CopyRequest) -> (Option<Uid>, Option<Gid>) {
    let uid = u32::try_from(request.uid).ok().map(Uid::from_raw);
    let gid = u32::try_from(request.gid).ok().map(Gid::from_raw);
    (uid, gid)
}

/// The parent directory of the request, made (with `dir_mode` and the owner) where missing.
fn parent_directory(
    root: &ConfinedRoot,
    request: &CopyRequest,
    relative: &Path,
) -> Result<ConfinedPath, CopyFileError> {
    let parent = relative.parent().unwrap_or(Path::new(""));
    let mode = request.dir_mode & IMPLICIT_DIR_MASK;
    let (uid, gid) = owner(request);
    let dir = root
        .create_dir_all_then(parent, mode, |made| {
            // mkdir's mode went through the umask: set it exactly.
            let os = |operation, errno| ConfineError::Os {
                path: made.path().to_path_buf(),
                operation,
                errno,
            };
            std::fs::set_permissions(made.proc_path(), std::fs::Permissions::from_mode(mode))
                .map_err(|e| os("chmod", io_errno(&e)))?;
            fchownat(made, "", uid, gid, AtFlags::AT_EMPTY_PATH).map_err(|e| os("chown", e))
        })
        .map_err(|e| name_the_request(e, &request.path))?;
    Ok(dir)
}

/// An error about a parent directory, reported for the path the host asked for.
fn name_the_request(error: ConfineError, requested: &Path) -> ConfineError {
    let path = requested.to_path_buf();
    match error {
        ConfineError::Escapes { root, .. } => ConfineError::Escapes { path, root },
        ConfineError::SymlinkLoop { .. } => ConfineError::SymlinkLoop { path },
        ConfineError::NotADirectory { .. } => ConfineError::NotADirectory { path },
        ConfineError::DanglingSymlink { component, .. } => {
            ConfineError::DanglingSymlink { path, component }
        }
        other => other,
    }
}

/// The name of the temporary file beside `name` that an upload or a symlink is made in
/// before it is renamed into place: `.NAME.hull-copy`, or a hash of the name when that
/// would be longer than a file name may be.
pub fn temporary_name(name: &OsStr) -> OsString {
    let bytes = name.as_bytes();
    if 1 + bytes.len() + TEMPORARY_SUFFIX.len() <= NAME_MAX {
        let mut temporary = Vec::with_capacity(NAME_MAX);
        temporary.push(b'.');
        temporary.extend_from_slice(bytes);
        temporary.extend_from_slice(TEMPORARY_SUFFIX.as_bytes());
        OsString::from_vec(temporary)
    } else {
        OsString::from(format!(".{:016x}{TEMPORARY_SUFFIX}", fnv1a(bytes)))
    }
}

/// FNV-1a, 64 bits: stable across builds, so every chunk of an upload finds its file.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The request's last component in its (confined) parent directory.
struct Target<'a> {
    request: &'a CopyRequest,
    owner: (Option<Uid>, Option<Gid>),
    parent: ConfinedPath,
    name: &'a OsStr,
}

impl Target<'_> {
    fn os(&self, operation: &'static str, errno: Errno) -> CopyFileError {
        CopyFileError::Os {
            path: self.request.path.clone(),
            operation,
            errno,
        }
    }

    /// The file at `name` in the parent, not following a symlink; `None` when missing.
    fn lstat(&self, name: &OsStr) -> Result<Option<FileStat>, CopyFileError> {
        match fstatat(&self.parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(self.os("stat", errno)),
        }
    }

    /// Removes whatever is at `name` in the parent (a directory with its contents).
    fn remove(&self, name: &OsStr) -> Result<(), CopyFileError> {
        let Some(stat) = self.lstat(name)? else {
            return Ok(());
        };
        if is_type(&stat, SFlag::S_IFDIR) {
            // Through the parent's fd: std's remove_dir_all follows no symlink below it.
            let path = self.parent.proc_path().join(name);
            std::fs::remove_dir_all(path).map_err(|e| self.os("remove", io_errno(&e)))
        } else {
            match unlinkat(&self.parent, name, UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => Ok(()),
                Err(errno) => Err(self.os("unlink", errno)),
            }
        }
    }

    /// Renames `temporary` over the destination; a directory there is removed first
    /// (rename cannot replace one with a file).
    fn put_in_place(&self, temporary: &OsStr) -> Result<(), CopyFileError> {
        if self
            .lstat(self.name)?
            .is_some_and(|stat| is_type(&stat, SFlag::S_IFDIR))
        {
            self.remove(self.name)?;
        }
        renameat(&self.parent, temporary, &self.parent, self.name)
            .map_err(|errno| self.os("rename", errno))
    }

    fn directory(&self) -> Result<(), CopyFileError> {
        let existing = self.lstat(self.name)?;
        if existing.is_some_and(|stat| !is_type(&stat, SFlag::S_IFDIR)) {
            self.remove(self.name)?;
        }
        match mkdirat(&self.parent, self.name, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(self.os("mkdir", errno)),
        }
        let dir = openat(
            &self.parent,
            self.name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| self.os("open", errno))?;
        self.finish(&dir)
    }

    fn symlink(&self) -> Result<(), CopyFileError> {
        let target = &self.request.data;
        let invalid = |reason| CopyFileError::InvalidSymlinkTarget {
            path: self.request.path.clone(),
            reason,
        };
        if target.is_empty() {
            return Err(invalid("empty (data holds the target)"));
        }
        if target.contains(&0) {
            return Err(invalid("contains a NUL byte"));
        }
        if target.len() >= libc::PATH_MAX as usize {
            return Err(invalid("longer than a path may be"));
        }
        let temporary = temporary_name(self.name);
        self.remove(&temporary)?;
        symlinkat(
            OsStr::from_bytes(target),
            &self.parent,
            temporary.as_os_str(),
        )
        .map_err(|errno| self.os("symlink", errno))?;
        let (uid, gid) = self.owner;
        fchownat(
            &self.parent,
            temporary.as_os_str(),
            uid,
            gid,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|errno| self.os("chown", errno))?;
        self.put_in_place(&temporary)
    }

    /// Stores one chunk of a regular file; puts the file in place once it is complete.
    fn chunk(&self) -> Result<Copied, CopyFileError> {
        let request = self.request;
        let invalid = |reason: String| CopyFileError::InvalidChunk {
            path: request.path.clone(),
            reason,
        };
        let size = u64::try_from(request.file_size)
            .map_err(|_| invalid(format!("file_size {} is negative", request.file_size)))?;
        let offset = u64::try_from(request.offset)
            .map_err(|_| invalid(format!("offset {} is negative", request.offset)))?;
        let end = offset.saturating_add(request.data.len() as u64);
        if end > size {
            return Err(invalid(format!(
                "{} bytes at offset {offset} end past file_size {size}",
                request.data.len()
            )));
        }
        let temporary = temporary_name(self.name);
        if offset == 0 {
            // A new upload: whatever an earlier one left goes.
            self.remove(&temporary)?;
        }
        // O_NOFOLLOW: a symlink planted at the temporary name is not followed;
        // O_NONBLOCK: nor does a FIFO there block the agent (it is refused below).
        let fd = openat(
            &self.parent,
            temporary.as_os_str(),
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|errno| self.os("open", errno))?;
        let stat = fstat(&fd).map_err(|errno| self.os("stat", errno))?;
        if !is_type(&stat, SFlag::S_IFREG) {
            return Err(ConfineError::WrongType {
                path: self.parent.path().join(&temporary),
                expected: "a regular file (an upload's temporary file)",
            }
            .into());
        }
        let file = File::from(fd);
        file.write_all_at(&request.data, offset)
            .map_err(|e| self.os("write", io_errno(&e)))?;
        let written = fstat(&file).map_err(|errno| self.os("stat", errno))?;
        if u64::try_from(written.st_size).unwrap_or(0) != size {
            return Ok(Copied::Chunk);
        }
        self.finish(&file.into())?;
        self.put_in_place(&temporary)?;
        Ok(Copied::File)
    }

    /// Gives an opened file its requested mode and owner.
    fn finish(&self, fd: &OwnedFd) -> Result<(), CopyFileError> {
        let mode = Mode::from_bits_truncate(self.request.file_mode & FILE_MODE_MASK);
        let (uid, gid) = self.owner;
        // Owner first: chown clears setuid and setgid bits.
        fchown(fd.as_fd(), uid, gid).map_err(|errno| self.os("chown", errno))?;
        fchmod(fd.as_fd(), mode).map_err(|errno| self.os("chmod", errno))
    }
}

fn is_type(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == kind
}

fn io_errno(error: &std::io::Error) -> Errno {
    Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    /// A shared directory (not yet made: `copy_file` makes it) with a sibling outside it.
    struct Share {
        dir: tempfile::TempDir,
        uid: i32,
        gid: i32,
    }

    impl Share {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                uid: nix::unistd::getuid().as_raw() as i32,
                gid: nix::unistd::getgid().as_raw() as i32,
            }
        }

        fn root(&self) -> PathBuf {
            self.dir.path().join("shared")
        }

        fn outside(&self) -> PathBuf {
            self.dir.path().join("outside")
        }

        fn at(&self, relative: &str) -> PathBuf {
            self.root().join(relative)
        }

        fn request(&self, relative: &str, file_mode: u32) -> CopyRequest {
            CopyRequest {
                path: self.at(relative),
                file_mode,
                dir_mode: 0o755,
                uid: self.uid,
                gid: self.gid,
                ..Default::default()
            }
        }

        fn file(&self, relative: &str, mode: u32, data: &[u8]) -> CopyRequest {
            CopyRequest {
                file_size: data.len() as i64,
                data: data.to_vec(),
                ..self.request(relative, libc::S_IFREG | mode)
            }
        }

        fn copy(&self, request: &CopyRequest) -> Result<Copied, CopyFileError> {
            copy_file(&self.root(), request)
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode()
    }

    /// Nothing but the request's own files in `dir` (no temporary file left behind).
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_in_one_request_lands_with_its_mode_and_parents() {
        let share = Share::new();
        let mut request = share.file("a/b/f", 0o640, b"hello");
        request.dir_mode = 0o750 | 0x8000_0000; // Go's os.ModeDir rides along in dir_mode.
        assert_eq!(share.copy(&request).unwrap(), Copied::File);
        assert_eq!(std::fs::read(share.at("a/b/f")).unwrap(), b"hello");
        assert_eq!(mode(&share.at("a/b/f")), libc::S_IFREG | 0o640);
        assert_eq!(mode(&share.at("a")), libc::S_IFDIR | 0o750);
        assert_eq!(mode(&share.at("a/b")), libc::S_IFDIR | 0o750);
        assert_eq!(names(&share.at("a/b")), ["f"]);
    }

    #[test]
    fn an_empty_file_and_a_mode_without_type_bits_are_regular_files() {
        let share = Share::new();
        share.copy(&share.file("empty", 0o600, b"")).unwrap();
        assert_eq!(std::fs::read(share.at("empty")).unwrap(), b"");
        let request = CopyRequest {
            file_mode: 0o644,
            ..share.file("plain", 0o644, b"x")
        };
        assert_eq!(share.copy(&request).unwrap(), Copied::File);
        assert_eq!(mode(&share.at("plain")), libc::S_IFREG | 0o644);
    }

    #[test]
    fn chunks_build_the_file_out_of_sight_and_it_appears_whole() {
        let share = Share::new();
        let content: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        // An old version is in place; it stays until the new one is complete.
        share.copy(&share.file("x/data", 0o644, b"old")).unwrap();
        let chunks: Vec<&[u8]> = content.chunks(4096).collect();
        let mut offset = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let request = CopyRequest {
                offset,
                data: chunk.to_vec(),
                file_size: content.len() as i64,
                ..share.request("x/data", libc::S_IFREG | 0o604)
            };
            let copied = share.copy(&request).unwrap();
            offset += chunk.len() as i64;
            if i + 1 < chunks.len() {
                assert_eq!(copied, Copied::Chunk);
                assert_eq!(std::fs::read(share.at("x/data")).unwrap(), b"old");
                assert_eq!(names(&share.at("x")), [".data.hull-copy", "data"]);
                // The partial file is readable by its owner only.
                assert_eq!(mode(&share.at("x/.data.hull-copy")) & 0o777, 0o600);
            } else {
                assert_eq!(copied, Copied::File);
            }
        }
        assert_eq!(std::fs::read(share.at("x/data")).unwrap(), content);
        assert_eq!(mode(&share.at("x/data")), libc::S_IFREG | 0o604);
        assert_eq!(names(&share.at("x")), ["data"]);
    }

    #[test]
    fn offset_0_starts_an_upload_over() {
        let share = Share::new();
        let second = CopyRequest {
            offset: 3,
            data: b"lo W".to_vec(),
            file_size: 11,
            ..share.request("f", libc::S_IFREG | 0o644)
        };
        assert_eq!(share.copy(&second).unwrap(), Copied::Chunk);
        // A new upload of the same file (offset 0) discards the old partial one.
        let restart = CopyRequest {
            data: b"Hello".to_vec(),
            file_size: 11,
            ..share.request("f", libc::S_IFREG | 0o644)
        };
        assert_eq!(share.copy(&restart).unwrap(), Copied::Chunk);
        let rest = CopyRequest {
            offset: 5,
            data: b" World".to_vec(),
            ..restart.clone()
        };
        assert_eq!(share.copy(&rest).unwrap(), Copied::File);
        assert_eq!(std::fs::read(share.at("f")).unwrap(), b"Hello World");
    }

    #[test]
    fn chunks_that_do_not_fit_the_file_are_refused() {
        let share = Share::new();
        for (offset, size, data, needle) in [
            (0, 3, &b"toolong"[..], "end past file_size 3"),
            (2, 3, b"ab", "end past file_size 3"),
            (-1, 3, b"a", "offset -1 is negative"),
            (0, -5, b"", "file_size -5 is negative"),
        ] {
            let request = CopyRequest {
                offset,
                file_size: size,
                data: data.to_vec(),
                ..share.request("bad", libc::S_IFREG | 0o644)
            };
            let err = share.copy(&request).unwrap_err();
            assert!(matches!(err, CopyFileError::InvalidChunk { .. }), "{err}");
            let text = err.to_string();
            assert!(text.contains(needle) && text.contains("bad"), "{text}");
        }
        assert!(!share.at("bad").exists());
    }

    #[test]
    fn directories_are_made_kept_and_given_their_mode() {
        let share = Share::new();
        let dir = share.request("d", libc::S_IFDIR | 0o3770);
        assert_eq!(share.copy(&dir).unwrap(), Copied::Directory);
        assert_eq!(mode(&share.at("d")), libc::S_IFDIR | 0o3770);
        share.copy(&share.file("d/inner", 0o644, b"i")).unwrap();
        // Again, with another mode: the directory and its contents stay.
        share
            .copy(&share.request("d", libc::S_IFDIR | 0o751))
            .unwrap();
        assert_eq!(mode(&share.at("d")), libc::S_IFDIR | 0o751);
        assert_eq!(std::fs::read(share.at("d/inner")).unwrap(), b"i");
        // An existing parent keeps its mode whatever dir_mode says.
        let mut inner = share.file("d/other", 0o644, b"o");
        inner.dir_mode = 0o700;
        share.copy(&inner).unwrap();
        assert_eq!(mode(&share.at("d")), libc::S_IFDIR | 0o751);
        // Implicit parents never get setuid, setgid or sticky bits.
        let mut deep = share.request("p/q", libc::S_IFDIR | 0o755);
        deep.dir_mode = 0o3755;
        share.copy(&deep).unwrap();
        assert_eq!(mode(&share.at("p")), libc::S_IFDIR | 0o755);
    }

    #[test]
    fn a_file_replaces_a_directory_and_a_directory_replaces_a_file() {
        let share = Share::new();
        share.copy(&share.file("t/x", 0o644, b"x")).unwrap();
        share.copy(&share.file("t", 0o600, b"now a file")).unwrap();
        assert_eq!(std::fs::read(share.at("t")).unwrap(), b"now a file");
        share
            .copy(&share.request("t", libc::S_IFDIR | 0o755))
            .unwrap();
        assert!(share.at("t").is_dir());
        assert_eq!(names(&share.root()), ["t"]);
    }

    #[test]
    fn symlinks_are_made_replaced_and_never_followed() {
        let share = Share::new();
        std::fs::create_dir_all(share.outside()).unwrap();
        let link = CopyRequest {
            data: b"/etc/passwd".to_vec(),
            ..share.request("a/link", libc::S_IFLNK | 0o777)
        };
        assert_eq!(share.copy(&link).unwrap(), Copied::Symlink);
        assert_eq!(
            std::fs::read_link(share.at("a/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(mode(&share.at("a/link")), libc::S_IFLNK | 0o777);
        // A symlink over a symlink replaces it.
        let relinked = CopyRequest {
            data: b"..data/key".to_vec(),
            ..link.clone()
        };
        share.copy(&relinked).unwrap();
        assert_eq!(
            std::fs::read_link(share.at("a/link")).unwrap(),
            Path::new("..data/key")
        );
        // A file over a symlink to outside replaces the link; nothing outside changes.
        let escape = share.outside().join("victim");
        std::fs::write(&escape, b"keep").unwrap();
        share
            .copy(&CopyRequest {
                data: escape.as_os_str().as_bytes().to_vec(),
                ..link.clone()
            })
            .unwrap();
        share.copy(&share.file("a/link", 0o600, b"Hello!")).unwrap();
        assert_eq!(mode(&share.at("a/link")), libc::S_IFREG | 0o600);
        assert_eq!(std::fs::read(&escape).unwrap(), b"keep");
        assert_eq!(names(&share.at("a")), ["link"]);
    }

    #[test]
    fn bad_symlink_targets_are_refused() {
        let share = Share::new();
        for (data, needle) in [(&b""[..], "empty"), (b"a\0b", "NUL")] {
            let request = CopyRequest {
                data: data.to_vec(),
                ..share.request("l", libc::S_IFLNK | 0o777)
            };
            let err = share.copy(&request).unwrap_err();
            assert!(
                matches!(err, CopyFileError::InvalidSymlinkTarget { .. }),
                "{err}"
            );
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn other_kinds_of_file_are_refused() {
        let share = Share::new();
        for kind in [libc::S_IFIFO, libc::S_IFSOCK, libc::S_IFCHR, libc::S_IFBLK] {
            let err = share.copy(&share.request("dev", kind | 0o644)).unwrap_err();
            assert!(
                matches!(err, CopyFileError::UnsupportedType { .. }),
                "{err}"
            );
            assert!(err.to_string().contains("/shared/dev"), "{err}");
        }
        assert!(!share.at("dev").exists());
    }

    #[test]
    fn hostile_paths_are_refused_naming_the_path_and_nothing_is_written_outside() {
        let share = Share::new();
        std::fs::create_dir_all(share.outside()).unwrap();
        std::fs::create_dir_all(share.root()).unwrap();
        // Planted by someone with access to the share: links that lead out.
        symlink(share.outside(), share.at("out")).unwrap();
        symlink("../outside", share.at("rel-out")).unwrap();
        symlink("/", share.at("slash")).unwrap();
        symlink("loop", share.at("loop")).unwrap();
        std::fs::write(share.at("plain"), b"p").unwrap();
        let sibling = format!("{}/x", share.outside().display());
        let root = share.root().display().to_string();
        let hostile = [
            format!("{root}/../outside/x"),
            format!("{root}/a/../../outside/x"),
            sibling.clone(),
            "/etc/hull-copy-test".to_string(),
            "relative/x".to_string(),
            format!("{root}/out/x"),
            format!("{root}/rel-out/x"),
            format!("{root}/slash/tmp/hull-copy-test"),
            format!("{root}/out/deep/er/x"),
            format!("{root}/loop/x"),
            format!("{root}/plain/x"),
            root.clone(),
            format!("{root}/"),
        ];
        for path in &hostile {
            for file_mode in [libc::S_IFREG | 0o644, libc::S_IFDIR | 0o755, libc::S_IFLNK] {
                let request = CopyRequest {
                    path: PathBuf::from(path),
                    file_mode,
                    data: b"target".to_vec(),
                    file_size: 6,
                    ..Default::default()
                };
                let err = copy_file(&share.root(), &request).unwrap_err();
                assert!(
                    matches!(err, CopyFileError::Path(_)),
                    "{path} ({file_mode:o}): {err}"
                );
                let text = err.to_string();
                assert!(text.contains(path.trim_end_matches('/')), "{path}: {text}");
            }
        }
        assert_eq!(names(&share.outside()), Vec::<String>::new());
        assert!(!Path::new("/etc/hull-copy-test").exists());
        assert!(!Path::new("/tmp/hull-copy-test").exists());
        assert_eq!(
            names(&share.root()),
            ["loop", "out", "plain", "rel-out", "slash"]
        );
    }

    #[test]
    fn a_planted_temporary_file_is_not_followed() {
        let share = Share::new();
        std::fs::create_dir_all(share.outside()).unwrap();
        std::fs::create_dir_all(share.root()).unwrap();
        let victim = share.outside().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        symlink(&victim, share.at(".f.hull-copy")).unwrap();
        // A resumed upload (offset > 0) finds the planted link: refused, not followed.
        let resumed = CopyRequest {
            offset: 1,
            data: b"x".to_vec(),
            file_size: 3,
            ..share.request("f", libc::S_IFREG | 0o644)
        };
        let err = share.copy(&resumed).unwrap_err();
        assert!(matches!(err, CopyFileError::Os { .. }), "{err}");
        // A new upload removes it and goes on.
        share.copy(&share.file("f", 0o644, b"abc")).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(share.at("f")).unwrap(), b"abc");
    }

    #[test]
    fn temporary_names_fit_in_a_file_name() {
        assert_eq!(temporary_name(OsStr::new("f")), ".f.hull-copy");
        let long = "n".repeat(255);
        let temporary = temporary_name(OsStr::new(&long));
        assert!(temporary.len() <= NAME_MAX, "{temporary:?}");
        assert_eq!(temporary, temporary_name(OsStr::new(&long)));
        assert_ne!(temporary, temporary_name(OsStr::new(&"m".repeat(255))));
    }

    #[test]
    fn the_owner_is_applied_when_root() {
        // Only root may give files away; the other tests use the caller's own ids.
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root: only root can give a file to another owner"
        );
        let share = Share::new();
        let request = CopyRequest {
            uid: 1234,
            gid: 4321,
            ..share.file("o/f", 0o4755, b"#!/bin/sh\n")
        };
        share.copy(&request).unwrap();
        let meta = std::fs::metadata(share.at("o/f")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1234, 4321));
        // chown before chmod: the setuid bit survives.
        assert_eq!(meta.mode() & 0o7777, 0o4755);
        let parent = std::fs::metadata(share.at("o")).unwrap();
        assert_eq!((parent.uid(), parent.gid()), (1234, 4321));
        let link = CopyRequest {
            uid: 42,
            gid: -1,
            data: b"f".to_vec(),
            ..share.request("o/l", libc::S_IFLNK)
        };
        share.copy(&link).unwrap();
        let meta = std::fs::symlink_metadata(share.at("o/l")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (42, 0));
    }
}

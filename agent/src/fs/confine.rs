//! Path confinement: resolve a requested path beneath a root directory without ever
//! leaving it.
//!
//! The host names guest paths (mount points, overlay layers, bind sources); some of the
//! directories those paths cross are filled by the host or by containers (a virtio-fs
//! share, a volume). A symlink planted there must not turn "mount on
//! `/run/kata-containers/shared/containers/c1/rootfs`" into "mount on `/etc`".
//!
//! The rules, checked in this order:
//!
//! 1. The request is taken apart lexically. A `..` component is refused outright (even one
//!    that would stay inside: it has no legitimate use in a path the host sends). An
//!    absolute request must lie under the root ([`Scope::Beneath`]) or is taken as
//!    relative to it ([`Scope::InRoot`], the root acting as `/`, as for a container
//!    rootfs).
//! 2. The kernel resolves the rest with `openat2(2)` relative to an fd of the root, with
//!    `RESOLVE_BENEATH` (or `RESOLVE_IN_ROOT`) and `RESOLVE_NO_MAGICLINKS`: a symlink
//!    whose target leaves the root (absolute, or `..` past the root) fails the lookup
//!    with `EXDEV`, a loop with `ELOOP`, a `/proc` magic link is never followed. Symlinks
//!    that stay inside are followed.
//! 3. The result is an `O_PATH` fd ([`ConfinedPath`]). Callers act on the fd, or on its
//!    `/proc/self/fd/N` name ([`ConfinedPath::proc_path`]) for system calls that only
//!    take paths (`mount(2)`), so a symlink swapped in after the check changes nothing.
//!
//! Missing directories are created one component at a time with `mkdirat(2)` on the fd
//! of the confined parent, so creation cannot be redirected either.
//!
//! ## Why this is not `pathrs`
//!
//! The agent depends on `pathrs` (0.2) already: the container helper resolves mount
//! destinations inside a rootfs with it, where the rootfs acting as `/` is what is wanted.
//! It cannot do this module's main job: it has a single resolution mode,
//! `RESOLVE_IN_ROOT` (its `openat2` resolver always passes `RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS`, its user-space fallback emulates the same, and
//! `ResolverFlags` offers only `NO_SYMLINKS`). Every storage mount point is resolved
//! with [`Scope::Beneath`], which needs `RESOLVE_BENEATH`: a symlink planted in a share
//! that points at `/etc` must make the request fail ([`ConfineError::Escapes`], the
//! kernel's `EXDEV`), not be re-rooted quietly to `<root>/etc` and mounted over; the
//! tests below (`a_symlink_to_slash_is_an_escape`,
//! `a_relative_symlink_to_a_sibling_outside_is_an_escape`) check that refusal. For [`Scope::InRoot`] alone `pathrs` would do what
//! `ConfinedRoot::open_at` does with one flag changed, so both scopes stay on the one
//! `openat2` call here rather than on two implementations behind one type.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, mkdirat};

/// How many times a lookup is retried when the kernel reports a concurrent rename
/// (`EAGAIN` from `openat2`) before giving up.
const RACE_RETRIES: usize = 16;

/// How a root confines the paths resolved in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every path and every symlink must stay beneath the root: absolute symlinks are
    /// refused. For the agent's own directories (`/run/kata-containers`).
    Beneath,
    /// The root acts as `/`: absolute paths and absolute symlinks are resolved inside it,
    /// `..` at the root stays at the root. For a container's rootfs.
    InRoot,
}

/// Why a path could not be resolved inside its root.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// An absolute path that does not start with the root.
    #[error("{path}: must be under {root}")]
    OutsideRoot {
        /// The path requested.
        path: PathBuf,
        /// The root it had to be under.
        root: PathBuf,
    },
    /// A `..` component in the request.
    #[error("{path}: '..' is not allowed in a guest path")]
    ParentComponent {
        /// The path requested.
        path: PathBuf,
    },
    /// A NUL byte in the request.
    #[error("{path:?}: the path contains a NUL byte")]
    NulByte {
        /// The path requested.
        path: PathBuf,
    },
    /// The request names the root itself where something beneath it is required.
    #[error("{path}: must name something beneath {root}, not the directory itself")]
    IsRoot {
        /// The path requested.
        path: PathBuf,
        /// The root it names.
        root: PathBuf,
    },
    /// Resolving the path would leave the root: an absolute symlink, or a symlink or
    /// mount whose `..` climbs past the root.
    #[error("{path}: resolves outside {root} (through a symlink that points outside)")]
    Escapes {
        /// The path requested.
        path: PathBuf,
        /// The root it would leave.
        root: PathBuf,
    },
    /// A symlink loop, too many symlinks, or a `/proc` magic link.
    #[error("{path}: too many levels of symbolic links (a symlink loop or a /proc magic link)")]
    SymlinkLoop {
        /// The path requested.
        path: PathBuf,
    },
    /// A component that must be a directory is not one.
    #[error("{path}: a component of the path is not a directory")]
    NotADirectory {
        /// The path requested.
        path: PathBuf,
    },
    /// A symlink on the way points at something that does not exist.
    #[error("{path}: {component} is a symlink to a missing target")]
    DanglingSymlink {
        /// The path requested.
        path: PathBuf,
        /// The dangling symlink, as a path under the root.
        component: PathBuf,
    },
    /// The path does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path requested.
        path: PathBuf,
    },
    /// The path exists but is not the kind of file asked for.
    #[error("{path}: expected {expected}")]
    WrongType {
        /// The path requested.
        path: PathBuf,
        /// The kind of file wanted, e.g. `a regular file`.
        expected: &'static str,
    },
    /// The kernel has no `openat2(2)`.
    #[error("this kernel has no openat2(2) (Linux 5.6 or later), needed to confine {path}")]
    Unsupported {
        /// The path that was to be resolved.
        path: PathBuf,
    },
    /// Any other failure of a system call.
    #[error("{path}: {operation}: {errno}")]
    Os {
        /// The path being worked on.
        path: PathBuf,
        /// The system call or step that failed, e.g. `open`, `mkdir`.
        operation: &'static str,
        /// Its error.
        errno: Errno,
    },
}

/// A directory beneath which paths are resolved. Holds an fd of it: the root is pinned
/// even if its path is later replaced.
#[derive(Debug)]
pub struct ConfinedRoot {
    path: PathBuf,
    fd: OwnedFd,
    scope: Scope,
}

/// A file or directory resolved inside a [`ConfinedRoot`], held as an `O_PATH` fd.
#[derive(Debug)]
pub struct ConfinedPath {
    fd: OwnedFd,
    path: PathBuf,
}

impl ConfinedRoot {
    /// Opens the directory `path` (absolute, no `..`) as a root. The root itself is
    /// trusted: symlinks in `path` are followed.
    pub fn open(path: impl Into<PathBuf>, scope: Scope) -> Result<Self, ConfineError> {
        let path = path.into();
        check_nul(&path)?;
        if !path.is_absolute() {
            return Err(ConfineError::WrongType {
                path,
                expected: "an absolute path",
            });
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(ConfineError::ParentComponent { path });
        }
        let fd = nix::fcntl::open(
            &path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| match errno {
            Errno::ENOENT => ConfineError::NotFound { path: path.clone() },
            Errno::ENOTDIR => ConfineError::NotADirectory { path: path.clone() },
            errno => ConfineError::Os {
                path: path.clone(),
                operation: "open",
                errno,
            },
        })?;
        Ok(Self { path, fd, scope })
    }

    /// Creates the directory `path` and its parents if needed (the root is trusted), then
    /// opens it.
    pub fn create(path: impl Into<PathBuf>, scope: Scope) -> Result<Self, ConfineError> {
        let path = path.into();
        check_nul(&path)?;
        if path.is_absolute() && !path.components().any(|c| c == Component::ParentDir) {
            std::fs::create_dir_all(&path).map_err(|e| ConfineError::Os {
                path: path.clone(),
                operation: "mkdir",
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        }
        Self::open(path, scope)
    }

    /// The root's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How this root confines.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The request as a path relative to the root, checked lexically (step 1 of the
    /// module's rules). Empty for the root itself.
    pub fn relative(&self, requested: &Path) -> Result<PathBuf, ConfineError> {
        relative_to(&self.path, self.scope, requested)
    }

    /// Like [`ConfinedRoot::relative`], refusing the root itself.
    pub fn relative_beneath(&self, requested: &Path) -> Result<PathBuf, ConfineError> {
        let relative = self.relative(requested)?;
        if relative.as_os_str().is_empty() {
            return Err(ConfineError::IsRoot {
                path: requested.to_path_buf(),
                root: self.path.clone(),
            });
        }
        Ok(relative)
    }

    /// Resolves an existing path.
    pub fn resolve(&self, requested: &Path) -> Result<ConfinedPath, ConfineError> {
        let relative = self.relative(requested)?;
        let fd = self
            .open_at(&relative, OFlag::O_PATH, Mode::empty())
            .map_err(|errno| self.error(requested, "open", errno))?;
        Ok(ConfinedPath::new(fd, self.path.join(&relative)))
    }

    /// Resolves a directory, creating it and any missing parent with `mode` (before the
    /// umask).
    pub fn create_dir_all(
        &self,
        requested: &Path,
        mode: u32,
    ) -> Result<ConfinedPath, ConfineError> {
        self.create_dir_all_then(requested, mode, |_| Ok(()))
    }

    /// Like [`ConfinedRoot::create_dir_all`], and calls `created` with each directory this
    /// call made (parents first), before anything is made inside it: to set its exact mode
    /// or its owner.
    pub fn create_dir_all_then(
        &self,
        requested: &Path,
        mode: u32,
        mut created: impl FnMut(&ConfinedPath) -> Result<(), ConfineError>,
    ) -> Result<ConfinedPath, ConfineError> {
        let relative = self.relative(requested)?;
        let mode = Mode::from_bits_truncate(mode);
        match self.open_dir(&relative) {
            Ok(fd) => return Ok(ConfinedPath::new(fd, self.path.join(&relative))),
            Err(Errno::ENOENT) => {}
            Err(errno) => return Err(self.error(requested, "open", errno)),
        }
        let mut prefix = PathBuf::new();
        let mut parent = self
            .open_dir(Path::new(""))
            .map_err(|errno| self.error(requested, "open", errno))?;
        for name in relative.iter() {
            prefix.push(name);
            let fd = match self.open_dir(&prefix) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let made = match mkdirat(&parent, name, mode) {
                        Ok(()) => true,
                        // Created concurrently, or a symlink (checked just below).
                        Err(Errno::EEXIST) => false,
                        Err(errno) => {
                            return Err(ConfineError::Os {
                                path: self.path.join(&prefix),
                                operation: "mkdir",
                                errno,
                            });
                        }
                    };
                    let fd = self.open_dir(&prefix).map_err(|errno| match errno {
                        Errno::ENOENT => ConfineError::DanglingSymlink {
                            path: requested.to_path_buf(),
                            component: self.path.join(&prefix),
                        },
                        errno => self.error(requested, "open", errno),
                    })?;
                    if made {
                        let dir = ConfinedPath::new(fd, self.path.join(&prefix));
                        created(&dir)?;
                        dir.fd
                    } else {
                        fd
                    }
                }
                Err(errno) => return Err(self.error(requested, "open", errno)),
            };
            parent = fd;
        }
        Ok(ConfinedPath::new(parent, self.path.join(&relative)))
    }

    /// Resolves a file beneath the root, creating it empty (and its parent directories)
    /// if missing. Used for the targets of file bind mounts.
    pub fn create_file(&self, requested: &Path, mode: u32) -> Result<ConfinedPath, ConfineError> {
        let relative = self.relative_beneath(requested)?;
        match self.open_at(&relative, OFlag::O_PATH, Mode::empty()) {
            Ok(fd) => return Ok(ConfinedPath::new(fd, self.path.join(&relative))),
            Err(Errno::ENOENT) => {}
            Err(errno) => return Err(self.error(requested, "open", errno)),
        }
        let (parent, name) = self.parent_of(requested, &relative)?;
        match openat(
            &parent,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(_created) => {}
            Err(Errno::EEXIST) => {}
            Err(errno) => return Err(self.error(requested, "create", errno)),
        }
        let fd = self
            .open_at(&relative, OFlag::O_PATH, Mode::empty())
            .map_err(|errno| match errno {
                Errno::ENOENT => ConfineError::DanglingSymlink {
                    path: requested.to_path_buf(),
                    component: self.path.join(&relative),
                },
                errno => self.error(requested, "open", errno),
            })?;
        Ok(ConfinedPath::new(fd, self.path.join(&relative)))
    }

    /// Writes `contents` to a regular file beneath the root, creating it (and its parent
    /// directories) if missing and truncating it otherwise. The file itself must not be a
    /// symlink.
    pub fn write_file(
        &self,
        requested: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<ConfinedPath, ConfineError> {
        let relative = self.relative_beneath(requested)?;
        let (parent, name) = self.parent_of(requested, &relative)?;
        // O_NONBLOCK: opening a FIFO for writing fails instead of blocking.
        let fd = openat(
            &parent,
            name,
            OFlag::O_CREAT
                | OFlag::O_WRONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|errno| self.error(requested, "open", errno))?;
        let stat = fstat(&fd).map_err(|errno| self.error(requested, "stat", errno))?;
        if !is_type(&stat, SFlag::S_IFREG) {
            return Err(ConfineError::WrongType {
                path: requested.to_path_buf(),
                expected: "a regular file",
            });
        }
        let mut file = File::from(fd);
        file.set_len(0)
            .and_then(|()| file.write_all(contents))
            .map_err(|e| ConfineError::Os {
                path: requested.to_path_buf(),
                operation: "write",
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            })?;
        self.resolve(requested)
    }

    /// The confined parent directory of `relative` (created if missing) and the last
    /// component's name.
    fn parent_of<'a>(
        &self,
        requested: &Path,
        relative: &'a Path,
    ) -> Result<(ConfinedPath, &'a OsStr), ConfineError> {
        let name = relative.file_name().ok_or_else(|| ConfineError::IsRoot {
            path: requested.to_path_buf(),
            root: self.path.clone(),
        })?;
        let parent_relative = relative.parent().unwrap_or(Path::new(""));
        let parent = self
            .create_dir_all(parent_relative, 0o755)
            .map_err(|e| match e {
                // Report the request, not its parent.
                ConfineError::Escapes { root, .. } => ConfineError::Escapes {
                    path: requested.to_path_buf(),
                    root,
                },
                other => other,
            })?;
        Ok((parent, name))
    }

    fn open_dir(&self, relative: &Path) -> Result<OwnedFd, Errno> {
        self.open_at(relative, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())
    }

    fn open_at(&self, relative: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, Errno> {
        let relative = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let resolve = match self.scope {
            Scope::Beneath => ResolveFlag::RESOLVE_BENEATH,
            Scope::InRoot => ResolveFlag::RESOLVE_IN_ROOT,
        } | ResolveFlag::RESOLVE_NO_MAGICLINKS;
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(resolve);
        let mut attempts = 0;
        loop {
            match openat2(&self.fd, relative, how) {
                Err(Errno::EAGAIN) if attempts < RACE_RETRIES => attempts += 1,
                result => return result,
            }
        }
    }

    fn error(&self, requested: &Path, operation: &'static str, errno: Errno) -> ConfineError {
        let path = requested.to_path_buf();
        match errno {
            Errno::EXDEV => ConfineError::Escapes {
                path,
                root: self.path.clone(),
            },
            Errno::ELOOP => ConfineError::SymlinkLoop { path },
            Errno::ENOTDIR => ConfineError::NotADirectory { path },
            Errno::ENOENT => ConfineError::NotFound { path },
            Errno::ENOSYS => ConfineError::Unsupported { path },
            errno => ConfineError::Os {
                path,
                operation,
                errno,
            },
        }
    }
}

/// Step 1 of the module's rules without opening anything: `requested` as a path relative
/// to `root` (empty for the root itself), or why it cannot be one.
pub fn relative_to(root: &Path, scope: Scope, requested: &Path) -> Result<PathBuf, ConfineError> {
    check_nul(requested)?;
    let rest = match (requested.is_absolute(), scope) {
        (true, Scope::Beneath) => {
            requested
                .strip_prefix(root)
                .map_err(|_| ConfineError::OutsideRoot {
                    path: requested.to_path_buf(),
                    root: root.to_path_buf(),
                })?
        }
        _ => requested,
    };
    let mut relative = PathBuf::new();
    for component in rest.components() {
        match component {
            Component::Normal(name) => relative.push(name),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                return Err(ConfineError::ParentComponent {
                    path: requested.to_path_buf(),
                });
            }
            Component::Prefix(_) => {
                return Err(ConfineError::OutsideRoot {
                    path: requested.to_path_buf(),
                    root: root.to_path_buf(),
                });
            }
        }
    }
    Ok(relative)
}

impl ConfinedPath {
    fn new(fd: OwnedFd, lexical: PathBuf) -> Self {
        // What the kernel calls the file now: symlinks inside the root resolved. Without
        // /proc, the lexical path (same file unless a symlink was followed).
        let path = std::fs::read_link(proc_fd_path(fd.as_raw_fd())).unwrap_or(lexical);
        Self { fd, path }
    }

    /// The resolved path, for messages and records. Do not hand it back to the kernel:
    /// use the fd or [`ConfinedPath::proc_path`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `/proc/self/fd/N` of the held fd: a name for exactly this file, for system calls
    /// that take paths only (`mount(2)`, `chmod(2)`). Needs `/proc`.
    pub fn proc_path(&self) -> PathBuf {
        proc_fd_path(self.fd.as_raw_fd())
    }

    /// The file's status.
    pub fn stat(&self) -> Result<FileStat, ConfineError> {
        fstat(&self.fd).map_err(|errno| ConfineError::Os {
            path: self.path.clone(),
            operation: "stat",
            errno,
        })
    }

    /// Whether the file is a directory.
    pub fn is_dir(&self) -> bool {
        self.stat().is_ok_and(|s| is_type(&s, SFlag::S_IFDIR))
    }
}

impl AsFd for ConfinedPath {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn proc_fd_path(fd: i32) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

fn is_type(stat: &FileStat, kind: SFlag) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == kind
}

fn check_nul(path: &Path) -> Result<(), ConfineError> {
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(ConfineError::NulByte {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A temporary directory with `root/` (the confined root) and `outside/` beside it.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("root")).unwrap();
            std::fs::create_dir(dir.path().join("outside")).unwrap();
            std::fs::write(dir.path().join("outside/secret"), "x").unwrap();
            Self { dir }
        }
        fn root_path(&self) -> PathBuf {
            self.dir.path().join("root")
        }
        fn root(&self) -> ConfinedRoot {
            ConfinedRoot::open(self.root_path(), Scope::Beneath).unwrap()
        }
        fn in_root(&self, rel: &str) -> PathBuf {
            self.root_path().join(rel)
        }
        fn outside(&self) -> PathBuf {
            self.dir.path().join("outside")
        }
        fn outside_entries(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.outside())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    #[test]
    fn creates_and_resolves_nested_directories() {
        let tree = Tree::new();
        let root = tree.root();
        let created = root.create_dir_all(&tree.in_root("a/b/c"), 0o750).unwrap();
        assert_eq!(created.path(), tree.in_root("a/b/c"));
        assert!(created.is_dir());
        assert!(tree.in_root("a/b/c").is_dir());
        // Idempotent, and relative requests mean the same.
        let again = root.create_dir_all(Path::new("a/./b//c/"), 0o750).unwrap();
        assert_eq!(again.path(), tree.in_root("a/b/c"));
        let resolved = root.resolve(&tree.in_root("a/b")).unwrap();
        assert_eq!(resolved.path(), tree.in_root("a/b"));
    }

    #[test]
    fn parent_components_are_refused_even_when_they_stay_inside() {
        let tree = Tree::new();
        let root = tree.root();
        for request in ["a/../../etc", "a/../b", "..", "../outside"] {
            let err = root.create_dir_all(Path::new(request), 0o755).unwrap_err();
            assert!(
                matches!(err, ConfineError::ParentComponent { .. }),
                "{request}: {err}"
            );
            assert!(err.to_string().contains(request), "{err}");
        }
        let err = root.resolve(&tree.in_root("x/../../outside")).unwrap_err();
        assert!(matches!(err, ConfineError::ParentComponent { .. }), "{err}");
        assert!(!tree.in_root("a").exists(), "nothing was created");
    }

    #[test]
    fn absolute_paths_outside_the_root_are_refused() {
        let tree = Tree::new();
        let root = tree.root();
        let err = root
            .create_dir_all(Path::new("/etc/hull"), 0o755)
            .unwrap_err();
        assert!(matches!(err, ConfineError::OutsideRoot { .. }), "{err}");
        assert!(err.to_string().contains("/etc/hull"), "{err}");
        // A sibling sharing the root's name as a string prefix is not under it.
        let sibling = PathBuf::from(format!("{}2/x", tree.root_path().display()));
        let err = root.create_dir_all(&sibling, 0o755).unwrap_err();
        assert!(matches!(err, ConfineError::OutsideRoot { .. }), "{err}");
    }

    #[test]
    fn a_symlink_to_slash_is_an_escape() {
        let tree = Tree::new();
        symlink("/", tree.in_root("esc")).unwrap();
        let root = tree.root();
        let err = root.resolve(&tree.in_root("esc/etc")).unwrap_err();
        assert!(matches!(err, ConfineError::Escapes { .. }), "{err}");
        assert!(err.to_string().contains("esc/etc"), "{err}");
        let err = root
            .create_dir_all(&tree.in_root("esc/tmp/hull-escape-test"), 0o755)
            .unwrap_err();
        assert!(matches!(err, ConfineError::Escapes { .. }), "{err}");
        assert!(!Path::new("/tmp/hull-escape-test").exists());
        // The symlink itself as the final component is an escape too.
        let err = root.resolve(&tree.in_root("esc")).unwrap_err();
        assert!(matches!(err, ConfineError::Escapes { .. }), "{err}");
    }

    #[test]
    fn a_relative_symlink_to_a_sibling_outside_is_an_escape() {
        let tree = Tree::new();
        symlink("../outside", tree.in_root("link")).unwrap();
        std::fs::create_dir(tree.in_root("d")).unwrap();
        symlink("../../outside/secret", tree.in_root("d/deep")).unwrap();
        let root = tree.root();
        for request in ["link", "link/secret", "link/new/dir", "d/deep"] {
            let err = root
                .create_dir_all(&tree.in_root(request), 0o755)
                .unwrap_err();
            assert!(
                matches!(err, ConfineError::Escapes { .. }),
                "{request}: {err}"
            );
        }
        let err = root
            .write_file(&tree.in_root("link/planted"), b"x", 0o644)
            .unwrap_err();
        assert!(matches!(err, ConfineError::Escapes { .. }), "{err}");
        let err = root
            .create_file(&tree.in_root("link/planted"), 0o644)
            .unwrap_err();
        assert!(matches!(err, ConfineError::Escapes { .. }), "{err}");
        assert_eq!(tree.outside_entries(), vec!["secret".to_string()]);
    }

    #[test]
    fn a_dangling_symlink_pointing_outside_creates_nothing_outside() {
        let tree = Tree::new();
        symlink("../outside/new", tree.in_root("dangling")).unwrap();
        symlink(tree.outside().join("abs-new"), tree.in_root("dangling-abs")).unwrap();
        let root = tree.root();
        for request in ["dangling", "dangling/sub", "dangling-abs"] {
            let err = root
                .create_dir_all(&tree.in_root(request), 0o755)
                .unwrap_err();
            assert!(
                matches!(err, ConfineError::Escapes { .. }),
                "{request}: {err}"
            );
        }
        let err = root
            .create_file(&tree.in_root("dangling"), 0o644)
            .unwrap_err();
        assert!(matches!(err, ConfineError::Escapes { .. }), "{err}");
        assert_eq!(tree.outside_entries(), vec!["secret".to_string()]);
    }

    #[test]
    fn a_dangling_symlink_inside_is_reported() {
        let tree = Tree::new();
        symlink("missing", tree.in_root("dangling")).unwrap();
        let err = tree
            .root()
            .create_dir_all(&tree.in_root("dangling/x"), 0o755)
            .unwrap_err();
        assert!(matches!(err, ConfineError::DanglingSymlink { .. }), "{err}");
        assert!(!tree.in_root("missing").exists());
    }

    #[test]
    fn symlink_loops_are_refused() {
        let tree = Tree::new();
        symlink("b", tree.in_root("a")).unwrap();
        symlink("a", tree.in_root("b")).unwrap();
        symlink("self", tree.in_root("self")).unwrap();
        let root = tree.root();
        for request in ["a", "a/x", "self/x"] {
            let err = root
                .create_dir_all(&tree.in_root(request), 0o755)
                .unwrap_err();
            assert!(
                matches!(err, ConfineError::SymlinkLoop { .. }),
                "{request}: {err}"
            );
        }
    }

    #[test]
    fn proc_magic_links_are_not_followed() {
        // A root that holds magic links: /proc/self. `cwd` and `root` there point
        // anywhere the process can reach; they must not be followed.
        let root = ConfinedRoot::open("/proc/self", Scope::Beneath).unwrap();
        for request in ["cwd", "root", "root/etc", "fd/0"] {
            let err = root.resolve(Path::new(request)).unwrap_err();
            assert!(
                matches!(err, ConfineError::SymlinkLoop { .. }),
                "{request}: {err}"
            );
        }
    }

    #[test]
    fn symlinks_that_stay_inside_are_followed() {
        let tree = Tree::new();
        std::fs::create_dir_all(tree.in_root("real/dir")).unwrap();
        symlink("real", tree.in_root("alias")).unwrap();
        std::fs::create_dir(tree.in_root("other")).unwrap();
        symlink("../real/dir", tree.in_root("other/up")).unwrap();
        let root = tree.root();
        let via_alias = root
            .create_dir_all(&tree.in_root("alias/dir/new"), 0o755)
            .unwrap();
        assert_eq!(via_alias.path(), tree.in_root("real/dir/new"));
        let via_up = root.resolve(&tree.in_root("other/up")).unwrap();
        assert_eq!(via_up.path(), tree.in_root("real/dir"));
    }

    #[test]
    fn a_file_on_the_way_is_not_a_directory() {
        let tree = Tree::new();
        std::fs::write(tree.in_root("file"), "x").unwrap();
        let err = tree
            .root()
            .create_dir_all(&tree.in_root("file/sub"), 0o755)
            .unwrap_err();
        assert!(matches!(err, ConfineError::NotADirectory { .. }), "{err}");
    }

    #[test]
    fn nul_bytes_are_refused() {
        let tree = Tree::new();
        let request = PathBuf::from(std::ffi::OsString::from_vec(b"a\0b".to_vec()));
        let err = tree.root().create_dir_all(&request, 0o755).unwrap_err();
        assert!(matches!(err, ConfineError::NulByte { .. }), "{err}");
    }

    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn the_root_itself_is_not_a_file_target() {
        let tree = Tree::new();
        let root = tree.root();
        let err = root.write_file(&tree.root_path(), b"x", 0o644).unwrap_err();
        assert!(matches!(err, ConfineError::IsRoot { .. }), "{err}");
        assert!(root.resolve(&tree.root_path()).unwrap().is_dir());
    }

    #[test]
    fn write_file_creates_truncates_and_refuses_a_final_symlink() {
        let tree = Tree::new();
        let root = tree.root();
        let target = tree.in_root("sandbox/resolv.conf");
        root.write_file(&target, b"nameserver 10.0.0.1\nsearch x\n", 0o644)
            .unwrap();
        root.write_file(&target, b"nameserver 10.0.0.2\n", 0o644)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "nameserver 10.0.0.2\n"
        );
        symlink("resolv.conf", tree.in_root("sandbox/link")).unwrap();
        let err = root
            .write_file(&tree.in_root("sandbox/link"), b"x", 0o644)
            .unwrap_err();
        assert!(matches!(err, ConfineError::SymlinkLoop { .. }), "{err}");
        std::fs::create_dir(tree.in_root("sandbox/dir")).unwrap();
        let err = root
            .write_file(&tree.in_root("sandbox/dir"), b"x", 0o644)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConfineError::Os { .. } | ConfineError::WrongType { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn create_file_makes_an_empty_file_once() {
        let tree = Tree::new();
        let root = tree.root();
        let file = root.create_file(&tree.in_root("etc/hosts"), 0o644).unwrap();
        assert_eq!(file.path(), tree.in_root("etc/hosts"));
        assert!(!file.is_dir());
        std::fs::write(tree.in_root("etc/hosts"), "kept").unwrap();
        root.create_file(&tree.in_root("etc/hosts"), 0o644).unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.in_root("etc/hosts")).unwrap(),
            "kept"
        );
    }

    #[test]
    fn in_root_scope_resolves_absolute_symlinks_inside() {
        let tree = Tree::new();
        std::fs::create_dir_all(tree.in_root("usr/etc")).unwrap();
        symlink("/usr/etc", tree.in_root("etc")).unwrap();
        symlink("/", tree.in_root("slash")).unwrap();
        let root = ConfinedRoot::open(tree.root_path(), Scope::InRoot).unwrap();
        let hosts = root.create_file(Path::new("/etc/hosts"), 0o644).unwrap();
        assert_eq!(hosts.path(), tree.in_root("usr/etc/hosts"));
        let slash = root.resolve(Path::new("/slash/etc")).unwrap();
        assert_eq!(slash.path(), tree.in_root("usr/etc"));
        let err = root.resolve(Path::new("/../outside")).unwrap_err();
        assert!(matches!(err, ConfineError::ParentComponent { .. }), "{err}");
    }

    #[test]
    fn a_missing_path_is_not_found() {
        let tree = Tree::new();
        let err = tree.root().resolve(&tree.in_root("nope")).unwrap_err();
        assert!(matches!(err, ConfineError::NotFound { .. }), "{err}");
    }

    #[test]
    fn proc_path_names_the_same_file() {
        let tree = Tree::new();
        let dir = tree
            .root()
            .create_dir_all(&tree.in_root("m"), 0o755)
            .unwrap();
        std::fs::write(dir.proc_path().join("f"), "via proc").unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.in_root("m/f")).unwrap(),
            "via proc"
        );
    }
}

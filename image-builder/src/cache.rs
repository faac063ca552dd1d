//! The build cache, kept outside the repository.
//!
//! Root: `$HULL_CACHE`, else `$XDG_CACHE_HOME/hull`, else `$HOME/.cache/hull`.
//!
//! ```text
//! <root>/kernel/<key>/              a finished kernel (only ever renamed into place whole)
//!     bzImage vmlinux config        the artifacts
//!     fragments.conf build.log      the merged fragments and the full make log
//!     build.json                    inputs, sizes and timings
//! <root>/kernel/work/<key>.<pid>/   a build under way (or interrupted, or kept)
//! <root>/kernel/source-hashes/      sha256 of source tarballs, keyed by path and stat
//! <root>/kernel/object-count        objects compiled by the last build (progress estimate)
//! ```

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::fsutil::{self, IoError, io_err};

/// What can go wrong with the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file or directory of the cache could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),

    /// No cache directory can be derived from the environment.
    #[error("cannot find a cache directory: set HULL_CACHE, XDG_CACHE_HOME or HOME")]
    CacheDirUnresolved,
}

type Result<T, E = CacheError> = std::result::Result<T, E>;

/// Resolves the cache root from an environment lookup (injectable for tests).
///
/// Empty variables count as unset; `XDG_CACHE_HOME` must be absolute (XDG spec: a relative
/// value is ignored). A relative `HULL_CACHE` is made absolute against the current directory.
pub fn resolve_cache_dir_from(env: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let get = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = get("HULL_CACHE") {
        return Ok(std::path::absolute(&dir).map_err(io_err("resolve", dir))?);
    }
    if let Some(xdg) = get("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("hull"));
    }
    if let Some(home) = get("HOME") {
        return Ok(home.join(".cache").join("hull"));
    }
    Err(CacheError::CacheDirUnresolved)
}

/// Resolves the cache root from the process environment.
pub fn resolve_cache_dir() -> Result<PathBuf> {
    resolve_cache_dir_from(|name| std::env::var_os(name))
}

/// Hashes a file's bytes with SHA-256, streaming, returning lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, IoError> {
    let mut file = fs::File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", path)(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The cache, rooted at one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (nothing is created until something is written).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// The cache of the process environment.
    pub fn from_env() -> Result<Cache> {
        Ok(Cache::new(resolve_cache_dir()?))
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/kernel`: everything the kernel builds keep (finished kernels, work directories,
    /// source hashes, the object count).
    pub fn kernel_dir(&self) -> PathBuf {
        self.root.join("kernel")
    }

    /// Directory of the finished kernel with this key.
    pub fn kernel_entry(&self, key: &str) -> PathBuf {
        self.kernel_dir().join(key)
    }

    /// Parent of the work directories of kernel builds.
    pub fn kernel_work_root(&self) -> PathBuf {
        self.kernel_dir().join("work")
    }

    /// Work directory of this process's build of `key`.
    pub fn kernel_work_dir(&self, key: &str) -> PathBuf {
        self.kernel_work_root()
            .join(format!("{key}.{}", std::process::id()))
    }

    fn source_hash_memo(&self, source: &Path) -> PathBuf {
        let id = hex::encode(Sha256::digest(source.as_os_str().as_encoded_bytes()));
        self.kernel_dir().join("source-hashes").join(id)
    }

    /// SHA-256 of a source tarball. Hashing ~140 MB takes a while, so the result is
    /// remembered against the file's path and stat (size, mtime, ctime, inode, device),
    /// as git's index does; any change to the file invalidates it. `fresh` skips the memo.
    /// Returns the hash and whether it came from the memo.
    pub fn source_sha256(&self, source: &Path, fresh: bool) -> Result<(String, bool)> {
        let abs = std::path::absolute(source).map_err(io_err("resolve", source))?;
        let meta = fs::metadata(&abs).map_err(io_err("stat", &abs))?;
        let stamp = format!(
            "{} {}.{} {}.{} {} {}",
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
            meta.ino(),
            meta.dev()
        );
        let memo = self.source_hash_memo(&abs);
        if !fresh {
            if let Ok(text) = fs::read_to_string(&memo) {
                if let Some((s, hash)) = text.trim_end().rsplit_once(' ') {
                    if s == stamp && hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Ok((hash.to_string(), true));
                    }
                }
            }
        }
        let hash = sha256_file(&abs)?;
        // The memo is an optimisation: failing to write it is not an error.
        if let Err(e) = fsutil::write_atomic(&memo, format!("{stamp} {hash}\n").as_bytes()) {
            tracing::debug!("cannot remember the source hash: {e}");
        }
        Ok((hash, false))
    }

    /// The number of objects the last kernel build compiled, if known.
    pub fn kernel_object_count(&self) -> Option<u64> {
        fs::read_to_string(self.kernel_dir().join("object-count"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Remembers the number of objects a kernel build compiled.
    pub fn set_kernel_object_count(&self, n: u64) {
        let path = self.kernel_dir().join("object-count");
        if let Err(e) = fsutil::write_atomic(&path, format!("{n}\n").as_bytes()) {
            tracing::debug!("cannot remember the object count: {e}");
        }
    }

    /// Removes work directories left by builds whose process is gone (interrupted builds),
    /// except those kept on purpose (`--keep-build-dir` leaves a `.keep` file).
    /// Returns the removed directories.
    pub fn remove_stale_work_dirs(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        let Ok(entries) = fs::read_dir(self.kernel_work_root()) else {
            return removed;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.rsplit_once('.'))
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id()
                || Path::new("/proc").join(pid.to_string()).exists()
                || path.join(".keep").exists()
            {
                continue;
            }
            match fs::remove_dir_all(&path) {
                Ok(()) => removed.push(path),
                Err(e) => tracing::warn!("cannot remove stale {}: {e}", path.display()),
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)]) -> Result<PathBuf> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        resolve_cache_dir_from(|name| map.get(name).cloned())
    }

    #[test]
    fn cache_dir_resolution_order() {
        let all = [
            ("HULL_CACHE", "/srv/hull-cache"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(resolve(&all).unwrap(), PathBuf::from("/srv/hull-cache"));
        assert_eq!(resolve(&all[1..]).unwrap(), PathBuf::from("/xdg/hull"));
        assert_eq!(
            resolve(&all[2..]).unwrap(),
            PathBuf::from("/home/u/.cache/hull")
        );
        assert!(matches!(resolve(&[]), Err(CacheError::CacheDirUnresolved)));
    }

    #[test]
    fn cache_dir_ignores_empty_and_relative_xdg() {
        let vars = [
            ("HULL_CACHE", ""),
            ("XDG_CACHE_HOME", "rel/xdg"),
            ("HOME", "/h"),
        ];
        assert_eq!(resolve(&vars).unwrap(), PathBuf::from("/h/.cache/hull"));
        let vars = [("XDG_CACHE_HOME", ""), ("HOME", "/h")];
        assert_eq!(resolve(&vars).unwrap(), PathBuf::from("/h/.cache/hull"));
    }

    #[test]
    fn relative_hull_cache_is_made_absolute() {
        let got = resolve(&[("HULL_CACHE", "some/dir")]).unwrap();
        assert!(got.is_absolute());
        assert!(got.ends_with("some/dir"));
    }

    #[test]
    fn sha256_of_known_input() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn source_hash_memo_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let f = dir.path().join("src.tar.xz");
        fs::write(&f, b"abc").unwrap();
        let (h1, memo1) = cache.source_sha256(&f, false).unwrap();
        let (h2, memo2) = cache.source_sha256(&f, false).unwrap();
        assert_eq!((h1.as_str(), memo1, memo2), (h2.as_str(), false, true));
        // Rewriting the file changes its ctime (and here its size): the memo is not used.
        fs::write(&f, b"abcd").unwrap();
        let (h3, memo3) = cache.source_sha256(&f, false).unwrap();
        assert_ne!(h3, h1);
        assert!(!memo3);
        let (_, memo4) = cache.source_sha256(&f, true).unwrap();
        assert!(!memo4);
    }

    #[test]
    fn stale_work_dirs_are_removed_but_live_and_kept_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let root = cache.kernel_work_root();
        // pid 4294967 is above Linux's pid_max limit, so never alive.
        let stale = root.join("abc.4294967");
        let kept = root.join("def.4294966");
        let live = cache.kernel_work_dir("ghi");
        for d in [&stale, &kept, &live] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(kept.join(".keep"), "").unwrap();
        assert_eq!(cache.remove_stale_work_dirs(), vec![stale.clone()]);
        assert!(!stale.exists() && kept.exists() && live.exists());
    }
}

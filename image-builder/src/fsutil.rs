//! Small filesystem helpers: atomic file writes and copies.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A filesystem operation failed: what was being done, to which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}", path.display())]
pub struct IoError {
    /// What was being done, as the verb of the message (`open`, `rename into place`...).
    pub action: &'static str,
    /// The file or directory it was done to.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

type Result<T, E = IoError> = std::result::Result<T, E>;

/// Builds a closure that turns an `io::Error` into an [`IoError`] for `path`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> IoError {
    let path = path.into();
    move |source| IoError {
        action,
        path,
        source,
    }
}

/// A file written under a temporary name (`<name>.tmp-<pid>` in the same directory) and
/// renamed to its final name by [`AtomicFile::commit`]. Dropped without commit, the
/// temporary file is removed: the final name never holds a half-written file.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<fs::File>,
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file next to `dest`. The directory must exist.
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        let name = dest.file_name().ok_or_else(|| IoError {
            action: "write",
            path: dest.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
        })?;
        let mut tmp_name = name.to_os_string();
        tmp_name.push(format!(".tmp-{}", std::process::id()));
        let tmp = dest.with_file_name(tmp_name);
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        })
    }

    /// The temporary path being written.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    /// The open temporary file, for seeking writers.
    pub fn file_mut(&mut self) -> Result<&mut fs::File> {
        self.file.as_mut().ok_or_else(|| IoError {
            action: "write",
            path: self.tmp.clone(),
            source: io::Error::other("already committed"),
        })
    }

    /// Writes all of `data`.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let file = self.file.as_mut().ok_or_else(|| IoError {
            action: "write",
            path: self.tmp.clone(),
            source: io::Error::other("already committed"),
        })?;
        file.write_all(data).map_err(io_err("write", &self.tmp))
    }

    /// Sets the permission bits of the file.
    pub fn set_mode(&self, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&self.tmp, fs::Permissions::from_mode(mode))
            .map_err(io_err("set permissions of", &self.tmp))
    }

    /// Flushes the data to disk and renames the file to its final name.
    pub fn commit(mut self) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(io_err("sync", &self.tmp))?;
        }
        fs::rename(&self.tmp, &self.dest).map_err(io_err("rename into place", &self.dest))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `data` to `dest` atomically, creating its parent directories.
pub fn write_atomic(dest: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    let mut f = AtomicFile::create(dest)?;
    f.write_all(data)?;
    f.commit()
}

/// Copies `src` to `dest` atomically (through a temporary file in `dest`'s directory).
/// Returns the number of bytes copied.
pub fn copy_atomic(src: &Path, dest: &Path) -> Result<u64> {
    let mut input = fs::File::open(src).map_err(io_err("open", src))?;
    let mut out = AtomicFile::create(dest)?;
    let n = {
        let file = out.file.as_mut().ok_or_else(|| IoError {
            action: "write",
            path: dest.to_path_buf(),
            source: io::Error::other("already committed"),
        })?;
        io::copy(&mut input, file).map_err(|source| IoError {
            action: "copy into",
            path: dest.to_path_buf(),
            source,
        })?
    };
    let mode = fs::metadata(src)
        .map_err(io_err("stat", src))?
        .permissions();
    fs::set_permissions(out.tmp_path(), mode).map_err(io_err("set permissions of", dest))?;
    out.commit()?;
    Ok(n)
}

/// File size, or an error naming the file.
pub fn file_size(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path).map_err(io_err("stat", path))?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_atomic_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.img");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"half").unwrap();
            assert!(f.tmp_path().exists());
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn committed_atomic_file_replaces_dest() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.img");
        fs::write(&dest, b"old").unwrap();
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn copy_atomic_copies_bytes_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a");
        fs::write(&src, b"abc").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o751)).unwrap();
        let dest = dir.path().join("b");
        assert_eq!(copy_atomic(&src, &dest).unwrap(), 3);
        assert_eq!(fs::read(&dest).unwrap(), b"abc");
        let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o751);
    }
}

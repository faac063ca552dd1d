//! The few file operations init needs, on rustix's raw system calls.

use alloc::vec::Vec;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Reads a whole file (procfs files report size 0: read until EOF).
pub fn read(path: &str) -> Result<Vec<u8>, Errno> {
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match rustix::io::read(&fd, &mut chunk) {
            Ok(0) => return Ok(data),
            Ok(n) => data.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `mkdir -p`: creates `path` and its missing parents (mode 0755).
pub fn create_dir_all(path: &str) -> Result<(), Errno> {
    let mut end = 0;
    while end < path.len() {
        end = path[end + 1..]
            .find('/')
            .map_or(path.len(), |i| end + 1 + i);
        let prefix = &path[..end];
        if prefix.is_empty() || prefix == "/" {
            continue;
        }
        match rustix::fs::mkdir(prefix, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e),
        }
    }
    // An existing non-directory at `path` is an error, as with std.
    let stat = rustix::fs::stat(path)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory {
        Ok(())
    } else {
        Err(Errno::NOTDIR)
    }
}

/// Whether `path` exists (following symlinks).
pub fn exists(path: &str) -> bool {
    rustix::fs::stat(path).is_ok()
}

/// Whether something, even a dangling symlink, exists at `path`.
pub fn exists_no_follow(path: &str) -> bool {
    rustix::fs::lstat(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;

    fn scratch(name: &str) -> String {
        format!(
            "{}/hull-init-fs-{}-{name}",
            std::env::temp_dir().display(),
            std::process::id()
        )
    }

    #[test]
    fn creates_nested_directories_and_reads_files() {
        let base = scratch("dirs");
        let nested = format!("{base}/a/b/c");
        let result = create_dir_all(&nested);
        let again = create_dir_all(&nested);
        let is_dir = std::path::Path::new(&nested).is_dir();
        let file = format!("{base}/a/file");
        let written = std::fs::write(&file, vec![7u8; 10_000]);
        let read_back = read(&file);
        let not_a_dir = create_dir_all(&file);
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(result, Ok(()));
        assert_eq!(again, Ok(()));
        assert!(is_dir);
        assert!(written.is_ok());
        assert_eq!(read_back, Ok(vec![7u8; 10_000]));
        assert_eq!(not_a_dir, Err(Errno::NOTDIR));
        assert!(!exists(&base));
        assert_eq!(read(&file), Err(Errno::NOENT));
    }

    #[test]
    fn dangling_symlinks_count_as_present() {
        let link = scratch("link");
        let made = rustix::fs::symlink("/nonexistent/target", link.as_str());
        let (follow, no_follow) = (exists(&link), exists_no_follow(&link));
        let _ = std::fs::remove_file(&link);
        assert_eq!(made, Ok(()));
        assert!(!follow);
        assert!(no_follow);
        assert!(exists("/"));
    }
}

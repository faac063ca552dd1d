//! `ReseedRandomDev`: the host hands the guest random bytes, as Kata's runtime does at
//! sandbox start (and after a VM is restored from a template, whose RNG state all its
//! clones would share).
//!
//! Like Kata's agent, the bytes go into the kernel's input pool credited with one bit of
//! entropy per byte (a conservative credit), then the CRNG is reseeded from the pool at
//! once, so the new bytes affect the very next `getrandom(2)`. hull does it with
//! `RNDADDENTROPY` (mix in and credit in one `ioctl(2)`) and `RNDRESEEDCRNG` on
//! `/dev/random`; both need `CAP_SYS_ADMIN`. Empty data is refused, as Kata's agent
//! refuses it.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// The device the ioctls go to.
pub const RANDOM_DEVICE: &str = "/dev/random";

nix::ioctl_write_ptr_bad!(
    /// `RNDADDENTROPY` = `_IOW('R', 0x03, int[2])`: takes a `struct rand_pool_info`
    /// (entropy_count, buf_size, then buf_size bytes).
    rnd_add_entropy,
    nix::request_code_write!(b'R', 0x03, std::mem::size_of::<[libc::c_int; 2]>()),
    libc::c_int
);
nix::ioctl_none!(
    /// `RNDRESEEDCRNG` = `_IO('R', 0x07)`: reseeds the CRNG from the input pool.
    rnd_reseed_crng,
    b'R',
    0x07
);

/// Why the random device was not reseeded.
#[derive(Debug, thiserror::Error)]
pub enum EntropyError {
    /// No bytes were given.
    #[error("no entropy data: ReseedRandomDev needs at least one byte")]
    Empty,
    /// More bytes than the kernel's interface can take at once.
    #[error("{len} bytes of entropy data: at most {max} at once", max = i32::MAX)]
    TooLong {
        /// How many bytes were given.
        len: usize,
    },
    /// The device could not be opened.
    #[error("{path}: open: {errno}")]
    Open {
        /// The device.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
    /// An ioctl on the device failed.
    #[error("{path}: {request}: {errno}")]
    Ioctl {
        /// The device.
        path: PathBuf,
        /// `RNDADDENTROPY` or `RNDRESEEDCRNG`.
        request: &'static str,
        /// The error.
        errno: Errno,
    },
}

/// Adds `data` to the input pool of the random device at `device` (one bit of credit per
/// byte) and reseeds the CRNG.
pub fn reseed(device: &Path, data: &[u8]) -> Result<(), EntropyError> {
    let info = pool_info(data)?;
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(device)
        .map_err(|e| EntropyError::Open {
            path: device.to_path_buf(),
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    let failed = |request| {
        move |errno| EntropyError::Ioctl {
            path: device.to_path_buf(),
            request,
            errno,
        }
    };
    // SAFETY: `info` is a `struct rand_pool_info` whose buffer holds `buf_size` bytes
    // after the two ints (`pool_info`); the kernel only reads it, and it outlives the
    // call. The fd is open for the call's length.
    unsafe { rnd_add_entropy(file.as_raw_fd(), info.as_ptr()) }.map_err(failed("RNDADDENTROPY"))?;
    // SAFETY: RNDRESEEDCRNG takes no argument; the fd is open.
    unsafe { rnd_reseed_crng(file.as_raw_fd()) }.map_err(failed("RNDRESEEDCRNG"))?;
    tracing::info!(bytes = data.len(), "random device reseeded");
    Ok(())
}

/// `struct rand_pool_info` for `data`, as ints (the struct's alignment): entropy_count
/// (bits credited: one per byte, as Kata credits), buf_size (bytes), then the bytes.
fn pool_info(data: &[u8]) -> Result<Vec<libc::c_int>, EntropyError> {
    if data.is_empty() {
        return Err(EntropyError::Empty);
    }
    let len =
        libc::c_int::try_from(data.len()).map_err(|_| EntropyError::TooLong { len: data.len() })?;
    let int = std::mem::size_of::<libc::c_int>();
    let mut info = Vec::with_capacity(2 + data.len().div_ceil(int));
    info.push(len);
    info.push(len);
    info.extend(data.chunks(int).map(|chunk| {
        let mut bytes = [0u8; 4];
        bytes[..chunk.len()].copy_from_slice(chunk);
        libc::c_int::from_ne_bytes(bytes)
    }));
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_data_is_refused_before_the_device_is_touched() {
        let err = reseed(Path::new("/nonexistent/random"), b"").unwrap_err();
        assert!(matches!(err, EntropyError::Empty), "{err}");
        assert!(err.to_string().contains("at least one byte"), "{err}");
    }

    #[test]
    fn the_pool_info_holds_the_credit_the_size_and_the_bytes() {
        let info = pool_info(b"abcdefghi").unwrap();
        assert_eq!(&info[..2], &[9, 9]);
        let bytes: Vec<u8> = info[2..].iter().flat_map(|i| i.to_ne_bytes()).collect();
        assert_eq!(&bytes[..9], b"abcdefghi");
        assert_eq!(bytes.len(), 12, "padded to whole ints");
    }

    #[test]
    fn a_file_that_is_not_a_random_device_is_refused_by_the_kernel_named() {
        // Reseeding this machine's real RNG from a unit test is left to the VM test;
        // an ordinary file shows the ioctl's error is reported with the path.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("random");
        std::fs::write(&file, b"").unwrap();
        let err = reseed(&file, b"seed").unwrap_err();
        assert!(
            matches!(
                err,
                EntropyError::Ioctl {
                    request: "RNDADDENTROPY",
                    errno: Errno::ENOTTY,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&file.display().to_string()));
        let missing = dir.path().join("missing");
        let err = reseed(&missing, b"seed").unwrap_err();
        assert!(
            matches!(
                err,
                EntropyError::Open {
                    errno: Errno::ENOENT,
                    ..
                }
            ),
            "{err}"
        );
    }
}

//! Keeping fds 0, 1 and 2 on the console, and writing to them.
//!
//! The kernel starts init with 0/1/2 on /dev/console when the root has that
//! node, and with them closed otherwise ("unable to open an initial console").
//! Closed standard fds are dangerous: the next file init opens would become
//! "stderr". So they are filled at once (with /dev/console when it opens, else
//! a harmless read-only descriptor of `/`), and pointed at the console again
//! once devtmpfs is mounted.

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::{Errno, FdFlags};

pub const CONSOLE: &str = "/dev/console";
const PLACEHOLDER: &str = "/";

/// Which standard fds do not (yet) reach the console.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StdFds {
    detached: [bool; 3],
}

impl StdFds {
    pub fn any_detached(&self) -> bool {
        self.detached.iter().any(|d| *d)
    }
}

/// Borrows standard fd `fd` (0, 1 or 2), open or not.
fn std_fd(fd: usize) -> BorrowedFd<'static> {
    const RAW: [i32; 3] = [0, 1, 2];
    // SAFETY: 0, 1 and 2 are never closed by init once filled; a borrowed fd
    // that is closed only makes the system calls on it fail with EBADF.
    unsafe { BorrowedFd::borrow_raw(RAW[fd.min(2)]) }
}

fn fd_is_open(fd: usize) -> bool {
    rustix::io::fcntl_getfd(std_fd(fd)).is_ok()
}

fn open_raw(path: &str, flags: OFlags) -> Option<OwnedFd> {
    rustix::fs::open(path, flags | OFlags::CLOEXEC, Mode::empty()).ok()
}

/// Puts `src` at standard fd `dst` (without close-on-exec); `src` is closed
/// unless it landed in that slot already.
fn move_fd(src: OwnedFd, dst: usize) -> bool {
    use rustix::fd::{AsRawFd as _, IntoRawFd as _};
    if usize::try_from(src.as_raw_fd()).is_ok_and(|raw| raw == dst) {
        // Opened straight into the slot: keep it open and clear close-on-exec.
        let ok = rustix::io::fcntl_setfd(&src, FdFlags::empty()).is_ok();
        let _ = src.into_raw_fd();
        return ok;
    }
    let result = match dst {
        0 => rustix::stdio::dup2_stdin(&src),
        1 => rustix::stdio::dup2_stdout(&src),
        _ => rustix::stdio::dup2_stderr(&src),
    };
    result.is_ok()
}

/// Opens the console for reading and writing, without making it the
/// controlling terminal.
pub fn open_console() -> Option<OwnedFd> {
    open_raw(CONSOLE, OFlags::RDWR | OFlags::NOCTTY)
}

/// Fills closed standard fds. Call first thing, before opening any file.
pub fn fill_std_fds() -> StdFds {
    let mut state = StdFds::default();
    for fd in 0..3 {
        if fd_is_open(fd) {
            continue;
        }
        if let Some(console) = open_console()
            && move_fd(console, fd)
        {
            continue;
        }
        state.detached[fd] = true;
        if let Some(placeholder) = open_raw(PLACEHOLDER, OFlags::RDONLY | OFlags::DIRECTORY) {
            move_fd(placeholder, fd);
        }
    }
    state
}

/// Points the detached standard fds at /dev/console (after /dev is mounted).
/// Returns the fds that still do not reach it.
pub fn reattach(state: StdFds) -> StdFds {
    let mut remaining = StdFds::default();
    for fd in 0..3 {
        if !state.detached[fd] {
            continue;
        }
        let ok = open_console().is_some_and(|console| move_fd(console, fd));
        remaining.detached[fd] = !ok;
    }
    remaining
}

/// Writes all of `bytes` to `fd`; errors are dropped (there is nowhere else
/// to report them).
pub fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return,
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

/// Writes to standard error (fd 2).
pub fn eprint(text: &str) {
    write_all(std_fd(2), text.as_bytes());
}

/// Writes to standard output (fd 1).
pub fn print(text: &str) {
    write_all(std_fd(1), text.as_bytes());
}

/// Standard error, for ioctls on the console.
pub fn stderr() -> BorrowedFd<'static> {
    std_fd(2)
}

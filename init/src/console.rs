//! Keeping fds 0, 1 and 2 on the console.
//!
//! The kernel starts init with 0/1/2 on /dev/console when the root has that
//! node, and with them closed otherwise ("unable to open an initial console").
//! Closed standard fds are dangerous: the next file init opens would become
//! "stderr". So they are filled at once (with /dev/console when it opens, else
//! a harmless read-only descriptor of `/`), and pointed at the console again
//! once devtmpfs is mounted.

use std::ffi::CStr;

const CONSOLE: &CStr = c"/dev/console";
const PLACEHOLDER: &CStr = c"/";

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

fn fd_is_open(fd: libc::c_int) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; an invalid fd yields EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

fn open_raw(path: &CStr, flags: libc::c_int) -> Option<libc::c_int> {
    // SAFETY: `path` is a valid NUL-terminated string; the returned fd is owned
    // by the caller.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    (fd >= 0).then_some(fd)
}

/// Puts `src` at `dst` (without close-on-exec) and closes `src` unless equal.
fn move_fd(src: libc::c_int, dst: libc::c_int) -> bool {
    if src == dst {
        // Opened straight into the slot: just clear close-on-exec.
        // SAFETY: `dst` is an fd this module just opened.
        return unsafe { libc::fcntl(dst, libc::F_SETFD, 0) } == 0;
    }
    // SAFETY: both are valid fds; dup2 atomically replaces `dst`.
    let ok = unsafe { libc::dup2(src, dst) } == dst;
    // SAFETY: `src` was opened by this module and is not used afterwards.
    unsafe { libc::close(src) };
    ok
}

fn open_console() -> Option<libc::c_int> {
    open_raw(CONSOLE, libc::O_RDWR | libc::O_NOCTTY)
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
        state.detached[fd as usize] = true;
        if let Some(placeholder) = open_raw(PLACEHOLDER, libc::O_RDONLY | libc::O_DIRECTORY) {
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
        let ok = open_console().is_some_and(|console| move_fd(console, fd as libc::c_int));
        remaining.detached[fd] = !ok;
    }
    remaining
}

//! The few Linux system calls that rustix keeps out of its stable API (they
//! belong to a process runtime): fork, execve, exit_group and the signal-mask,
//! signal-wait and signal-action calls. x86-64 only, like the guest.
//!
//! Each is one `syscall` instruction with the kernel's own argument layout;
//! errors come back as `-errno` in rax.

use core::ffi::CStr;

use rustix::io::Errno;
use rustix::process::Signal;
use rustix::time::Timespec;

const SYS_RT_SIGACTION: usize = 13;
const SYS_RT_SIGPROCMASK: usize = 14;
const SYS_FORK: usize = 57;
const SYS_EXECVE: usize = 59;
const SYS_RT_SIGTIMEDWAIT: usize = 128;
const SYS_EXIT_GROUP: usize = 231;

/// The kernel's signal set: one bit per signal 1..=64 (`sizeof` is 8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct SigSet(u64);

const SIGSET_SIZE: usize = core::mem::size_of::<SigSet>();

impl SigSet {
    pub const fn empty() -> Self {
        Self(0)
    }

    fn bit(sig: Signal) -> u64 {
        u32::try_from(sig.as_raw() - 1)
            .ok()
            .and_then(|shift| 1u64.checked_shl(shift))
            .unwrap_or(0)
    }

    pub fn insert(&mut self, sig: Signal) {
        self.0 |= Self::bit(sig);
    }

    #[cfg(test)]
    pub fn contains(&self, sig: Signal) -> bool {
        self.0 & Self::bit(sig) != 0
    }
}

/// `how` of `rt_sigprocmask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum How {
    Block = 0,
    SetMask = 2,
}

/// A received signal: its number and the sender's pid (0 = the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: i32,
    pub pid: i32,
}

/// # Safety
/// The arguments must be valid for system call `n` (pointers to memory of the
/// sizes the kernel reads or writes).
unsafe fn syscall4(n: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> Result<usize, Errno> {
    let ret: isize;
    // SAFETY: the x86-64 Linux system call convention: number in rax,
    // arguments in rdi, rsi, rdx, r10; rcx and r11 are clobbered. The caller
    // guarantees the arguments suit the call.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    if (-4095..0).contains(&ret) {
        Err(Errno::from_raw_os_error(i32::try_from(-ret).unwrap_or(0)))
    } else {
        Ok(ret.unsigned_abs())
    }
}

/// `rt_sigprocmask(how, set, &old)` for the calling thread; returns the old mask.
pub fn sigprocmask(how: How, set: &SigSet) -> Result<SigSet, Errno> {
    let mut old = SigSet::empty();
    // SAFETY: `set` and `old` are valid 8-byte sigsets; the size says so.
    unsafe {
        syscall4(
            SYS_RT_SIGPROCMASK,
            how as usize,
            core::ptr::from_ref(set) as usize,
            core::ptr::from_mut(&mut old) as usize,
            SIGSET_SIZE,
        )
    }?;
    Ok(old)
}

/// `rt_sigtimedwait(set, &info, timeout)`: takes one pending signal of `set`
/// (which must be blocked), waiting up to `timeout` (`None`: no limit).
/// `EAGAIN` when the time ran out.
pub fn sigtimedwait(set: &SigSet, timeout: Option<&Timespec>) -> Result<SigInfo, Errno> {
    // siginfo_t is 128 bytes: si_signo at 0, and for kill(2)-style signals
    // the sender's pid at 16 (after si_errno, si_code and padding).
    let mut info = [0i32; 32];
    let timeout = timeout.map_or(0, |t| core::ptr::from_ref(t) as usize);
    // SAFETY: `set` is a valid sigset, `info` 128 writable bytes, `timeout`
    // null or a valid timespec (rustix's `Timespec` is the kernel's layout).
    unsafe {
        syscall4(
            SYS_RT_SIGTIMEDWAIT,
            core::ptr::from_ref(set) as usize,
            info.as_mut_ptr() as usize,
            timeout,
            SIGSET_SIZE,
        )
    }?;
    Ok(SigInfo {
        signo: info[0],
        pid: info[4],
    })
}

/// Sets signal `raw`'s action to SIG_DFL (no handler, no flags).
pub fn reset_signal_action(raw: i32) -> Result<(), Errno> {
    // struct kernel_sigaction: handler (0 = SIG_DFL), flags, restorer, mask.
    let action = [0usize; 4];
    let sig = usize::try_from(raw).map_err(|_| Errno::INVAL)?;
    // SAFETY: `action` is a valid, all-default kernel_sigaction; no old
    // action is asked for (null).
    unsafe {
        syscall4(
            SYS_RT_SIGACTION,
            sig,
            action.as_ptr() as usize,
            0,
            SIGSET_SIZE,
        )
    }
    .map(|_| ())
}

/// `fork()`: `Ok(None)` in the child, `Ok(Some(pid))` in the parent.
///
/// # Safety
/// In the child, only async-signal-safe work may follow (no allocation, no
/// locks): another thread of a multi-threaded parent may have held them.
pub unsafe fn fork() -> Result<Option<i32>, Errno> {
    // SAFETY: fork takes no arguments; the caller keeps the child to
    // async-signal-safe work.
    let pid = unsafe { syscall4(SYS_FORK, 0, 0, 0, 0) }?;
    Ok((pid != 0).then(|| i32::try_from(pid).unwrap_or(i32::MAX)))
}

/// `execve(path, argv, envp)`; returns only on failure.
///
/// # Safety
/// `argv` and `envp` must be null-terminated arrays of pointers to
/// NUL-terminated strings.
pub unsafe fn execve(path: &CStr, argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: the caller guarantees the arrays; `path` is NUL-terminated.
    match unsafe {
        syscall4(
            SYS_EXECVE,
            path.as_ptr() as usize,
            argv as usize,
            envp as usize,
            0,
        )
    } {
        Ok(_) => Errno::INVAL,
        Err(e) => e,
    }
}

/// `exit_group(code)`: ends the process.
pub fn exit_group(code: i32) -> ! {
    // The kernel takes the low byte of the status.
    let status = usize::try_from(code & 0xff).unwrap_or(1);
    loop {
        // SAFETY: exit_group takes a plain status and does not return.
        let _ = unsafe { syscall4(SYS_EXIT_GROUP, status, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigset_bits() {
        let mut set = SigSet::empty();
        set.insert(Signal::HUP);
        set.insert(Signal::CHILD);
        assert_eq!(set.0, (1 << 0) | (1 << 16));
        assert!(set.contains(Signal::CHILD));
        assert!(!set.contains(Signal::TERM));
    }

    #[test]
    fn mask_round_trip_in_this_thread() {
        let mut usr2 = SigSet::empty();
        usr2.insert(Signal::USR2);
        let old = sigprocmask(How::Block, &usr2);
        let Ok(old) = old else {
            panic!("rt_sigprocmask failed: {old:?}");
        };
        let now = sigprocmask(How::SetMask, &old);
        assert!(now.is_ok_and(|m| m.contains(Signal::USR2)));
        // Nothing pending: a zero timeout gives EAGAIN at once.
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        assert_eq!(sigtimedwait(&usr2, Some(&zero)), Err(Errno::AGAIN));
    }
}

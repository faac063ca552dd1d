//! The last steps of a container process: prepare, wait, `execve`.
//!
//! [`prepare`] does everything that can fail for a reason the runtime should hear
//! about *before* the start gate opens: rlimits, umask, the working
//! directory, `no_new_privs`, the seccomp filter when it needs `CAP_SYS_ADMIN` to load,
//! the switch of user ([`super::credentials`]), and the executable looked up in the
//! process's `PATH` (its own environment's, not the agent's). A container whose command
//! does not exist thus fails at create, not at start.
//!
//! [`exec`] comes after the gate: the seccomp filter when `no_new_privs` lets it load
//! unprivileged (it then only has to allow `execve` itself), every fd above 2 marked
//! close-on-exec (the helper socket among them, so its EOF tells the launcher that
//! `execve` succeeded), and `execve`.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::credentials::switch_user;
use super::{HelperResult, Part};
use crate::SetupError;
use crate::plan::ProcessPlan;
use crate::seccomp;

const PART: Part = Part::Process;

/// A process ready to be executed.
pub(super) struct Prepared {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

fn cstring(s: &str, what: &str) -> HelperResult<CString> {
    CString::new(s).map_err(|_| PART.error(what, "contains a NUL byte"))
}

/// The process's `oom_score_adj`: the spec's value, or 0 without one, so the agent's own
/// (strongly negative) value is never inherited. Written first thing, before any
/// namespace is entered: inside a user namespace `/proc/self/oom_score_adj` can no longer
/// be opened for writing, and lowering the value needs the launcher's privileges.
pub(super) fn set_oom_score_adj(p: &ProcessPlan) -> HelperResult<()> {
    let adj = p.oom_score_adj.unwrap_or(0);
    std::fs::write("/proc/self/oom_score_adj", adj.to_string())
        .map_err(PART.failed("oom_score_adj"))
}

/// Everything up to the start gate: limits, working directory, user, capabilities, and
/// the executable looked up.
pub(super) fn prepare(p: &ProcessPlan) -> HelperResult<Prepared> {
    for &(resource, soft, hard) in &p.rlimits {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: a valid rlimit struct for the call.
        let rc = unsafe { libc::setrlimit(resource as _, &limit) };
        Errno::result(rc).map_err(PART.failed(format!("setrlimit({resource})")))?;
    }
    if let Some(mask) = p.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            mask as libc::mode_t,
        ));
    }
    let cwd_before = nix::unistd::chdir(&p.cwd);
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(PART.failed("PR_SET_NO_NEW_PRIVS"))?;
    }
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before dropping it.
    if !p.no_new_privileges
        && let Some(program) = &p.seccomp
    {
        seccomp::install(program).map_err(PART.failed("installing the seccomp filter"))?;
    }
    switch_user(p)?;
    if cwd_before.is_err() {
        // Root could not enter it (e.g. a root-squashed share): try as the user.
        nix::unistd::chdir(&p.cwd).map_err(|errno| SetupError::InvalidCwd {
            cwd: p.cwd.clone(),
            reason: errno.to_string(),
        })?;
    }
    let env: Vec<CString> = with_home(&p.env, p.uid)
        .iter()
        .map(|e| cstring(e, "an environment variable"))
        .collect::<Result<_, _>>()?;
    let args: Vec<CString> = p
        .args
        .iter()
        .map(|a| cstring(a, "an argument"))
        .collect::<Result<_, _>>()?;
    let path = find_executable(&p.args[0], &p.env)?;
    Ok(Prepared {
        path: cstring(&path.to_string_lossy(), "the executable path")?,
        args,
        env,
    })
}

/// As runc and Kata's agent: a process without `HOME` in its environment gets its user's
/// home directory from the container's `/etc/passwd` (read here, inside the container,
/// as the user), or `/`.
fn with_home(env: &[String], uid: u32) -> Vec<String> {
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let home = home_in_passwd(&passwd, uid).unwrap_or("/");
        env.push(format!("HOME={home}"));
    }
    env
}

/// The home directory of `uid` in the text of a `passwd` file.
fn home_in_passwd(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [_, _, id, _, _, home, ..] if id.parse() == Ok(uid) && !home.is_empty() => Some(*home),
            _ => None,
        }
    })
}

/// What a candidate for the executable turned out to be.
enum Candidate {
    Executable,
    /// It exists, but is not a regular file this user may execute.
    NotExecutable,
    Missing,
}

fn candidate(path: &Path) -> Candidate {
    let may_execute = || {
        CString::new(path.as_os_str().as_bytes()).is_ok_and(|c| {
            // SAFETY: a valid C string for access(2).
            unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
        })
    };
    match path.metadata() {
        Ok(md) if md.is_file() && may_execute() => Candidate::Executable,
        Ok(_) => Candidate::NotExecutable,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Candidate::NotExecutable,
        Err(_) => Candidate::Missing,
    }
}

/// Finds the executable as runc does: a name with a slash is taken as it is; a bare name
/// is looked up in the process's own `PATH` (its environment's, not the helper's), where
/// only executable regular files count.
fn find_executable(arg0: &str, env: &[String]) -> HelperResult<PathBuf> {
    if arg0.contains('/') {
        let path = PathBuf::from(arg0);
        return match candidate(&path) {
            Candidate::Executable => Ok(path),
            Candidate::NotExecutable => Err(SetupError::PermissionDenied {
                executable: arg0.to_string(),
            }),
            Candidate::Missing => Err(SetupError::ExecutableNotFound {
                executable: arg0.to_string(),
                searched_path: false,
            }),
        };
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let path = Path::new(dir).join(arg0);
        if let Candidate::Executable = candidate(&path) {
            return Ok(path);
        }
    }
    Err(SetupError::ExecutableNotFound {
        executable: arg0.to_string(),
        searched_path: true,
    })
}

/// After the gate: seccomp (with no_new_privs), no fd but 0-2 survives, execve.
/// Returns only on failure, with the reason.
pub(super) fn exec(p: &ProcessPlan, prepared: Prepared) -> SetupError {
    if p.no_new_privileges
        && let Some(program) = &p.seccomp
        && let Err(e) = seccomp::install(program)
    {
        return PART.error("installing the seccomp filter", e);
    }
    // Every fd above 2 closes at execve (the helper socket included).
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        mark_fds_cloexec();
    }
    let errno = nix::unistd::execve(&prepared.path, &prepared.args, &prepared.env)
        .err()
        .unwrap_or(Errno::UnknownErrno);
    let executable = prepared.path.to_string_lossy().into_owned();
    match errno {
        // The file went away, or its interpreter (`#!`, the ELF loader) is missing.
        Errno::ENOENT => SetupError::ExecutableNotFound {
            executable,
            searched_path: false,
        },
        Errno::EACCES => SetupError::PermissionDenied { executable },
        errno => SetupError::Exec {
            executable,
            errno: errno as i32,
        },
    }
}

/// Fallback for kernels without close_range: walk /proc/self/fd.
fn mark_fds_cloexec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on an fd number; harmless if it is not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_passwd_or_is_the_root() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                      broken line\n\
                      app:x:1000:1000::/home/app:/bin/sh\n\
                      nohome:x:1001:1001:::/bin/sh\n";
        assert_eq!(home_in_passwd(passwd, 0), Some("/root"));
        assert_eq!(home_in_passwd(passwd, 1000), Some("/home/app"));
        assert_eq!(home_in_passwd(passwd, 1001), None);
        assert_eq!(home_in_passwd(passwd, 7), None);
        let given = vec!["PATH=/bin".to_string(), "HOME=/srv".to_string()];
        assert_eq!(with_home(&given, 0), given, "a HOME given is kept");
    }
}

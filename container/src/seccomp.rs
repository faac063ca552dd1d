//! The OCI seccomp profile, compiled to classic BPF in pure Rust (`seccompiler`).
//!
//! `seccompiler` builds filters with one action for every matching rule and one for the
//! rest, while an OCI profile gives each syscall rule its own action. The profile is
//! therefore compiled to a small *stack* of filters, installed in order, relying on the
//! kernel's rule that with several filters the most restrictive answer wins (KILL >
//! TRAP > ERRNO > TRACE > LOG > ALLOW; on a tie, the filter installed last):
//!
//! 1. x86_64 only: a guard that answers `ENOSYS` to x32 syscalls (numbers with bit 30
//!    set), which would otherwise slip past rules written for x86_64 numbers.
//! 2. The default filter: every syscall named by any rule is allowed (match), everything
//!    else gets the default action (mismatch). Skipped when the default is ALLOW.
//! 3. One filter per other action A: the rules with action A match and answer A,
//!    everything else is allowed. A rule whose action is ALLOW needs none.
//!
//! A syscall named by a rule with action A therefore gets A (filter 2 allows it, filter 3
//! answers A); any other syscall gets the default. Each rule's `args` are ANDed, several
//! rules for one syscall are ORed, as in libseccomp.
//!
//! Limits, refused with a clear error: `SCMP_ACT_NOTIFY` (needs a listener), a
//! `listenerPath`, unknown flags. Syscall names this architecture does not know are
//! skipped, as runc does (profiles list syscalls of several architectures). Only the
//! native architecture is filtered: a syscall made through another ABI (e.g. 32-bit
//! `int 0x80`) kills the process.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};

use super::ContainerError;

/// Compiled filters, installed in order, and the `seccomp(2)` flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompProgram {
    /// Each filter as (code, jt, jf, k) instructions.
    pub filters: Vec<Vec<(u16, u8, u8, u32)>>,
    pub flags: u32,
}

fn invalid(message: impl Into<String>) -> ContainerError {
    ContainerError::InvalidSpec(format!("seccomp: {}", message.into()))
}

#[cfg(target_arch = "x86_64")]
const TARGET: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const TARGET: TargetArch = TargetArch::aarch64;
#[cfg(target_arch = "riscv64")]
const TARGET: TargetArch = TargetArch::riscv64;

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompAction, ContainerError> {
    use LinuxSeccompAction as A;
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => SeccompAction::KillThread,
        A::ScmpActKillProcess => SeccompAction::KillProcess,
        A::ScmpActTrap => SeccompAction::Trap,
        A::ScmpActErrno => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        A::ScmpActTrace => SeccompAction::Trace(errno.unwrap_or(libc::EPERM as u32)),
        A::ScmpActLog => SeccompAction::Log,
        A::ScmpActAllow => SeccompAction::Allow,
        A::ScmpActNotify => return Err(invalid("SCMP_ACT_NOTIFY is not supported")),
    })
}

fn syscall_number(name: &str) -> Option<i64> {
    name.parse::<syscalls::Sysno>().ok().map(|s| s.id() as i64)
}

fn condition(arg: &oci_spec::runtime::LinuxSeccompArg) -> Result<SeccompCondition, ContainerError> {
    use LinuxSeccompOperator as O;
    let (op, value) = match arg.op() {
        O::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        O::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        O::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        O::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        O::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        O::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        // libseccomp: `value` is the mask, `valueTwo` the value compared with.
        O::ScmpCmpMaskedEq => (
            SeccompCmpOp::MaskedEq(arg.value()),
            arg.value_two().unwrap_or(0),
        ),
    };
    let index = u8::try_from(arg.index()).map_err(|_| invalid("argument index too large"))?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map_err(|e| invalid(format!("argument {}: {e}", arg.index())))
}

/// Compiles an OCI profile.
pub fn compile(profile: &LinuxSeccomp) -> Result<SeccompProgram, ContainerError> {
    if profile.listener_path().is_some() {
        return Err(invalid("listenerPath (user notification) is not supported"));
    }
    let mut flags = 0u32;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG as u32,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32
            }
            // The helper is single-threaded: TSYNC changes nothing.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => 0,
            #[allow(unreachable_patterns)]
            other => return Err(invalid(format!("flag {other:?} is not supported"))),
        };
    }
    let default = action(profile.default_action(), profile.default_errno_ret())?;

    // Rules grouped by action; every named syscall in `all`.
    let mut by_action: Vec<(SeccompAction, BTreeMap<i64, Vec<SeccompRule>>)> = Vec::new();
    let mut all: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for syscall in profile.syscalls().iter().flatten() {
        let act = action(syscall.action(), syscall.errno_ret())?;
        let conditions: Vec<SeccompCondition> = syscall
            .args()
            .iter()
            .flatten()
            .map(condition)
            .collect::<Result<_, _>>()?;
        for name in syscall.names() {
            let Some(nr) = syscall_number(name) else {
                tracing::debug!(syscall = %name, "seccomp: unknown syscall skipped");
                continue;
            };
            add_rule(&mut all, nr, &conditions)?;
            if act == SeccompAction::Allow {
                continue;
            }
            let group = match by_action.iter_mut().find(|(a, _)| *a == act) {
                Some((_, group)) => group,
                None => {
                    by_action.push((act.clone(), BTreeMap::new()));
                    let last = by_action.len() - 1;
                    &mut by_action[last].1
                }
            };
            add_rule(group, nr, &conditions)?;
        }
    }

    let mut filters = Vec::new();
    #[cfg(target_arch = "x86_64")]
    filters.push(x32_guard());
    if default != SeccompAction::Allow {
        filters.push(build(all, default, SeccompAction::Allow)?);
    }
    for (act, rules) in by_action {
        filters.push(build(rules, SeccompAction::Allow, act)?);
    }
    Ok(SeccompProgram { filters, flags })
}

/// `None` in the map's vector means "matches whatever the arguments".
fn add_rule(
    map: &mut BTreeMap<i64, Vec<SeccompRule>>,
    nr: i64,
    conditions: &[SeccompCondition],
) -> Result<(), ContainerError> {
    let unconditional_already = map.get(&nr).is_some_and(|rules| rules.is_empty());
    if unconditional_already {
        return Ok(());
    }
    if conditions.is_empty() {
        // An empty rule list matches the syscall unconditionally.
        map.insert(nr, Vec::new());
        return Ok(());
    }
    let rule = SeccompRule::new(conditions.to_vec()).map_err(|e| invalid(e.to_string()))?;
    map.entry(nr).or_default().push(rule);
    Ok(())
}

fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<Vec<(u16, u8, u8, u32)>, ContainerError> {
    let filter =
        SeccompFilter::new(rules, mismatch, matched, TARGET).map_err(|e| invalid(e.to_string()))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| invalid(e.to_string()))?;
    Ok(program
        .into_iter()
        .map(|i| (i.code, i.jt, i.jf, i.k))
        .collect())
}

/// Answers ENOSYS to x32 syscalls (`nr & 0x40000000`).
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Vec<(u16, u8, u8, u32)> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    vec![
        (LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        (JGE_K, 0, 1, 0x4000_0000),
        (
            RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA),
        ),
        (RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Installs the filters on the calling thread. The caller has set `no_new_privs` or
/// holds `CAP_SYS_ADMIN`.
pub fn install(program: &SeccompProgram) -> std::io::Result<()> {
    for filter in &program.filters {
        let mut instructions: Vec<libc::sock_filter> = filter
            .iter()
            .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
            .collect();
        let prog = libc::sock_fprog {
            len: u16::try_from(instructions.len())
                .map_err(|_| std::io::Error::other("seccomp filter too long"))?,
            filter: instructions.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `instructions`, alive for the call; the kernel copies
        // the program.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                program.flags as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_deny_list_makes_one_filter_per_action() {
        let program = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_NE"}]},
            ]
        })))
        .unwrap();
        // x32 guard + ERRNO(EPERM) + ERRNO(ENOSYS) + KILL_PROCESS; no default filter.
        assert_eq!(program.filters.len(), 4);
    }

    #[test]
    fn an_allow_list_adds_the_default_filter() {
        let program = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]
        })))
        .unwrap();
        assert_eq!(program.filters.len(), 2);
        assert_eq!(program.flags, libc::SECCOMP_FILTER_FLAG_LOG as u32);
    }

    #[test]
    fn unsupported_features_are_refused() {
        let err = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_NOTIFY",
        })))
        .unwrap_err();
        assert!(err.to_string().contains("NOTIFY"), "{err}");
        let err = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": "/run/x.sock",
        })))
        .unwrap_err();
        assert!(err.to_string().contains("listenerPath"), "{err}");
    }

    /// Installs a compiled profile in a forked child (single-threaded at fork time is not
    /// needed: the child only calls async-signal-safe functions and `_exit`s).
    #[test]
    fn an_installed_deny_filter_answers_eperm() {
        let program = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]
        })))
        .unwrap();
        // Build everything before forking; the child only makes raw syscalls.
        let mut filters: Vec<Vec<libc::sock_filter>> = program
            .filters
            .iter()
            .map(|f| {
                f.iter()
                    .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
                    .collect()
            })
            .collect();
        let progs: Vec<libc::sock_fprog> = filters
            .iter_mut()
            .map(|f| libc::sock_fprog {
                len: f.len() as u16,
                filter: f.as_mut_ptr(),
            })
            .collect();
        // SAFETY: the child calls only prctl, syscall and _exit (async-signal-safe).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: raw syscalls on valid arguments; the child never returns.
            unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                for prog in &progs {
                    if libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0,
                        prog as *const libc::sock_fprog,
                    ) != 0
                    {
                        libc::_exit(2);
                    }
                }
                let rc = libc::syscall(libc::SYS_getppid);
                let errno = *libc::__errno_location();
                libc::_exit(if rc == -1 && errno == 42 { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}

//! Entering the container's namespaces, and what they are told once inside.
//!
//! An init process's namespaces come from the plan: each is created (`unshare`) or
//! joined (`setns` on a file such as `/proc/<pid>/ns/net`). The order matters:
//!
//! 1. Every file to join is opened first, while this process still sees the agent's
//!    `/proc` and has the agent's rights.
//! 2. The user namespace comes first: joining it, or creating it, grants the
//!    capabilities the other changes need in it. A new one has no id maps yet; only a
//!    process outside it may write them, so the helper asks the launcher (`NeedIdMaps`)
//!    and waits for `IdMapsWritten` before becoming root in it.
//! 3. The other namespaces are joined, then the new ones created at once. A new pid
//!    namespace applies to children only: the caller forks next.
//!
//! An exec'd process joins the namespaces of the container's init process
//! ([`join_init_namespaces`]): each one that differs from the helper's own (the
//! container may share the sandbox's network or UTS namespace), user first, mount last
//! (it changes what `/proc` shows).
//!
//! [`configure`] runs in the container's new namespaces: hostname and domain name (its
//! UTS namespace) and sysctls (only namespaced ones can be written there).

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};

use super::credentials::become_root;
use super::{HelperResult, Part, expect};
use crate::plan::{ContainerPlan, NamespaceKind};
use crate::protocol::{self, Command, Report};

const PART: Part = Part::Namespace;

/// Creates or joins the namespaces of `plan` (steps 1 to 3 above); `chan` is the
/// launcher's socket, for the id maps of a new user namespace.
pub(super) fn enter_planned(chan: &mut UnixStream, plan: &ContainerPlan) -> HelperResult<()> {
    // Namespace files to join are opened before any namespace changes.
    let mut to_join = Vec::new();
    let mut to_create = CloneFlags::empty();
    let mut user_ns = None;
    for ns in &plan.namespaces {
        match (&ns.path, ns.kind) {
            (Some(path), NamespaceKind::User) => {
                user_ns = Some(Some(File::open(path).map_err(PART.failed(path.display()))?));
            }
            (None, NamespaceKind::User) => user_ns = Some(None),
            (Some(path), kind) => {
                to_join.push((kind, File::open(path).map_err(PART.failed(path.display()))?));
            }
            (None, kind) => to_create |= kind.clone_flag(),
        }
    }
    match user_ns {
        Some(Some(file)) => {
            setns(file.as_fd(), CloneFlags::CLONE_NEWUSER)
                .map_err(PART.failed("joining the user namespace"))?;
            become_root()?;
        }
        Some(None) => {
            unshare(CloneFlags::CLONE_NEWUSER)
                .map_err(PART.failed("creating the user namespace"))?;
            protocol::send(chan, &Report::NeedIdMaps)
                .map_err(Part::Protocol.failed("asking for id maps"))?;
            expect(chan, Command::IdMapsWritten)?;
            become_root()?;
        }
        None => {}
    }
    for (kind, file) in &to_join {
        setns(file.as_fd(), kind.clone_flag())
            .map_err(PART.failed(format!("joining the {} namespace", kind.proc_name())))?;
    }
    unshare(to_create).map_err(PART.failed("creating namespaces"))
}

/// Joins every namespace of the process `init_pid` that differs from ours.
pub(super) fn join_init_namespaces(init_pid: i32) -> HelperResult<()> {
    // User first (it grants the rights for the others), mount last (it changes what
    // /proc shows).
    let order = [
        NamespaceKind::User,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
        NamespaceKind::Network,
        NamespaceKind::Pid,
        NamespaceKind::Cgroup,
        NamespaceKind::Mount,
    ];
    let mut to_join = Vec::new();
    for kind in order {
        let theirs_path = format!("/proc/{init_pid}/ns/{}", kind.proc_name());
        let ours_path = format!("/proc/self/ns/{}", kind.proc_name());
        let theirs = File::open(&theirs_path).map_err(PART.failed(&theirs_path))?;
        let same = match (theirs.metadata(), std::fs::metadata(&ours_path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            to_join.push((kind, theirs));
        }
    }
    for (kind, file) in &to_join {
        setns(file.as_fd(), kind.clone_flag())
            .map_err(PART.failed(format!("joining the {} namespace", kind.proc_name())))?;
        if *kind == NamespaceKind::User {
            become_root()?;
        }
    }
    Ok(())
}

/// Hostname, domain name and sysctls, inside the container's namespaces.
pub(super) fn configure(plan: &ContainerPlan) -> HelperResult<()> {
    if let Some(hostname) = &plan.hostname {
        nix::unistd::sethostname(hostname).map_err(PART.failed("sethostname"))?;
    }
    if let Some(domainname) = &plan.domainname {
        // SAFETY: a valid pointer and length for the call.
        let rc = unsafe { libc::setdomainname(domainname.as_ptr().cast(), domainname.len()) };
        Errno::result(rc).map_err(PART.failed("setdomainname"))?;
    }
    for (key, value) in &plan.sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(PART.failed(format!("sysctl {key}")))?;
    }
    Ok(())
}

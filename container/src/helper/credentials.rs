//! Who the container process is: user and group ids, supplementary groups, capabilities.
//!
//! The helper runs as root (in the agent's user namespace, or as root of a new or joined
//! one: [`become_root`]). [`switch_user`] then drops to the process's identity in the
//! order that keeps the right capabilities for each step: the bounding set is cut while
//! `CAP_SETPCAP` is still held, `PR_SET_KEEPCAPS` keeps the permitted set across the
//! `setresuid` away from 0, then the inheritable, effective and permitted sets are set
//! (each `capset(2)` must stay within the permitted set of the moment) and the ambient
//! capabilities raised.

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};

use super::{HelperResult, Part};
use crate::plan::ProcessPlan;

const PART: Part = Part::Credentials;

/// Root of the user namespace just entered (the launcher mapped an id to 0).
pub(super) fn become_root() -> HelperResult<()> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(PART.failed("setresgid(0) in the user namespace"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(PART.failed("setresuid(0) in the user namespace"))
}

/// Groups, user and capabilities of the process, from root.
pub(super) fn switch_user(p: &ProcessPlan) -> HelperResult<()> {
    use caps::CapSet;
    let set_of = |names: &[String]| -> HelperResult<caps::CapsHashSet> {
        names
            .iter()
            .map(|n| n.parse::<caps::Capability>().map_err(PART.failed(n)))
            .collect()
    };
    if let Some(c) = &p.capabilities {
        let bounding = set_of(&c.bounding)?;
        for cap in caps::runtime::thread_all_supported() {
            if !bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(PART.failed(format!("dropping {cap} from the bounding set")))?;
            }
        }
        nix::sys::prctl::set_keepcaps(true).map_err(PART.failed("PR_SET_KEEPCAPS"))?;
    }
    let groups: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|&g| Gid::from_raw(g))
        .collect();
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        // A user namespace with setgroups denied: only acceptable with nothing to set.
        Err(Errno::EPERM) if groups.is_empty() => {}
        Err(errno) => return Err(PART.error("setgroups", errno)),
    }
    let gid = Gid::from_raw(p.gid);
    let uid = Uid::from_raw(p.uid);
    nix::unistd::setresgid(gid, gid, gid).map_err(PART.failed(format!("setresgid({})", p.gid)))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(PART.failed(format!("setresuid({})", p.uid)))?;
    if let Some(c) = &p.capabilities {
        // One capset(2) per set, so the order matters: the effective set must stay within
        // the permitted one at every step, and the inheritable one is set while the
        // permitted set still allows it. Permitted last: it only shrinks.
        caps::set(None, CapSet::Inheritable, &set_of(&c.inheritable)?)
            .map_err(PART.failed("inheritable capabilities"))?;
        caps::set(None, CapSet::Effective, &set_of(&c.effective)?)
            .map_err(PART.failed("effective capabilities"))?;
        caps::set(None, CapSet::Permitted, &set_of(&c.permitted)?)
            .map_err(PART.failed("permitted capabilities"))?;
        for cap in set_of(&c.ambient)? {
            if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
                tracing::debug!(%e, %cap, "ambient capability not raised");
            }
        }
        let _ = nix::sys::prctl::set_keepcaps(false);
    }
    Ok(())
}

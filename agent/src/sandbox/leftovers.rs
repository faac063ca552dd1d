//! What a previous agent left behind when it died (hull-init restarts a crashed agent):
//! its mounts beneath the agent's directory, the containers' cgroups and the processes in
//! them. The new agent cannot re-adopt them (the containers' stdio pipes, terminals and
//! reaping went with the dead process), so it tears them down at start, and the sandbox
//! must be created again ([`super::Sandbox::mark_lost`]).
//!
//! A previous instance is recognised by the marker file every agent writes in its
//! directory at start ([`MARKER`]); the directory is on a tmpfs, so a new boot starts
//! without one.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::MntFlags;

/// The marker file, in the agent's directory.
pub const MARKER: &str = ".hull-agent";
/// How long the killed containers' cgroups may take to empty.
const CGROUP_DRAIN: Duration = Duration::from_secs(5);

/// What was found and torn down.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    /// Mounts detached beneath the agent's directory.
    pub mounts: usize,
    /// Container cgroups removed.
    pub cgroups: usize,
    /// Processes killed in them.
    pub processes: usize,
    /// What could not be cleaned, one line each.
    pub failures: Vec<String>,
}

/// Whether a previous agent ran with this directory and is gone: its marker is there
/// and names no live process (a live one is another agent sharing the directory, on a
/// host).
pub fn previous_instance(run_dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(run_dir.join(MARKER)) else {
        return false;
    };
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => {
            pid != std::process::id() as i32
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                    == Err(nix::errno::Errno::ESRCH)
        }
        _ => true,
    }
}

/// Writes this agent's marker (its pid) in `run_dir`, creating the directory.
pub fn mark_instance(run_dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(run_dir)?;
    std::fs::write(run_dir.join(MARKER), std::process::id().to_string())
}

/// Tears down what a dead agent left: with `cgroups`, every cgroup beneath
/// `cgroup_root` but this process's own and its ancestors (their processes killed
/// through `cgroup.kill`); then every mount beneath `run_dir`, and, once none is left,
/// the directory's contents but the marker.
pub fn tear_down(run_dir: &Path, cgroup_root: Option<&Path>) -> Leftovers {
    let mut found = Leftovers::default();
    if let Some(root) = cgroup_root {
        kill_cgroups(root, &mut found);
    }
    detach_mounts(run_dir, &mut found);
    if found.failures.is_empty() {
        remove_contents(run_dir, &mut found);
    }
    found
}

/// This process's cgroup, as a path beneath the cgroup2 root.
fn own_cgroup() -> PathBuf {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| PathBuf::from(p.trim())))
        })
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Every cgroup directory beneath `dir`, parents before children.
fn cgroup_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let path = entry.path();
            out.push(path.clone());
            cgroup_dirs(&path, out);
        }
    }
}

fn kill_cgroups(root: &Path, found: &mut Leftovers) {
    let own = own_cgroup();
    let mut dirs = Vec::new();
    cgroup_dirs(root, &mut dirs);
    let leftovers: Vec<PathBuf> = dirs
        .into_iter()
        .filter(|dir| {
            let relative = Path::new("/").join(dir.strip_prefix(root).unwrap_or(dir));
            !own.starts_with(&relative)
        })
        .collect();
    for dir in &leftovers {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let count = procs.lines().filter(|l| !l.trim().is_empty()).count();
        if count > 0 {
            found.processes += count;
            if let Err(e) = std::fs::write(dir.join("cgroup.kill"), "1") {
                found
                    .failures
                    .push(format!("{}: cgroup.kill: {e}", dir.display()));
            }
        }
    }
    // Children before parents.
    for dir in leftovers.iter().rev() {
        let deadline = Instant::now() + CGROUP_DRAIN;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => {
                    found.cgroups += 1;
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e) => {
                    found
                        .failures
                        .push(format!("{}: rmdir: {e}", dir.display()));
                    break;
                }
            }
        }
    }
}

fn mounts_beneath(run_dir: &Path) -> Vec<PathBuf> {
    let mountinfo =
        std::fs::read_to_string(hull_common::mountinfo::PROC_SELF_MOUNTINFO).unwrap_or_default();
    crate::mount::mount_points(&mountinfo)
        .into_iter()
        .filter(|p| p != run_dir && p.starts_with(run_dir))
        .collect()
}

fn detach_mounts(run_dir: &Path, found: &mut Leftovers) {
    // Latest first: a mount stacked on or beneath another goes before it.
    for target in mounts_beneath(run_dir).iter().rev() {
        match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => found.mounts += 1,
            // Already gone with a parent detached before it.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(errno) => found
                .failures
                .push(format!("{}: umount: {errno}", target.display())),
        }
    }
    let left = mounts_beneath(run_dir);
    if !left.is_empty() {
        found.failures.push(format!(
            "{} mounts remain beneath {}",
            left.len(),
            run_dir.display()
        ));
    }
}

/// Removes what the dead agent created in `run_dir`, keeping the marker. Only called
/// when no mount is left beneath it, so nothing outside the directory is touched.
fn remove_contents(run_dir: &Path, found: &mut Leftovers) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() == MARKER {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(e) = removed {
            found
                .failures
                .push(format!("{}: remove: {e}", path.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_tells_a_restart_and_contents_go_but_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        assert!(!previous_instance(&run));
        mark_instance(&run).unwrap();
        // This process's own marker: alive, not a previous instance.
        assert!(!previous_instance(&run));
        std::fs::write(run.join(MARKER), "garbage").unwrap();
        assert!(previous_instance(&run));
        std::fs::create_dir_all(run.join("c1/rootfs")).unwrap();
        std::fs::write(run.join("c1/config.json"), "{}").unwrap();
        let found = tear_down(&run, None);
        assert!(found.failures.is_empty(), "{found:?}");
        let left: Vec<_> = std::fs::read_dir(&run)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(MARKER)]);
    }

    #[test]
    fn own_cgroups_and_ancestors_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let own = own_cgroup();
        // A fake hierarchy: this process's own cgroup path and a container's.
        let own_dir = root.join(own.strip_prefix("/").unwrap_or(&own));
        std::fs::create_dir_all(&own_dir).unwrap();
        std::fs::create_dir_all(root.join("hull/c1")).unwrap();
        let mut found = Leftovers::default();
        kill_cgroups(root, &mut found);
        assert!(own_dir.exists());
        assert!(!root.join("hull").exists());
        assert!(found.cgroups >= 2, "{found:?}");
    }
}

//! The C allocator's settings for a small daemon that lives as long as its VM.
//!
//! The agent runs on glibc's `malloc`. By default glibc gives each thread that allocates
//! concurrently an arena of its own (up to eight per CPU), and an arena keeps the memory
//! freed into it: the agent's tokio workers, blocking threads and reaper each grow one,
//! and the resident size then wanders by a megabyte at a time with which thread happened
//! to serve which request (the soak saw 11.4–13.6 MiB over 1000 container lifecycles,
//! flat but never the same twice). Two arenas keep contention low for two workers;
//! [`release_free_memory`] hands freed pages back to the guest after the work that
//! allocates most (a container's whole life) is over.

/// How many malloc arenas the agent's threads share.
const ARENAS: libc::c_int = 2;

/// Caps glibc's malloc arenas at [`ARENAS`]. Called once at start, before any thread.
pub fn configure() {
    // SAFETY: mallopt(3) only changes the allocator's tunables; it is called before the
    // agent starts any thread, and a refused setting (a 0 return) leaves the default.
    let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    if accepted == 0 {
        tracing::debug!("malloc kept its default arena count");
    }
}

/// Returns the allocator's free memory to the kernel (`malloc_trim(0)`: the top of each
/// arena and whole free pages inside it).
pub fn release_free_memory() {
    // SAFETY: malloc_trim(3) takes the allocator's own locks and releases only memory
    // that no allocation holds.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_keeps_live_allocations_intact() {
        configure();
        let kept: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 64 << 10]).collect();
        drop((0..64).map(|_| vec![0u8; 64 << 10]).collect::<Vec<_>>());
        release_free_memory();
        for (i, block) in kept.iter().enumerate() {
            assert!(block.iter().all(|&b| usize::from(b) == i));
        }
    }
}

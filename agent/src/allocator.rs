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
//!
//! A large ReadStdout answer takes about three buffers of its size (the bytes read, the
//! protobuf message, the ttRPC frame). By default glibc maps the first and gives the
//! heap's top back once about twice that is free, so every answer touched fresh pages:
//! ~750 page faults per MiB read, which under TCG cost more than the copies. Fixed
//! thresholds let answers reuse the heap; at most [`TRIM_THRESHOLD`] of freed memory
//! stays with each arena between RemoveContainers.

/// How many malloc arenas the agent's threads share.
const ARENAS: libc::c_int = 2;
/// Largest allocation served from an arena rather than a mapping of its own: above a
/// ReadStdout answer (1 MiB) with its protobuf and ttRPC framing.
const MMAP_THRESHOLD: libc::c_int = 2 << 20;
/// Free memory an arena keeps at its top before giving it back.
const TRIM_THRESHOLD: libc::c_int = 4 << 20;

/// Sets glibc's malloc tunables ([`ARENAS`], [`MMAP_THRESHOLD`], [`TRIM_THRESHOLD`]).
/// Called once at start, before any thread.
pub fn configure() {
    for (param, value, name) in [
        (libc::M_ARENA_MAX, ARENAS, "M_ARENA_MAX"),
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "M_MMAP_THRESHOLD"),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD, "M_TRIM_THRESHOLD"),
    ] {
        // SAFETY: mallopt(3) only changes the allocator's tunables; it is called before
        // the agent starts any thread, and a refused setting (a 0 return) keeps the
        // default.
        if unsafe { libc::mallopt(param, value) } == 0 {
            tracing::debug!(param = name, value, "mallopt refused");
        }
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

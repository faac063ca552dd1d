//! Shared helpers for unit tests.

use std::sync::Mutex;

/// Held by tests that create child processes: `waitpid(-1)` in one test could
/// otherwise reap another test's child.
pub static CHILDREN: Mutex<()> = Mutex::new(());

//! Guest file system helpers shared by storages and containers.
//!
//! [`confine`] resolves a path the host asked for beneath a directory the agent owns,
//! refusing `..`, absolute escapes and symlinks that lead outside. Everything the agent
//! mounts, creates or writes on the host's behalf goes through it, and the mount helpers
//! (the `mount` module, a layer above this one) take its [`ConfinedPath`] rather than a
//! path string, so what was checked is what gets mounted on. [`copy`] carries out `CopyFile` through it.

pub mod confine;
pub mod copy;
pub mod responsive;

pub use confine::{ConfineError, ConfinedPath, ConfinedRoot, Scope, relative_to};

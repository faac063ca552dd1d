//! The parts of `hull-bench`: the table it prints, the baseline programs it builds, and
//! one module per group of figures.

pub mod baseline;
pub mod boot;
pub mod containers;
pub mod memory;
pub mod policy;
pub mod stdio;
pub mod table;

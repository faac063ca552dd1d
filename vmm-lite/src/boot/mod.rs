//! Boot: guest-physical layout, kernel loading and the vCPUs' initial state.
//!
//! - [`layout`]: where everything sits in guest-physical memory, and the e820 map;
//! - [`loader`]: linux-loader (ELF vmlinux with PVH when it offers the note, else the 64-bit
//!   Linux boot protocol; bzImage), initrd, command line, boot_params / hvm_start_info;
//! - [`mptable`]: the Intel MP table that tells Linux about the vCPUs and the IOAPIC;
//! - [`cpu`]: CPUID, MSRs, FPU, LAPIC, segment and general registers per vCPU.

pub mod cpu;
pub mod layout;
pub mod loader;
pub mod mptable;

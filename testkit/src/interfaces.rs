//! Comparing the interfaces an agent lists: what was configured, without the
//! operational flags the kernel updates on its own.

use hull_protocols::types::Interface;

/// `IFF_UP`.
pub const IFF_UP: u32 = 0x1;

/// `IFF_RUNNING`, `IFF_LOWER_UP`, `IFF_DORMANT`: operational state, which the kernel
/// updates shortly after a link comes up (a rollback may bounce the link).
pub const OPERATIONAL: u32 = 0x40 | 0x10000 | 0x20000;

/// The configuration of `list`, without the operational flags.
pub fn configured(mut list: Vec<Interface>) -> Vec<Interface> {
    for interface in &mut list {
        interface.raw_flags &= !OPERATIONAL;
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_operational_flags_are_dropped() {
        let listed = vec![Interface {
            raw_flags: IFF_UP | 0x40 | 0x10000 | 0x1000,
            ..Default::default()
        }];
        assert_eq!(configured(listed)[0].raw_flags, IFF_UP | 0x1000);
    }
}

//! Guest memory and the room persistent-memory regions need.
//!
//! QEMU plugs an NVDIMM or a virtio-pmem region into the memory hotplug area, above RAM:
//! each region needs a slot, and `maxmem` must hold RAM plus every region. The rule here:
//! one slot per region plus one, `maxmem` = RAM + the regions (each rounded up to a MiB),
//! rounded up to 1 GiB. Without regions, `-m` is the RAM alone.
//!
//! Memory hot-plug ([`super::Hotplug`]) adds its own slots, and `maxmem` then holds its
//! ceiling (boot RAM and hot-plugged memory) plus the regions, rounded up the same way.

/// `maxmem` in MiB: RAM plus the regions, rounded up to 1 GiB.
pub fn maxmem_mib(ram_mib: u64, pmem_regions: &[u64]) -> u64 {
    let room: u64 = pmem_regions
        .iter()
        .map(|bytes| bytes.div_ceil(1 << 20))
        .sum();
    (ram_mib + room).div_ceil(1024) * 1024
}

/// Room for hot-plugged memory: extra slots and the most RAM the guest may reach in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotplugRoom {
    /// Slots for hot-plugged memory devices.
    pub slots: u32,
    /// Boot RAM plus hot-plugged memory at most, in MiB.
    pub max_memory_mib: u64,
}

/// QEMU's `-m` value for `ram_mib` of RAM, these persistent-memory regions and, when
/// given, room for hot-plugged memory.
pub fn qemu_memory_arg(ram_mib: u64, pmem_regions: &[u64], hotplug: Option<HotplugRoom>) -> String {
    let (pmem_slots, pmem_max) = if pmem_regions.is_empty() {
        (0, 0)
    } else {
        (
            pmem_regions.len() as u64 + 1,
            maxmem_mib(ram_mib, pmem_regions),
        )
    };
    match hotplug {
        None if pmem_regions.is_empty() => format!("{ram_mib}M"),
        None => format!("{ram_mib}M,slots={pmem_slots},maxmem={pmem_max}M"),
        Some(room) => {
            let ceiling = room.max_memory_mib.max(ram_mib);
            format!(
                "{ram_mib}M,slots={},maxmem={}M",
                pmem_slots + u64::from(room.slots),
                maxmem_mib(ceiling, pmem_regions).max(pmem_max)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxmem_holds_ram_and_image() {
        assert_eq!(maxmem_mib(256, &[10 << 20]), 1024);
        assert_eq!(maxmem_mib(256, &[900 << 20]), 2048);
        assert_eq!(maxmem_mib(256, &[8 << 20, 900 << 20]), 2048);
    }

    #[test]
    fn a_slot_per_region_and_none_without() {
        assert_eq!(qemu_memory_arg(256, &[], None), "256M");
        assert_eq!(
            qemu_memory_arg(256, &[8 << 20], None),
            "256M,slots=2,maxmem=1024M"
        );
        assert_eq!(
            qemu_memory_arg(256, &[8 << 20, 900 << 20], None),
            "256M,slots=3,maxmem=2048M"
        );
    }

    #[test]
    fn hotplug_adds_its_slots_and_ceiling() {
        let room = HotplugRoom {
            slots: 4,
            max_memory_mib: 1024,
        };
        assert_eq!(
            qemu_memory_arg(256, &[], Some(room)),
            "256M,slots=4,maxmem=1024M"
        );
        // The regions come on top of the ceiling.
        assert_eq!(
            qemu_memory_arg(256, &[8 << 20], Some(room)),
            "256M,slots=6,maxmem=2048M"
        );
        // A ceiling below boot RAM is boot RAM.
        let low = HotplugRoom {
            slots: 1,
            max_memory_mib: 128,
        };
        assert_eq!(
            qemu_memory_arg(256, &[], Some(low)),
            "256M,slots=1,maxmem=1024M"
        );
    }
}

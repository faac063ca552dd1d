//! Guest memory and the room persistent-memory regions need.
//!
//! QEMU plugs an NVDIMM or a virtio-pmem region into the memory hotplug area, above RAM:
//! each region needs a slot, and `maxmem` must hold RAM plus every region. The rule here:
//! one slot per region plus one, `maxmem` = RAM + the regions (each rounded up to a MiB),
//! rounded up to 1 GiB. Without regions, `-m` is the RAM alone.

/// `maxmem` in MiB: RAM plus the regions, rounded up to 1 GiB.
pub fn maxmem_mib(ram_mib: u64, pmem_regions: &[u64]) -> u64 {
    let room: u64 = pmem_regions
        .iter()
        .map(|bytes| bytes.div_ceil(1 << 20))
        .sum();
    (ram_mib + room).div_ceil(1024) * 1024
}

/// QEMU's `-m` value for `ram_mib` of RAM and these persistent-memory regions.
pub fn qemu_memory_arg(ram_mib: u64, pmem_regions: &[u64]) -> String {
    if pmem_regions.is_empty() {
        return format!("{ram_mib}M");
    }
    format!(
        "{ram_mib}M,slots={},maxmem={}M",
        pmem_regions.len() + 1,
        maxmem_mib(ram_mib, pmem_regions)
    )
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
        assert_eq!(qemu_memory_arg(256, &[]), "256M");
        assert_eq!(
            qemu_memory_arg(256, &[8 << 20]),
            "256M,slots=2,maxmem=1024M"
        );
        assert_eq!(
            qemu_memory_arg(256, &[8 << 20, 900 << 20]),
            "256M,slots=3,maxmem=2048M"
        );
    }
}

//! Guest-physical layout (x86_64), the same shape Linux's other small VMMs use.
//!
//! ```text
//! 0x0000_0500  GDT (4 entries)          0x0000_0520  IDT (empty)
//! 0x0000_6000  PVH hvm_start_info       0x0000_7000  boot_params ("zero page")
//! 0x0000_8ff0  boot stack top           0x0000_9000  PML4, 0xa000 PDPT, 0xb000 PD
//! 0x0002_0000  command line (64 KiB)    0x0009_fc00  MP table (EBDA, reserved)
//! 0x0010_0000  kernel                   ... RAM up to 0xd000_0000, rest above 4 GiB
//! 0xd000_0000  virtio-mmio windows, 4 KiB each
//! 0xfec0_0000  IOAPIC                   0xfee0_0000  LAPIC
//! ```

use linux_loader::loader::bootparam::boot_e820_entry;

/// The boot GDT: null, code, data and TSS descriptors, 8 bytes each.
pub const GDT_START: u64 = 0x500;
/// The boot IDT, left empty (the kernel installs its own).
pub const IDT_START: u64 = 0x520;
/// The PVH `hvm_start_info` (with its module list and memory map), passed in EBX.
pub const PVH_INFO_START: u64 = 0x6000;
/// The Linux `boot_params` ("zero page"), passed in RSI.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// The boot vCPU's initial RSP/RBP; the stack grows down from here.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// The boot page tables' PML4 (loaded into CR3); its one entry points at [`PDPTE_START`].
pub const PML4_START: u64 = 0x9000;
/// The boot PDPT; its one entry points at [`PDE_START`].
pub const PDPTE_START: u64 = 0xa000;
/// The boot page directory: 512 2 MiB pages identity-mapping the first 1 GiB.
pub const PDE_START: u64 = 0xb000;
/// Where the kernel command line is written (NUL-terminated).
pub const CMDLINE_START: u64 = 0x2_0000;
/// The longest command line, in bytes with its NUL, that fits before the next region.
pub const CMDLINE_MAX_SIZE: usize = 0x1_0000;
/// Start of the Extended BIOS Data Area: the MP table lives here; reserved in e820.
pub const EBDA_START: u64 = 0x9_fc00;
/// End of conventional memory.
pub const EBDA_END: u64 = 0xa_0000;
/// Where the kernel is loaded (1 MiB).
pub const HIMEM_START: u64 = 0x10_0000;
/// The MMIO hole below 4 GiB: virtio windows, IOAPIC, LAPIC.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// The end of the MMIO hole (4 GiB, exclusive); RAM resumes here.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The first virtio-mmio window; device n is at `+ n * VIRTIO_MMIO_SIZE`.
pub const VIRTIO_MMIO_START: u64 = MMIO_GAP_START;
/// The size of each virtio-mmio window (4 KiB).
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// The first GSI handed to virtio devices (0-4 are the PIT, keyboard, cascade, COM2, COM1).
pub const VIRTIO_FIRST_GSI: u32 = 5;
/// The last GSI the IOAPIC routes (24 pins).
pub const MAX_GSI: u32 = 23;
/// The in-kernel IOAPIC's MMIO base, as the MP table reports it.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APIC's MMIO base, as the MP table reports it.
pub const APIC_START: u64 = 0xfee0_0000;

/// The guest RAM regions for `mem_bytes` of RAM: below the MMIO gap, then above 4 GiB.
pub fn ram_regions(mem_bytes: u64) -> Vec<(u64, u64)> {
    if mem_bytes <= MMIO_GAP_START {
        vec![(0, mem_bytes)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_bytes - MMIO_GAP_START),
        ]
    }
}

/// The end of guest RAM (exclusive), the highest RAM address + 1.
pub fn ram_end(mem_bytes: u64) -> u64 {
    ram_regions(mem_bytes)
        .last()
        .map_or(0, |&(start, len)| start + len)
}

/// Where device memory (virtio-pmem) starts: the first 1 GiB boundary above RAM and 4 GiB.
pub fn device_memory_start(mem_bytes: u64) -> u64 {
    ram_end(mem_bytes)
        .max(MMIO_GAP_END)
        .next_multiple_of(1 << 30)
}

/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved, not for the kernel to use (the EBDA and MP table).
pub const E820_RESERVED: u32 = 2;

/// The e820 map the guest sees.
pub fn e820_map(mem_bytes: u64) -> Vec<boot_e820_entry> {
    let entry = |addr: u64, size: u64, kind: u32| boot_e820_entry {
        addr,
        size,
        r#type: kind,
    };
    let mut map = vec![
        entry(0, EBDA_START, E820_RAM),
        entry(EBDA_START, EBDA_END - EBDA_START, E820_RESERVED),
    ];
    for (region_start, len) in ram_regions(mem_bytes) {
        let start = region_start.max(HIMEM_START);
        let end = region_start + len;
        if end > start {
            map.push(entry(start, end - start, E820_RAM));
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_is_one_region_and_e820_skips_the_ebda_and_low_holes() {
        assert_eq!(ram_regions(256 << 20), vec![(0, 256 << 20)]);
        let map = e820_map(256 << 20);
        let spans: Vec<_> = map.iter().map(|e| (e.addr, e.size, e.r#type)).collect();
        assert_eq!(
            spans,
            vec![
                (0, EBDA_START, E820_RAM),
                (EBDA_START, 0x400, E820_RESERVED),
                (HIMEM_START, (256 << 20) - HIMEM_START, E820_RAM),
            ]
        );
    }

    #[test]
    fn big_guest_splits_around_the_mmio_gap() {
        let mem = 4u64 << 30;
        assert_eq!(
            ram_regions(mem),
            vec![(0, MMIO_GAP_START), (MMIO_GAP_END, mem - MMIO_GAP_START)]
        );
        let last = *e820_map(mem).last().unwrap();
        let (addr, size) = (last.addr, last.size);
        assert_eq!((addr, size), (MMIO_GAP_END, mem - MMIO_GAP_START));
        assert_eq!(device_memory_start(mem), 5 << 30);
        assert_eq!(device_memory_start(256 << 20), 4 << 30);
    }
}

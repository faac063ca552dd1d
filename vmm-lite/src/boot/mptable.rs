//! The Intel MultiProcessor table (spec 1.4): how Linux learns, without ACPI, that there
//! are N CPUs (their LAPIC ids 0..N), one IOAPIC and an ISA bus whose IRQ i reaches IOAPIC
//! pin i. Linux then starts the APs with INIT/SIPI through the in-kernel LAPIC.
//!
//! Layout at [`EBDA_START`]: the 16-byte floating pointer ("_MP_"), then the configuration
//! table ("PCMP") with its entries; every part's bytes sum to zero.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{APIC_START, EBDA_END, EBDA_START, IOAPIC_START, MAX_GSI};
use crate::error::{Error, Result};

const MPC_SPEC: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_INTSRC: u8 = 3;
const ENTRY_LINTSRC: u8 = 4;
const IRQ_INT: u8 = 0;
const IRQ_NMI: u8 = 1;
const IRQ_EXTINT: u8 = 3;
const BUS_ISA: u8 = 0;
/// Family 6 style signature and the FPU|APIC feature bits, as firmware reports them.
const CPU_SIGNATURE: u32 = (6 << 8) | (1 << 4);
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)))
}

/// The table's bytes for `cpus` vCPUs, to be placed at `addr`.
pub fn build(cpus: u8, addr: u64) -> Vec<u8> {
    let ioapic_id = cpus;
    let mut entries = Vec::new();
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTPROCESSOR } else { 0 };
        entries.extend([ENTRY_PROCESSOR, id, APIC_VERSION, flags]);
        entries.extend(CPU_SIGNATURE.to_le_bytes());
        entries.extend(CPU_FEATURES.to_le_bytes());
        entries.extend([0u8; 8]);
    }
    entries.extend([ENTRY_BUS, BUS_ISA]);
    entries.extend(*b"ISA   ");
    entries.extend([ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend((IOAPIC_START as u32).to_le_bytes());
    for irq in 0..=MAX_GSI as u8 {
        // Polarity and trigger "conform to the bus" (flags 0).
        entries.extend([ENTRY_INTSRC, IRQ_INT, 0, 0, BUS_ISA, irq, ioapic_id, irq]);
    }
    entries.extend([ENTRY_LINTSRC, IRQ_EXTINT, 0, 0, BUS_ISA, 0, 0xff, 0]);
    entries.extend([ENTRY_LINTSRC, IRQ_NMI, 0, 0, BUS_ISA, 0, 0xff, 1]);
    let entry_count = u16::from(cpus) + 1 + 1 + (MAX_GSI as u16 + 1) + 2;

    let table_addr = addr + 16;
    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend(*b"PCMP");
    table.extend(((44 + entries.len()) as u16).to_le_bytes());
    table.extend([MPC_SPEC, 0]); // checksum filled below
    table.extend(*b"HULLVMM ");
    table.extend(*b"vmm-lite    ");
    table.extend(0u32.to_le_bytes()); // OEM table pointer
    table.extend(0u16.to_le_bytes()); // OEM table size
    table.extend(entry_count.to_le_bytes());
    table.extend((APIC_START as u32).to_le_bytes());
    table.extend([0u8; 4]); // extended table length, checksum, reserved
    table.extend(entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(16);
    floating.extend(*b"_MP_");
    floating.extend((table_addr as u32).to_le_bytes());
    floating.extend([1, MPC_SPEC, 0, 0, 0, 0, 0, 0]);
    floating[10] = checksum(&floating);
    floating.extend(table);
    floating
}

/// Write the MP table for `cpus` vCPUs into the EBDA.
pub fn write(mem: &GuestMemoryMmap, cpus: u8) -> Result<()> {
    let bytes = build(cpus, EBDA_START);
    if EBDA_START + bytes.len() as u64 > EBDA_END {
        return Err(Error::Config(format!(
            "{cpus} vCPUs do not fit in the MP table's 1 KiB"
        )));
    }
    mem.write_slice(&bytes, GuestAddress(EBDA_START))
        .map_err(|e| Error::Memory(format!("writing the MP table: {e}")))
}

/// The most vCPUs the MP table area holds.
pub fn max_cpus() -> u8 {
    let fixed = build(0, EBDA_START).len() as u64;
    ((EBDA_END - EBDA_START - fixed) / 20).min(254) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_checksums_and_counts_are_right() {
        let bytes = build(2, EBDA_START);
        assert_eq!(&bytes[..4], b"_MP_");
        assert_eq!(bytes[..16].iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        let table = &bytes[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(table.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        let count = u16::from_le_bytes([table[34], table[35]]);
        assert_eq!(count, 2 + 1 + 1 + 24 + 2);
        // Processor entries: 2 × 20 bytes, BSP first; the rest are 8 bytes each.
        assert_eq!(len, 44 + 2 * 20 + (count as usize - 2) * 8);
        assert_eq!(table[44 + 3], CPU_ENABLED | CPU_BOOTPROCESSOR);
        assert_eq!(table[64 + 3], CPU_ENABLED);
        assert!(max_cpus() >= 32);
    }
}

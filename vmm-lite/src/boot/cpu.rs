//! A vCPU's initial state: CPUID, MSRs, FPU, LAPIC, and the registers of the entry
//! protocol (64-bit long mode for Linux, 32-bit protected mode for PVH).
//!
//! The 64-bit state is linux-loader's boot state: a flat GDT at [`GDT_START`], identity
//! page tables mapping the first 1 GiB with 2 MiB pages, CR0.PE|PG, CR4.PAE,
//! EFER.LME|LMA, RSI → boot_params.

use kvm_bindings::{
    CpuId, Msrs, kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs,
};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::layout::{
    BOOT_STACK_POINTER, GDT_START, IDT_START, PDE_START, PDPTE_START, PML4_START, PVH_INFO_START,
    ZERO_PAGE_START,
};
use super::loader::Entry;
use crate::error::{Error, Result};

// CR0, CR4 and EFER bits.
const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const X86_CR0_PG: u64 = 0x8000_0000;
const X86_CR4_PAE: u64 = 0x20;
const EFER_LME: u64 = 0x100;
const EFER_LMA: u64 = 0x400;

/// Fix up KVM's supported CPUID for vCPU `id` of `count`: APIC ids, the hypervisor bit and
/// a topology of `count` cores in one socket, one thread each.
pub fn cpuid_for(supported: &CpuId, id: u8, count: u8) -> CpuId {
    let mut cpuid = supported.clone();
    let count32 = u32::from(count);
    // Bits needed to number `count` cores.
    let core_bits = 32 - (count32.max(1) - 1).leading_zeros();
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            0x1 => {
                // EBX: APIC id [31:24], logical processors per package [23:16], CLFLUSH
                // line size in 8-byte units [15:8].
                entry.ebx = (u32::from(id) << 24) | (count32 << 16) | (8 << 8);
                entry.ecx |= 1 << 31; // running under a hypervisor
                if count > 1 {
                    entry.edx |= 1 << 28; // HTT: more than one logical processor
                }
            }
            0x4 => {
                // Cores per package - 1 in [31:26]; threads sharing this cache [25:14] = 0.
                entry.eax &= !(0xfc00_0000 | 0x03ff_c000);
                entry.eax |= (count32.saturating_sub(1) & 0x3f) << 26;
            }
            0x6 => {
                entry.ecx &= !(1 << 3); // no energy-performance bias MSR
            }
            0xb | 0x1f => {
                entry.edx = u32::from(id);
                match entry.index {
                    0 => {
                        // SMT level: one thread per core.
                        entry.eax = 0;
                        entry.ebx = 1;
                        entry.ecx = 1 << 8;
                    }
                    1 => {
                        // Core level: `count` cores.
                        entry.eax = core_bits;
                        entry.ebx = count32;
                        entry.ecx = (2 << 8) | 1;
                    }
                    index => {
                        entry.eax = 0;
                        entry.ebx = 0;
                        entry.ecx = index;
                    }
                }
            }
            _ => {}
        }
    }
    cpuid
}

/// The MSRs Linux expects a boot loader to have set (the same set as Firecracker's).
pub fn boot_msrs() -> Result<Msrs> {
    const MSR_IA32_SYSENTER_CS: u32 = 0x174;
    const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
    const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
    const MSR_STAR: u32 = 0xc000_0081;
    const MSR_LSTAR: u32 = 0xc000_0082;
    const MSR_CSTAR: u32 = 0xc000_0083;
    const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
    const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
    const MSR_IA32_TSC: u32 = 0x10;
    const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
    const MSR_IA32_MISC_ENABLE_FAST_STRING: u64 = 1;
    const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
    const MTRR_ENABLE: u64 = 1 << 11;
    const MTRR_MEM_TYPE_WB: u64 = 0x6;
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    Msrs::from_entries(&[
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MSR_IA32_MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_MEM_TYPE_WB),
    ])
    .map_err(|e| Error::Config(format!("building the MSR list: {e:?}")))
}

/// Program CPUID, MSRs, FPU and LAPIC of any vCPU (BSP or AP).
pub fn setup_common(vcpu: &VcpuFd, cpuid: &CpuId) -> Result<()> {
    vcpu.set_cpuid2(cpuid)
        .map_err(Error::kvm("KVM_SET_CPUID2"))?;
    let msrs = boot_msrs()?;
    let written = vcpu.set_msrs(&msrs).map_err(Error::kvm("KVM_SET_MSRS"))?;
    if written != msrs.as_slice().len() {
        let failed = msrs.as_slice()[written].index;
        return Err(Error::Vcpu(format!(
            "KVM_SET_MSRS stopped at MSR {failed:#x}"
        )));
    }
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(Error::kvm("KVM_SET_FPU"))?;
    setup_lapic(vcpu)
}

/// LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as a BIOS leaves them.
fn setup_lapic(vcpu: &VcpuFd) -> Result<()> {
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const APIC_MODE_NMI: u32 = 0x4;
    const APIC_MODE_EXTINT: u32 = 0x7;
    fn set_mode(lapic: &mut kvm_lapic_state, reg: usize, mode: u32) {
        let bytes = &mut lapic.regs[reg..reg + 4];
        let mut value = [0u8; 4];
        for (dst, src) in value.iter_mut().zip(bytes.iter()) {
            *dst = *src as u8;
        }
        let value = (u32::from_le_bytes(value) & !0x700) | (mode << 8);
        for (dst, src) in bytes.iter_mut().zip(value.to_le_bytes()) {
            *dst = src as _;
        }
    }
    let mut lapic = vcpu.get_lapic().map_err(Error::kvm("KVM_GET_LAPIC"))?;
    set_mode(&mut lapic, APIC_LVT0, APIC_MODE_EXTINT);
    set_mode(&mut lapic, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(Error::kvm("KVM_SET_LAPIC"))
}

/// Write the GDT, the (empty) IDT and the identity page tables into guest memory.
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<()> {
    let write = |addr: u64, value: u64| {
        mem.write_obj(value, GuestAddress(addr))
            .map_err(|e| Error::Memory(format!("writing boot tables at {addr:#x}: {e}")))
    };
    for (i, entry) in gdt().iter().enumerate() {
        write(GDT_START + 8 * i as u64, *entry)?;
    }
    write(IDT_START, 0)?;
    write(PML4_START, PDPTE_START | 0x03)?;
    write(PDPTE_START, PDE_START | 0x03)?;
    for i in 0..512u64 {
        // 2 MiB pages: present, writable, PS.
        write(PDE_START + i * 8, (i << 21) | 0x83)?;
    }
    Ok(())
}

/// The GDT: null, code, data, TSS. Code is 64-bit (L) for long mode.
fn gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(0xa09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
    ]
}

/// The GDT for the PVH entry: 32-bit code (D) instead of 64-bit.
fn gdt_pvh() -> [u64; 4] {
    [
        0,
        gdt_entry(0xc09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x008b, 0, 0x67),
    ]
}

fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

fn segment(entry: u64, index: u8) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let limit = (entry & 0xffff) | ((entry >> 32) & 0xf_0000);
    let g = ((entry >> 55) & 1) as u8;
    kvm_segment {
        base,
        // With G set the limit counts 4 KiB pages.
        limit: if g == 1 {
            ((limit << 12) | 0xfff) as u32
        } else {
            limit as u32
        },
        selector: u16::from(index) * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Segment, control and general registers of the boot vCPU for `entry`.
pub fn setup_boot_registers(vcpu: &VcpuFd, mem: &GuestMemoryMmap, entry: Entry) -> Result<()> {
    let mut sregs: kvm_sregs = vcpu.get_sregs().map_err(Error::kvm("KVM_GET_SREGS"))?;
    let (table, regs) = match entry {
        Entry::Linux64 { rip } => {
            let table = gdt();
            sregs.cr3 = PML4_START;
            sregs.cr4 |= X86_CR4_PAE;
            sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
            sregs.efer |= EFER_LME | EFER_LMA;
            let regs = kvm_regs {
                rflags: 0x2,
                rip,
                rsp: BOOT_STACK_POINTER,
                rbp: BOOT_STACK_POINTER,
                rsi: ZERO_PAGE_START,
                ..Default::default()
            };
            (table, regs)
        }
        Entry::Pvh { eip } => {
            let table = gdt_pvh();
            sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
            sregs.cr4 = 0;
            sregs.efer = 0;
            let regs = kvm_regs {
                rflags: 0x2,
                rip: eip,
                rbx: PVH_INFO_START,
                ..Default::default()
            };
            (table, regs)
        }
    };
    for (i, value) in table.iter().enumerate() {
        mem.write_obj(*value, GuestAddress(GDT_START + 8 * i as u64))
            .map_err(|e| Error::Memory(format!("writing the GDT: {e}")))?;
    }
    let code = segment(table[1], 1);
    let data = segment(table[2], 2);
    let tss = segment(table[3], 3);
    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = (table.len() * 8 - 1) as u16;
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    vcpu.set_sregs(&sregs)
        .map_err(Error::kvm("KVM_SET_SREGS"))?;
    vcpu.set_regs(&regs).map_err(Error::kvm("KVM_SET_REGS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid_gets_apic_ids_hypervisor_bit_and_topology() {
        use kvm_bindings::kvm_cpuid_entry2;
        let entry = |function, index| kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        };
        let supported =
            CpuId::from_entries(&[entry(1, 0), entry(4, 0), entry(0xb, 0), entry(0xb, 1)]).unwrap();
        let cpuid = cpuid_for(&supported, 2, 3);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx >> 24, 2, "APIC id");
        assert_eq!((e[0].ebx >> 16) & 0xff, 3, "logical processors");
        assert_ne!(e[0].ecx & (1 << 31), 0, "hypervisor bit");
        assert_ne!(e[0].edx & (1 << 28), 0, "HTT");
        assert_eq!(e[1].eax >> 26, 2, "cores per package - 1");
        assert_eq!((e[2].ebx, e[2].edx), (1, 2), "SMT level");
        assert_eq!((e[3].eax, e[3].ebx, e[3].edx), (2, 3, 2), "core level");
        assert_eq!(cpuid_for(&supported, 0, 1).as_slice()[0].edx & (1 << 28), 0);
    }

    #[test]
    fn gdt_entries_decode_to_flat_long_mode_segments() {
        let code = segment(gdt()[1], 1);
        assert_eq!((code.base, code.limit, code.selector), (0, 0xffff_ffff, 8));
        assert_eq!((code.l, code.db, code.present, code.type_), (1, 0, 1, 0xb));
        let data = segment(gdt()[2], 2);
        assert_eq!((data.l, data.db, data.type_, data.s), (0, 1, 3, 1));
        let pvh_code = segment(gdt_pvh()[1], 1);
        assert_eq!((pvh_code.l, pvh_code.db), (0, 1));
    }
}

//! Kernel, initrd and command line into guest memory, through linux-loader.
//!
//! An ELF vmlinux that carries a PVH note boots at its PVH entry in 32-bit protected mode
//! with an `hvm_start_info` (Xen's PVH protocol, which Linux and the payload kit speak);
//! any other ELF, and a bzImage, boots at its 64-bit entry with `boot_params` in RSI (the
//! Linux 64-bit boot protocol). Both get the same e820 map, command line and initrd.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use linux_loader::cmdline::Cmdline;
use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::boot_params;
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{
    self, BzImage, Elf, KernelLoader, KernelLoaderResult, PvhBootCapability,
};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, ReadVolatile};

use super::layout::{
    CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, MMIO_GAP_START, PVH_INFO_START, ZERO_PAGE_START,
    e820_map,
};
use crate::error::{Error, Result};

/// How the boot vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// 64-bit long mode at `rip`, `boot_params` at [`ZERO_PAGE_START`] in RSI.
    Linux64 {
        /// The guest-physical address of the 64-bit entry point.
        rip: u64,
    },
    /// 32-bit protected mode at `eip`, `hvm_start_info` at [`PVH_INFO_START`] in EBX.
    Pvh {
        /// The guest-physical address of the PVH entry point (`XEN_ELFNOTE_PHYS32_ENTRY`).
        eip: u64,
    },
}

const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;
/// The 64-bit entry of a bzImage's protected-mode kernel, relative to where it is loaded.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;

/// The command line with vmm-lite's own words added, checked for length.
pub fn build_cmdline(user: &str, extra: &[String]) -> Result<Cmdline> {
    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).map_err(|e| Error::Cmdline(e.to_string()))?;
    let mut insert = |words: &str| {
        if words.trim().is_empty() {
            return Ok(());
        }
        cmdline
            .insert_str(words.trim())
            .map_err(|e| Error::Cmdline(format!("{e} (adding {words:?})")))
    };
    insert(user)?;
    for word in extra {
        insert(word)?;
    }
    Ok(cmdline)
}

/// Load the kernel, the initrd and the command line; write the boot parameters.
pub fn load(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &Cmdline,
) -> Result<Entry> {
    let kernel_err = |reason: String| Error::Kernel {
        path: kernel.to_path_buf(),
        reason,
    };
    let mut file = File::open(kernel).map_err(|e| kernel_err(e.to_string()))?;
    let highmem = Some(GuestAddress(HIMEM_START));
    let mut magic = [0u8; 4];
    let is_elf = file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF";
    let (result, entry) = if is_elf {
        let result = Elf::load(mem, None, &mut file, highmem)
            .map_err(|e| kernel_err(format!("as an ELF vmlinux: {e}")))?;
        let entry = match result.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(addr) => Entry::Pvh { eip: addr.0 },
            _ => Entry::Linux64 {
                rip: result.kernel_load.0,
            },
        };
        (result, entry)
    } else {
        let result = BzImage::load(mem, None, &mut file, highmem)
            .map_err(|e| kernel_err(format!("not an ELF vmlinux, and as a bzImage: {e}")))?;
        let rip = result.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET;
        (result, Entry::Linux64 { rip })
    };

    let initrd = match initrd {
        Some(path) => Some(load_initrd(mem, mem_bytes, &result, path)?),
        None => None,
    };

    loader::load_cmdline(mem, GuestAddress(CMDLINE_START), cmdline)
        .map_err(|e| Error::Cmdline(e.to_string()))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|e| Error::Cmdline(e.to_string()))?
        .as_bytes()
        .len();

    match entry {
        Entry::Linux64 { .. } => {
            write_boot_params(mem, mem_bytes, &result, initrd, cmdline_len)?;
        }
        Entry::Pvh { .. } => write_start_info(mem, mem_bytes, initrd)?,
    }
    Ok(entry)
}

/// Place the initrd page-aligned at the top of low RAM, above the kernel.
fn load_initrd(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    kernel: &KernelLoaderResult,
    path: &Path,
) -> Result<(u64, u64)> {
    let bad = |reason: String| Error::BadFile {
        what: "initrd",
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(|e| bad(e.to_string()))?;
    let size = file.metadata().map_err(|e| bad(e.to_string()))?.len();
    let low_end = mem_bytes.min(MMIO_GAP_START);
    let addr = low_end
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|&a| a >= kernel.kernel_end)
        .ok_or_else(|| {
            bad(format!(
                "{size} bytes do not fit between the kernel's end ({:#x}) and the end of low RAM ({low_end:#x}); give the guest more memory",
                kernel.kernel_end
            ))
        })?;
    let mut slice = mem
        .get_slice(GuestAddress(addr), size as usize)
        .map_err(|e| Error::Memory(e.to_string()))?;
    file.read_exact_volatile(&mut slice)
        .map_err(|e| bad(format!("reading: {e}")))?;
    Ok((addr, size))
}

fn write_boot_params(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    kernel: &KernelLoaderResult,
    initrd: Option<(u64, u64)>,
    cmdline_len: usize,
) -> Result<()> {
    let mut params = boot_params::default();
    if let Some(header) = kernel.setup_header {
        params.hdr = header;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_len as u32;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820_map(mem_bytes);
    if map.len() > params.e820_table.len() {
        return Err(Error::Memory("too many e820 entries".into()));
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(&map) {
        *slot = *entry;
    }
    params.e820_entries = map.len() as u8;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(
        &BootParams::new(&params, GuestAddress(ZERO_PAGE_START)),
        mem,
    )
    .map_err(|e| Error::Memory(format!("writing boot_params: {e}")))
}

fn write_start_info(
    mem: &GuestMemoryMmap,
    mem_bytes: u64,
    initrd: Option<(u64, u64)>,
) -> Result<()> {
    let memmap: Vec<hvm_memmap_table_entry> = e820_map(mem_bytes)
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.r#type,
            reserved: 0,
        })
        .collect();
    let info_size = std::mem::size_of::<hvm_start_info>() as u64;
    let memmap_addr = PVH_INFO_START + info_size;
    let modlist_addr =
        memmap_addr + (memmap.len() * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: 1,
        cmdline_paddr: CMDLINE_START,
        memmap_paddr: memmap_addr,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    if initrd.is_some() {
        info.nr_modules = 1;
        info.modlist_paddr = modlist_addr;
    }
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
    params.set_sections(&memmap, GuestAddress(memmap_addr));
    if let Some((paddr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(modlist_addr));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
        .map_err(|e| Error::Memory(format!("writing hvm_start_info: {e}")))?;
    Ok(())
}

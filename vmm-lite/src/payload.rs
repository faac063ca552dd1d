//! The payload kit: small guest programs, assembled from source here with iced-x86's
//! `CodeAssembler`, booted by vmm-lite through its real boot path. For the payload tests and
//! the bench; built only with the `payload` feature (the crate's tests turn it on).
//!
//! **For virtio payload tests (helper V2 and anyone else): use this module.** A test writes
//! 64-bit code, wraps it in an ELF and runs it:
//!
//! ```no_run
//! use iced_x86::code_asm::*;
//! use vmm_lite::payload::{self, Payload};
//!
//! let mut p = Payload::new().unwrap();
//! p.print("hello\n").unwrap();        // bytes out of COM1
//! p.done(0).unwrap();                 // result code to the done port 0xf4; ends the VM
//! let run = p.run(|_config| {}).unwrap(); // add devices to the VmConfig in the closure
//! assert_eq!(run.code(), Some(0));
//! assert_eq!(run.console, "hello\n");
//! ```
//!
//! The guest starts exactly like Linux does under vmm-lite (an ELF without a PVH note →
//! the 64-bit boot protocol): long mode, CPL0, flat segments, the first 1 GiB
//! identity-mapped with 2 MiB pages, RSI = boot_params at 0x7000, RSP = 0x8ff0, code at
//! [`LOAD_ADDR`]. `p.asm` is the `CodeAssembler` (64-bit) for anything else: virtio-mmio
//! windows are at `0xd000_0000 + n * 0x1000` (outside the identity map: call
//! [`Payload::map_mmio_gap`] first), the command line at 0x20000 names them.
//!
//! Rules that keep a payload fast and correct on PVM (see the field guide): integer code
//! only, well under ~100k instructions (each supervisor instruction is emulated at ~1 µs);
//! no `int3`/`int n`, no `cmpxchg16b`; `hlt` never returns control to vmm-lite (the
//! in-kernel irqchip sleeps), so always end with [`Payload::done`]; the run has a watchdog
//! ([`DEFAULT_WATCHDOG`] unless the closure sets another).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iced_x86::IcedError;
use iced_x86::code_asm::{CodeAssembler, al, cr3, dword_ptr, dx, eax, qword_ptr, rax};

use crate::config::{Console, VmConfig};
use crate::devices::bus::ExitReason;
use crate::devices::legacy::DONE_PORT;
use crate::error::Error;

/// Where payload code is loaded and starts (the kernel's usual 1 MiB).
pub const LOAD_ADDR: u64 = crate::boot::layout::HIMEM_START;
/// The watchdog of a payload run unless the test sets another.
pub const DEFAULT_WATCHDOG: Duration = Duration::from_secs(10);
/// COM1's data port.
pub const SERIAL_PORT: u16 = 0x3f8;
/// The page directory [`Payload::map_mmio_gap`] builds (free low memory).
const GAP_PD: u64 = 0xc000;

/// A payload being written.
pub struct Payload {
    /// The 64-bit assembler; code starts at [`LOAD_ADDR`].
    pub asm: CodeAssembler,
}

impl Payload {
    /// An empty 64-bit payload.
    pub fn new() -> Result<Self, IcedError> {
        Ok(Self {
            asm: CodeAssembler::new(64)?,
        })
    }

    /// Print `text` on COM1, one `out` per byte.
    pub fn print(&mut self, text: &str) -> Result<(), IcedError> {
        self.asm.mov(dx, u32::from(SERIAL_PORT))?;
        for byte in text.bytes() {
            self.asm.mov(al, u32::from(byte))?;
            self.asm.out(dx, al)?;
        }
        Ok(())
    }

    /// Write `code` to the done port (the VM ends with [`ExitReason::Done`]), then spin.
    pub fn done(&mut self, code: u32) -> Result<(), IcedError> {
        self.asm.mov(dx, DONE_PORT as u32)?;
        self.asm.mov(eax, code)?;
        self.asm.out(dx, eax)?;
        self.spin()
    }

    /// Report the code in `eax` on the done port, then spin.
    pub fn done_with_eax(&mut self) -> Result<(), IcedError> {
        self.asm.mov(dx, DONE_PORT as u32)?;
        self.asm.out(dx, eax)?;
        self.spin()
    }

    /// Loop forever (`jmp $`).
    pub fn spin(&mut self) -> Result<(), IcedError> {
        let mut here = self.asm.create_label();
        self.asm.set_label(&mut here)?;
        self.asm.jmp(here)
    }

    /// Identity-map the MMIO gap 3-4 GiB (virtio windows, IOAPIC, LAPIC) with 2 MiB
    /// uncached pages, using a page directory at 0xc000.
    pub fn map_mmio_gap(&mut self) -> Result<(), IcedError> {
        const PDPT: u64 = crate::boot::layout::PDPTE_START;
        // PDPT[3] → our page directory; its 512 entries map 0xc000_0000 + i * 2 MiB.
        self.asm.mov(rax, GAP_PD | 0x3)?;
        self.asm.mov(qword_ptr(PDPT + 3 * 8), rax)?;
        for i in 0..512u64 {
            let entry = (0xc000_0000 + (i << 21)) | 0x83 | 0x10; // present, RW, PS, PCD
            self.asm.mov(rax, entry)?;
            self.asm.mov(qword_ptr(GAP_PD + i * 8), rax)?;
        }
        self.asm.mov(rax, cr3)?;
        self.asm.mov(cr3, rax)
    }

    /// Store the 32-bit `value` at the guest-physical `addr` (mapped).
    pub fn store32(&mut self, addr: u64, value: u32) -> Result<(), IcedError> {
        self.asm.mov(eax, value)?;
        self.asm.mov(dword_ptr(addr), eax)
    }

    /// The assembled code, for [`LOAD_ADDR`].
    pub fn assemble(&mut self) -> Result<Vec<u8>, IcedError> {
        self.asm.assemble(LOAD_ADDR)
    }

    /// Assemble, wrap in an ELF and boot it with a config the closure may adjust.
    pub fn run(mut self, configure: impl FnOnce(&mut VmConfig)) -> Result<PayloadRun, IcedError> {
        let code = self.assemble()?;
        Ok(run_elf(&elf64(&code), configure))
    }
}

/// Fails the test (never skips it) when this machine has no read-write `/dev/kvm`, naming
/// what is missing: every payload runs under KVM.
pub fn require_kvm() {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!("these tests need read-write /dev/kvm: {e}");
    }
}

/// An ELF64 executable whose one segment holds `code` at [`LOAD_ADDR`], entry there; no PVH
/// note, so vmm-lite uses the 64-bit boot protocol.
pub fn elf64(code: &[u8]) -> Vec<u8> {
    elf(code, LOAD_ADDR, None)
}

/// An ELF64 with a PVH note whose 32-bit entry is `LOAD_ADDR`: `code` is 32-bit protected
/// mode code, started with EBX = the `hvm_start_info` address.
pub fn elf_pvh(code32: &[u8]) -> Vec<u8> {
    elf(code32, LOAD_ADDR, Some(LOAD_ADDR as u32))
}

fn elf(code: &[u8], addr: u64, pvh_entry: Option<u32>) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    const CODE_OFFSET: usize = 0x1000;
    // The note's descriptor is 8 bytes in an ELF64 (as Linux's `_ASM_PTR`), and the PT_NOTE
    // alignment is 4: QEMU aligns the name by the segment's p_align to find it.
    let note: Vec<u8> = match pvh_entry {
        Some(entry) => [
            &4u32.to_le_bytes()[..], // namesz ("Xen\0")
            &8u32.to_le_bytes(),     // descsz
            &18u32.to_le_bytes(),    // XEN_ELFNOTE_PHYS32_ENTRY
            b"Xen\0",
            &u64::from(entry).to_le_bytes(),
        ]
        .concat(),
        None => Vec::new(),
    };
    let phnum: u16 = if note.is_empty() { 1 } else { 2 };
    let note_offset = EHDR + PHDR * usize::from(phnum);
    let mut out = Vec::with_capacity(CODE_OFFSET + code.len());
    out.extend([0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend([0u8; 8]);
    out.extend(2u16.to_le_bytes()); // ET_EXEC
    out.extend(62u16.to_le_bytes()); // EM_X86_64
    out.extend(1u32.to_le_bytes());
    out.extend(addr.to_le_bytes()); // e_entry
    out.extend((EHDR as u64).to_le_bytes()); // e_phoff
    out.extend(0u64.to_le_bytes()); // e_shoff
    out.extend(0u32.to_le_bytes()); // e_flags
    out.extend((EHDR as u16).to_le_bytes());
    out.extend((PHDR as u16).to_le_bytes());
    out.extend(phnum.to_le_bytes());
    out.extend([0u8; 6]); // e_shentsize, e_shnum, e_shstrndx
    let phdr = |out: &mut Vec<u8>,
                kind: u32,
                flags: u32,
                offset: usize,
                vaddr: u64,
                len: usize,
                align: u64| {
        out.extend(kind.to_le_bytes());
        out.extend(flags.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        out.extend(vaddr.to_le_bytes());
        out.extend(vaddr.to_le_bytes());
        out.extend((len as u64).to_le_bytes());
        out.extend((len as u64).to_le_bytes());
        out.extend(align.to_le_bytes());
    };
    phdr(&mut out, 1, 7, CODE_OFFSET, addr, code.len(), 0x1000); // PT_LOAD, RWX
    if !note.is_empty() {
        phdr(&mut out, 4, 4, note_offset, 0, note.len(), 4); // PT_NOTE
    }
    out.extend(&note);
    out.resize(CODE_OFFSET, 0);
    out.extend(code);
    out
}

/// A writer whose bytes a test can read afterwards.
#[derive(Clone, Default)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// What was written so far, lossily as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A file removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// Write `bytes` to a fresh file in the temp directory.
    pub fn with_bytes(name: &str, bytes: &[u8]) -> std::io::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vmm-lite-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, bytes)?;
        Ok(Self(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a payload run produced.
#[derive(Debug)]
pub struct PayloadRun {
    /// How the VM ended.
    pub result: Result<ExitReason, Error>,
    /// Everything the guest printed on COM1.
    pub console: String,
    /// Wall time of build + run.
    pub elapsed: Duration,
}

impl PayloadRun {
    /// The done port's code, if the payload ended that way.
    pub fn code(&self) -> Option<u32> {
        match self.result {
            Ok(ExitReason::Done(code)) => Some(code),
            _ => None,
        }
    }
}

/// Boot `elf` (payload bytes) in a VM with the done port, 64 MiB, one vCPU, the console
/// captured, and [`DEFAULT_WATCHDOG`]; `configure` may change any of it.
pub fn run_elf(elf: &[u8], configure: impl FnOnce(&mut VmConfig)) -> PayloadRun {
    let start = Instant::now();
    let console = SharedBuffer::default();
    let file = match TempFile::with_bytes("payload.elf", elf) {
        Ok(file) => file,
        Err(e) => {
            return PayloadRun {
                result: Err(Error::Io {
                    what: "writing the payload".into(),
                    source: e,
                }),
                console: String::new(),
                elapsed: start.elapsed(),
            };
        }
    };
    let mut config = VmConfig::new(&file.0);
    config.mem_bytes = 64 << 20;
    config.console = Console::Writer(Box::new(console.clone()));
    config.debug_exit = true;
    config.watchdog = Some(DEFAULT_WATCHDOG);
    configure(&mut config);
    let result = crate::Vm::build(config).and_then(crate::Vm::run);
    PayloadRun {
        result,
        console: console.text(),
        elapsed: start.elapsed(),
    }
}

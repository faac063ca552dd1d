//! Whether an executable can run in the initrd: it must be an ELF executable for the
//! guest's machine with no `PT_INTERP` program header (a static or static-pie binary; the
//! initrd has no dynamic loader or libc). The headers are read by the `object` crate (ELF
//! reader only); see the README for why that crate and not our own parser.

/// What the initrd cares about in an ELF file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfInfo {
    /// Whether the file is ELFCLASS64.
    pub is_64: bool,
    /// `e_type`: 2 = ET_EXEC, 3 = ET_DYN (PIE or static-pie).
    pub e_type: u16,
    /// `e_machine`, e.g. 62 for x86_64.
    pub machine: u16,
    /// The `PT_INTERP` path, if any: a dynamically linked executable.
    pub interpreter: Option<String>,
}

use object::Endianness;
use object::elf::{ET_DYN, ET_EXEC, FileHeader32, FileHeader64, PT_INTERP};
use object::read::elf::{FileHeader, ProgramHeader};

/// A human name for an `e_machine` value.
pub fn machine_name(machine: u16) -> String {
    match machine {
        3 => "i386".into(),
        40 => "arm".into(),
        62 => "x86_64".into(),
        183 => "aarch64".into(),
        243 => "riscv".into(),
        other => format!("ELF machine {other}"),
    }
}

/// Parses the ELF header and program headers (with the `object` crate's ELF reader). The
/// error says why the bytes are not a usable ELF executable.
pub fn parse(bytes: &[u8]) -> Result<ElfInfo, String> {
    if bytes.len() < 16 || &bytes[..4] != b"\x7fELF" {
        return Err("no ELF magic number".into());
    }
    match bytes[4] {
        1 => inspect::<FileHeader32<Endianness>>(bytes),
        2 => inspect::<FileHeader64<Endianness>>(bytes),
        c => Err(format!("unknown ELF class {c}")),
    }
}

fn inspect<H: FileHeader<Endian = Endianness>>(bytes: &[u8]) -> Result<ElfInfo, String> {
    let header = H::parse(bytes).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let e_type = header.e_type(endian);
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(format!(
            "ELF type {e_type} is not an executable (a relocatable object or core file?)"
        ));
    }
    let program_headers = header
        .program_headers(endian, bytes)
        .map_err(|e| e.to_string())?;
    if program_headers.is_empty() {
        return Err("no program headers: not an executable".into());
    }
    let mut interpreter = None;
    for ph in program_headers {
        if let Some(path) = ph.interpreter(endian, bytes).map_err(|e| e.to_string())? {
            interpreter = Some(String::from_utf8_lossy(path).into_owned());
            break;
        }
    }
    Ok(ElfInfo {
        is_64: header.is_type_64(),
        e_type,
        machine: header.e_machine(endian),
        interpreter,
    })
}

/// The `DT_NEEDED` entries (the shared libraries it links against) of a 64-bit
/// little-endian ELF file; empty for a static one.
pub fn needed_libraries(bytes: &[u8]) -> Result<Vec<String>, String> {
    use object::read::elf::Dyn;
    let header = FileHeader64::<Endianness>::parse(bytes).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let sections = header.sections(endian, bytes).map_err(|e| e.to_string())?;
    let Some((entries, strings_index)) =
        sections.dynamic(endian, bytes).map_err(|e| e.to_string())?
    else {
        return Ok(Vec::new());
    };
    let strings = sections
        .strings(endian, bytes, strings_index)
        .map_err(|e| e.to_string())?;
    let mut needed = Vec::new();
    for entry in entries {
        if entry.tag32(endian) == Some(object::elf::DT_NEEDED) {
            let name = entry.string(endian, strings).map_err(|e| e.to_string())?;
            needed.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(needed)
}

/// Builds a small but well-formed 64-bit little-endian ELF executable image: one
/// `PT_LOAD` header and, when `interpreter` is given, a `PT_INTERP` header pointing at it.
/// For tests (here and in the CLI tests); it is never run.
#[doc(hidden)]
pub fn synthesize(machine: u16, interpreter: Option<&str>) -> Vec<u8> {
    let phnum: u16 = if interpreter.is_some() { 2 } else { 1 };
    let phoff: u64 = 64;
    let data_off = phoff + 56 * u64::from(phnum);
    let mut b = Vec::new();
    b.extend_from_slice(b"\x7fELF");
    b.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, LE, version 1, SysV ABI
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&ET_DYN.to_le_bytes());
    b.extend_from_slice(&machine.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // e_version
    b.extend_from_slice(&0x1000u64.to_le_bytes()); // e_entry
    b.extend_from_slice(&phoff.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    b.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    b.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b.extend_from_slice(&phnum.to_le_bytes());
    b.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    b.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let interp = interpreter.map(|s| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    });
    let mut phdr = |p_type: u32, flags: u32, off: u64, size: u64| {
        b.extend_from_slice(&p_type.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&off.to_le_bytes()); // p_offset
        b.extend_from_slice(&off.to_le_bytes()); // p_vaddr
        b.extend_from_slice(&off.to_le_bytes()); // p_paddr
        b.extend_from_slice(&size.to_le_bytes()); // p_filesz
        b.extend_from_slice(&size.to_le_bytes()); // p_memsz
        b.extend_from_slice(&8u64.to_le_bytes()); // p_align
    };
    if let Some(i) = &interp {
        phdr(PT_INTERP, 4, data_off, i.len() as u64);
    }
    phdr(
        1,
        5,
        0,
        data_off + interp.as_ref().map_or(0, |i| i.len() as u64),
    ); // PT_LOAD
    if let Some(i) = interp {
        b.extend_from_slice(&i);
    }
    b.extend_from_slice(b"\xf4"); // hlt: a body, so the image is not only headers
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_executable() {
        let info = parse(&synthesize(62, None)).unwrap();
        assert_eq!(
            info,
            ElfInfo {
                is_64: true,
                e_type: ET_DYN,
                machine: 62,
                interpreter: None
            }
        );
    }

    #[test]
    fn dynamic_executable_has_interpreter() {
        let info = parse(&synthesize(62, Some("/lib64/ld-linux-x86-64.so.2"))).unwrap();
        assert_eq!(
            info.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
    }

    #[test]
    fn rejects_non_elf_and_truncated() {
        assert!(
            parse(b"#!/bin/sh\necho hi\n")
                .unwrap_err()
                .contains("magic")
        );
        assert!(parse(b"").is_err());
        let elf = synthesize(62, Some("/lib/ld.so"));
        for cut in [16, 40, 64, 100, 130] {
            assert!(parse(&elf[..cut]).is_err(), "cut at {cut}");
        }
        let mut obj = synthesize(62, None);
        obj[16] = 1; // ET_REL
        assert!(parse(&obj).unwrap_err().contains("not an executable"));
    }

    #[test]
    fn parses_32_bit_big_endian_header() {
        // A 32-bit big-endian ELF with one PT_INTERP program header.
        let mut b = vec![0u8; 52 + 32 + 8];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 1;
        b[5] = 2;
        b[6] = 1; // EI_VERSION: EV_CURRENT, as in every real ELF file
        b[16..18].copy_from_slice(&2u16.to_be_bytes());
        b[18..20].copy_from_slice(&8u16.to_be_bytes()); // MIPS
        b[28..32].copy_from_slice(&52u32.to_be_bytes());
        b[42..44].copy_from_slice(&32u16.to_be_bytes());
        b[44..46].copy_from_slice(&1u16.to_be_bytes());
        b[52..56].copy_from_slice(&3u32.to_be_bytes());
        b[56..60].copy_from_slice(&84u32.to_be_bytes());
        b[68..72].copy_from_slice(&4u32.to_be_bytes()); // "/ld" and its NUL
        b[84..87].copy_from_slice(b"/ld");
        let info = parse(&b).unwrap();
        assert!(!info.is_64);
        assert_eq!(info.machine, 8);
        assert_eq!(info.interpreter.as_deref(), Some("/ld"));
    }

    #[test]
    fn reads_this_test_binary() {
        // The test binary itself: a real ELF for the host machine.
        let exe = std::env::current_exe().unwrap();
        let info = parse(&std::fs::read(exe).unwrap()).unwrap();
        assert!(info.is_64);
    }
}

//! Guest architectures hull-image can build for.

use std::fmt;

/// A guest architecture. Only x86_64 for now; the methods are the places another
/// architecture (arm64: `Image`, `ARCH=arm64`) would plug in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Arch {
    /// 64-bit x86: kernel `ARCH=x86_64`, boot image `bzImage`, ELF machine `EM_X86_64`.
    #[default]
    #[value(name = "x86_64")]
    X86_64,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: &'static [Arch] = &[Arch::X86_64];

    /// The name used on the command line, in the config folder and in the cache key.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
        }
    }

    /// Parses [`Arch::name`].
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// The `ARCH=` value for the kernel's make.
    pub fn kernel_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
        }
    }

    /// The make target that builds the boot image (and `vmlinux`).
    pub fn image_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "bzImage",
        }
    }

    /// Where the boot image lands, relative to the top of the kernel tree.
    pub fn image_path(self) -> &'static str {
        match self {
            Arch::X86_64 => "arch/x86/boot/bzImage",
        }
    }

    /// The ELF `e_machine` value of binaries for this architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62, // EM_X86_64
        }
    }

    /// The Rust target triple the guest binaries are built for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

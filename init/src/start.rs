//! The runtime of the static guest build, which links no libc and no std:
//! the ELF entry point `_start`, the memory allocator, the panic handler and
//! the few memory routines the compiler calls (`memcpy`, `memset`, ...).
//!
//! The binary is a plain static executable (`build.rs` links it `--no-pie`),
//! so nothing needs relocating: `_start` only aligns the stack and hands the
//! kernel's initial stack (argc, argv, envp, auxv) to [`start_rust`].

use core::ffi::c_char;

core::arch::global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    // The outermost frame: no return address, no caller frame.
    "xor ebp, ebp",
    // rsp points at argc on entry; pass it as the first argument.
    "mov rdi, rsp",
    // The System V ABI wants rsp 16-byte aligned before a call.
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym start_rust,
);

/// Reads argc, argv and envp from the initial stack, gives rustix the
/// auxiliary vector (after envp), runs init and exits with its status.
///
/// # Safety
/// Called once, from `_start`, with `sp` pointing at the kernel's initial
/// stack: argc, then argc argument pointers and a null, then the environment
/// pointers and a null, then the auxiliary vector.
unsafe extern "C" fn start_rust(sp: *const usize) -> ! {
    // SAFETY: `sp` points at argc (the function's contract).
    let argc = unsafe { *sp };
    // SAFETY: argv starts right after argc on the initial stack.
    let argv = unsafe { sp.add(1) }.cast::<*const c_char>();
    // SAFETY: envp starts after argv's argc entries and its null terminator.
    let envp = unsafe { argv.add(argc + 1) }.cast_mut().cast::<*mut u8>();
    // SAFETY: `envp` is the process's initial environment, followed by the
    // auxiliary vector, as rustix's `use-explicitly-provided-auxv` requires;
    // this runs before any other rustix call.
    unsafe { rustix::param::init(envp) };
    // SAFETY: the initial stack holds `argc` NUL-terminated argument strings
    // that stay in place for the life of the process.
    let args = unsafe { crate::args_from_raw(argc, argv) };
    let code = crate::real_main(&args);
    crate::sys::exit_group(code)
}

/// The heap: a fixed arena in `.bss` (which costs no file size, and no memory
/// until a page is touched). Init allocates little: the command line, the
/// mount table twice, log lines. 4 MiB hold a mount table of tens of
/// thousands of entries; running out aborts like any allocation failure.
const HEAP_SIZE: usize = 4 << 20;

#[global_allocator]
static ALLOCATOR: talc::TalcLock<spinning_top::RawSpinlock, talc::source::Claim> =
    talc::TalcLock::new({
        static mut HEAP: [u8; HEAP_SIZE] = [0; HEAP_SIZE];
        // SAFETY: `HEAP` is used by nothing but this allocator: the reference
        // to it is taken here only, and handed over whole.
        unsafe { talc::source::Claim::array(&raw mut HEAP) }
    });

/// A panic is a bug in init. The message goes to the console; then init
/// exits, which makes the kernel panic (as with std's abort before).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::console::eprint(&alloc::format!("init: panic: {info}\n"));
    crate::sys::exit_group(134)
}

// The compiler turns copies, fills and comparisons into calls of these C
// functions, which libc provides elsewhere. `rep movsb`/`rep stosb` are fast
// on every x86-64 CPU with ERMSB and correct on all.

/// # Safety
/// `dest` and `src` valid for `n` bytes, not overlapping.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees both ranges are valid for `n` bytes;
    // `rep movsb` copies exactly `n` bytes forward (direction flag is clear
    // per the ABI).
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// `dest` and `src` valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // dest is below src or past its end: a forward copy never reads a
        // byte it has already overwritten.
        // SAFETY: as for `memcpy`; forward copying is safe for this overlap.
        return unsafe { memcpy(dest, src, n) };
    }
    // dest overlaps src from above: copy backwards, last byte first.
    // SAFETY: the ranges are valid for `n` bytes (caller); with the direction
    // flag set `rep movsb` walks down from the last byte; `cld` restores the
    // ABI's state.
    unsafe {
        core::arch::asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dest.add(n).wrapping_sub(1) => _,
            inout("rsi") src.add(n).wrapping_sub(1) => _,
            options(nostack)
        );
    }
    dest
}

/// # Safety
/// `dest` valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller guarantees `dest` is valid for `n` bytes; `rep stosb`
    // stores the low byte of eax `n` times, forward.
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            in("eax") c,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// `a` and `b` valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: `i < n` and both ranges are valid for `n` bytes (caller).
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// `a` and `b` valid for `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// `s` points at a NUL-terminated string.
#[unsafe(no_mangle)]
unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated (caller), so every byte up to and
    // including the NUL is readable. A volatile read keeps the compiler from
    // turning this loop into a call of `strlen` itself.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}

// The prebuilt `core` and `alloc` were compiled for unwinding and still name
// the unwinder's entry points. With `panic = "abort"` nothing unwinds: the
// panic handler above never returns, so these are never called.

/// Never called (nothing unwinds); exits if it ever were.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {
    crate::sys::exit_group(134)
}

/// Never called (nothing unwinds); exits if it ever were.
#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    crate::sys::exit_group(134)
}

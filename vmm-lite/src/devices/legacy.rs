//! Small port devices: the debug "done" port test payloads end with.
//!
//! With the in-kernel irqchip a guest's `hlt` blocks inside KVM and never exits, so a payload
//! ends by writing a 32-bit result code to [`DONE_PORT`]; vmm-lite stops and reports
//! [`ExitReason::Done`]. The port exists only when the VM is built with
//! `VmConfig::debug_exit` (the payload tests and the bench), never for Linux guests.

use super::bus::{BusDevice, ExitReason, VmExit};

/// The port (QEMU's isa-debug-exit lives at 0xf4 too).
pub const DONE_PORT: u64 = 0xf4;
/// One 32-bit register.
pub const DONE_LEN: u64 = 4;

/// The "done" port.
pub struct DebugExit {
    exit: VmExit,
}

impl DebugExit {
    /// A port that ends the VM through `exit`.
    pub fn new(exit: VmExit) -> Self {
        Self { exit }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        let mut code = [0u8; 4];
        let n = data.len().min(4);
        code[..n].copy_from_slice(&data[..n]);
        self.exit
            .request(ExitReason::Done(u32::from_le_bytes(code)));
    }
}

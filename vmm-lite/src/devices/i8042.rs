//! The i8042 keyboard controller, reduced to what ends a VM: the guest's CPU-reset command
//! (0xFE written to port 0x64). Linux reboots through it with `reboot=k`, which vmm-lite puts
//! on every command line, so a guest's `reboot` or `poweroff` (hull-init's) ends the VMM
//! with status 0.

use vm_superio::{I8042Device, Trigger};

use super::bus::{BusDevice, ExitReason, VmExit};

/// The controller's first port (data); the command/status port is `base + 4`.
pub const I8042_BASE: u64 = 0x60;
/// Ports 0x60-0x64.
pub const I8042_LEN: u64 = 5;

/// The reset line: asks the VMM to stop.
pub struct ResetTrigger(VmExit);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.request(ExitReason::Reset);
        Ok(())
    }
}

/// The i8042 as a bus device.
pub struct I8042 {
    inner: I8042Device<ResetTrigger>,
}

impl I8042 {
    /// A controller whose reset ends the VM through `exit`.
    pub fn new(exit: VmExit) -> Self {
        Self {
            inner: I8042Device::new(ResetTrigger(exit)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(offset)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.inner.read(offset);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let (Some(&value), Ok(offset)) = (data.first(), u8::try_from(offset)) {
            let Ok(()) = self.inner.write(offset, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_requests_a_clean_exit() {
        let exit = VmExit::new().unwrap();
        let mut dev = I8042::new(exit.clone());
        dev.write(I8042_BASE, 4, &[0xAA]);
        assert_eq!(exit.reason(), None);
        dev.write(I8042_BASE, 4, &[0xFE]);
        assert_eq!(exit.reason(), Some(ExitReason::Reset));
    }
}

//! The 8250 UART on COM1 (ports 0x3f8-0x3ff, IRQ 4), from `vm-superio`.
//!
//! Output goes to a file or stdout. The interrupt is an eventfd the builder registers as a
//! KVM irqfd on GSI 4, so raising it never leaves the vCPU thread's write path. Guest input
//! is not wired: hull talks to its guest over vsock, the console is for logs.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::bus::{BusDevice, ExitReason, VmExit};

/// COM1's first port.
pub const COM1_BASE: u64 = 0x3f8;
/// COM1's port count.
pub const COM1_LEN: u64 = 8;
/// COM1's IRQ line (ISA IRQ 4 → GSI 4).
pub const COM1_GSI: u32 = 4;

/// An eventfd as `vm-superio`'s interrupt trigger.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// How often the guest wrote to the UART's registers (data and control alike): evidence
/// that a guest configured the port even when it printed nothing yet (Linux's decompressor
/// programs COM1 for `earlyprintk=serial` and, built without KASLR or verbose boot, prints
/// nothing).
#[derive(Clone, Default, Debug)]
pub struct SerialActivity(Arc<AtomicU64>);

impl SerialActivity {
    /// Register writes so far.
    pub fn register_writes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The serial port as a bus device.
pub struct SerialDevice {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
    exit: VmExit,
    activity: SerialActivity,
}

impl SerialDevice {
    /// A UART raising `irq` and writing the guest's bytes to `out`. A failed write to `out`
    /// ends the VM through `exit`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>, exit: VmExit) -> Self {
        Self {
            uart: Serial::new(IrqTrigger(irq), out),
            exit,
            activity: SerialActivity::default(),
        }
    }

    /// A handle on the count of the guest's register writes.
    pub fn activity(&self) -> SerialActivity {
        self.activity.clone()
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset).map_or(0xff, |offset| self.uart.read(offset));
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (Ok(offset), Some(&value)) = (u8::try_from(offset), data.first()) else {
            return;
        };
        self.activity.0.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = self.uart.write(offset, value) {
            self.exit.request(ExitReason::DeviceError(format!(
                "serial console: cannot write the guest's output: {err:?}"
            )));
            return;
        }
        // Transmit holding register: flush so a reader of the file sees bytes at once.
        if offset == 0
            && let Err(err) = self.uart.writer_mut().flush()
        {
            self.exit.request(ExitReason::DeviceError(format!(
                "serial console: cannot flush the guest's output: {err}"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmitted_bytes_reach_the_output_and_raise_the_irq_when_enabled() {
        let sink = Sink::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let exit = VmExit::new().unwrap();
        let mut dev = SerialDevice::new(irq.try_clone().unwrap(), Box::new(sink.clone()), exit);
        let activity = dev.activity();
        // IER: enable the "transmit holding register empty" interrupt.
        dev.write(COM1_BASE, 1, &[0x02]);
        for b in b"hi" {
            dev.write(COM1_BASE, 0, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi");
        assert_eq!(activity.register_writes(), 3);
        assert!(irq.read().unwrap() >= 1);
        // LSR says the transmitter is empty.
        let mut lsr = [0u8];
        dev.read(COM1_BASE, 5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0);
    }
}

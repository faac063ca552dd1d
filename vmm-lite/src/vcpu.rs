//! vCPU threads: `KVM_RUN` in a loop, exits dispatched to the PIO and MMIO buses.
//!
//! Stopping: with the in-kernel irqchip a halted vCPU sleeps inside KVM and an AP waiting
//! for its SIPI never returns, so the VMM stops a vCPU by setting its `stop` flag and
//! sending its thread [`kick_signal`] until the thread has ended. The handler does nothing;
//! the signal makes `KVM_RUN` return `EINTR`, and the loop sees the flag. Resending covers a
//! signal that lands just before the thread enters `KVM_RUN`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use crate::devices::bus::{Bus, ExitReason, VmExit};
use crate::error::{Error, Result};

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

/// Install the (empty) handler for [`kick_signal`], once per process.
pub fn install_kick_handler() -> Result<()> {
    static INSTALLED: std::sync::OnceLock<std::result::Result<(), String>> =
        std::sync::OnceLock::new();
    extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
    INSTALLED
        .get_or_init(|| register_signal_handler(kick_signal(), noop).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| Error::Vcpu(format!("installing the vCPU kick signal handler: {e}")))
}

/// A vCPU ready to run on its own thread.
pub struct Vcpu {
    id: u8,
    fd: VcpuFd,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: VmExit,
}

/// A running vCPU thread.
pub struct VcpuThread {
    id: u8,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Vcpu {
    /// Vcpu `id` (its APIC id) on `fd`, dispatching port I/O to `pio`, MMIO to `mmio`, and
    /// reporting how the guest ended through `exit`.
    pub fn new(id: u8, fd: VcpuFd, pio: Arc<Bus>, mmio: Arc<Bus>, exit: VmExit) -> Self {
        Self {
            id,
            fd,
            pio,
            mmio,
            exit,
        }
    }

    /// Start the vCPU on a thread named `vcpu<id>`.
    pub fn start(self) -> Result<VcpuThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let id = self.id;
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || self.run_loop(&flag))
            .map_err(Error::io(format!("starting the thread of vCPU {id}")))?;
        Ok(VcpuThread {
            id,
            stop,
            thread: Some(thread),
        })
    }

    fn fault(&self, what: String) {
        self.exit
            .request(ExitReason::VcpuFault(format!("vCPU {}: {what}", self.id)));
    }

    fn run_loop(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            let exit = match self.fd.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => {
                    self.fault(format!("KVM_RUN failed: {e}"));
                    return;
                }
            };
            match exit {
                VcpuExit::IoIn(port, data) => {
                    self.pio.read(u64::from(port), data);
                }
                VcpuExit::IoOut(port, data) => {
                    self.pio.write(u64::from(port), data);
                }
                VcpuExit::MmioRead(addr, data) => {
                    self.mmio.read(addr, data);
                }
                VcpuExit::MmioWrite(addr, data) => {
                    self.mmio.write(addr, data);
                }
                // Only without an in-kernel irqchip; the next KVM_RUN resumes the guest.
                VcpuExit::Hlt | VcpuExit::Intr => {}
                VcpuExit::Shutdown => {
                    self.fault(
                        "triple fault (KVM_EXIT_SHUTDOWN): the guest hit an exception it could not handle"
                            .into(),
                    );
                    return;
                }
                VcpuExit::InternalError => {
                    let detail = self.internal_error_detail();
                    self.fault(format!(
                        "KVM internal error (KVM_EXIT_INTERNAL_ERROR{detail}): KVM could not emulate or deliver what the guest did"
                    ));
                    return;
                }
                VcpuExit::FailEntry(reason, cpu) => {
                    self.fault(format!(
                        "VM entry failed (KVM_EXIT_FAIL_ENTRY, hardware reason {reason:#x} on host CPU {cpu})"
                    ));
                    return;
                }
                VcpuExit::SystemEvent(kind, _) => {
                    const SHUTDOWN: u32 = kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN;
                    const RESET: u32 = kvm_bindings::KVM_SYSTEM_EVENT_RESET;
                    if kind == SHUTDOWN || kind == RESET {
                        self.exit.request(ExitReason::Reset);
                    } else {
                        self.fault(format!("unexpected system event {kind}"));
                    }
                    return;
                }
                other => {
                    let what = format!("unexpected exit {other:?}");
                    self.fault(what);
                    return;
                }
            }
        }
    }

    fn internal_error_detail(&mut self) -> String {
        let run = self.fd.get_kvm_run();
        // SAFETY: KVM filled the `internal` member of the union for KVM_EXIT_INTERNAL_ERROR,
        // the exit this is called for.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let count = (internal.ndata as usize).min(internal.data.len());
        let data: Vec<String> = internal.data[..count]
            .iter()
            .map(|d| format!("{d:#x}"))
            .collect();
        format!(
            ", suberror {}, data [{}]",
            internal.suberror,
            data.join(", ")
        )
    }
}

impl VcpuThread {
    /// Stop the thread and wait for it: flag, then kick until it has ended.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() {
                if let Err(e) = thread.kill(kick_signal()) {
                    tracing::warn!(vcpu = self.id, "kicking the vCPU thread: {e}");
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            if thread.join().is_err() {
                tracing::error!(vcpu = self.id, "the vCPU thread panicked");
            }
        }
    }
}

//! The one place a VM is assembled: [`Vm::build`] turns a [`VmConfig`] into a KVM VM with
//! memory, irqchip, PIT, a loaded kernel, devices on the buses and vCPUs in their boot
//! state; [`Vm::run`] starts the vCPU threads and the device event loop and returns why the
//! guest ended.

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_bindings::{KVM_MAX_CPUID_ENTRIES, KVM_MEM_READONLY, KVM_PIT_SPEAKER_DUMMY};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region};
use kvm_ioctls::{IoEventAddress, Kvm, VcpuFd, VmFd};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::boot::{cpu, layout, loader, mptable};
use crate::config::{Console, VmConfig};
use crate::devices::bus::{Bus, ExitReason, MmioDeviceSlot, SharedDevice, VmExit};
use crate::devices::i8042::{I8042, I8042_BASE, I8042_LEN};
use crate::devices::legacy::{DONE_LEN, DONE_PORT, DebugExit};
use crate::devices::serial::{COM1_BASE, COM1_GSI, COM1_LEN, SerialActivity, SerialDevice};
use crate::error::{Error, Result};
use crate::vcpu::{self, Vcpu};

/// Words vmm-lite adds to every command line: reboot through the i8042, so the guest's end
/// reaches the VMM, and `hull.shutdown=reboot`, so hull-init ends the machine with that
/// reset (without ACPI a power-off would halt the guest forever).
pub const CMDLINE_EXTRA: &[&str] = &[
    "reboot=k",
    "hull.shutdown=reboot",
    "i8042.noaux",
    "i8042.nomux",
    "i8042.nopnp",
];

/// The QueueNotify register of a virtio-mmio window.
const VIRTIO_MMIO_QUEUE_NOTIFY: u64 = 0x50;

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// A built VM, ready to [`run`](Vm::run).
pub struct Vm {
    // Field order is drop order: vCPUs and devices before the VM fd and the memory.
    vcpus: Vec<Vcpu>,
    subscribers: Vec<Subscriber>,
    exit: VmExit,
    serial_activity: SerialActivity,
    watchdog: Option<Duration>,
    cmdline: String,
    _vm: Arc<VmFd>,
    _device_slots: Vec<Box<dyn MmioDeviceSlot>>,
    _mem: GuestMemoryMmap,
    _kvm: Kvm,
}

impl Vm {
    /// Assemble the VM described by `config`.
    pub fn build(mut config: VmConfig) -> Result<Self> {
        validate(&config)?;
        let kvm = Kvm::new().map_err(Error::KvmUnavailable)?;
        let api = kvm.get_api_version();
        if api != 12 {
            return Err(Error::Config(format!(
                "/dev/kvm speaks KVM API {api}, vmm-lite needs 12"
            )));
        }
        let vm = Arc::new(kvm.create_vm().map_err(Error::kvm("KVM_CREATE_VM"))?);
        vm.set_tss_address(0xfffb_d000)
            .map_err(Error::kvm("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip()
            .map_err(Error::kvm("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(Error::kvm("KVM_CREATE_PIT2"))?;

        let mem = create_memory(config.mem_bytes)?;
        let mut mem_slot = 0;
        for region in mem.iter() {
            register_memory(
                &vm,
                &mut mem_slot,
                region.start_addr().0,
                region.as_ptr() as u64,
                region.len(),
                false,
            )?;
        }

        let exit = VmExit::new().map_err(Error::io("creating the exit eventfd"))?;
        let mut pio = Bus::new();
        let mut mmio = Bus::new();

        // Legacy devices.
        let serial_irq = EventFd::new(libc::EFD_NONBLOCK).map_err(Error::io("serial eventfd"))?;
        vm.register_irqfd(&serial_irq, COM1_GSI)
            .map_err(Error::kvm("KVM_IRQFD for the serial port"))?;
        let console = open_console(std::mem::replace(&mut config.console, Console::Discard))?;
        let serial = SerialDevice::new(serial_irq, console, exit.clone());
        let serial_activity = serial.activity();
        insert(&mut pio, Arc::new(Mutex::new(serial)), COM1_BASE, COM1_LEN)?;
        insert(
            &mut pio,
            Arc::new(Mutex::new(I8042::new(exit.clone()))),
            I8042_BASE,
            I8042_LEN,
        )?;
        if config.debug_exit {
            insert(
                &mut pio,
                Arc::new(Mutex::new(DebugExit::new(exit.clone()))),
                DONE_PORT,
                DONE_LEN,
            )?;
        }

        // virtio-mmio devices.
        let mut extra: Vec<String> = CMDLINE_EXTRA.iter().map(|s| s.to_string()).collect();
        let slots = crate::devices::create_virtio_devices(&config, &mem, &exit)?;
        let mut subscribers = Vec::new();
        for (index, slot) in slots.iter().enumerate() {
            let base = layout::VIRTIO_MMIO_START + index as u64 * layout::VIRTIO_MMIO_SIZE;
            let gsi = layout::VIRTIO_FIRST_GSI + index as u32;
            if gsi > layout::MAX_GSI {
                return Err(Error::Config(format!(
                    "too many virtio devices: at most {}",
                    layout::MAX_GSI - layout::VIRTIO_FIRST_GSI + 1
                )));
            }
            insert(&mut mmio, slot.transport(), base, layout::VIRTIO_MMIO_SIZE)?;
            for (queue, event) in slot.queue_events().into_iter().enumerate() {
                vm.register_ioevent(
                    event,
                    &IoEventAddress::Mmio(base + VIRTIO_MMIO_QUEUE_NOTIFY),
                    queue as u32,
                )
                .map_err(Error::kvm("KVM_IOEVENTFD for a virtio queue"))?;
            }
            vm.register_irqfd(slot.interrupt_event(), gsi)
                .map_err(Error::kvm("KVM_IRQFD for a virtio device"))?;
            if let Some(memory) = slot.device_memory() {
                register_memory(
                    &vm,
                    &mut mem_slot,
                    memory.guest_addr,
                    memory.host_addr,
                    memory.len,
                    memory.read_only,
                )?;
            }
            if let Some(subscriber) = slot.subscriber() {
                subscribers.push(subscriber);
            }
            tracing::debug!(device = slot.name(), base, gsi, "virtio-mmio device");
            extra.push(format!("virtio_mmio.device=4K@{base:#x}:{gsi}"));
            extra.extend(slot.cmdline_extra());
        }

        // Kernel, boot tables, MP table.
        let cmdline = loader::build_cmdline(&config.cmdline, &extra)?;
        let entry = loader::load(
            &mem,
            config.mem_bytes,
            &config.kernel,
            config.initrd.as_deref(),
            &cmdline,
        )?;
        cpu::write_boot_tables(&mem)?;
        mptable::write(&mem, config.vcpus)?;

        // vCPUs.
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::kvm("KVM_GET_SUPPORTED_CPUID"))?;
        let pio = Arc::new(pio);
        let mmio = Arc::new(mmio);
        let mut vcpus = Vec::new();
        for id in 0..config.vcpus {
            let fd: VcpuFd = vm
                .create_vcpu(u64::from(id))
                .map_err(Error::kvm("KVM_CREATE_VCPU"))?;
            cpu::setup_common(&fd, &cpu::cpuid_for(&supported, id, config.vcpus))?;
            if id == 0 {
                cpu::setup_boot_registers(&fd, &mem, entry)?;
            }
            vcpus.push(Vcpu::new(id, fd, pio.clone(), mmio.clone(), exit.clone()));
        }

        Ok(Self {
            vcpus,
            subscribers,
            exit,
            serial_activity,
            watchdog: config.watchdog,
            cmdline: cmdline
                .as_cstring()
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default(),
            _vm: vm,
            _device_slots: slots,
            _mem: mem,
            _kvm: kvm,
        })
    }

    /// A handle that stops the VM from another thread: `request(ExitReason::Stopped)`.
    pub fn exit_handle(&self) -> VmExit {
        self.exit.clone()
    }

    /// The count of the guest's writes to COM1's registers.
    pub fn serial_activity(&self) -> SerialActivity {
        self.serial_activity.clone()
    }

    /// The kernel command line as the guest gets it.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// Run until the guest ends. `Ok` for a clean end (reset/power-off, or the test port's
    /// code); `Err` for a vCPU fault, a device error or the watchdog.
    pub fn run(mut self) -> Result<ExitReason> {
        vcpu::install_kick_handler()?;
        let loop_stop = Arc::new(AtomicBool::new(false));
        let event_loop = self.start_event_loop(loop_stop.clone())?;
        let mut threads = Vec::new();
        let mut started = Ok(());
        for vcpu in self.vcpus.drain(..) {
            match vcpu.start() {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    started = Err(e);
                    break;
                }
            }
        }
        let reason = match started {
            Ok(()) => match self.watchdog {
                Some(limit) => self.exit.wait(limit),
                None => loop {
                    if let Some(reason) = self.exit.wait(Duration::from_secs(3600)) {
                        break Some(reason);
                    }
                },
            },
            Err(_) => None,
        };
        for thread in threads {
            thread.stop();
        }
        loop_stop.store(true, Ordering::Release);
        if let Some(handle) = event_loop
            && handle.join().is_err()
        {
            tracing::error!("the device event loop panicked");
        }
        started?;
        match reason {
            None => Err(Error::Watchdog(self.watchdog.unwrap_or_default())),
            Some(ExitReason::DeviceError(message)) => Err(Error::Device(message)),
            Some(ExitReason::VcpuFault(message)) => Err(Error::Vcpu(message)),
            Some(reason) => Ok(reason),
        }
    }

    fn start_event_loop(&mut self, stop: Arc<AtomicBool>) -> Result<Option<JoinHandle<()>>> {
        if self.subscribers.is_empty() {
            return Ok(None);
        }
        let mut manager = EventManager::<Subscriber>::new()
            .map_err(|e| Error::Device(format!("creating the event loop: {e:?}")))?;
        for subscriber in self.subscribers.drain(..) {
            manager.add_subscriber(subscriber);
        }
        let exit = self.exit.clone();
        let handle = std::thread::Builder::new()
            .name("devices".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    if let Err(e) = manager.run_with_timeout(50) {
                        exit.request(ExitReason::DeviceError(format!("event loop: {e:?}")));
                        return;
                    }
                }
            })
            .map_err(Error::io("starting the device event loop"))?;
        Ok(Some(handle))
    }
}

fn validate(config: &VmConfig) -> Result<()> {
    const MIB: u64 = 1 << 20;
    if config.mem_bytes < 16 * MIB || config.mem_bytes % (2 * MIB) != 0 {
        return Err(Error::Config(format!(
            "memory must be a multiple of 2 MiB and at least 16 MiB, not {} bytes",
            config.mem_bytes
        )));
    }
    let max = mptable::max_cpus();
    if config.vcpus == 0 || config.vcpus > max {
        return Err(Error::Config(format!(
            "vCPUs must be between 1 and {max}, not {}",
            config.vcpus
        )));
    }
    check_file("kernel", &config.kernel)?;
    if let Some(initrd) = &config.initrd {
        check_file("initrd", initrd)?;
    }
    Ok(())
}

/// A readable regular file, or an error naming it.
pub fn check_file(what: &'static str, path: &std::path::Path) -> Result<u64> {
    let bad = |reason: String| Error::BadFile {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    File::open(path).map_err(|e| bad(e.to_string()))?;
    Ok(meta.len())
}

fn insert(bus: &mut Bus, device: SharedDevice, base: u64, len: u64) -> Result<()> {
    bus.insert(device, base, len)
        .map_err(|e| Error::Device(e.to_string()))
}

/// Guest RAM in one memfd, mapped shared, so vhost-user backends can map the same pages.
fn create_memory(mem_bytes: u64) -> Result<GuestMemoryMmap> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c"vmm-lite-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io("memfd_create for guest RAM")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(mem_bytes)
        .map_err(Error::io("sizing the guest RAM memfd"))?;
    let file = Arc::new(file);
    let mut offset = 0;
    let ranges: Vec<_> = layout::ram_regions(mem_bytes)
        .into_iter()
        .map(|(start, len)| {
            let range = (
                GuestAddress(start),
                len as usize,
                Some(FileOffset::from_arc(file.clone(), offset)),
            );
            offset += len;
            range
        })
        .collect();
    GuestMemoryMmap::from_ranges_with_files(ranges)
        .map_err(|e| Error::Memory(format!("mapping {mem_bytes} bytes of guest RAM: {e}")))
}

fn register_memory(
    vm: &VmFd,
    slot: &mut u32,
    guest_addr: u64,
    host_addr: u64,
    len: u64,
    read_only: bool,
) -> Result<()> {
    let region = kvm_userspace_memory_region {
        slot: *slot,
        flags: if read_only { KVM_MEM_READONLY } else { 0 },
        guest_phys_addr: guest_addr,
        memory_size: len,
        userspace_addr: host_addr,
    };
    // SAFETY: the mapping at `host_addr` of `len` bytes stays valid while the VM lives: RAM
    // is owned by `Vm::_mem`, device memory by the device slots, both dropped after the VM
    // fd and the vCPUs.
    unsafe { vm.set_user_memory_region(region) }
        .map_err(Error::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    *slot += 1;
    Ok(())
}

fn open_console(console: Console) -> Result<Box<dyn Write + Send>> {
    Ok(match console {
        Console::Stdout => Box::new(std::io::stdout()),
        Console::File(path) => Box::new(File::create(&path).map_err(|e| Error::BadFile {
            what: "console file",
            path,
            reason: e.to_string(),
        })?),
        Console::Writer(writer) => writer,
        Console::Discard => Box::new(std::io::sink()),
    })
}

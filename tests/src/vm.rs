//! A hull guest under QEMU (or vmm-lite, `HULL_VMM=vmm-lite`), owned by the test that
//! booted it.
//!
//! [`Vm::boot`] starts `vhost-device-vsock` (the host end of the guest's virtio-vsock,
//! exposed as a Unix socket with the hybrid-vsock `CONNECT` handshake; vmm-lite serves that
//! socket itself), one `virtiofsd` per virtio-fs share asked for, and the VMM with the
//! kernel and initrd, its serial console going to a file. Disk images can be attached read-only as virtio-blk (at a fixed PCI
//! slot, so a Kata PCI path names them) or virtio-pmem. QEMU serves QMP on a socket in
//! the run directory ([`Vm::qmp`]); [`VmConfig::hotplug`] leaves room to hot-plug vCPUs,
//! memory and PCI devices through it. Everything lives in a temporary
//! directory. QEMU's arguments come from hull-image's [`vm_args`] (the description
//! [`VmConfig::spec`] fills in), the same that `hull-image attach` prints for users.
//! Dropping the [`Vm`] kills every process it started and removes that
//! directory; unless the test called [`Vm::finish`] after a clean power-off, the drop also
//! prints the guest console and the host programs' logs, so a failing test shows why.
//!
//! Every hybrid-vsock `CONNECT` is bounded, and [`Vm::wait_for_agent`] boots the guest
//! again when vhost-device-vsock answers no `CONNECT` at all (see [`probe_backend`]);
//! such a restart is written to `harness.log`, part of [`Vm::diagnostics`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hull_image::mkfs::FsType;
pub use hull_image::vm_args::Hotplug;
use hull_image::vm_args::{self, Boot, Console, FsShare, RootImage, VmSpec, Vsock};
use hull_protocols::address::AgentAddress;
use hull_protocols::client::{AgentClient, DEFAULT_CALL_TIMEOUT};
use tempfile::TempDir;

use crate::accel::Accel;
use crate::artifacts::{GuestArtifacts, find_program};
use crate::nic::NicConfig;
use crate::process::OwnedChild;
use crate::qmp::Qmp;

pub use hull_image::vm_args::{Attachment, Disk, DiskAttach, Vmm};

/// Which VMM boots guests: `HULL_VMM=qemu` (the default) or `HULL_VMM=vmm-lite` (the
/// bundled VMM; it needs hardware KVM to boot Linux in reasonable time). An unknown value
/// is an error naming the choices.
pub fn vmm_from_env() -> Result<Vmm> {
    match std::env::var("HULL_VMM").ok().as_deref() {
        None | Some("") | Some("qemu") => Ok(Vmm::Qemu),
        Some("vmm-lite") => Ok(Vmm::VmmLite),
        Some(other) => bail!("HULL_VMM={other:?}: expected qemu or vmm-lite"),
    }
}

/// The program that runs `vmm`: QEMU from `PATH`; vmm-lite from `HULL_VMM_LITE`, `PATH`
/// or the workspace's `target/{release,debug}`.
fn vmm_program(vmm: Vmm) -> Result<PathBuf> {
    match vmm {
        Vmm::Qemu => Ok(find_program("qemu-system-x86_64")?),
        Vmm::VmmLite => {
            if let Some(path) = std::env::var_os("HULL_VMM_LITE") {
                return Ok(PathBuf::from(path));
            }
            if let Ok(path) = find_program("vmm-lite") {
                return Ok(path);
            }
            let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
            ["release", "debug"]
                .iter()
                .map(|profile| target.join(profile).join("vmm-lite"))
                .find(|path| path.is_file())
                .context(
                    "vmm-lite not found (HULL_VMM_LITE, PATH, target/): \
                     run `cargo build --release -p vmm-lite`",
                )
        }
        other => bail!("the harness boots guests with QEMU or vmm-lite, not {other}"),
    }
}

/// How long one Health.Check attempt may take while waiting for the agent.
const READINESS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one `CONNECT` through the hybrid-vsock socket may go unanswered.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A guest vsock port nobody listens on: a working backend answers `CONNECT` to it by
/// closing the connection (the guest resets it); a wedged one answers nothing.
pub const PROBE_PORT: u32 = 0x7fff_fff0;
/// How long a probe may go unanswered before it counts as silent.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long after init started the agent the harness waits before probing the backend.
pub const HANG_GRACE: Duration = Duration::from_secs(10);
/// Silent probes in a row that mean the backend is wedged.
pub const SILENT_PROBES: u32 = 2;
/// How many times [`Vm::wait_for_agent`] boots a guest again after a wedged backend.
pub const MAX_RESTARTS: u32 = 2;
/// The harness's own log in the run directory: restarts and wedged-backend findings.
const HARNESS_LOG: &str = "harness.log";

/// How the hybrid-vsock socket answered a `CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendState {
    /// It answered (`OK`, a close, a reset or another line): its worker runs.
    Answers,
    /// No answer within the probe's time: its worker is gone.
    Silent,
    /// The socket could not even be connected.
    Unreachable(String),
}

impl std::fmt::Display for BackendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answers => f.write_str("still answers a CONNECT to a port nobody listens on"),
            Self::Silent => f.write_str(
                "answers no CONNECT at all, not even to a port nobody listens on \
                 (its worker thread is gone)",
            ),
            Self::Unreachable(e) => write!(f, "cannot be reached: {e}"),
        }
    }
}

/// Sends `CONNECT port` to the hybrid-vsock socket at `socket` and classifies the answer.
pub async fn probe_backend(socket: &Path, port: u32, timeout: Duration) -> BackendState {
    use hull_protocols::dial::{AttemptError, hybrid_vsock_handshake};
    match tokio::time::timeout(timeout, hybrid_vsock_handshake(socket, port)).await {
        Err(_) => BackendState::Silent,
        Ok(Ok(_)) => BackendState::Answers,
        Ok(Err(AttemptError::Io(e))) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
            match std::os::unix::net::UnixStream::connect(socket) {
                Ok(_) => BackendState::Answers,
                Err(e) => BackendState::Unreachable(e.to_string()),
            }
        }
        Ok(Err(_)) => BackendState::Answers,
    }
}

/// The vsock port the agent serves ttRPC on.
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// A raw image built by `hull-image image` (with its DAX header), attached one way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBoot {
    /// The image file.
    pub path: PathBuf,
    /// File size: QEMU's memory backend for pmem takes it explicitly.
    pub bytes: u64,
    /// The root filesystem in the image (ext4 or erofs).
    pub fstype: FsType,
    /// How the image reaches the guest: an nvdimm, virtio-pmem or virtio-blk.
    pub attachment: Attachment,
    /// The root part of the command line from the image's manifest, when it is not the
    /// plain one (a dm-verity image: `dm-mod.create=... root=/dev/dm-0`).
    pub root_override: Option<String>,
}

impl ImageBoot {
    /// Reads the image's size; `fstype` is `ext4` or `erofs`.
    pub fn new(path: PathBuf, fstype: &str, attachment: Attachment) -> Result<Self> {
        let fstype = FsType::from_name(fstype)
            .with_context(|| format!("unknown filesystem type `{fstype}`"))?;
        let bytes = vm_args::file_size(&path).context("run `just image`")?;
        Ok(Self {
            path,
            bytes,
            fstype,
            attachment,
            root_override: None,
        })
    }

    /// The root part of the kernel command line: hull-image's for an image with the DAX
    /// header, unless overridden.
    pub fn root_cmdline(&self) -> String {
        match &self.root_override {
            Some(root) => root.clone(),
            None => vm_args::root_cmdline(self.attachment, self.fstype, true, None),
        }
    }

    /// Whether the guest maps the root with DAX.
    pub fn dax(&self) -> bool {
        self.root_override.is_none() && self.attachment.dax(true, false)
    }
}

/// What the guest boots from. For [`BootMedium::Image`] only the kernel of
/// [`GuestArtifacts`] is used.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BootMedium {
    /// The initramfs of [`GuestArtifacts::initrd`].
    #[default]
    Initrd,
    /// A disk image as the root filesystem (no initrd).
    Image(ImageBoot),
}

/// How to boot a guest.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The kernel and initrd (only the kernel for an image boot).
    pub artifacts: GuestArtifacts,
    /// QEMU (the default) or vmm-lite; see [`vmm_from_env`].
    pub vmm: Vmm,
    /// QEMU's accelerator, probed by default; vmm-lite always uses KVM.
    pub accel: Accel,
    /// Guest RAM in MiB (256 unless told).
    pub memory_mib: u32,
    /// The number of vCPUs (1 unless told).
    pub cpus: u32,
    /// The guest's vsock context id (3 unless told).
    pub guest_cid: u32,
    /// Appended to the kernel command line after the harness's own options.
    pub extra_cmdline: Vec<String>,
    /// Initrd (the default) or a disk image.
    pub medium: BootMedium,
    /// Host directories shared through virtio-fs, one virtiofsd each.
    pub virtio_fs: Vec<VirtioFsShare>,
    /// Disk images attached read-only.
    pub disks: Vec<Disk>,
    /// A NIC on QEMU user networking; none by default.
    pub nic: Option<NicConfig>,
    /// Room to hot-plug vCPUs, memory and PCI devices through QMP; none by default
    /// (QEMU only).
    pub hotplug: Option<Hotplug>,
}

/// A host directory the guest mounts by tag (`mount -t virtiofs TAG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioFsShare {
    /// The mount tag the guest sees.
    pub tag: String,
    /// The host directory virtiofsd serves.
    pub dir: PathBuf,
}

impl VmConfig {
    /// Defaults: the located artifacts, the VMM `HULL_VMM` names (QEMU when unset; an
    /// unknown value fails at [`Vm::boot`]), the probed accelerator, 256 MiB, one vCPU.
    pub fn new(artifacts: GuestArtifacts) -> Self {
        Self {
            artifacts,
            vmm: vmm_from_env().unwrap_or(Vmm::Qemu),
            accel: crate::accel::detect(),
            memory_mib: 256,
            cpus: 1,
            guest_cid: 3,
            extra_cmdline: Vec::new(),
            medium: BootMedium::Initrd,
            virtio_fs: Vec::new(),
            disks: Vec::new(),
            nic: None,
            hotplug: None,
        }
    }

    /// Boots `image` instead of the initrd.
    pub fn with_image(mut self, image: ImageBoot) -> Self {
        self.medium = BootMedium::Image(image);
        self
    }

    /// The socket of vhost-device-vsock, the vhost-user backend of the guest's vsock.
    pub fn vhost_vsock_socket(dir: &Path) -> PathBuf {
        dir.join("vhost-vsock.sock")
    }

    /// QEMU's QMP socket.
    pub fn qmp_socket(dir: &Path) -> PathBuf {
        dir.join("qmp.sock")
    }

    /// The socket of the virtiofsd serving share `index`.
    pub fn virtiofsd_socket(dir: &Path, index: usize) -> PathBuf {
        dir.join(format!("virtiofsd-{index}.sock"))
    }

    /// The kernel command line the guest gets.
    pub fn kernel_cmdline(&self) -> String {
        let mut cmdline = String::from(match self.vmm {
            // No ACPI under vmm-lite: init reboots, and the reset through the i8042
            // (vmm-lite adds `reboot=k`) ends the VMM.
            Vmm::VmmLite => "console=ttyS0 panic=-1 hull.shutdown=reboot",
            _ => "console=ttyS0 panic=-1 reboot=acpi",
        });
        if let BootMedium::Image(image) = &self.medium {
            cmdline.push(' ');
            cmdline.push_str(&image.root_cmdline());
        }
        for extra in &self.extra_cmdline {
            cmdline.push(' ');
            cmdline.push_str(extra);
        }
        cmdline
    }

    /// The VM as hull-image's [`VmSpec`] describes it, with the given run directory
    /// holding sockets and logs: vsock through vhost-device-vsock (QEMU) or vmm-lite's own
    /// hybrid socket, the console to a file.
    pub fn spec(&self, dir: &Path) -> VmSpec {
        VmSpec {
            kernel: self.artifacts.kernel.clone(),
            boot: match &self.medium {
                BootMedium::Initrd => Boot::Initrd(self.artifacts.initrd.clone()),
                BootMedium::Image(image) => Boot::Image(RootImage {
                    path: image.path.clone(),
                    bytes: image.bytes,
                    attachment: image.attachment,
                }),
            },
            cmdline: self.kernel_cmdline(),
            memory_mib: u64::from(self.memory_mib),
            cpus: self.cpus,
            accel: match self.vmm {
                Vmm::VmmLite => vm_args::Accel::Kvm,
                _ => self.accel.vm_accel(),
            },
            vsock: match self.vmm {
                Vmm::VmmLite => Vsock::Hybrid {
                    cid: self.guest_cid,
                    uds: dir.join("vm.vsock"),
                },
                _ => Vsock::VhostUser {
                    socket: Self::vhost_vsock_socket(dir),
                },
            },
            shares: self
                .virtio_fs
                .iter()
                .enumerate()
                .map(|(i, share)| FsShare {
                    tag: share.tag.clone(),
                    socket: Self::virtiofsd_socket(dir, i),
                })
                .collect(),
            disks: self.disks.clone(),
            nic: self.nic.as_ref().map(NicConfig::user_nic),
            console: Console::File(dir.join("console.log")),
            qmp: match self.vmm {
                Vmm::VmmLite => None,
                _ => Some(Self::qmp_socket(dir)),
            },
            hotplug: self.hotplug,
        }
    }

    /// QEMU's arguments, with the given run directory holding sockets and logs.
    pub fn qemu_args(&self, dir: &Path) -> Result<Vec<String>> {
        Ok(Vmm::Qemu.argv(&self.spec(dir))?)
    }

    /// The arguments of the configured VMM ([`VmConfig::vmm`]).
    pub fn vmm_args(&self, dir: &Path) -> Result<Vec<String>> {
        Ok(self.vmm.argv(&self.spec(dir))?)
    }
}

/// A running guest. See the module documentation for what dropping it does.
pub struct Vm {
    /// The VMM and its host programs.
    processes: Processes,
    /// Its log file's name in the run directory.
    vmm_log: &'static str,
    accel: Accel,
    /// The QMP connection, opened on first use (QEMU serves one client at a time).
    qmp: Option<Qmp>,
    /// Where QEMU serves QMP; `None` under vmm-lite.
    qmp_socket: Option<PathBuf>,
    /// What it was booted with, to boot it again when the vsock backend wedges.
    config: VmConfig,
    /// How many times the harness restarted the guest (see [`Vm::wait_for_agent`]).
    restarts: u32,
    finished: bool,
    // Last: removed after the processes using it are gone.
    dir: TempDir,
}

/// The processes of one boot of the guest.
struct Processes {
    /// QEMU or vmm-lite.
    vmm: OwnedChild,
    /// vhost-device-vsock, for QEMU (vmm-lite serves the hybrid socket itself).
    vsock_backend: Option<OwnedChild>,
    virtiofsd: Vec<OwnedChild>,
    started: Instant,
}

impl Processes {
    /// Starts the vsock backend, one virtiofsd per share and the VMM in `dir`.
    fn start(config: &VmConfig, dir: &Path, vmm_log: &str) -> Result<Self> {
        let vmm_bin = vmm_program(config.vmm)?;
        let vsock_backend = match config.vmm {
            Vmm::Qemu => Some(start_vsock_backend(config, dir)?),
            _ => None,
        };

        let mut virtiofsd = Vec::new();
        if !config.virtio_fs.is_empty() {
            let virtiofsd_bin = find_program("virtiofsd")?;
            for (i, share) in config.virtio_fs.iter().enumerate() {
                let socket = VmConfig::virtiofsd_socket(dir, i);
                let log = format!("virtiofsd-{i}.log");
                let mut cmd = Command::new(&virtiofsd_bin);
                cmd.arg(format!("--socket-path={}", socket.display()))
                    .arg(format!("--shared-dir={}", share.dir.display()))
                    .args(["--sandbox", "none", "--cache", "never"])
                    .stdout(log_file(dir, &log)?)
                    .stderr(log_file(dir, &log)?);
                let mut child = OwnedChild::spawn(format!("virtiofsd-{i}"), cmd)
                    .with_context(|| format!("starting {}", virtiofsd_bin.display()))?;
                wait_for_path(&socket, Duration::from_secs(10), &mut child)
                    .with_context(|| format!("waiting for virtiofsd's socket for {}", share.tag))?;
                virtiofsd.push(child);
            }
        }

        let vmm_name = match config.vmm {
            Vmm::VmmLite => "vmm-lite",
            _ => "qemu",
        };
        let mut vmm_cmd = Command::new(&vmm_bin);
        vmm_cmd
            .args(config.vmm_args(dir)?)
            .stdout(log_file(dir, vmm_log)?)
            .stderr(log_file(dir, vmm_log)?);
        let started = Instant::now();
        let vmm = OwnedChild::spawn(vmm_name, vmm_cmd)
            .with_context(|| format!("starting {}", vmm_bin.display()))?;
        Ok(Self {
            vmm,
            vsock_backend,
            virtiofsd,
            started,
        })
    }

    /// Kills every process, the VMM first.
    fn kill(&mut self) {
        self.vmm.kill();
        if let Some(backend) = &mut self.vsock_backend {
            backend.kill();
        }
        for daemon in &mut self.virtiofsd {
            daemon.kill();
        }
    }
}

impl Vm {
    /// Starts the vsock backend and the VMM. Returns once the VMM is running; the guest
    /// is still booting (see [`Vm::wait_for_agent`]).
    pub fn boot(config: &VmConfig) -> Result<Self> {
        vmm_from_env()?;
        let dir = tempfile::Builder::new()
            .prefix("hull-vm-")
            .tempdir()
            .context("creating the VM's temporary directory")?;
        let vmm_log = match config.vmm {
            Vmm::VmmLite => "vmm-lite.log",
            _ => "qemu.log",
        };
        let processes = Processes::start(config, dir.path(), vmm_log)?;
        tracing::debug!(dir = %dir.path().display(), accel = %config.accel, vmm = %config.vmm, "guest booting");
        Ok(Self {
            processes,
            vmm_log,
            accel: config.accel.clone(),
            qmp: None,
            qmp_socket: match config.vmm {
                Vmm::VmmLite => None,
                _ => Some(VmConfig::qmp_socket(dir.path())),
            },
            config: config.clone(),
            restarts: 0,
            finished: false,
            dir,
        })
    }

    /// Writes `message` to the harness's log in the run directory (part of
    /// [`Vm::diagnostics`]) and to stderr.
    fn note(&self, message: &str) {
        eprintln!("hull-e2e: {message}");
        tracing::warn!("{message}");
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(HARNESS_LOG))
        {
            let _ = std::io::Write::write_all(&mut log, format!("{message}\n").as_bytes());
        }
    }

    /// Kills this boot's processes and boots the guest again in the same run directory;
    /// the previous console is kept as `console-<n>.log`.
    fn restart(&mut self, why: &str) -> Result<()> {
        self.restarts += 1;
        let kept = format!("console-{}.log", self.restarts);
        self.note(&format!(
            "{why}: restarting vhost-device-vsock together with the VMM and virtiofsd \
             (restart {} of {MAX_RESTARTS}; QEMU cannot attach a new vsock backend to a \
             running guest); the previous console is kept as {kept}",
            self.restarts
        ));
        self.processes.kill();
        // The QMP connection was to the QEMU just killed.
        self.qmp = None;
        let dir = self.dir.path();
        let _ = std::fs::rename(dir.join("console.log"), dir.join(&kept));
        if let Some(qmp) = &self.qmp_socket {
            let _ = std::fs::remove_file(qmp);
        }
        for socket in std::iter::once(VmConfig::vhost_vsock_socket(dir))
            .chain(std::iter::once(dir.join("vm.vsock")))
            .chain((0..self.config.virtio_fs.len()).map(|i| VmConfig::virtiofsd_socket(dir, i)))
        {
            let _ = std::fs::remove_file(socket);
        }
        self.processes = Processes::start(&self.config, dir, self.vmm_log)?;
        Ok(())
    }

    /// How many times the harness restarted the guest because the vsock backend answered
    /// no CONNECT (0 on a clean boot).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Stops vhost-device-vsock with SIGSTOP (a fault test: its worker answers no CONNECT
    /// any more, as when it wedges); the harness's restart kills it for good.
    pub fn stop_vsock_backend(&self) -> Result<()> {
        let backend = self
            .processes
            .vsock_backend
            .as_ref()
            .context("this VMM has no vsock backend of its own")?;
        let pid = i32::try_from(backend.id()).context("a pid beyond i32")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGSTOP,
        )
        .context("SIGSTOP to vhost-device-vsock")?;
        Ok(())
    }

    /// Kills the virtiofsd serving share `index` (a fault test: the host side of the
    /// shared directory dies under the guest).
    pub fn kill_virtiofsd(&mut self, index: usize) -> Result<()> {
        let daemon = self
            .processes
            .virtiofsd
            .get_mut(index)
            .with_context(|| format!("no virtiofsd for share {index}"))?;
        daemon.kill();
        Ok(())
    }

    /// The accelerator this guest runs with.
    pub fn accel(&self) -> &Accel {
        &self.accel
    }

    /// The QMP connection to QEMU, connected (greeting, `qmp_capabilities`) on first use
    /// and kept: events arriving after that are collected on it. Fails under vmm-lite,
    /// which has no QMP.
    pub fn qmp(&mut self) -> Result<&mut Qmp> {
        let Some(socket) = &self.qmp_socket else {
            bail!("this VMM serves no QMP (only QEMU does)");
        };
        if self.qmp.is_none() {
            let qmp = Qmp::connect(socket, Duration::from_secs(10))
                .context("connecting to QEMU's QMP socket")?;
            self.qmp = Some(qmp);
        }
        self.qmp.as_mut().context("QMP connection")
    }

    /// The Unix socket where the host reaches guest vsock ports (`CONNECT <port>`).
    pub fn hybrid_vsock_socket(&self) -> PathBuf {
        self.dir.path().join("vm.vsock")
    }

    /// Opens one connection to guest vsock `port` through the hybrid-vsock socket
    /// (`CONNECT <port>` / `OK`), as a blocking stream; fails when nothing listens there,
    /// and within [`CONNECT_TIMEOUT`] when the backend answers nothing at all (then the
    /// error says whether the backend still answers a CONNECT to a port nobody listens on).
    pub async fn connect_guest_port(&self, port: u32) -> Result<std::os::unix::net::UnixStream> {
        let socket = self.hybrid_vsock_socket();
        let handshake = hull_protocols::dial::hybrid_vsock_handshake(&socket, port);
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
            Ok(stream) => {
                stream.with_context(|| format!("connecting to guest vsock port {port}"))?
            }
            Err(_) => {
                let state = probe_backend(&socket, PROBE_PORT, PROBE_TIMEOUT).await;
                let message = format!(
                    "CONNECT {port} got no answer within {CONNECT_TIMEOUT:?}; the vsock backend {state}"
                );
                self.note(&message);
                bail!(message)
            }
        };
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(stream)
    }

    /// The hybrid-vsock address of the agent's ttRPC server.
    pub fn agent_address(&self) -> AgentAddress {
        AgentAddress::HybridVsock {
            path: self.hybrid_vsock_socket(),
            port: AGENT_VSOCK_PORT,
        }
    }

    /// The host path where a guest connecting to host vsock port `port` arrives.
    pub fn host_vsock_listener_path(&self, port: u32) -> PathBuf {
        self.dir.path().join(format!("vm.vsock_{port}"))
    }

    /// Waits until the agent answers `Health.Check`, and returns a client and the time
    /// from the VMM's start to that first answer (boot-to-agent-ready).
    ///
    /// Every attempt is bounded. Under QEMU it also watches for the state in which
    /// vhost-device-vsock (0.3.0) answers no CONNECT at all (a CONNECT made while the guest
    /// was bringing up its vsock device can leave the backend's worker thread gone): once
    /// init has started the agent and [`HANG_GRACE`] has passed without an answer, it sends
    /// `CONNECT` to a port nobody listens on, which a working backend answers by closing
    /// the connection. When [`SILENT_PROBES`] such probes in a row get no answer at all, it
    /// boots the guest again (at most [`MAX_RESTARTS`] times) and says so on stderr and in
    /// the diagnostics.
    pub async fn wait_for_agent(&mut self, deadline: Duration) -> Result<(AgentClient, Duration)> {
        let address = self.agent_address();
        let mut last_error = String::from("no attempt made");
        let mut agent_started: Option<Instant> = None;
        let mut silent_probes = 0;
        while self.processes.started.elapsed() < deadline {
            if let Some(status) = self.processes.vmm.try_status()? {
                bail!("the VMM exited ({status}) before the agent answered");
            }
            // Each attempt is short and uses a fresh connection: a connection that the
            // vsock backend accepted but never delivers must not eat the whole deadline.
            match AgentClient::connect(&address, Duration::from_secs(1)).await {
                Ok(client) => {
                    let mut client = client.with_timeout(READINESS_ATTEMPT_TIMEOUT);
                    match client.check().await {
                        Ok(_) => {
                            client.set_timeout(DEFAULT_CALL_TIMEOUT);
                            return Ok((client, self.processes.started.elapsed()));
                        }
                        Err(e) => last_error = e.to_string(),
                    }
                }
                Err(e) => last_error = e.to_string(),
            }
            if self.processes.vsock_backend.is_none() {
                continue;
            }
            if agent_started.is_none() && self.console().contains("init: agent started") {
                agent_started = Some(Instant::now());
            }
            if agent_started.is_none_or(|at| at.elapsed() < HANG_GRACE) {
                continue;
            }
            match probe_backend(&self.hybrid_vsock_socket(), PROBE_PORT, PROBE_TIMEOUT).await {
                BackendState::Silent => silent_probes += 1,
                _ => silent_probes = 0,
            }
            if silent_probes < SILENT_PROBES {
                continue;
            }
            let why = format!(
                "vhost-device-vsock answered no CONNECT ({SILENT_PROBES} probes of port \
                 {PROBE_PORT}, {PROBE_TIMEOUT:?} each) {HANG_GRACE:?} after init started \
                 the agent; last error: {last_error}"
            );
            if self.restarts >= MAX_RESTARTS {
                self.note(&format!("{why}; giving up after {MAX_RESTARTS} restarts"));
                bail!("{why}; the guest was restarted {MAX_RESTARTS} times already");
            }
            self.restart(&why)?;
            agent_started = None;
            silent_probes = 0;
        }
        bail!(
            "the agent did not answer Health.Check within {deadline:?} (last error: {last_error})"
        )
    }

    /// Asks the agent to destroy the sandbox and waits for the guest to power off;
    /// returns the time from the request to QEMU's exit.
    pub async fn power_off_through_agent(
        &mut self,
        client: &AgentClient,
        timeout: Duration,
    ) -> Result<Duration> {
        let asked = Instant::now();
        client.destroy_sandbox().await.context("DestroySandbox")?;
        let status = self.wait_for_exit(timeout)?;
        if !status.success() {
            bail!("the VMM exited with {status} after DestroySandbox");
        }
        Ok(asked.elapsed())
    }

    /// Waits up to `timeout` for the VMM to exit by itself (the guest powered off).
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        match self.processes.vmm.wait_timeout(timeout)? {
            Some(status) => Ok(status),
            None => bail!("the VMM still runs {timeout:?} after it was asked to power off"),
        }
    }

    /// The guest's serial console so far.
    pub fn console(&self) -> String {
        read_lossy(&self.dir.path().join("console.log"))
    }

    /// The guest's uptime when hull-init started the agent, from init's console line
    /// `init: agent started pid=N ... uptime_ms=N`: the guest's own share of a boot.
    pub fn guest_uptime_at_agent_start(&self) -> Option<Duration> {
        self.console()
            .lines()
            .find(|line| line.contains("init: agent started"))
            .and_then(|line| {
                line.split_whitespace()
                    .find_map(|field| field.strip_prefix("uptime_ms="))
                    .and_then(|ms| ms.parse().ok())
            })
            .map(Duration::from_millis)
    }

    /// Everything worth reading when a guest misbehaves: console and host program logs.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        let mut extra_logs: Vec<(String, String)> = (0..self.processes.virtiofsd.len())
            .map(|i| (format!("virtiofsd {i}"), format!("virtiofsd-{i}.log")))
            .collect();
        for restart in 1..=self.restarts {
            extra_logs.push((
                format!("guest console before restart {restart}"),
                format!("console-{restart}.log"),
            ));
        }
        if self.dir.path().join(HARNESS_LOG).exists() {
            extra_logs.push(("the harness".to_string(), HARNESS_LOG.to_string()));
        }
        let logs = [
            ("guest console".to_string(), "console.log".to_string()),
            (
                self.vmm_log.trim_end_matches(".log").to_string(),
                self.vmm_log.to_string(),
            ),
            (
                "vhost-device-vsock".to_string(),
                "vhost-device-vsock.log".to_string(),
            ),
        ];
        for (title, file) in logs.iter().chain(&extra_logs) {
            let _ = writeln!(out, "----- {title} ({file}) -----");
            out.push_str(&read_lossy(&self.dir.path().join(file)));
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Marks the run as clean: dropping the VM now stays quiet.
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.processes.kill();
        if !self.finished {
            eprintln!(
                "hull-e2e: the guest did not finish cleanly; its logs follow\n{}",
                self.diagnostics()
            );
        }
    }
}

/// Starts vhost-device-vsock, QEMU's vsock backend, serving the hybrid socket `vm.vsock`.
fn start_vsock_backend(config: &VmConfig, dir: &Path) -> Result<OwnedChild> {
    let vsock_bin = find_program("vhost-device-vsock")?;
    let vhost_socket = VmConfig::vhost_vsock_socket(dir);
    let mut backend_cmd = Command::new(&vsock_bin);
    backend_cmd
        .arg("--vm")
        .arg(format!(
            "guest-cid={},uds-path={},socket={}",
            config.guest_cid,
            dir.join("vm.vsock").display(),
            vhost_socket.display()
        ))
        .stdout(log_file(dir, "vhost-device-vsock.log")?)
        .stderr(log_file(dir, "vhost-device-vsock.log")?);
    let mut vsock_backend = OwnedChild::spawn("vhost-device-vsock", backend_cmd)
        .with_context(|| format!("starting {}", vsock_bin.display()))?;
    wait_for_path(&vhost_socket, Duration::from_secs(10), &mut vsock_backend)
        .context("waiting for vhost-device-vsock's socket")?;
    Ok(vsock_backend)
}

fn log_file(dir: &Path, name: &str) -> Result<Stdio> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .with_context(|| format!("opening {name}"))?;
    Ok(Stdio::from(file))
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

fn wait_for_path(path: &Path, timeout: Duration, owner: &mut OwnedChild) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = owner.try_status()? {
            bail!(
                "the process exited ({status}) before creating {}",
                path.display()
            );
        }
        if start.elapsed() > timeout {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            artifacts: GuestArtifacts {
                kernel: "/k/bzImage".into(),
                initrd: "/k/initrd.img".into(),
            },
            accel: Accel::Tcg {
                reason: "test".into(),
            },
            vmm: Vmm::Qemu,
            memory_mib: 256,
            cpus: 1,
            guest_cid: 3,
            extra_cmdline: vec!["agent.log=debug".into()],
            medium: BootMedium::Initrd,
            virtio_fs: Vec::new(),
            disks: Vec::new(),
            nic: None,
            hotplug: None,
        }
    }

    fn image(attachment: Attachment) -> VmConfig {
        config().with_image(ImageBoot {
            path: "/b/rootfs.ext4.img".into(),
            bytes: 8 << 20,
            fstype: FsType::Ext4,
            attachment,
            root_override: None,
        })
    }

    /// The run directory the tests' sockets and logs are in.
    const DIR: &str = "/run/x";

    // What the harness owns is how a `VmConfig` becomes hull-image's `VmSpec`; the argv
    // each VMM gets from a spec (devices, the memory rule, QMP, hot-plug) is
    // `hull_image::vm_args`'s and tested there.

    #[test]
    fn an_initrd_guest_under_qemu() {
        let dir = Path::new(DIR);
        assert_eq!(
            config().spec(dir),
            VmSpec {
                kernel: "/k/bzImage".into(),
                boot: Boot::Initrd("/k/initrd.img".into()),
                cmdline: "console=ttyS0 panic=-1 reboot=acpi agent.log=debug".into(),
                memory_mib: 256,
                cpus: 1,
                accel: vm_args::Accel::Tcg,
                vsock: Vsock::VhostUser {
                    socket: VmConfig::vhost_vsock_socket(dir),
                },
                shares: Vec::new(),
                disks: Vec::new(),
                nic: None,
                console: Console::File(dir.join("console.log")),
                qmp: Some(VmConfig::qmp_socket(dir)),
                hotplug: None,
            }
        );
        assert_eq!(
            VmConfig::vhost_vsock_socket(dir),
            dir.join("vhost-vsock.sock")
        );
        assert_eq!(VmConfig::qmp_socket(dir), dir.join("qmp.sock"));
    }

    #[test]
    fn an_image_guest_boots_from_its_root_partition() {
        let dax = "root=/dev/pmem0p1 rootfstype=ext4 ro rootflags=dax";
        for (attachment, root) in [
            (Attachment::Nvdimm, dax),
            (Attachment::VirtioPmem, dax),
            (Attachment::VirtioBlk, "root=/dev/vda1 rootfstype=ext4 ro"),
        ] {
            let vm = image(attachment);
            let spec = vm.spec(Path::new(DIR));
            assert_eq!(
                spec.boot,
                Boot::Image(RootImage {
                    path: "/b/rootfs.ext4.img".into(),
                    bytes: 8 << 20,
                    attachment,
                })
            );
            assert_eq!(
                spec.cmdline,
                format!("console=ttyS0 panic=-1 reboot=acpi {root} agent.log=debug"),
                "{attachment:?}"
            );
            assert_eq!(spec.cmdline, vm.kernel_cmdline());
            // QEMU takes every attachment.
            vm.qemu_args(Path::new(DIR)).unwrap();
        }
    }

    #[test]
    fn shares_disks_nic_and_hotplug_are_handed_on() {
        let dir = Path::new(DIR);
        let mut config = config();
        config.virtio_fs.push(VirtioFsShare {
            tag: "kataShared".into(),
            dir: "/srv/share".into(),
        });
        config.disks.push(Disk::virtio_blk("/img/blk.ext4", 0x10));
        config.disks.push(Disk {
            image: "/img/pmem.ext4".into(),
            attach: DiskAttach::VirtioPmem { size: 16 << 20 },
        });
        config.nic = Some(NicConfig::new("52:54:00:12:34:56"));
        let hotplug = Hotplug {
            max_cpus: 2,
            memory_slots: 2,
            max_memory_mib: 1024,
            root_ports: 2,
        };
        config.hotplug = Some(hotplug);
        let spec = config.spec(dir);
        // Each share is served by the virtiofsd the harness starts on this socket.
        assert_eq!(
            spec.shares,
            [FsShare {
                tag: "kataShared".into(),
                socket: VmConfig::virtiofsd_socket(dir, 0),
            }]
        );
        assert_eq!(
            VmConfig::virtiofsd_socket(dir, 0),
            dir.join("virtiofsd-0.sock")
        );
        assert_eq!(spec.disks, config.disks);
        assert_eq!(
            spec.nic,
            Some(NicConfig::new("52:54:00:12:34:56").user_nic())
        );
        assert_eq!(spec.hotplug, Some(hotplug));
        config.qemu_args(dir).unwrap();
    }

    /// A fake hybrid-vsock socket whose connections get `reply` after `CONNECT`: `None`
    /// keeps them open without a word (a wedged backend), `Some("")` closes them.
    fn fake_backend(reply: Option<&'static str>) -> (tempfile::TempDir, PathBuf) {
        use std::io::{BufRead, Write};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.vsock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut line = String::new();
                let _ = std::io::BufReader::new(&stream).read_line(&mut line);
                match reply {
                    Some(text) => {
                        let _ = stream.write_all(text.as_bytes());
                    }
                    None => held.push(stream),
                }
            }
        });
        (dir, path)
    }

    #[tokio::test]
    async fn a_backend_that_answers_nothing_is_told_from_one_that_refuses() {
        let timeout = Duration::from_millis(300);
        let (_silent_dir, silent) = fake_backend(None);
        assert_eq!(
            probe_backend(&silent, PROBE_PORT, timeout).await,
            BackendState::Silent
        );
        let (_closing_dir, closing) = fake_backend(Some(""));
        assert_eq!(
            probe_backend(&closing, PROBE_PORT, timeout).await,
            BackendState::Answers
        );
        let (_ok_dir, ok) = fake_backend(Some("OK 1024\n"));
        assert_eq!(
            probe_backend(&ok, PROBE_PORT, timeout).await,
            BackendState::Answers
        );
        let missing = _ok_dir.path().join("nothing-here");
        assert!(matches!(
            probe_backend(&missing, PROBE_PORT, timeout).await,
            BackendState::Unreachable(_)
        ));
        assert!(BackendState::Silent.to_string().contains("no CONNECT"));
    }

    #[test]
    fn cmdline_appends_extras() {
        assert_eq!(
            config().kernel_cmdline(),
            "console=ttyS0 panic=-1 reboot=acpi agent.log=debug"
        );
    }

    #[test]
    fn vmm_lite_gets_the_same_guest_on_its_own_vsock_and_shutdown() {
        let dir = Path::new(DIR);
        let lite = |c: VmConfig| VmConfig {
            vmm: Vmm::VmmLite,
            ..c
        };
        let spec = lite(config()).spec(dir);
        assert_eq!(spec.boot, config().spec(dir).boot);
        assert_eq!(
            spec.vsock,
            Vsock::Hybrid {
                cid: 3,
                uds: dir.join("vm.vsock"),
            }
        );
        assert_eq!(spec.accel, vm_args::Accel::Kvm);
        assert_eq!(spec.qmp, None);
        // No ACPI: init reboots, and the reset ends vmm-lite.
        assert_eq!(
            spec.cmdline,
            "console=ttyS0 panic=-1 hull.shutdown=reboot agent.log=debug"
        );
        lite(config()).vmm_args(dir).unwrap();
        lite(image(Attachment::VirtioBlk)).vmm_args(dir).unwrap();
        // What vmm-lite cannot attach is refused before anything starts.
        assert!(lite(image(Attachment::Nvdimm)).vmm_args(dir).is_err());
    }
}

//! The helper: this binary re-executed (from a sealed copy, see [`super::launcher`]) to
//! build one container process. It runs ONLY in that freshly exec'd, single-threaded
//! process, never in the agent: it forks, changes namespaces, mounts and drops
//! privileges, none of which is safe in a multi-threaded program.
//!
//! Stage 1 receives the [`Request`] on fd 3, enters or creates the namespaces (a new user
//! namespace first, with its id maps written by the launcher), and forks: only a child
//! enters a new pid namespace. Stage 1 reports the child's pid and exits; the child,
//! stage 2, is re-parented to the agent (a child subreaper).
//!
//! Stage 2 of an init process builds the container's filesystem in its mount namespace:
//! `/` made rslave, the rootfs bind-mounted on itself, each spec mount placed at a
//! destination resolved *inside* the rootfs (`pathrs`, with `openat2(RESOLVE_IN_ROOT)`:
//! a symlink in the rootfs cannot lead a mount out of it) and mounted through its
//! `/proc/self/fd` handle, `/dev` populated, then `pivot_root` into the rootfs (or, when
//! `/` is an initramfs, where `pivot_root` cannot work, `MS_MOVE` of the rootfs onto `/`
//! and `chroot`). Then masked and read-only paths, the read-only rootfs, hostname,
//! sysctls, rlimits, user and groups, capabilities, `no_new_privs`; it reports `Ready`
//! and waits at the start gate. Seccomp comes last, right before `execve`, so the profile
//! only has to allow `execve` itself (without `no_new_privs` it must come before the
//! capabilities are dropped, as in runc).
//!
//! Stage 2 of an exec'd process joins the namespaces of the container's init process
//! (those that differ from the agent's), then applies the same process settings and
//! executes at once.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::unistd::{ForkResult, Gid, Uid};

use super::plan::{ContainerPlan, DevicePlan, MountPlan, NamespaceKind, ProcessPlan};
use super::protocol::{self, Command, Gate, Report, Request};
use super::seccomp;

/// The hidden first argument that turns this binary into the helper.
pub const HELPER_ARG: &str = "__hull_container_helper";

/// The fd the launcher places the helper's socket at.
const CHANNEL_FD: RawFd = 3;

type HelperResult<T> = Result<T, String>;

fn sys(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> String {
    move |errno| format!("{what}: {errno}")
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Runs the helper and exits if this process was started as one; returns otherwise.
/// Call it first thing in `main`, before any thread or runtime exists.
pub fn run_if_helper() {
    if std::env::args_os().nth(1).as_deref() == Some(OsStr::new(HELPER_ARG)) {
        std::process::exit(helper_main());
    }
}

fn helper_main() -> i32 {
    // SAFETY: the launcher placed the helper's end of its socket at fd 3; nothing else
    // in this fresh process owns it.
    let mut chan = unsafe { UnixStream::from_raw_fd(CHANNEL_FD) };
    // SAFETY: fcntl on our own fd.
    unsafe { libc::fcntl(CHANNEL_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    // Until execve, the helper's /proc entries belong to root and cannot be ptraced or
    // opened by the container's processes.
    let _ = nix::sys::prctl::set_dumpable(false);
    let request = match protocol::receive::<Request>(&mut chan) {
        Ok(Some(request)) => request,
        Ok(None) => return 1,
        Err(e) => {
            let _ = protocol::send(&mut chan, &Report::Error(format!("bad request: {e}")));
            return 1;
        }
    };
    let result = match request {
        Request::Init { plan, gate } => init_stage1(&mut chan, &plan, &gate),
        Request::Exec { init_pid, process } => exec_stage1(&mut chan, init_pid, &process),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            let _ = protocol::send(&mut chan, &Report::Error(message));
            1
        }
    }
}

fn expect(chan: &mut UnixStream, wanted: Command) -> HelperResult<()> {
    match protocol::receive::<Command>(chan) {
        Ok(Some(c)) if c == wanted => Ok(()),
        Ok(other) => Err(format!(
            "expected {wanted:?} from the launcher, got {other:?}"
        )),
        Err(e) => Err(format!("waiting for {wanted:?}: {e}")),
    }
}

/// Forks; the parent reports the child's pid, waits for the launcher's `Ack` and exits;
/// the child waits until its parent is done with the socket, then runs `stage2`.
fn fork_stage2(
    chan: &mut UnixStream,
    stage2: impl FnOnce(&mut UnixStream) -> HelperResult<()>,
) -> HelperResult<()> {
    let (sync_r, sync_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    // SAFETY: the helper is single-threaded (a fresh exec that started no thread), so
    // the child may run arbitrary code.
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        ForkResult::Parent { child } => {
            drop(sync_r);
            protocol::send(chan, &Report::ChildPid(child.as_raw()))
                .map_err(io("reporting the pid"))?;
            expect(chan, Command::Ack)?;
            let mut sync_w = File::from(sync_w);
            let _ = sync_w.write_all(b"1");
            // Stage 1 is done; stage 2 goes on alone.
            std::process::exit(0);
        }
        ForkResult::Child => {
            drop(sync_w);
            let mut byte = [0u8; 1];
            let mut sync_r = File::from(sync_r);
            match sync_r.read(&mut byte) {
                Ok(1) => {}
                // The parent failed: it reports the error; this child just ends.
                _ => std::process::exit(1),
            }
            match stage2(chan) {
                Ok(()) => std::process::exit(0),
                Err(message) => {
                    let _ = protocol::send(chan, &Report::Error(message));
                    std::process::exit(1);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- init process

fn init_stage1(chan: &mut UnixStream, plan: &ContainerPlan, gate: &Gate) -> HelperResult<()> {
    // The gate listener lives outside the rootfs, in the launcher's directory: bind it
    // while this process still has the launcher's credentials (before a user namespace).
    let listener = match gate {
        Gate::Listener(path) => Some(UnixListener::bind(path).map_err(io(path.display()))?),
        Gate::Socket => None,
    };
    // Namespace files to join are opened before any namespace changes.
    let mut to_join = Vec::new();
    let mut to_create = CloneFlags::empty();
    let mut user_ns = None;
    for ns in &plan.namespaces {
        match (&ns.path, ns.kind) {
            (Some(path), NamespaceKind::User) => {
                user_ns = Some(Some(File::open(path).map_err(io(path.display()))?));
            }
            (None, NamespaceKind::User) => user_ns = Some(None),
            (Some(path), kind) => {
                to_join.push((kind, File::open(path).map_err(io(path.display()))?));
            }
            (None, kind) => to_create |= kind.clone_flag(),
        }
    }
    match user_ns {
        Some(Some(file)) => {
            setns(file.as_fd(), CloneFlags::CLONE_NEWUSER)
                .map_err(sys("joining the user namespace"))?;
            become_root()?;
        }
        Some(None) => {
            unshare(CloneFlags::CLONE_NEWUSER).map_err(sys("creating the user namespace"))?;
            protocol::send(chan, &Report::NeedIdMaps).map_err(io("asking for id maps"))?;
            expect(chan, Command::IdMapsWritten)?;
            become_root()?;
        }
        None => {}
    }
    for (kind, file) in &to_join {
        setns(file.as_fd(), kind.clone_flag())
            .map_err(sys(format!("joining the {} namespace", kind.proc_name())))?;
    }
    unshare(to_create).map_err(sys("creating namespaces"))?;
    fork_stage2(chan, |chan| init_stage2(chan, plan, listener))
}

fn become_root() -> HelperResult<()> {
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .map_err(sys("setresgid(0) in the user namespace"))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .map_err(sys("setresuid(0) in the user namespace"))
}

fn init_stage2(
    chan: &mut UnixStream,
    plan: &ContainerPlan,
    listener: Option<UnixListener>,
) -> HelperResult<()> {
    nix::unistd::setsid().map_err(sys("setsid"))?;
    if plan.process.terminal {
        set_controlling_terminal()?;
    }
    let in_user_ns = plan
        .namespaces
        .iter()
        .any(|n| n.kind == NamespaceKind::User);
    build_rootfs(plan, in_user_ns)?;
    enter_rootfs(&plan.rootfs, plan.no_pivot)?;
    finish_rootfs(plan, in_user_ns)?;
    if let Some(hostname) = &plan.hostname {
        nix::unistd::sethostname(hostname).map_err(sys("sethostname"))?;
    }
    if let Some(domainname) = &plan.domainname {
        // SAFETY: a valid pointer and length for the call.
        let rc = unsafe { libc::setdomainname(domainname.as_ptr().cast(), domainname.len()) };
        Errno::result(rc).map_err(sys("setdomainname"))?;
    }
    for (key, value) in &plan.sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(io(format!("sysctl {key}")))?;
    }
    let prepared = prepare_process(&plan.process)?;
    protocol::send(chan, &Report::Ready).map_err(io("reporting ready"))?;
    // The start gate.
    let mut reply_to = match listener {
        None => {
            expect(chan, Command::Start)?;
            None
        }
        Some(listener) => {
            let (mut conn, _) = listener.accept().map_err(io("waiting for start"))?;
            expect(&mut conn, Command::Start)?;
            Some(conn)
        }
    };
    let result = exec_prepared(&plan.process, prepared);
    // Only reached when execve failed.
    let message = result.err().unwrap_or_default();
    if let Some(conn) = reply_to.as_mut() {
        let _ = protocol::send(conn, &Report::Error(message.clone()));
    }
    Err(message)
}

fn set_controlling_terminal() -> HelperResult<()> {
    // SAFETY: ioctl on fd 0, which the launcher made the terminal's slave side.
    let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
    Errno::result(rc).map(|_| ()).map_err(sys("TIOCSCTTY"))
}

fn build_rootfs(plan: &ContainerPlan, in_user_ns: bool) -> HelperResult<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(sys("making / rslave"))?;
    let rootfs = &plan.rootfs;
    if !rootfs.is_dir() {
        return Err(format!("rootfs {} is not a directory", rootfs.display()));
    }
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!(
        "bind-mounting the rootfs {}",
        rootfs.display()
    )))?;
    let root = pathrs::Root::open(rootfs).map_err(|e| format!("opening the rootfs: {e}"))?;
    let mut dev_is_tmpfs = false;
    for m in &plan.mounts {
        mount_entry(&root, m, in_user_ns)?;
        if m.destination == Path::new("/dev") && !m.is_bind() {
            dev_is_tmpfs = true;
        }
    }
    if dev_is_tmpfs {
        populate_dev(&root, plan)?;
    }
    for device in &plan.devices {
        create_device(&root, device, in_user_ns)?;
    }
    // The working directory exists when the process starts (as in runc).
    let perm = std::fs::Permissions::from_mode(0o755);
    if let Err(e) = root.mkdir_all(&plan.process.cwd, &perm) {
        return Err(format!("creating cwd {}: {e}", plan.process.cwd.display()));
    }
    Ok(())
}

/// `/proc/self/fd/N` of a handle: mounting there mounts on exactly the inode resolved
/// inside the rootfs, whatever a symlink race does to the path afterwards.
fn fd_path(fd: &impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

fn resolve_target(root: &pathrs::Root, m: &MountPlan) -> HelperResult<pathrs::Handle> {
    let dest = &m.destination;
    let perm = std::fs::Permissions::from_mode(0o755);
    let source_is_file = m.is_bind()
        && m.source
            .as_ref()
            .and_then(|s| std::fs::metadata(s).ok())
            .is_some_and(|md| !md.is_dir());
    if source_is_file {
        if let Some(parent) = dest.parent() {
            root.mkdir_all(parent, &perm)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        if root.resolve(dest).is_err() {
            root.create_file(
                dest,
                pathrs::flags::OpenFlags::O_WRONLY | pathrs::flags::OpenFlags::O_CLOEXEC,
                &std::fs::Permissions::from_mode(0o644),
            )
            .map_err(|e| format!("creating {}: {e}", dest.display()))?;
        }
        root.resolve(dest)
            .map_err(|e| format!("resolving {}: {e}", dest.display()))
    } else {
        root.mkdir_all(dest, &perm)
            .map_err(|e| format!("creating {}: {e}", dest.display()))
    }
}

fn mount_entry(root: &pathrs::Root, m: &MountPlan, in_user_ns: bool) -> HelperResult<()> {
    let flags = MsFlags::from_bits_retain(m.flags);
    let what = format!("mounting {}", m.destination.display());
    let target = resolve_target(root, m)?;
    let data = (!m.data.is_empty()).then_some(m.data.as_str());
    if m.is_bind() {
        let source = m
            .source
            .as_ref()
            .ok_or_else(|| format!("{what}: no source"))?;
        mount(
            Some(source),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND | (flags & MsFlags::MS_REC),
            None::<&str>,
        )
        .map_err(sys(format!("{what} from {}", source.display())))?;
        let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            // The remount applies to the new mount: resolve the destination again.
            let top = root
                .resolve(&m.destination)
                .map_err(|e| format!("{what}: {e}"))?;
            remount_bind(&fd_path(&top), extra)
                .map_err(|e| format!("{what}: remounting with {extra:?}: {e}"))?;
        }
    } else {
        let source = m
            .source
            .as_ref()
            .map(|s| s.as_os_str().to_owned())
            .unwrap_or_else(|| m.fstype.clone().into());
        let result = mount(
            Some(source.as_os_str()),
            &fd_path(&target),
            Some(m.fstype.as_str()),
            flags,
            data,
        );
        match result {
            Ok(()) => {}
            // sysfs cannot be mounted in a user namespace that does not own the network
            // namespace: give a read-only view of the agent's, as runc does.
            Err(Errno::EPERM) if m.fstype == "sysfs" && in_user_ns => {
                mount(
                    Some("/sys"),
                    &fd_path(&target),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(sys(format!("{what} (bind of /sys)")))?;
                let top = root
                    .resolve(&m.destination)
                    .map_err(|e| format!("{what}: {e}"))?;
                remount_bind(&fd_path(&top), flags | MsFlags::MS_RDONLY)
                    .map_err(|e| format!("{what}: {e}"))?;
            }
            Err(errno) => return Err(format!("{what} ({}): {errno}", m.fstype)),
        }
    }
    if !m.propagation.is_empty() {
        let top = root
            .resolve(&m.destination)
            .map_err(|e| format!("{what}: {e}"))?;
        for p in &m.propagation {
            mount(
                None::<&str>,
                &fd_path(&top),
                None::<&str>,
                MsFlags::from_bits_retain(*p),
                None::<&str>,
            )
            .map_err(sys(format!("{what}: propagation")))?;
        }
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locks on it (in a
/// user namespace, nosuid/nodev/noexec/rdonly inherited from the source cannot be lifted).
fn remount_bind(target: &Path, flags: MsFlags) -> Result<(), Errno> {
    let want = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | (flags & !MsFlags::MS_REC);
    match mount(None::<&str>, target, None::<&str>, want, None::<&str>) {
        Err(Errno::EPERM) => {
            let st = nix::sys::statvfs::statvfs(target)?;
            let mut locked = MsFlags::empty();
            let f = st.flags();
            use nix::sys::statvfs::FsFlags;
            for (fs, ms) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(fs) {
                    locked |= ms;
                }
            }
            mount(
                None::<&str>,
                target,
                None::<&str>,
                want | locked,
                None::<&str>,
            )
        }
        other => other,
    }
}

/// The standard devices of a container whose `/dev` is a fresh tmpfs, bind-mounted from
/// the agent's `/dev` (works in a user namespace too), and the usual links.
fn populate_dev(root: &pathrs::Root, plan: &ContainerPlan) -> HelperResult<()> {
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let dest = PathBuf::from("/dev").join(name);
        if plan.devices.iter().any(|d| d.path == dest) {
            continue;
        }
        let host = PathBuf::from("/dev").join(name);
        if !host.exists() {
            continue;
        }
        let m = MountPlan {
            destination: dest,
            source: Some(host),
            fstype: "bind".into(),
            flags: MsFlags::MS_BIND.bits(),
            propagation: Vec::new(),
            data: String::new(),
        };
        mount_entry(root, &m, false)?;
    }
    let links: [(&str, &str); 5] = [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ];
    for (link, target) in links {
        if link == "/dev/ptmx"
            && !plan
                .mounts
                .iter()
                .any(|m| m.destination == Path::new("/dev/pts"))
        {
            continue;
        }
        match root.create(link, &pathrs::InodeType::Symlink(PathBuf::from(target))) {
            Ok(()) => {}
            Err(e) if root.resolve_nofollow(link).is_ok() => {
                tracing::debug!(%e, link, "already present");
            }
            Err(e) => return Err(format!("creating {link}: {e}")),
        }
    }
    Ok(())
}

fn create_device(root: &pathrs::Root, d: &DevicePlan, in_user_ns: bool) -> HelperResult<()> {
    let perm = std::fs::Permissions::from_mode(d.mode & 0o7777);
    let dev = nix::sys::stat::makedev(d.major, d.minor);
    if let Some(parent) = d.path.parent() {
        root.mkdir_all(parent, &std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let inode = match d.kind {
        'c' => pathrs::InodeType::CharacterDevice(perm, dev),
        'b' => pathrs::InodeType::BlockDevice(perm, dev),
        _ => pathrs::InodeType::Fifo(perm),
    };
    let created = if in_user_ns {
        Err("mknod is not allowed in a user namespace".to_string())
    } else {
        root.create(&d.path, &inode).map_err(|e| e.to_string())
    };
    match created {
        Ok(()) => {
            let handle = root
                .resolve_nofollow(&d.path)
                .map_err(|e| format!("{}: {e}", d.path.display()))?;
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                &fd_path(&handle),
                Some(Uid::from_raw(d.uid)),
                Some(Gid::from_raw(d.gid)),
                nix::fcntl::AtFlags::empty(),
            )
            .map_err(sys(format!("chown {}", d.path.display())))?;
            Ok(())
        }
        // Without mknod (user namespace), bind the agent's node of the same path.
        Err(reason) if Path::new(&d.path).exists() => {
            let m = MountPlan {
                destination: d.path.clone(),
                source: Some(d.path.clone()),
                fstype: "bind".into(),
                flags: MsFlags::MS_BIND.bits(),
                propagation: Vec::new(),
                data: String::new(),
            };
            tracing::debug!(%reason, "binding the device instead");
            mount_entry(root, &m, in_user_ns)
        }
        Err(reason) => Err(format!("creating device {}: {reason}", d.path.display())),
    }
}

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Whether `/` is the initial ramfs/tmpfs root, which `pivot_root` cannot leave.
fn root_is_initramfs() -> bool {
    match nix::sys::statfs::statfs("/") {
        Ok(st) => {
            #[allow(clippy::unnecessary_cast)]
            let magic = st.filesystem_type().0 as i64;
            magic == RAMFS_MAGIC || magic == TMPFS_MAGIC
        }
        Err(_) => false,
    }
}

fn enter_rootfs(rootfs: &Path, no_pivot: bool) -> HelperResult<()> {
    let open_dir = |p: &Path| {
        nix::fcntl::open(
            p,
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys(format!("opening {}", p.display())))
    };
    let new_root = open_dir(rootfs)?;
    nix::unistd::fchdir(&new_root).map_err(sys("entering the rootfs"))?;
    if !no_pivot {
        let old_root = open_dir(Path::new("/"))?;
        match nix::unistd::pivot_root(".", ".") {
            Ok(()) => {
                // The old root is stacked under the new one at "/": detach it.
                nix::unistd::fchdir(&old_root).map_err(sys("fchdir(old root)"))?;
                mount(
                    None::<&str>,
                    ".",
                    None::<&str>,
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(sys("making the old root rslave"))?;
                umount2(".", MntFlags::MNT_DETACH).map_err(sys("detaching the old root"))?;
                nix::unistd::chdir("/").map_err(sys("chdir(/)"))?;
                return Ok(());
            }
            Err(Errno::EINVAL) if root_is_initramfs() => {
                tracing::debug!("pivot_root refused on an initramfs; moving the rootfs instead");
            }
            Err(errno) => return Err(format!("pivot_root: {errno}")),
        }
    }
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(sys("moving the rootfs onto /"))?;
    nix::unistd::chroot(".").map_err(sys("chroot"))?;
    nix::unistd::chdir("/").map_err(sys("chdir(/)"))?;
    Ok(())
}

fn finish_rootfs(plan: &ContainerPlan, _in_user_ns: bool) -> HelperResult<()> {
    for path in &plan.masked_paths {
        mask_path(path)?;
    }
    for path in &plan.readonly_paths {
        readonly_path(path)?;
    }
    if plan.readonly_rootfs {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY).map_err(sys("remounting / read-only"))?;
    }
    let propagation = MsFlags::from_bits_retain(plan.rootfs_propagation);
    if propagation != MsFlags::MS_REC | MsFlags::MS_SLAVE {
        mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
            .map_err(sys("setting the rootfs propagation"))?;
    }
    Ok(())
}

fn mask_path(path: &Path) -> HelperResult<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("masking {}: {e}", path.display())),
    };
    let result = if md.is_dir() {
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    match result {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(format!("masking {}: {errno}", path.display())),
    }
}

fn readonly_path(path: &Path) -> HelperResult<()> {
    match mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => return Ok(()),
        Err(errno) => return Err(format!("read-only path {}: {errno}", path.display())),
    }
    remount_bind(path, MsFlags::MS_RDONLY | MsFlags::MS_REC)
        .map_err(sys(format!("read-only path {}", path.display())))
}

// ---------------------------------------------------------------- exec'd process

fn exec_stage1(chan: &mut UnixStream, init_pid: i32, process: &ProcessPlan) -> HelperResult<()> {
    // User first (it grants the rights for the others), mount last (it changes what
    // /proc shows).
    let order = [
        NamespaceKind::User,
        NamespaceKind::Ipc,
        NamespaceKind::Uts,
        NamespaceKind::Network,
        NamespaceKind::Pid,
        NamespaceKind::Cgroup,
        NamespaceKind::Mount,
    ];
    let mut to_join = Vec::new();
    for kind in order {
        let theirs_path = format!("/proc/{init_pid}/ns/{}", kind.proc_name());
        let ours_path = format!("/proc/self/ns/{}", kind.proc_name());
        let theirs = File::open(&theirs_path).map_err(io(&theirs_path))?;
        let same = match (theirs.metadata(), std::fs::metadata(&ours_path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            to_join.push((kind, theirs));
        }
    }
    for (kind, file) in &to_join {
        setns(file.as_fd(), kind.clone_flag())
            .map_err(sys(format!("joining the {} namespace", kind.proc_name())))?;
        if *kind == NamespaceKind::User {
            become_root()?;
        }
    }
    fork_stage2(chan, |_chan| {
        nix::unistd::setsid().map_err(sys("setsid"))?;
        if process.terminal {
            set_controlling_terminal()?;
        }
        let prepared = prepare_process(process)?;
        exec_prepared(process, prepared)
    })
}

// ---------------------------------------------------------------- the process itself

struct Prepared {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

fn cstring(s: &str, what: &str) -> HelperResult<CString> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
}

/// Everything up to the start gate: limits, working directory, user, capabilities, and
/// the executable looked up.
fn prepare_process(p: &ProcessPlan) -> HelperResult<Prepared> {
    for &(resource, soft, hard) in &p.rlimits {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: a valid rlimit struct for the call.
        let rc = unsafe { libc::setrlimit(resource as _, &limit) };
        Errno::result(rc).map_err(sys(format!("setrlimit({resource})")))?;
    }
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(io("oom_score_adj"))?;
    }
    if let Some(mask) = p.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            mask as libc::mode_t,
        ));
    }
    let cwd_before = nix::unistd::chdir(&p.cwd);
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(sys("PR_SET_NO_NEW_PRIVS"))?;
    }
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before dropping it.
    if !p.no_new_privileges
        && let Some(program) = &p.seccomp
    {
        seccomp::install(program).map_err(io("installing the seccomp filter"))?;
    }
    switch_user(p)?;
    if cwd_before.is_err() {
        // Root could not enter it (e.g. a root-squashed share): try as the user.
        nix::unistd::chdir(&p.cwd).map_err(sys(format!("chdir {}", p.cwd.display())))?;
    }
    let env: Vec<CString> = p
        .env
        .iter()
        .map(|e| cstring(e, "an environment variable"))
        .collect::<Result<_, _>>()?;
    let args: Vec<CString> = p
        .args
        .iter()
        .map(|a| cstring(a, "an argument"))
        .collect::<Result<_, _>>()?;
    let path = find_executable(&p.args[0], &p.env)?;
    Ok(Prepared {
        path: cstring(&path.to_string_lossy(), "the executable path")?,
        args,
        env,
    })
}

fn switch_user(p: &ProcessPlan) -> HelperResult<()> {
    use caps::CapSet;
    let set_of = |names: &[String]| -> HelperResult<caps::CapsHashSet> {
        names
            .iter()
            .map(|n| {
                n.parse::<caps::Capability>()
                    .map_err(|e| format!("{n}: {e}"))
            })
            .collect()
    };
    if let Some(c) = &p.capabilities {
        let bounding = set_of(&c.bounding)?;
        for cap in caps::runtime::thread_all_supported() {
            if !bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|e| format!("dropping {cap} from the bounding set: {e}"))?;
            }
        }
        nix::sys::prctl::set_keepcaps(true).map_err(sys("PR_SET_KEEPCAPS"))?;
    }
    let groups: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|&g| Gid::from_raw(g))
        .collect();
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        // A user namespace with setgroups denied: only acceptable with nothing to set.
        Err(Errno::EPERM) if groups.is_empty() => {}
        Err(errno) => return Err(format!("setgroups: {errno}")),
    }
    let gid = Gid::from_raw(p.gid);
    let uid = Uid::from_raw(p.uid);
    nix::unistd::setresgid(gid, gid, gid).map_err(sys(format!("setresgid({})", p.gid)))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(sys(format!("setresuid({})", p.uid)))?;
    if let Some(c) = &p.capabilities {
        // One capset(2) per set, so the order matters: the effective set must stay within
        // the permitted one at every step, and the inheritable one is set while the
        // permitted set still allows it. Permitted last: it only shrinks.
        caps::set(None, CapSet::Inheritable, &set_of(&c.inheritable)?)
            .map_err(|e| format!("inheritable capabilities: {e}"))?;
        caps::set(None, CapSet::Effective, &set_of(&c.effective)?)
            .map_err(|e| format!("effective capabilities: {e}"))?;
        caps::set(None, CapSet::Permitted, &set_of(&c.permitted)?)
            .map_err(|e| format!("permitted capabilities: {e}"))?;
        for cap in set_of(&c.ambient)? {
            if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
                tracing::debug!(%e, %cap, "ambient capability not raised");
            }
        }
        let _ = nix::sys::prctl::set_keepcaps(false);
    }
    Ok(())
}

fn find_executable(arg0: &str, env: &[String]) -> HelperResult<PathBuf> {
    let executable = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map(|c| {
                // SAFETY: a valid C string for access(2).
                unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
            })
            .unwrap_or(false)
            && p.metadata().is_ok_and(|m| m.is_file())
    };
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        return if executable(&p) {
            Ok(p)
        } else {
            Err(format!("{arg0}: not found or not executable"))
        };
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!("{arg0}: executable file not found in $PATH"))
}

/// After the gate: seccomp (with no_new_privs), no fd but 0-2 survives, execve.
/// Returns only on failure.
fn exec_prepared(p: &ProcessPlan, prepared: Prepared) -> HelperResult<()> {
    if p.no_new_privileges
        && let Some(program) = &p.seccomp
    {
        seccomp::install(program).map_err(io("installing the seccomp filter"))?;
    }
    // Every fd above 2 closes at execve (the helper socket included).
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        mark_fds_cloexec();
    }
    let err = nix::unistd::execve(&prepared.path, &prepared.args, &prepared.env)
        .err()
        .unwrap_or(Errno::UnknownErrno);
    Err(format!("execve {}: {err}", prepared.path.to_string_lossy()))
}

/// Fallback for kernels without close_range: walk /proc/self/fd.
fn mark_fds_cloexec() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: setting FD_CLOEXEC on an fd number; harmless if it is not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

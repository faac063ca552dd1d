//! Container bundles in the sandbox's virtio-fs share, laid out as Kata's runtime does:
//! the host directory shared with tag [`SHARED_FS_TAG`] is mounted in the guest at
//! [`GUEST_SHARED_DIR`], and a container `ID` has its rootfs at `<share>/ID/rootfs` on the
//! host, `GUEST_SHARED_DIR/ID/rootfs` in the guest.
//!
//! The rootfs is a busybox tree: Debian's statically linked `/bin/busybox`
//! (`busybox-static`, installed by `just setup`; `HULL_BUSYBOX` points elsewhere) and a
//! symlink per applet. [`ContainerSpec`] writes the `config.json` a Kata runtime would
//! send: new pid, ipc, uts and mount namespaces (never a network one: containers share
//! the sandbox's), the standard mounts (`/proc`, `/dev`, `/dev/pts`, `/dev/shm`,
//! `/dev/mqueue`, `/sys`), Docker's default capabilities, masked and read-only paths.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use hull_protocols::oci;
use hull_protocols::oci_json;
use serde_json::{Value, json};

/// The tag of the sandbox's virtio-fs share (Kata's).
pub const SHARED_FS_TAG: &str = "kataShared";
/// Where the guest mounts that share (Kata's).
pub const GUEST_SHARED_DIR: &str = "/run/kata-containers/shared/containers";

/// Where container `id`'s rootfs is in the guest.
pub fn guest_rootfs(id: &str) -> String {
    format!("{GUEST_SHARED_DIR}/{id}/rootfs")
}

/// The static busybox the rootfs is made of.
pub fn busybox() -> Result<PathBuf> {
    let path = std::env::var_os("HULL_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{} (Debian's busybox-static, installed by `just setup`; or set HULL_BUSYBOX)",
            path.display()
        )
    })?;
    ensure!(
        is_static_elf(&bytes),
        "{} is not a statically linked ELF; a container holds nothing else to load it \
         (install busybox-static)",
        path.display()
    );
    Ok(path)
}

/// A 64-bit little-endian ELF without a program interpreter (`PT_INTERP`).
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let u64_at = |at: usize| {
        bytes
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum))
        .all(|i| u32_at(phoff + i * usize::from(phentsize)).is_some_and(|kind| kind != PT_INTERP))
}

/// The applets this busybox offers (`busybox --list`).
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    ensure!(out.status.success(), "{} --list failed", busybox.display());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .map(str::to_string)
        .collect())
}

/// How [`install_busybox`] puts the binary into a rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyboxCopy {
    /// A hard link where the filesystem allows one (the host's file then IS the
    /// container's: only for roots no container may write to), else a copy.
    HardLinkIfPossible,
    /// Always a copy of its own.
    Copy,
}

/// Puts `busybox` at `<rootfs>/bin/busybox` with a symlink to it for each applet.
pub fn install_busybox(busybox: &Path, rootfs: &Path, how: BusyboxCopy) -> Result<()> {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let target = bin.join("busybox");
    let linked =
        how == BusyboxCopy::HardLinkIfPossible && std::fs::hard_link(busybox, &target).is_ok();
    if !linked {
        std::fs::copy(busybox, &target)
            .with_context(|| format!("copying {} into the rootfs", busybox.display()))?;
    }
    for applet in applets(busybox)? {
        if applet == "busybox" {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(&applet))
            .with_context(|| format!("linking applet {applet}"))?;
    }
    Ok(())
}

/// Lays out container `id`'s busybox rootfs at `<share>/<id>/rootfs`; returns that path.
///
/// Every applet is a symlink to `/bin/busybox`; `/etc` has a root user, `/www` a page for
/// `httpd`, and the mount points of the standard mounts exist.
pub fn busybox_rootfs(share: &Path, id: &str) -> Result<PathBuf> {
    let busybox = busybox()?;
    let rootfs = share.join(id).join("rootfs");
    if rootfs.exists() {
        bail!("{} exists already", rootfs.display());
    }
    for dir in [
        "bin", "proc", "dev", "sys", "tmp", "etc", "root", "www", "run",
    ] {
        std::fs::create_dir_all(rootfs.join(dir))
            .with_context(|| format!("creating {}", rootfs.join(dir).display()))?;
    }
    // A hard link costs nothing when the share is on the same filesystem.
    install_busybox(&busybox, &rootfs, BusyboxCopy::HardLinkIfPossible)?;
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(
        rootfs.join("www/index.html"),
        format!("<h1>hull</h1><p>served by busybox httpd in container {id}</p>\n"),
    )?;
    Ok(rootfs)
}

pub use hull_protocols::oci_json::DEFAULT_CAPABILITIES;

/// `PATH` in a busybox container.
pub const DEFAULT_PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// An OCI spec for a busybox container, Kata-style; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// The process's argv (OCI `process.args`).
    pub args: Vec<String>,
    /// Its environment, `NAME=value` entries (OCI `process.env`); [`DEFAULT_PATH`] unless told.
    pub env: Vec<String>,
    /// Its working directory inside the rootfs (OCI `process.cwd`).
    pub cwd: String,
    /// Run it on a pseudo-terminal (OCI `process.terminal`).
    pub terminal: bool,
    /// Namespaces created for the container (a `pid` left out: the agent gives the
    /// container one of its own all the same, as Kata's agent does).
    pub namespaces: Vec<String>,
    /// Join this PID namespace (`/proc/1/ns/pid`: the guest's) instead of a new one.
    pub pid_namespace_path: Option<String>,
    /// Mounts after the standard ones (OCI `mounts` entries).
    pub extra_mounts: Vec<Value>,
    /// `linux.resources.memory.limit`, bytes.
    pub memory_limit: Option<i64>,
    /// `linux.resources.pids.limit`.
    pub pids_limit: Option<i64>,
    /// The container's hostname (OCI `hostname`); left out unless set.
    pub hostname: Option<String>,
    /// Mount the rootfs read-only (OCI `root.readonly`).
    pub root_readonly: bool,
    /// Capabilities granted on top of Docker's default set (`CAP_SYS_PTRACE` for an
    /// inspector reading other processes' `/proc/<pid>/smaps_rollup` and `fd/`).
    pub extra_capabilities: Vec<String>,
}

impl ContainerSpec {
    /// `args` with the defaults: `PATH`, cwd `/`, namespaces pid, ipc, uts and mount.
    pub fn new<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Self {
        Self {
            args: args.into_iter().map(Into::into).collect(),
            env: vec![DEFAULT_PATH.into()],
            cwd: "/".into(),
            terminal: false,
            namespaces: ["pid", "ipc", "uts", "mount"].map(String::from).to_vec(),
            pid_namespace_path: None,
            extra_mounts: Vec::new(),
            memory_limit: None,
            pids_limit: None,
            hostname: None,
            root_readonly: false,
            extra_capabilities: Vec::new(),
        }
    }

    /// `sh -c SCRIPT`.
    pub fn shell(script: &str) -> Self {
        Self::new(["sh", "-c", script])
    }

    /// Shares the guest's PID namespace (joins `/proc/1/ns/pid`, init's).
    pub fn in_guest_pid_namespace(mut self) -> Self {
        if !self.namespaces.iter().any(|n| n == "pid") {
            self.namespaces.insert(0, "pid".into());
        }
        self.pid_namespace_path = Some("/proc/1/ns/pid".into());
        self
    }

    /// Grants `capability` (`CAP_...`) on top of the default set.
    pub fn with_capability(mut self, capability: &str) -> Self {
        self.extra_capabilities.push(capability.into());
        self
    }

    /// Adds a read-only bind mount of guest path `source` at `destination`.
    pub fn bind_read_only(mut self, source: &str, destination: &str) -> Self {
        self.extra_mounts.push(json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
        }));
        self
    }

    /// The `config.json` of this container, its rootfs at `root_path` (in the guest).
    pub fn config_json(&self, root_path: &str) -> Value {
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc",
                   "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                   "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                   "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                   "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                   "options": ["nosuid", "noexec", "nodev", "ro"]}),
        ];
        mounts.extend(self.extra_mounts.iter().cloned());
        let mut caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        caps.extend(self.extra_capabilities.iter().cloned());
        let mut resources = serde_json::Map::new();
        if let Some(limit) = self.memory_limit {
            resources.insert("memory".into(), json!({"limit": limit}));
        }
        if let Some(limit) = self.pids_limit {
            resources.insert("pids".into(), json!({"limit": limit}));
        }
        let mut linux = json!({
            "namespaces": self.namespaces.iter().map(|n| match &self.pid_namespace_path {
                Some(path) if n == "pid" => json!({"type": n, "path": path}),
                _ => json!({"type": n}),
            }).collect::<Vec<_>>(),
            "maskedPaths": [
                "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                "/proc/scsi", "/sys/firmware"
            ],
            "readonlyPaths": [
                "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                "/proc/sysrq-trigger"
            ],
        });
        if !resources.is_empty() {
            linux["resources"] = Value::Object(resources);
        }
        let mut config = json!({
            "ociVersion": "1.0.2",
            "root": {"path": root_path, "readonly": self.root_readonly},
            "process": {
                "terminal": self.terminal,
                "user": {"uid": 0, "gid": 0},
                "args": self.args,
                "env": self.env,
                "cwd": self.cwd,
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps,
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true,
            },
            "mounts": mounts,
            "linux": linux,
        });
        if let Some(hostname) = &self.hostname {
            config["hostname"] = json!(hostname);
        }
        config
    }

    /// The protobuf the agent gets in `CreateContainer`, for container `id` in the share.
    pub fn to_proto(&self, id: &str) -> Result<oci::Spec> {
        let config = self.config_json(&guest_rootfs(id));
        let spec = oci_json::spec_from_config_json(config.to_string().as_bytes())?;
        Ok(oci_json::spec_to_proto(&spec)?)
    }

    /// The process alone, for `ExecProcess`.
    pub fn process_proto(&self) -> Result<oci::Process> {
        let config = self.config_json("/");
        let spec = oci_json::spec_from_config_json(config.to_string().as_bytes())?;
        let process = spec.process().as_ref().context("the spec has no process")?;
        Ok(oci_json::process_to_proto(process)?)
    }

    /// Writes `<share>/<id>/config.json`, the bundle's spec as `hull-ctl create-container
    /// ID --bundle <share>/<id>` reads it (`root.path` relative: `rootfs`).
    pub fn write_config_json(&self, share: &Path, id: &str) -> Result<PathBuf> {
        let path = share.join(id).join("config.json");
        let text = serde_json::to_string_pretty(&self.config_json("rootfs"))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// The kernel release a bzImage carries (`6.1.192` of "6.1.192 (hull@hull) #1 SMP ..."),
/// read from its setup header: what `uname -r` answers in a guest booted from it.
pub fn kernel_release(bzimage: &Path) -> Result<String> {
    let bytes = std::fs::read(bzimage).with_context(|| format!("{}", bzimage.display()))?;
    ensure!(
        bytes.get(0x202..0x206) == Some(b"HdrS"),
        "{} has no Linux boot header",
        bzimage.display()
    );
    let pointer = bytes
        .get(0x20e..0x210)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .context("truncated boot header")?;
    let text = bytes
        .get(pointer + 0x200..)
        .and_then(|rest| rest.split(|b| *b == 0).next())
        .context("the kernel version string is outside the image")?;
    String::from_utf8_lossy(text)
        .split_whitespace()
        .next()
        .map(str::to_string)
        .context("an empty kernel version string")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_is_kata_style_and_survives_the_protobuf() {
        let spec = ContainerSpec::shell("echo hi");
        let proto = spec.to_proto("c1").unwrap();
        assert_eq!(
            proto.Root.Path,
            "/run/kata-containers/shared/containers/c1/rootfs"
        );
        assert_eq!(proto.Process.Args, ["sh", "-c", "echo hi"]);
        let namespaces: Vec<&str> = proto
            .Linux
            .Namespaces
            .iter()
            .map(|n| n.Type.as_str())
            .collect();
        assert_eq!(namespaces, ["pid", "ipc", "uts", "mount"]);
        let mounts: Vec<&str> = proto
            .Mounts
            .iter()
            .map(|m| m.destination.as_str())
            .collect();
        for wanted in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"] {
            assert!(mounts.contains(&wanted), "{wanted} missing: {mounts:?}");
        }
        let shared = ContainerSpec::shell("ps")
            .in_guest_pid_namespace()
            .bind_read_only("/sys/fs/cgroup", "/cgroup");
        let proto = shared.to_proto("c2").unwrap();
        let pid: Vec<&str> = proto
            .Linux
            .Namespaces
            .iter()
            .filter(|n| n.Type == "pid")
            .map(|n| n.Path.as_str())
            .collect();
        assert_eq!(pid, ["/proc/1/ns/pid"]);
        let last = proto.Mounts.last().unwrap();
        assert_eq!(
            (last.source.as_str(), last.destination.as_str()),
            ("/sys/fs/cgroup", "/cgroup")
        );
    }

    #[test]
    fn limits_reach_the_resources() {
        let spec = ContainerSpec {
            memory_limit: Some(16 << 20),
            pids_limit: Some(8),
            ..ContainerSpec::shell("true")
        };
        let proto = spec.to_proto("c").unwrap();
        let resources = proto.Linux.Resources.as_ref().unwrap();
        assert_eq!(resources.Memory.Limit, 16 << 20);
        assert_eq!(resources.Pids.Limit, 8);
    }

    #[test]
    fn a_rootfs_holds_busybox_and_its_applets() {
        let busybox = busybox().expect("a static busybox (`just setup` installs busybox-static)");
        let share = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(share.path(), "c1").unwrap();
        assert_eq!(rootfs, share.path().join("c1/rootfs"));
        assert_eq!(
            std::fs::read(rootfs.join("bin/busybox")).unwrap(),
            std::fs::read(&busybox).unwrap()
        );
        for applet in ["sh", "uname", "httpd", "wget", "sha256sum", "dd"] {
            let link = std::fs::read_link(rootfs.join("bin").join(applet)).unwrap();
            assert_eq!(link, Path::new("busybox"), "{applet}");
        }
        assert!(
            busybox_rootfs(share.path(), "c1").is_err(),
            "laid out twice"
        );
        let config = ContainerSpec::shell("true")
            .write_config_json(share.path(), "c1")
            .unwrap();
        let text = std::fs::read(config).unwrap();
        let spec = oci_json::spec_from_config_json(&text).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("rootfs"));
    }

    #[test]
    fn static_and_dynamic_elves_are_told_apart() {
        if let Ok(busybox) = busybox() {
            assert!(is_static_elf(&std::fs::read(busybox).unwrap()));
        }
        // This test binary is dynamically linked (it has an interpreter).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn kernel_release_is_read_from_the_setup_header() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("bzImage");
        let mut bytes = vec![0u8; 0x1000];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        bytes[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let text = b"6.1.192 (hull@hull) #1 SMP\0";
        bytes[0x500..0x500 + text.len()].copy_from_slice(text);
        std::fs::write(&image, &bytes).unwrap();
        assert_eq!(kernel_release(&image).unwrap(), "6.1.192");
        std::fs::write(&image, b"not a kernel").unwrap();
        assert!(kernel_release(&image).is_err());
    }
}

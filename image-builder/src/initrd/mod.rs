//! `hull-image initrd`: a gzip-compressed newc initramfs holding hull-init as `/init` and
//! hull-agent, written without root and bit-for-bit reproducibly.

pub mod compress;
pub mod cpio;
pub mod elf;
mod error;
pub mod iptables;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest, Sha256};

pub use self::error::InitrdError;
use self::error::Result;
use crate::arch::Arch;
use crate::fsutil::{AtomicFile, io_err};
use cpio::{Archive, Entry, Kind};

/// Where the agent lives in the initrd.
pub const AGENT_PATH: &str = "usr/bin/hull-agent";
/// The kernel runs `/init` from an initramfs.
pub const INIT_PATH: &str = "init";

/// Hint for a missing guest binary.
pub const GUEST_BUILD_HINT: &str = "build the guest binaries with `just guest` (static, \
    for x86_64-unknown-linux-gnu, profile guest), or pass the path explicitly";

/// A `--extra SRC:DST` file: a host file copied to an absolute path in the guest (initrd
/// or rootfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    /// The host file to copy.
    pub src: PathBuf,
    /// Absolute path in the initrd.
    pub dst: String,
}

/// Where the agent policy baked into an image goes (`--policy`): the file Kata's agent,
/// and hull-agent, read the policy in force before any `SetPolicy` from.
pub const AGENT_POLICY_PATH: &str = "/etc/kata-opa/default-policy.rego";

impl Extra {
    /// `--policy FILE`: a Rego agent policy installed at [`AGENT_POLICY_PATH`].
    pub fn agent_policy(src: PathBuf) -> Extra {
        Extra {
            src,
            dst: AGENT_POLICY_PATH.to_string(),
        }
    }
}

impl FromStr for Extra {
    type Err = InitrdError;

    /// Splits at the last `:` (host paths are likelier to hold one than initrd paths).
    fn from_str(spec: &str) -> Result<Extra> {
        let bad = |reason: &str| InitrdError::InvalidExtra {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (src, dst) = spec
            .rsplit_once(':')
            .ok_or_else(|| bad("expected SRC:DST"))?;
        if src.is_empty() {
            return Err(bad("empty SRC"));
        }
        let Some(rel) = dst.strip_prefix('/') else {
            return Err(bad(
                "DST must be an absolute path in the guest, like /etc/foo",
            ));
        };
        cpio::check_path(rel).map_err(|e| bad(&e.to_string()))?;
        Ok(Extra {
            src: PathBuf::from(src),
            dst: dst.to_string(),
        })
    }
}

/// What goes into the initrd.
#[derive(Debug, Clone)]
pub struct InitrdRequest {
    /// hull-init, put at `/init` (`--init`).
    pub init: PathBuf,
    /// hull-agent, put at `/usr/bin/hull-agent` (`--agent`).
    pub agent: PathBuf,
    /// Host files to add (`--extra SRC:DST`).
    pub extras: Vec<Extra>,
    /// Add the build host's iptables tools (`--with-iptables`, [`iptables`]).
    pub with_iptables: bool,
    /// The guest architecture the binaries must be built for.
    pub arch: Arch,
    /// Modification time of every entry (`SOURCE_DATE_EPOCH`, or 0).
    pub mtime: u32,
}

/// The result of writing an initrd.
#[derive(Debug, Clone)]
pub struct InitrdSummary {
    /// The initrd written.
    pub path: PathBuf,
    /// Its size in bytes (compressed).
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Number of archive entries, directories included.
    pub entries: usize,
    /// Size of the uncompressed cpio archive.
    pub cpio_bytes: u64,
}

/// Parses `SOURCE_DATE_EPOCH` (unset or empty: 0).
pub fn mtime_from_source_date_epoch(value: Option<&str>) -> Result<u32> {
    match value.map(str::trim) {
        None | Some("") => Ok(0),
        Some(v) => v.parse::<u32>().map_err(|_| InitrdError::SourceDateEpoch {
            value: v.to_string(),
        }),
    }
}

/// Reads a guest executable and checks that it can run in the initrd: it exists, is an ELF
/// executable for `arch`, and is static (no `PT_INTERP`).
pub fn read_static_executable(what: &'static str, path: &Path, arch: Arch) -> Result<Vec<u8>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InitrdError::MissingInput {
                what,
                path: path.to_path_buf(),
                hint: GUEST_BUILD_HINT.to_string(),
            });
        }
        Err(e) => return Err(io_err("stat", path)(e).into()),
    };
    if !meta.is_file() {
        return Err(InitrdError::NotAFile {
            what,
            path: path.to_path_buf(),
        });
    }
    let bytes = fs::read(path).map_err(io_err("read", path))?;
    let info = elf::parse(&bytes).map_err(|reason| InitrdError::NotElf {
        what,
        path: path.to_path_buf(),
        reason,
    })?;
    if let Some(interpreter) = info.interpreter {
        return Err(InitrdError::DynamicElf {
            what,
            path: path.to_path_buf(),
            interpreter,
        });
    }
    if info.machine != arch.elf_machine() || !info.is_64 {
        return Err(InitrdError::WrongArch {
            what,
            path: path.to_path_buf(),
            found: format!(
                "{} ({}-bit)",
                elf::machine_name(info.machine),
                if info.is_64 { 64 } else { 32 }
            ),
            expected: arch.name().to_string(),
        });
    }
    Ok(bytes)
}

fn dir(perm: u32) -> Entry {
    Entry {
        perm,
        kind: Kind::Dir,
    }
}

fn file(perm: u32, data: impl Into<Vec<u8>>) -> Entry {
    Entry {
        perm,
        kind: Kind::File(data.into()),
    }
}

/// The fixed part of the initrd: directories, device nodes and `/etc` files.
pub fn base_entries() -> Vec<(&'static str, Entry)> {
    let os_release = format!(
        "NAME=hull\nID=hull\nPRETTY_NAME=\"hull guest\"\nVERSION_ID={}\n",
        env!("CARGO_PKG_VERSION")
    );
    vec![
        ("bin", dir(0o755)),
        ("dev", dir(0o755)),
        (
            "dev/console",
            Entry {
                perm: 0o600,
                kind: Kind::CharDev { major: 5, minor: 1 },
            },
        ),
        (
            "dev/null",
            Entry {
                perm: 0o666,
                kind: Kind::CharDev { major: 1, minor: 3 },
            },
        ),
        ("etc", dir(0o755)),
        ("etc/group", file(0o644, "root:x:0:\nnogroup:x:65534:\n")),
        ("etc/hostname", file(0o644, "hull\n")),
        (
            "etc/nsswitch.conf",
            file(
                0o644,
                "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n\
                 networks: files\nprotocols: files\nservices: files\n",
            ),
        ),
        ("etc/os-release", file(0o644, os_release)),
        (
            "etc/passwd",
            file(
                0o644,
                "root:x:0:0:root:/root:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
            ),
        ),
        ("mnt", dir(0o755)),
        ("proc", dir(0o555)),
        ("root", dir(0o700)),
        ("run", dir(0o755)),
        ("sbin", dir(0o755)),
        ("sys", dir(0o555)),
        ("tmp", dir(0o1777)),
        ("usr", dir(0o755)),
        ("usr/bin", dir(0o755)),
    ]
}

/// Lays out the archive from already-read contents. Pure: the same inputs always give the
/// same archive. Extras are `(initrd path without leading /, mode, bytes)`.
pub fn layout(
    init: Vec<u8>,
    agent: Vec<u8>,
    extras: Vec<(String, u32, Vec<u8>)>,
) -> Result<Archive> {
    let mut a = Archive::new();
    for (path, entry) in base_entries() {
        a.add(path, entry)?;
    }
    a.add(INIT_PATH, file(0o755, init))?;
    a.add(AGENT_PATH, file(0o755, agent))?;
    for (path, perm, data) in extras {
        a.add(&path, file(perm, data))?;
    }
    Ok(a)
}

/// Reads the `--extra` files: `(path without leading /, mode, bytes)`. Only the executable
/// bit of a source matters (0755 or 0644); ownership and other bits do not, so the result
/// does not depend on the builder's umask.
pub fn read_extras(extras: &[Extra]) -> Result<Vec<(String, u32, Vec<u8>)>> {
    let mut out = Vec::new();
    for extra in extras {
        let meta = match fs::metadata(&extra.src) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InitrdError::MissingInput {
                    what: "--extra file",
                    path: extra.src.clone(),
                    hint: "check the SRC of --extra SRC:DST".to_string(),
                });
            }
            Err(e) => return Err(io_err("stat", &extra.src)(e).into()),
        };
        if !meta.is_file() {
            return Err(InitrdError::NotAFile {
                what: "--extra file",
                path: extra.src.clone(),
            });
        }
        let data = fs::read(&extra.src).map_err(io_err("read", &extra.src))?;
        let perm = if meta.permissions().mode() & 0o111 != 0 {
            0o755
        } else {
            0o644
        };
        let rel = extra.dst.trim_start_matches('/').to_string();
        out.push((rel, perm, data));
    }
    Ok(out)
}

/// Reads every input, lays out the archive and returns the compressed image.
pub fn render(req: &InitrdRequest) -> Result<(Vec<u8>, usize, u64)> {
    let init = read_static_executable("init binary", &req.init, req.arch)?;
    let agent = read_static_executable("agent binary", &req.agent, req.arch)?;
    let extras = read_extras(&req.extras)?;
    let mut archive = layout(init, agent, extras)?;
    if req.with_iptables {
        for (path, entry) in iptables::entries(Path::new("/"))? {
            archive.add(&path, entry)?;
        }
    }
    let cpio = archive.to_bytes(req.mtime)?;
    let gz = compress::gzip(&cpio).map_err(io_err("compress", "initrd"))?;
    Ok((gz, archive.len(), cpio.len() as u64))
}

/// Builds the initrd and writes it to `output` atomically (`<output>.tmp-<pid>`, then
/// rename): the final name never holds a partial file.
pub fn build(req: &InitrdRequest, output: &Path) -> Result<InitrdSummary> {
    let (bytes, entries, cpio_bytes) = render(req)?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut out = AtomicFile::create(output).map_err(|e| InitrdError::OutputNotWritable {
        dir: dir.clone(),
        source: e,
    })?;
    out.write_all(&bytes)?;
    out.set_mode(0o644)?;
    out.commit()?;
    Ok(InitrdSummary {
        path: output.to_path_buf(),
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        entries,
        cpio_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn extra_spec_parsing() {
        assert_eq!(
            "a/b:c:/etc/x.conf".parse::<Extra>().unwrap(),
            Extra {
                src: "a/b:c".into(),
                dst: "/etc/x.conf".into()
            }
        );
        for bad in [
            "nocolon",
            ":/etc/x",
            "src:etc/x",
            "src:/",
            "src:/a/../b",
            "src:/a//b",
        ] {
            assert!(
                matches!(bad.parse::<Extra>(), Err(InitrdError::InvalidExtra { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn source_date_epoch_parsing() {
        assert_eq!(mtime_from_source_date_epoch(None).unwrap(), 0);
        assert_eq!(mtime_from_source_date_epoch(Some("")).unwrap(), 0);
        assert_eq!(
            mtime_from_source_date_epoch(Some("1700000000")).unwrap(),
            1_700_000_000
        );
        for bad in ["-1", "abc", "99999999999", "1.5"] {
            assert!(mtime_from_source_date_epoch(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn layout_has_everything_in_order() {
        let a = layout(b"init".to_vec(), b"agent".to_vec(), vec![]).unwrap();
        let bytes = a.to_bytes(0).unwrap();
        let entries = cpio::tests::parse(&bytes);
        let names: Vec<&str> = entries.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "dev",
                "dev/console",
                "dev/null",
                "etc",
                "etc/group",
                "etc/hostname",
                "etc/nsswitch.conf",
                "etc/os-release",
                "etc/passwd",
                "init",
                "mnt",
                "proc",
                "root",
                "run",
                "sbin",
                "sys",
                "tmp",
                "usr",
                "usr/bin",
                "usr/bin/hull-agent",
                cpio::TRAILER,
            ]
        );
        let get = |name: &str| entries.iter().find(|(_, n, _)| n == name).unwrap();
        let (console, _, _) = get("dev/console");
        assert_eq!(
            (console.mode, console.rdevmajor, console.rdevminor),
            (cpio::S_IFCHR | 0o600, 5, 1)
        );
        let (null, _, _) = get("dev/null");
        assert_eq!(
            (null.mode, null.rdevmajor, null.rdevminor),
            (cpio::S_IFCHR | 0o666, 1, 3)
        );
        assert_eq!(get("tmp").0.mode, cpio::S_IFDIR | 0o1777);
        assert_eq!(get("init").0.mode, cpio::S_IFREG | 0o755);
        assert_eq!(get("init").2, b"init");
        assert_eq!(get("usr/bin/hull-agent").0.mode, cpio::S_IFREG | 0o755);
        assert_eq!(get("etc/hostname").2, b"hull\n");
        assert!(String::from_utf8_lossy(&get("etc/os-release").2).contains("ID=hull\n"));
        assert!(entries.iter().all(|(h, _, _)| h.uid == 0 && h.gid == 0));
    }

    #[test]
    fn extras_cannot_replace_init_or_agent() {
        let err = layout(
            b"i".to_vec(),
            b"a".to_vec(),
            vec![("init".into(), 0o755, b"x".to_vec())],
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                InitrdError::Cpio(cpio::CpioError::DuplicateEntry { .. })
            ),
            "{err:?}"
        );
    }

    fn inputs(dir: &Path) -> InitrdRequest {
        let init = dir.join("hull-init");
        let agent = dir.join("hull-agent");
        fs::write(&init, elf::synthesize(62, None)).unwrap();
        let mut agent_bytes = elf::synthesize(62, None);
        agent_bytes.extend_from_slice(b"agent");
        fs::write(&agent, agent_bytes).unwrap();
        InitrdRequest {
            init,
            agent,
            extras: vec![],
            with_iptables: false,
            arch: Arch::X86_64,
            mtime: 0,
        }
    }

    #[test]
    fn build_is_reproducible_and_mtime_sensitive() {
        let dir = tempfile::tempdir().unwrap();
        let req = inputs(dir.path());
        let a = build(&req, &dir.path().join("a.img")).unwrap();
        let b = build(&req, &dir.path().join("b.img")).unwrap();
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(fs::read(&a.path).unwrap(), fs::read(&b.path).unwrap());
        let c = build(
            &InitrdRequest {
                mtime: 1_700_000_000,
                ..req.clone()
            },
            &dir.path().join("c.img"),
        )
        .unwrap();
        assert_ne!(a.sha256, c.sha256);
        let entries = cpio::tests::parse(&gunzip(&fs::read(&c.path).unwrap()));
        assert!(
            entries[..entries.len() - 1]
                .iter()
                .all(|(h, _, _)| h.mtime == 1_700_000_000)
        );
    }

    #[test]
    fn input_validation_errors() {
        let dir = tempfile::tempdir().unwrap();
        let req = inputs(dir.path());
        let out = dir.path().join("initrd.img");

        let missing = InitrdRequest {
            init: dir.path().join("nope"),
            ..req.clone()
        };
        let msg = build(&missing, &out).unwrap_err().to_string();
        assert!(msg.contains("nope") && msg.contains("just guest"), "{msg}");

        let dynamic = dir.path().join("dyn");
        fs::write(
            &dynamic,
            elf::synthesize(62, Some("/lib64/ld-linux-x86-64.so.2")),
        )
        .unwrap();
        let err = build(
            &InitrdRequest {
                agent: dynamic,
                ..req.clone()
            },
            &out,
        )
        .unwrap_err();
        assert!(matches!(err, InitrdError::DynamicElf { .. }), "{err:?}");
        assert!(err.to_string().contains("ld-linux"), "{err}");

        let script = dir.path().join("script");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = build(
            &InitrdRequest {
                init: script,
                ..req.clone()
            },
            &out,
        )
        .unwrap_err();
        assert!(matches!(err, InitrdError::NotElf { .. }), "{err:?}");

        let arm = dir.path().join("arm");
        fs::write(&arm, elf::synthesize(183, None)).unwrap();
        let err = build(
            &InitrdRequest {
                init: arm,
                ..req.clone()
            },
            &out,
        )
        .unwrap_err();
        assert!(err.to_string().contains("aarch64"), "{err}");

        let err = build(
            &InitrdRequest {
                init: dir.path().to_path_buf(),
                ..req.clone()
            },
            &out,
        )
        .unwrap_err();
        assert!(matches!(err, InitrdError::NotAFile { .. }), "{err:?}");

        // Nothing was written under the final name, and no temporary file is left.
        assert!(!out.exists());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn extras_are_added_with_mode_from_exec_bit() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = inputs(dir.path());
        let conf = dir.path().join("agent.toml");
        fs::write(&conf, "x = 1\n").unwrap();
        let tool = dir.path().join("tool");
        fs::write(&tool, "bin").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o700)).unwrap();
        req.extras = vec![
            format!("{}:/etc/hull/agent.toml", conf.display())
                .parse()
                .unwrap(),
            format!("{}:/sbin/tool", tool.display()).parse().unwrap(),
        ];
        let s = build(&req, &dir.path().join("x.img")).unwrap();
        let entries = cpio::tests::parse(&gunzip(&fs::read(&s.path).unwrap()));
        let get = |name: &str| entries.iter().find(|(_, n, _)| n == name).unwrap();
        assert_eq!(get("etc/hull").0.mode, cpio::S_IFDIR | 0o755);
        assert_eq!(get("etc/hull/agent.toml").0.mode, cpio::S_IFREG | 0o644);
        assert_eq!(get("etc/hull/agent.toml").2, b"x = 1\n");
        assert_eq!(get("sbin/tool").0.mode, cpio::S_IFREG | 0o755);
    }

    #[test]
    fn unwritable_output_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let req = inputs(dir.path());
        let err = build(&req, &dir.path().join("no/such/dir/initrd.img")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no/such/dir"), "{msg}");
    }
}

//! `--with-iptables`: Debian's legacy iptables tools for the agent's `GetIPTables` /
//! `SetIPTables`, taken from the build host (`apt-get install iptables`; `just setup`
//! does it). They are dynamically linked, so what they need comes too, found by
//! following `DT_NEEDED` from the host's library directories: the multi-call binary
//! `xtables-legacy-multi` at `/usr/sbin` with a link per tool (`iptables-save`,
//! `iptables-restore`, the `ip6tables` ones...), the xtables match/target plugins
//! (`/usr/lib/x86_64-linux-gnu/xtables`, loaded by name at run time), the shared
//! libraries at `/usr/lib/x86_64-linux-gnu` (with `/lib` linked to `/usr/lib`, as on a
//! merged-/usr Debian), the dynamic loader at its `PT_INTERP` path, and
//! `/etc/protocols` for protocol names. About 3 MB before compression.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::cpio::{Entry, Kind};
use super::elf;
use super::error::{InitrdError, Result};
use crate::fsutil::io_err;

/// The multi-call binary, relative to the host root.
pub const XTABLES_MULTI: &str = "usr/sbin/xtables-legacy-multi";
/// The tools linked to it (it picks its job by the name it is called by).
pub const TOOL_LINKS: &[&str] = &[
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];
/// Where the plugins are, on the host and in the guest (compiled into libxtables).
pub const PLUGIN_DIR: &str = "usr/lib/x86_64-linux-gnu/xtables";
/// Where the libraries go in the guest.
pub const LIB_DIR: &str = "usr/lib/x86_64-linux-gnu";
/// Host directories a `DT_NEEDED` name is looked up in, relative to the host root.
const HOST_LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "usr/lib64",
];
const HINT: &str = "--with-iptables takes Debian's iptables from the build host: \
    `apt-get install iptables` (`just setup` installs it)";

fn file(perm: u32, data: Vec<u8>) -> Entry {
    Entry {
        perm,
        kind: Kind::File(data),
    }
}

fn read(host_root: &Path, rel: &str, what: &'static str) -> Result<Vec<u8>> {
    let path = host_root.join(rel);
    match fs::read(&path) {
        Ok(data) => Ok(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(InitrdError::MissingInput {
            what,
            path,
            hint: HINT.to_string(),
        }),
        Err(e) => Err(io_err("read", &path)(e).into()),
    }
}

/// The first host library directory holding `name`.
fn find_library(host_root: &Path, name: &str) -> Result<PathBuf> {
    HOST_LIB_DIRS
        .iter()
        .map(|dir| host_root.join(dir).join(name))
        .find(|p| p.exists())
        .ok_or_else(|| InitrdError::MissingInput {
            what: "shared library",
            path: PathBuf::from(name),
            hint: format!(
                "looked in {} below {}",
                HOST_LIB_DIRS.join(", "),
                host_root.display()
            ),
        })
}

fn not_elf(path: &Path, reason: String) -> InitrdError {
    InitrdError::NotElf {
        what: "iptables file",
        path: path.to_path_buf(),
        reason,
    }
}

/// The guest entries (`path without leading /` → entry) of the iptables tools, taken
/// from the host tree at `host_root` (`/`).
pub fn entries(host_root: &Path) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    let multi = read(host_root, XTABLES_MULTI, "iptables binary")?;
    let info = elf::parse(&multi).map_err(|r| not_elf(&host_root.join(XTABLES_MULTI), r))?;
    // Everything whose libraries must come along.
    let mut pending: Vec<(PathBuf, Vec<u8>)> = vec![(host_root.join(XTABLES_MULTI), multi.clone())];
    out.insert(XTABLES_MULTI.to_string(), file(0o755, multi));
    for tool in TOOL_LINKS {
        out.insert(
            format!("usr/sbin/{tool}"),
            Entry {
                perm: 0o777,
                kind: Kind::Symlink("xtables-legacy-multi".into()),
            },
        );
    }
    let plugin_dir = host_root.join(PLUGIN_DIR);
    let mut plugins: Vec<_> = fs::read_dir(&plugin_dir)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => InitrdError::MissingInput {
                what: "xtables plugin directory",
                path: plugin_dir.clone(),
                hint: HINT.to_string(),
            },
            _ => io_err("read", &plugin_dir)(e).into(),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    plugins.sort();
    for plugin in plugins {
        let Some(name) = plugin.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let data = fs::read(&plugin).map_err(io_err("read", &plugin))?;
        out.insert(format!("{PLUGIN_DIR}/{name}"), file(0o644, data.clone()));
        pending.push((plugin.clone(), data));
    }
    // Libraries, transitively.
    let mut seen = BTreeSet::new();
    while let Some((path, data)) = pending.pop() {
        for name in elf::needed_libraries(&data).map_err(|r| not_elf(&path, r))? {
            if !seen.insert(name.clone()) {
                continue;
            }
            let lib = find_library(host_root, &name)?;
            let bytes = fs::read(&lib).map_err(io_err("read", &lib))?;
            out.insert(format!("{LIB_DIR}/{name}"), file(0o755, bytes.clone()));
            pending.push((lib, bytes));
        }
    }
    // The dynamic loader, where the binaries ask for it.
    if let Some(interpreter) = info.interpreter {
        let rel = interpreter.trim_start_matches('/').to_string();
        let loader = read(host_root, &rel, "dynamic loader")?;
        out.insert(rel, file(0o755, loader));
    }
    out.insert(
        "lib".to_string(),
        Entry {
            perm: 0o777,
            kind: Kind::Symlink("usr/lib".into()),
        },
    );
    if let Ok(protocols) = fs::read(host_root.join("etc/protocols")) {
        out.insert("etc/protocols".to_string(), file(0o644, protocols));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_iptables_is_told_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let error = entries(dir.path()).unwrap_err();
        assert!(matches!(error, InitrdError::MissingInput { .. }), "{error}");
        assert!(
            error.to_string().contains("apt-get install iptables"),
            "{error}"
        );
    }

    #[test]
    fn the_hosts_iptables_comes_with_its_libraries() {
        let root = Path::new("/");
        assert!(
            root.join(XTABLES_MULTI).exists(),
            "/{XTABLES_MULTI} is missing: `just setup` installs Debian's iptables"
        );
        let entries = entries(root).unwrap();
        for needed in [
            "usr/sbin/iptables-save",
            "usr/sbin/ip6tables-restore",
            "usr/lib/x86_64-linux-gnu/libxtables.so.12",
            "usr/lib/x86_64-linux-gnu/libip4tc.so.2",
            "usr/lib/x86_64-linux-gnu/libc.so.6",
            "usr/lib/x86_64-linux-gnu/xtables/libxt_tcp.so",
            "usr/lib/x86_64-linux-gnu/xtables/libxt_standard.so",
            "lib64/ld-linux-x86-64.so.2",
        ] {
            assert!(entries.contains_key(needed), "{needed} missing");
        }
    }
}

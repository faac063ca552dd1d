//! The landed-option check: did every requested option get the requested value in `.config`?

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::Path;

use super::fragment::{Requirement, Value};

/// Reads a kconfig `.config`: `CONFIG_X=val` and `# CONFIG_X is not set` lines.
pub fn parse_dotconfig(text: &str) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                if name.starts_with("CONFIG_") {
                    out.insert(name.to_string(), Value::NotSet);
                }
            }
        } else if line.starts_with("CONFIG_") {
            if let Some((name, value)) = line.split_once('=') {
                let value = if value == "n" {
                    Value::NotSet
                } else {
                    Value::Set(value.to_string())
                };
                out.insert(name.to_string(), value);
            }
        }
    }
    out
}

/// One requested option that did not land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The option, with the `CONFIG_` prefix.
    pub name: String,
    /// The value the fragment asked for.
    pub requested: Value,
    /// `None` when `.config` does not mention the option at all.
    pub actual: Option<Value>,
    /// `file:line` of the fragment line that requested it.
    pub requested_at: String,
    /// For an absent option: where its Kconfig entry is (`Some(path)`), or that the
    /// kernel has none (`Some(None)`); `None` when not looked up.
    pub defined_in: Option<Option<String>>,
}

/// Every requested option that did not land, with a readable report as `Display`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NotLanded {
    /// The options that did not land, in request order.
    pub mismatches: Vec<Mismatch>,
    /// Total number of requested options.
    pub requested: usize,
}

impl fmt::Display for NotLanded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} of {} requested kernel options did not land in .config:",
            self.mismatches.len(),
            self.requested
        )?;
        let width = self
            .mismatches
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(0);
        for m in &self.mismatches {
            let actual = match (&m.actual, &m.defined_in) {
                (None, Some(Some(file))) => {
                    format!("absent (its dependencies are off; see `config` in {file})")
                }
                (None, Some(None)) => "absent (this kernel has no such option)".to_string(),
                (None, None) => {
                    "absent (not visible: a dependency is off, or no such option)".to_string()
                }
                (Some(Value::NotSet), _) => "is not set".to_string(),
                (Some(Value::Set(v)), _) => format!("={v}"),
            };
            let requested = match &m.requested {
                Value::NotSet => "is not set".to_string(),
                Value::Set(v) => format!("={v}"),
            };
            writeln!(
                f,
                "  {:width$}  requested {requested} ({}), got {actual}",
                m.name, m.requested_at
            )?;
        }
        write!(
            f,
            "an option usually fails to land because one of its dependencies is off (add it to a \
             fragment), its name is misspelt, or this kernel version does not have it"
        )
    }
}

/// Compares two kconfig values: equal text, or equal numbers (`16` and `0x10`).
fn same_value(requested: &str, actual: &str) -> bool {
    if requested == actual {
        return true;
    }
    match (parse_number(requested), parse_number(actual)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn parse_number(s: &str) -> Option<i128> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i128::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// Returns every requirement whose value is not the one in `.config`.
///
/// A `is not set` request is met when `.config` says `# CONFIG_X is not set` or does not
/// mention the option (an invisible option is off). A value request is met only by the
/// same value.
pub fn check(requirements: &[Requirement], dotconfig: &str) -> Result<(), NotLanded> {
    let actual = parse_dotconfig(dotconfig);
    let mut mismatches = Vec::new();
    for req in requirements {
        let got = actual.get(&req.name);
        let landed = match (&req.value, got) {
            (Value::NotSet, None | Some(Value::NotSet)) => true,
            (Value::Set(want), Some(Value::Set(have))) => same_value(want, have),
            _ => false,
        };
        if !landed {
            mismatches.push(Mismatch {
                name: req.name.clone(),
                requested: req.value.clone(),
                actual: got.cloned(),
                requested_at: req.location(),
                defined_in: None,
            });
        }
    }
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(NotLanded {
            mismatches,
            requested: requirements.len(),
        })
    }
}

impl NotLanded {
    /// Says, for every absent option, where the kernel defines it or that it does not.
    /// `symbols` maps `CONFIG_NAME` to the Kconfig file that defines it.
    pub fn annotate_absent(&mut self, symbols: &HashMap<String, String>) {
        for m in &mut self.mismatches {
            if m.actual.is_none() {
                m.defined_in = Some(symbols.get(&m.name).cloned());
            }
        }
    }

    /// Whether any requested option is absent from `.config`.
    pub fn has_absent(&self) -> bool {
        self.mismatches.iter().any(|m| m.actual.is_none())
    }
}

/// Reads the `config NAME` / `menuconfig NAME` entries of every `Kconfig*` file under
/// `tree`: `CONFIG_NAME` -> path of the file, relative to `tree`.
pub fn kconfig_symbols(tree: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            if !ft.is_file() || !entry.file_name().to_string_lossy().starts_with("Kconfig") {
                continue;
            }
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let rel = path
                .strip_prefix(tree)
                .unwrap_or(&path)
                .display()
                .to_string();
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if let (Some("config" | "menuconfig"), Some(name)) = (words.next(), words.next()) {
                    out.entry(format!("CONFIG_{name}"))
                        .or_insert_with(|| rel.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fragment::parse_fragment;

    const DOTCONFIG: &str = "\
#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.0 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT=\"gcc (Debian 12.2.0-14) 12.2.0\"
CONFIG_64BIT=y
CONFIG_VIRTIO=y
CONFIG_NR_CPUS=64
CONFIG_PHYSICAL_START=0x1000000
CONFIG_CMDLINE=\"console=ttyS0\"
# CONFIG_MODULES is not set
# CONFIG_VIRTIO_PCI is not set
";

    fn reqs(text: &str) -> Vec<Requirement> {
        parse_fragment("10-virtio.conf", text).unwrap()
    }

    #[test]
    fn all_landed() {
        let r = reqs(
            "CONFIG_64BIT=y\nCONFIG_VIRTIO=y\nCONFIG_NR_CPUS=64\nCONFIG_PHYSICAL_START=0x1000000\n\
             CONFIG_CMDLINE=\"console=ttyS0\"\n# CONFIG_MODULES is not set\n\
             # CONFIG_NOT_IN_THIS_KERNEL is not set\nCONFIG_VIRTIO_PCI=n\n",
        );
        assert_eq!(check(&r, DOTCONFIG), Ok(()));
    }

    #[test]
    fn numbers_compare_by_value() {
        let r = reqs("CONFIG_PHYSICAL_START=16777216\nCONFIG_NR_CPUS=0x40\n");
        assert_eq!(check(&r, DOTCONFIG), Ok(()));
    }

    #[test]
    fn reports_every_missing_and_wrong_option() {
        let r = reqs(
            "CONFIG_VIRTIO=y\nCONFIG_VIRTIO_PCI=y\nCONFIG_VIRTIO_BLK=y\nCONFIG_NR_CPUS=8\n\
             # CONFIG_64BIT is not set\nCONFIG_CMDLINE=\"quiet\"\n",
        );
        let err = check(&r, DOTCONFIG).unwrap_err();
        assert_eq!(err.requested, 6);
        let got: Vec<(&str, Option<Value>, &str)> = err
            .mismatches
            .iter()
            .map(|m| (m.name.as_str(), m.actual.clone(), m.requested_at.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CONFIG_VIRTIO_PCI", Some(Value::NotSet), "10-virtio.conf:2"),
                ("CONFIG_VIRTIO_BLK", None, "10-virtio.conf:3"),
                (
                    "CONFIG_NR_CPUS",
                    Some(Value::Set("64".into())),
                    "10-virtio.conf:4"
                ),
                (
                    "CONFIG_64BIT",
                    Some(Value::Set("y".into())),
                    "10-virtio.conf:5"
                ),
                (
                    "CONFIG_CMDLINE",
                    Some(Value::Set("\"console=ttyS0\"".into())),
                    "10-virtio.conf:6"
                ),
            ]
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("5 of 6 requested kernel options did not land"),
            "{msg}"
        );
        for m in &err.mismatches {
            assert!(msg.contains(&m.name), "{msg}");
            assert!(msg.contains(&m.requested_at), "{msg}");
        }
        assert!(
            msg.contains("requested =y (10-virtio.conf:2), got is not set"),
            "{msg}"
        );
        assert!(
            msg.contains("requested is not set (10-virtio.conf:5), got =y"),
            "{msg}"
        );
        assert!(
            msg.contains("requested =8 (10-virtio.conf:4), got =64"),
            "{msg}"
        );
    }

    #[test]
    fn absent_options_say_whether_the_kernel_has_them() {
        let tree = tempfile::tempdir().unwrap();
        let drivers = tree.path().join("drivers/virtio");
        fs::create_dir_all(&drivers).unwrap();
        fs::write(
            drivers.join("Kconfig"),
            "menuconfig VIRTIO_MENU\n\tbool \"x\"\nconfig VIRTIO_BLK\n\ttristate \"y\"\n",
        )
        .unwrap();
        let symbols = kconfig_symbols(tree.path());
        assert_eq!(
            symbols.get("CONFIG_VIRTIO_BLK").map(String::as_str),
            Some("drivers/virtio/Kconfig")
        );
        assert!(symbols.contains_key("CONFIG_VIRTIO_MENU"));

        let r = reqs("CONFIG_VIRTIO_BLK=y\nCONFIG_VIRTIO_BLKK=y\nCONFIG_NR_CPUS=8\n");
        let mut err = check(&r, DOTCONFIG).unwrap_err();
        assert!(err.has_absent());
        err.annotate_absent(&symbols);
        let msg = err.to_string();
        assert!(
            msg.contains(
                "got absent (its dependencies are off; see `config` in drivers/virtio/Kconfig)"
            ),
            "{msg}"
        );
        assert!(msg.contains("CONFIG_VIRTIO_BLKK  requested =y (10-virtio.conf:2), got absent (this kernel has no such option)"), "{msg}");
        assert_eq!(err.mismatches[2].defined_in, None);
    }

    #[test]
    fn module_is_not_built_in() {
        let r = reqs("CONFIG_VIRTIO=m\n");
        let err = check(&r, DOTCONFIG).unwrap_err();
        assert_eq!(err.mismatches.len(), 1);
    }
}

//! Mount options as `mount(8)` writes them (`ro,nosuid,size=64m,rslave`), split into what
//! `mount(2)` takes: the flags, the propagation changes made after the mount, and the
//! file-system-specific rest (`data`).
//!
//! There is one parser for every mount hull makes: the agent's storages (`Storage.options`
//! of `CreateSandbox`/`CreateContainer`) and the mounts of an OCI spec (`mounts[].options`)
//! that the container helper carries out. It lives here, in the leaf crate both users
//! depend on: `hull-common` is for code without dependencies (hull-init links it and must
//! stay tiny), and the options are `nix` flags.
//!
//! The rules, in the order they are tried for each option:
//!
//! - An item may hold several options separated by commas; blanks around them are
//!   dropped; empty options and `defaults` mean nothing.
//! - Refused: an option with a NUL byte; `remount` (hull makes mounts, it never
//!   remounts one on request); options no hull mount can honour yet: `tmpcopyup`,
//!   `idmap`, `ridmap`, `recursive`, and the recursive attributes (`rro`, `rnosuid`, ...,
//!   which need `mount_setattr`).
//! - The eight propagation options (`private`, `rprivate`, `shared`, `rshared`, `slave`,
//!   `rslave`, `unbindable`, `runbindable`) are kept in order and applied one by one after
//!   the mount, as `mount(8)` does.
//! - Flag options set or clear one `MS_*` flag; a later option wins over an earlier one
//!   (`ro,rw` is read-write). `bind` and `rbind` make a bind mount.
//! - Anything else is the file system's: it goes to `data`, untouched, for the kernel to
//!   accept or refuse (`size=64m`, `mode=755`, `lowerdir=...`).

use nix::mount::MsFlags;

/// An option no hull mount accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mount option {option:?}: {reason}")]
pub struct MountOptionError {
    pub option: String,
    pub reason: &'static str,
}

/// Parsed `mount(8)`-style options: flags for `mount(2)`, the propagation changes to apply
/// after it (in order), and the file-system-specific rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl MountOptions {
    /// Parses options by the rules of the [module documentation](self).
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<Self, MountOptionError> {
        let mut parsed = Self::default();
        for item in options {
            for option in item.as_ref().split(',').map(str::trim) {
                parsed.add(option)?;
            }
        }
        Ok(parsed)
    }

    fn add(&mut self, option: &str) -> Result<(), MountOptionError> {
        let refuse = |reason| {
            Err(MountOptionError {
                option: option.to_string(),
                reason,
            })
        };
        if option.is_empty() || option == "defaults" {
            return Ok(());
        }
        if option.contains('\0') {
            return refuse("contains a NUL byte");
        }
        if option == "remount" {
            return refuse("a mount is made, not remounted");
        }
        if matches!(option, "tmpcopyup" | "idmap" | "ridmap" | "recursive") {
            return refuse("not supported");
        }
        if is_recursive_attribute(option) {
            return refuse("recursive mount attributes are not supported");
        }
        if let Some(propagation) = propagation_flag(option) {
            self.propagation.push(propagation);
        } else if let Some((set, flag)) = flag(option) {
            if set {
                self.flags.insert(flag);
            } else {
                self.flags.remove(flag);
            }
        } else {
            self.data.push(option.to_string());
        }
        Ok(())
    }

    /// Whether `ro` was asked for.
    pub fn read_only(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }

    /// Whether this is a bind mount (`bind` or `rbind`).
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The file-system-specific options, comma-separated, as `mount(2)` takes them.
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }
}

/// `(set, flag)` for the options that are `mount(2)` flags.
fn flag(option: &str) -> Option<(bool, MsFlags)> {
    Some(match option {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "suid" => (false, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "dev" => (false, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "async" => (false, MsFlags::MS_SYNCHRONOUS),
        "dirsync" => (true, MsFlags::MS_DIRSYNC),
        "mand" => (true, MsFlags::MS_MANDLOCK),
        "nomand" => (false, MsFlags::MS_MANDLOCK),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "atime" => (false, MsFlags::MS_NOATIME),
        "nodiratime" => (true, MsFlags::MS_NODIRATIME),
        "diratime" => (false, MsFlags::MS_NODIRATIME),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "norelatime" => (false, MsFlags::MS_RELATIME),
        "strictatime" => (true, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
        "lazytime" => (true, MsFlags::MS_LAZYTIME),
        "nolazytime" => (false, MsFlags::MS_LAZYTIME),
        "silent" => (true, MsFlags::MS_SILENT),
        "loud" => (false, MsFlags::MS_SILENT),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        _ => return None,
    })
}

/// The `MS_*` change a propagation option (`rslave`, `private`, ...) stands for; also
/// what `linux.rootfsPropagation` of a spec names.
pub fn propagation_flag(option: &str) -> Option<MsFlags> {
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// The recursive mount attributes of runc (`mount_setattr(2)` with `AT_RECURSIVE`).
fn is_recursive_attribute(option: &str) -> bool {
    matches!(
        option,
        "rro"
            | "rrw"
            | "rnosuid"
            | "rsuid"
            | "rnodev"
            | "rdev"
            | "rnoexec"
            | "rexec"
            | "rnoatime"
            | "ratime"
            | "rrelatime"
            | "rnorelatime"
            | "rstrictatime"
            | "rnosymfollow"
            | "rsymfollow"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &[&str]) -> MountOptions {
        MountOptions::parse(options).unwrap()
    }

    #[test]
    fn flags_and_data_are_split_like_mount8() {
        let options = parse(&["ro,nosuid", "nodev", "size=64m", "mode=1777", ""]);
        assert_eq!(
            options.flags,
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV
        );
        assert_eq!(options.data_string(), "size=64m,mode=1777");
        assert!(options.read_only());
        let options = parse(&["ro", "rw", "defaults"]);
        assert!(!options.read_only());
        assert!(options.data.is_empty());
        let options = parse(&[" noexec , exec ", "nosuid"]);
        assert_eq!(options.flags, MsFlags::MS_NOSUID);
    }

    #[test]
    fn lazytime_is_a_flag_and_nolazytime_clears_it() {
        let options = parse(&["lazytime"]);
        assert_eq!(options.flags, MsFlags::MS_LAZYTIME);
        assert!(options.data.is_empty());
        assert_eq!(parse(&["lazytime", "nolazytime"]).flags, MsFlags::empty());
        assert_eq!(
            parse(&["nolazytime,lazytime,noatime"]).flags,
            MsFlags::MS_LAZYTIME | MsFlags::MS_NOATIME
        );
    }

    #[test]
    fn every_flag_option_sets_and_its_opposite_clears() {
        let pairs = [
            ("ro", "rw", MsFlags::MS_RDONLY),
            ("nosuid", "suid", MsFlags::MS_NOSUID),
            ("nodev", "dev", MsFlags::MS_NODEV),
            ("noexec", "exec", MsFlags::MS_NOEXEC),
            ("sync", "async", MsFlags::MS_SYNCHRONOUS),
            ("mand", "nomand", MsFlags::MS_MANDLOCK),
            ("noatime", "atime", MsFlags::MS_NOATIME),
            ("nodiratime", "diratime", MsFlags::MS_NODIRATIME),
            ("relatime", "norelatime", MsFlags::MS_RELATIME),
            ("strictatime", "nostrictatime", MsFlags::MS_STRICTATIME),
            ("lazytime", "nolazytime", MsFlags::MS_LAZYTIME),
            ("silent", "loud", MsFlags::MS_SILENT),
        ];
        for (set, clear, flag) in pairs {
            assert_eq!(parse(&[set]).flags, flag, "{set}");
            assert_eq!(
                parse(&[set, clear]).flags,
                MsFlags::empty(),
                "{set},{clear}"
            );
            assert_eq!(parse(&[clear, set]).flags, flag, "{clear},{set}");
        }
        assert_eq!(parse(&["dirsync"]).flags, MsFlags::MS_DIRSYNC);
    }

    #[test]
    fn bind_and_propagation_options() {
        let options = parse(&["rbind", "ro", "rslave"]);
        assert_eq!(
            options.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert!(options.is_bind());
        assert_eq!(
            options.propagation,
            vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]
        );
        let options = parse(&["bind"]);
        assert_eq!(options.flags, MsFlags::MS_BIND);
    }

    #[test]
    fn propagation_options_are_kept_in_order_and_set_no_flag() {
        let names = [
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
        ];
        let options = parse(&names);
        assert_eq!(options.flags, MsFlags::empty());
        assert!(options.data.is_empty());
        assert_eq!(
            options.propagation,
            vec![
                MsFlags::MS_PRIVATE,
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                MsFlags::MS_SHARED,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                MsFlags::MS_SLAVE,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                MsFlags::MS_UNBINDABLE,
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            ]
        );
        for name in names {
            assert_eq!(propagation_flag(name), Some(parse(&[name]).propagation[0]));
        }
        assert_eq!(propagation_flag("rbind"), None);
    }

    #[test]
    fn unknown_options_are_data_in_order_and_untouched() {
        let options = parse(&[
            "nosuid",
            "mode=755",
            "size=65536k",
            "context=\"system_u:object_r:tmp_t:s0\"",
            "x-hull.anything",
            "uid=1000",
        ]);
        assert_eq!(options.flags, MsFlags::MS_NOSUID);
        assert_eq!(
            options.data,
            vec![
                "mode=755",
                "size=65536k",
                "context=\"system_u:object_r:tmp_t:s0\"",
                "x-hull.anything",
                "uid=1000",
            ]
        );
        assert!(options.propagation.is_empty());
    }

    #[test]
    fn refused_options_say_which_and_why() {
        for (option, reason) in [
            ("remount", "not remounted"),
            ("size=1\0", "NUL"),
            ("tmpcopyup", "not supported"),
            ("idmap", "not supported"),
            ("ridmap", "not supported"),
            ("recursive", "not supported"),
            ("rro", "recursive mount attributes"),
            ("rnosymfollow", "recursive mount attributes"),
        ] {
            let err = MountOptions::parse(&["ro", option]).unwrap_err();
            assert_eq!(err.option, option);
            let text = err.to_string();
            assert!(text.contains(reason), "{option}: {text}");
            assert!(text.contains("mount option"), "{option}: {text}");
        }
        let err = MountOptions::parse(&["remount"]).unwrap_err();
        assert!(err.to_string().contains("remount"), "{err}");
    }
}

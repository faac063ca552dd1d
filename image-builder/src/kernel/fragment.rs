//! Kernel config fragments: discovery, parsing and merging.
//!
//! Format (see `kernel-config/README.md`): one `CONFIG_NAME=value` per line, where value is
//! `y`, `m`, `n`, a decimal or `0x` hex number, or a double-quoted string; or
//! `# CONFIG_NAME is not set` to require an option off. Other lines starting with `#` are
//! comments; blank lines are ignored. Anything else is rejected with `file:line`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::arch::Arch;
use crate::fsutil::{IoError, io_err};

/// What can go wrong reading the kernel config fragments.
#[derive(Debug, thiserror::Error)]
pub enum FragmentError {
    /// A fragment file or the config folder could not be read.
    #[error(transparent)]
    Io(#[from] IoError),

    /// The kernel-config folder is not there.
    #[error(
        "kernel config folder {} not found: pass --config-dir DIR (the repository's \
         `kernel-config/` folder)",
        path.display()
    )]
    ConfigDirMissing {
        /// The folder given (`--config-dir`, or the checkout's `kernel-config/`).
        path: PathBuf,
    },

    /// The kernel-config folder holds no fragment.
    #[error("no kernel config fragment (*.conf) in {}", dir.display())]
    NoFragments {
        /// The config folder.
        dir: PathBuf,
    },

    /// A fragment line is not of the accepted form.
    #[error("{file}:{line}: {reason}: `{text}`")]
    FragmentSyntax {
        /// Fragment label (file name relative to the config folder).
        file: String,
        /// 1-based line number.
        line: usize,
        /// The line as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Two fragments ask for different values of one option.
    #[error(
        "{option} is requested as `{first_value}` at {first} and as `{second_value}` at {second}: \
         remove one of them"
    )]
    ConflictingOption {
        /// The option, with the `CONFIG_` prefix.
        option: String,
        /// `file:line` of the first request.
        first: String,
        /// The value first requested.
        first_value: String,
        /// `file:line` of the second request.
        second: String,
        /// The value second requested.
        second_value: String,
    },
}

type Result<T, E = FragmentError> = std::result::Result<T, E>;

/// File name of the opt-in debug fragment.
pub const DEBUG_FRAGMENT: &str = "debug.conf.opt";

/// The value a fragment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `CONFIG_X=<raw>`: the text after `=`, exactly as written (`y`, `64`, `"str"`).
    Set(String),
    /// `# CONFIG_X is not set` (or `CONFIG_X=n`).
    NotSet,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Set(v) => f.write_str(v),
            Value::NotSet => f.write_str("is not set"),
        }
    }
}

/// One option requested by one fragment line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Full symbol name, with the `CONFIG_` prefix.
    pub name: String,
    /// The value requested.
    pub value: Value,
    /// Fragment label (file name relative to the config folder).
    pub file: String,
    /// 1-based line number.
    pub line: usize,
}

impl Requirement {
    /// `file:line` of the request.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// A fragment file, read and parsed.
#[derive(Debug, Clone)]
pub struct Fragment {
    /// Name relative to the config folder, e.g. `00-base.conf` or `x86_64/arch.conf`.
    pub label: String,
    /// Where the file was read from.
    pub path: PathBuf,
    /// The file's text, as read.
    pub text: String,
    /// The options it requests, in line order.
    pub requirements: Vec<Requirement>,
}

/// All fragments of one build, merged.
#[derive(Debug, Clone)]
pub struct FragmentSet {
    /// The fragments in merge order: by file name across the config folder and its arch
    /// folder, the debug fragment last.
    pub fragments: Vec<Fragment>,
    /// Every distinct requested option, in first-request order.
    pub requirements: Vec<Requirement>,
    /// The text handed to `KCONFIG_ALLCONFIG`: every fragment, in order, each after a
    /// `# ---- <label>` header line. It is also an input of the cache key, so it holds
    /// labels (relative names), never absolute paths.
    pub merged: String,
}

/// Parses one fragment's text. `label` names the file in errors.
pub fn parse_fragment(label: &str, text: &str) -> Result<Vec<Requirement>> {
    let mut out = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let syntax = |reason: &str| FragmentError::FragmentSyntax {
            file: label.to_string(),
            line,
            text: raw.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            match parse_not_set(comment) {
                NotSetLine::No => continue,
                NotSetLine::Yes(name) => {
                    check_name(name).map_err(|r| syntax(&r))?;
                    // kconfig only reads this exact spelling; anything else it would
                    // silently treat as a comment.
                    if raw != format!("# {name} is not set") {
                        return Err(syntax(&format!("write it as `# {name} is not set`")));
                    }
                    out.push(Requirement {
                        name: name.to_string(),
                        value: Value::NotSet,
                        file: label.to_string(),
                        line,
                    });
                    continue;
                }
            }
        }
        if raw != trimmed {
            // kconfig ignores an indented line and keeps trailing blanks in the value.
            return Err(syntax("leading or trailing whitespace"));
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            return Err(syntax(
                "expected `CONFIG_NAME=value`, `# CONFIG_NAME is not set` or a `#` comment",
            ));
        };
        if name != name.trim_end() || value != value.trim_start() {
            return Err(syntax("no spaces around `=`"));
        }
        check_name(name).map_err(|r| syntax(&r))?;
        let value = parse_value(value).map_err(|r| syntax(&r))?;
        out.push(Requirement {
            name: name.to_string(),
            value,
            file: label.to_string(),
            line,
        });
    }
    Ok(out)
}

enum NotSetLine<'a> {
    No,
    Yes(&'a str),
}

/// Recognises the body of `# CONFIG_X is not set` (after the `#`).
fn parse_not_set(comment: &str) -> NotSetLine<'_> {
    let body = comment.trim();
    let Some(name) = body.strip_suffix("is not set") else {
        return NotSetLine::No;
    };
    let name = name.trim_end();
    // Only a single word starting with CONFIG_ is a directive; any other sentence that
    // happens to end in "is not set" stays a comment.
    if name.starts_with("CONFIG_") && !name.contains(char::is_whitespace) {
        NotSetLine::Yes(name)
    } else {
        NotSetLine::No
    }
}

fn check_name(name: &str) -> std::result::Result<(), String> {
    let Some(sym) = name.strip_prefix("CONFIG_") else {
        return Err("option names start with `CONFIG_`".into());
    };
    if sym.is_empty() {
        return Err("empty option name".into());
    }
    if let Some(c) = sym
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!("invalid character {c:?} in option name"));
    }
    Ok(())
}

fn parse_value(v: &str) -> std::result::Result<Value, String> {
    match v {
        "" => return Err("missing value after `=`".into()),
        "n" => return Ok(Value::NotSet),
        "y" | "m" => return Ok(Value::Set(v.to_string())),
        _ => {}
    }
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Value::Set(v.to_string()));
        }
        return Err("invalid hex number".into());
    }
    let digits = v.strip_prefix('-').unwrap_or(v);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        return Ok(Value::Set(v.to_string()));
    }
    if let Some(rest) = v.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                if i + 1 == rest.len() {
                    return Ok(Value::Set(v.to_string()));
                }
                return Err("text after the closing quote".into());
            }
        }
        return Err("unterminated string".into());
    }
    Err("value must be y, m, n, a number, a 0x hex number or a \"quoted string\"".into())
}

/// Lists the fragment files of a build, in application order: every `*.conf` in
/// `config_dir` and in `config_dir/<arch>/`, sorted by file name (a top-level file before an
/// arch file of the same name), then `debug.conf.opt` when `debug` is set.
/// Returns `(label, path)` pairs.
pub fn discover(config_dir: &Path, arch: Arch, debug: bool) -> Result<Vec<(String, PathBuf)>> {
    if !config_dir.is_dir() {
        return Err(FragmentError::ConfigDirMissing {
            path: config_dir.to_path_buf(),
        });
    }
    // (file name, 0 = top level / 1 = arch folder, label, path)
    let mut found: Vec<(String, u8, String, PathBuf)> = Vec::new();
    for (dir, rank, prefix) in [
        (config_dir.to_path_buf(), 0u8, String::new()),
        (
            config_dir.join(arch.name()),
            1u8,
            format!("{}/", arch.name()),
        ),
    ] {
        if rank == 1 && !dir.is_dir() {
            continue;
        }
        let entries = fs::read_dir(&dir).map_err(io_err("read directory", &dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !name.ends_with(".conf") || name.starts_with('.') || !path.is_file() {
                continue;
            }
            found.push((name.clone(), rank, format!("{prefix}{name}"), path));
        }
    }
    if found.is_empty() {
        return Err(FragmentError::NoFragments {
            dir: config_dir.to_path_buf(),
        });
    }
    found.sort();
    let mut out: Vec<(String, PathBuf)> = found.into_iter().map(|(_, _, l, p)| (l, p)).collect();
    if debug {
        let path = config_dir.join(DEBUG_FRAGMENT);
        if !path.is_file() {
            return Err(IoError {
                action: "read the debug fragment",
                path,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }
            .into());
        }
        out.push((DEBUG_FRAGMENT.to_string(), path));
    }
    Ok(out)
}

/// Reads, parses and merges fragments given as `(label, text)` pairs, in order.
pub fn merge(files: Vec<(String, PathBuf, String)>) -> Result<FragmentSet> {
    let mut fragments = Vec::new();
    let mut requirements: Vec<Requirement> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut merged = String::new();
    for (label, path, text) in files {
        let reqs = parse_fragment(&label, &text)?;
        for req in &reqs {
            match seen.get(&req.name) {
                Some(&i) => {
                    let first = &requirements[i];
                    if first.value != req.value {
                        return Err(FragmentError::ConflictingOption {
                            option: req.name.clone(),
                            first: first.location(),
                            first_value: first.value.to_string(),
                            second: req.location(),
                            second_value: req.value.to_string(),
                        });
                    }
                }
                None => {
                    seen.insert(req.name.clone(), requirements.len());
                    requirements.push(req.clone());
                }
            }
        }
        merged.push_str("# ---- ");
        merged.push_str(&label);
        merged.push('\n');
        merged.push_str(&text);
        if !text.is_empty() && !text.ends_with('\n') {
            merged.push('\n');
        }
        fragments.push(Fragment {
            label,
            path,
            text,
            requirements: reqs,
        });
    }
    Ok(FragmentSet {
        fragments,
        requirements,
        merged,
    })
}

/// Discovers, reads and merges the fragments of a build.
pub fn load(config_dir: &Path, arch: Arch, debug: bool) -> Result<FragmentSet> {
    let mut files = Vec::new();
    for (label, path) in discover(config_dir, arch, debug)? {
        let text = fs::read_to_string(&path).map_err(io_err("read fragment", &path))?;
        files.push((label, path, text));
    }
    merge(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &str) -> Value {
        Value::Set(v.to_string())
    }

    #[test]
    fn parses_good_lines() {
        let text = "# a comment\n\nCONFIG_A=y\nCONFIG_B=m\nCONFIG_NR=64\nCONFIG_NEG=-1\n\
                    CONFIG_H=0x1000\nCONFIG_S=\"console=ttyS0 \\\"x\\\"\"\nCONFIG_T=y\n\
                    CONFIG_N=n\n# CONFIG_OFF is not set\n  # just a comment\n";
        let reqs = parse_fragment("f.conf", text).unwrap();
        let got: Vec<(&str, Value, usize)> = reqs
            .iter()
            .map(|r| (r.name.as_str(), r.value.clone(), r.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("CONFIG_A", set("y"), 3),
                ("CONFIG_B", set("m"), 4),
                ("CONFIG_NR", set("64"), 5),
                ("CONFIG_NEG", set("-1"), 6),
                ("CONFIG_H", set("0x1000"), 7),
                ("CONFIG_S", set("\"console=ttyS0 \\\"x\\\"\""), 8),
                ("CONFIG_T", set("y"), 9),
                ("CONFIG_N", Value::NotSet, 10),
                ("CONFIG_OFF", Value::NotSet, 11),
            ]
        );
        assert!(reqs.iter().all(|r| r.file == "f.conf"));
    }

    #[test]
    fn comments_that_only_look_like_directives_stay_comments() {
        let text = "# CONFIG_X=y is what we used to have\n# the thing is not set\n\
                    # CONFIG_A or CONFIG_B is not set\n";
        assert_eq!(parse_fragment("f", text).unwrap(), vec![]);
    }

    #[test]
    fn is_not_set_requirement_keeps_location() {
        let reqs = parse_fragment(
            "x86_64/arch.conf",
            "CONFIG_A=y\n# CONFIG_MODULES is not set\n",
        )
        .unwrap();
        assert_eq!(reqs[1].name, "CONFIG_MODULES");
        assert_eq!(reqs[1].value, Value::NotSet);
        assert_eq!(reqs[1].location(), "x86_64/arch.conf:2");
    }

    fn malformed(line: &str) -> String {
        let text = format!("CONFIG_OK=y\n{line}\n");
        match parse_fragment("bad.conf", &text) {
            Err(e @ FragmentError::FragmentSyntax { .. }) => {
                let msg = e.to_string();
                assert!(msg.starts_with("bad.conf:2: "), "{msg}");
                msg
            }
            other => panic!("{line:?} was accepted: {other:?}"),
        }
    }

    #[test]
    fn rejects_malformed_lines_with_file_and_line() {
        malformed("CONFIG_A");
        malformed("CONFIG_A = y");
        malformed("CONFIG_A= y");
        malformed("CONFIG_A=yes");
        malformed("CONFIG_A=");
        malformed("CONFIG_A=y # trailing comment");
        malformed("A=y");
        malformed("CONFIG_=y");
        malformed("CONFIG_A-B=y");
        malformed("CONFIG_S=\"unterminated");
        malformed("CONFIG_S=\"a\"b");
        malformed("CONFIG_H=0x");
        malformed("CONFIG_H=0xZZ");
        malformed("# CONFIG_A-B is not set");
        malformed("y");
        malformed("  CONFIG_A=y");
        malformed("CONFIG_A=y ");
        malformed("#CONFIG_A is not set");
        malformed("#  CONFIG_A is not set");
        let msg = malformed("CONFIG_A=yes");
        assert!(msg.contains("CONFIG_A=yes"), "{msg}");
    }

    fn file(label: &str, text: &str) -> (String, PathBuf, String) {
        (label.to_string(), PathBuf::from(label), text.to_string())
    }

    #[test]
    fn merge_concatenates_with_headers_and_dedups() {
        let set = merge(vec![
            file("00-a.conf", "CONFIG_A=y\nCONFIG_B=y"),
            file("x86_64/arch.conf", "CONFIG_B=y\n# CONFIG_C is not set\n"),
        ])
        .unwrap();
        assert_eq!(
            set.merged,
            "# ---- 00-a.conf\nCONFIG_A=y\nCONFIG_B=y\n# ---- x86_64/arch.conf\nCONFIG_B=y\n\
             # CONFIG_C is not set\n"
        );
        let names: Vec<&str> = set.requirements.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["CONFIG_A", "CONFIG_B", "CONFIG_C"]);
        assert_eq!(set.requirements[1].file, "00-a.conf");
    }

    #[test]
    fn merge_rejects_conflicting_values() {
        let err = merge(vec![
            file("00-a.conf", "CONFIG_A=y\n"),
            file("10-b.conf", "\n# CONFIG_A is not set\n"),
        ])
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("00-a.conf:1"), "{msg}");
        assert!(msg.contains("10-b.conf:2"), "{msg}");
    }

    #[test]
    fn discovers_in_file_name_order_with_arch_and_debug() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("x86_64")).unwrap();
        for f in [
            "20-b.conf",
            "00-a.conf",
            "README.md",
            "debug.conf.opt",
            "x86_64/15-arch.conf",
        ] {
            std::fs::write(d.join(f), "CONFIG_A=y\n").unwrap();
        }
        let labels = |debug| -> Vec<String> {
            discover(d, Arch::X86_64, debug)
                .unwrap()
                .into_iter()
                .map(|(l, _)| l)
                .collect()
        };
        assert_eq!(
            labels(false),
            ["00-a.conf", "x86_64/15-arch.conf", "20-b.conf"]
        );
        assert_eq!(
            labels(true),
            [
                "00-a.conf",
                "x86_64/15-arch.conf",
                "20-b.conf",
                "debug.conf.opt"
            ]
        );
    }

    #[test]
    fn missing_or_empty_config_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            discover(&dir.path().join("nope"), Arch::X86_64, false),
            Err(FragmentError::ConfigDirMissing { .. })
        ));
        assert!(matches!(
            discover(dir.path(), Arch::X86_64, false),
            Err(FragmentError::NoFragments { .. })
        ));
    }

    #[test]
    fn the_repository_fragments_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel-config");
        let set = load(&dir, Arch::X86_64, true).unwrap();
        assert!(set.requirements.len() > 50);
        assert_eq!(set.fragments.last().unwrap().label, DEBUG_FRAGMENT);
    }
}

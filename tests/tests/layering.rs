//! The workspace's two structural rules, checked on its Rust sources (no VM: the test
//! only reads files), so that neither can come back unnoticed:
//!
//! 1. **No import circles.** In every crate (each library, binary and `src/bin` target
//!    on its own), no top-level module names one that names it back, directly or
//!    round a longer circle, through `crate::` or `super::` paths in code that is built
//!    outside tests. Doc comments are not imports and are not counted.
//! 2. **Protobuf stays in the RPC layer.** The generated protobuf modules of
//!    `hull_protocols` (those `protocols/src/lib.rs` re-exports from `generated`) and
//!    the `protobuf` runtime crate are named in the agent only under `agent/src/rpc/`
//!    and `agent/src/server*`, and nowhere in `container/`, `common/`, `init/`,
//!    `runtime/`, `image-builder/` or `vmm-lite/`, their tests included.
//!
//! The sources are read as text: comments, string and character literals are blanked
//! first, `#[cfg(test)]` items dropped for rule 1, and modules found by following `mod`
//! declarations from each crate root (so a file belongs to the root that declares it).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where the agent may name protobuf types, relative to the workspace root.
const PROTOBUF_ALLOWED_IN_AGENT: [&str; 3] =
    ["agent/src/rpc/", "agent/src/server/", "agent/src/server.rs"];
/// Crates (directories) that do not speak the agent API: no protobuf at all. The
/// container layer, the shared parsers and init sit below the agent's RPC layer; the OCI
/// runtime, the image builder and vmm-lite beside it. (The API's clients, `ctl`,
/// `testkit`, `tests` and the agent's own `tests/`, speak protobuf by nature.)
const PROTOBUF_FREE_CRATES: [&str; 6] = [
    "container",
    "common",
    "init",
    "runtime",
    "image-builder",
    "vmm-lite",
];

#[test]
fn no_crate_has_an_import_circle_between_its_top_level_modules() {
    let root = workspace_root();
    let mut report = String::new();
    let (mut targets, mut edges) = (0, 0);
    for member in workspace_members(&root) {
        for crate_root in crate_roots(&root.join(&member)) {
            targets += 1;
            let graph = module_graph(&crate_root);
            edges += graph.values().map(BTreeMap::len).sum::<usize>();
            for circle in circles(&graph) {
                let _ = writeln!(
                    report,
                    "{}: the modules {} import each other:",
                    rel(&root, &crate_root),
                    circle.join(", ")
                );
                for from in &circle {
                    for (to, at) in &graph[from] {
                        if circle.contains(to) {
                            let _ = writeln!(report, "    {from} -> {to}  ({})", rel(&root, at));
                        }
                    }
                }
            }
        }
    }
    assert!(
        targets > 10,
        "only {targets} crate roots found under {root:?}"
    );
    eprintln!("{targets} crate roots, {edges} imports between top-level modules");
    // The scan sees imports at all (the agent alone has well over a hundred).
    assert!(
        edges > 100,
        "only {edges} imports between modules found: is the scan blind?"
    );
    assert!(report.is_empty(), "import circles:\n{report}");
}

#[test]
fn protobuf_types_are_named_only_in_the_agents_rpc_layer() {
    let root = workspace_root();
    let generated = generated_protobuf_modules(&root);
    assert!(
        generated.contains("agent") && generated.contains("oci"),
        "the generated modules read from protocols/src/lib.rs look wrong: {generated:?}"
    );
    let mut checked = 0;
    let mut report = String::new();
    for dir in PROTOBUF_FREE_CRATES.iter().copied().chain(["agent"]) {
        for file in rust_files(&root.join(dir).join("src")) {
            let relative = rel(&root, &file);
            if dir == "agent"
                && PROTOBUF_ALLOWED_IN_AGENT
                    .iter()
                    .any(|p| relative.starts_with(p))
            {
                continue;
            }
            checked += 1;
            let text = blank_comments_and_literals(&read(&file));
            for (line, what) in protobuf_names(&text, &generated) {
                let _ = writeln!(report, "    {relative}:{line}: {what}");
            }
        }
    }
    assert!(checked > 50, "only {checked} files checked under {root:?}");
    assert!(
        report.is_empty(),
        "protobuf types named outside agent/src/rpc/ and agent/src/server* (convert to \
         domain types in rpc/ instead):\n{report}"
    );
}

/// The rules catch what they are for: a planted circle and planted protobuf names.
#[test]
fn the_checks_find_planted_violations() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("b")).unwrap();
    let files = [
        (
            "lib.rs",
            "mod a;\nmod b;\nmod c;\n#[cfg(test)]\nmod d;\npub use b::Thing;\n",
        ),
        ("a.rs", "use crate::{c::X, b::inner::Y};\n"),
        ("b/mod.rs", "pub mod inner;\npub struct Thing;\n"),
        // super::super from a file two levels down reaches the crate root.
        ("b/inner.rs", "fn f() { let _ = super::super::c::go(); }\n"),
        // Through a root re-export; the doc link and the test module do not count.
        (
            "c.rs",
            "/// [`crate::d`]\nuse crate::Thing;\n#[cfg(test)]\nmod tests { use crate::a; }\n",
        ),
        ("d.rs", "use crate::a;\n"),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).unwrap();
    }
    let graph = module_graph(&src.join("lib.rs"));
    assert_eq!(
        circles(&graph),
        vec![vec!["b".to_string(), "c".to_string()]],
        "{graph:?}"
    );
    assert!(!graph["c"].contains_key("a") && !graph["c"].contains_key("d"));
    assert!(graph["a"].contains_key("b") && graph["a"].contains_key("c"));

    let generated: BTreeSet<String> = ["agent", "oci"].map(String::from).into();
    let text = blank_comments_and_literals(
        "use hull_protocols::{address::A, oci::Spec};\n// hull_protocols::agent::X\n\
         let s = \"hull_protocols::agent\";\nfn f(_: protobuf::MessageField<u8>) {}\n\
         use hull_protocols::address::AgentAddress;\n",
    );
    let found = protobuf_names(&text, &generated);
    assert_eq!(
        found.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
        vec![1, 4],
        "{found:?}"
    );
}

// ---- The workspace -----------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `members` of the workspace's `Cargo.toml`.
fn workspace_members(root: &Path) -> Vec<String> {
    let manifest = read(&root.join("Cargo.toml"));
    let start = manifest.find("members").expect("no members in Cargo.toml");
    let list = &manifest[start..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    let members: Vec<String> = list
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    assert!(members.len() > 5, "members of {root:?}: {members:?}");
    members
}

/// A package's crate roots: `src/lib.rs`, `src/main.rs`, each `src/bin/*.rs`.
fn crate_roots(package: &Path) -> Vec<PathBuf> {
    let src = package.join("src");
    let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    if let Ok(entries) = std::fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    roots
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The module names `protocols/src/lib.rs` re-exports from its generated code.
fn generated_protobuf_modules(root: &Path) -> BTreeSet<String> {
    let lib = blank_comments_and_literals(&read(&root.join("protocols/src/lib.rs")));
    let start = lib
        .find("pub use generated::{")
        .expect("protocols/src/lib.rs no longer says `pub use generated::{...}`");
    let list = &lib[start + "pub use generated::{".len()..];
    list[..list.find('}').unwrap()]
        .split(',')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

// ---- Rule 1: import circles --------------------------------------------------------

/// Top-level module → the top-level modules it names → where (the first place found).
type Graph = BTreeMap<String, BTreeMap<String, PathBuf>>;

/// The crate's modules found from `crate_root` through `mod` declarations (test-only
/// ones left out), and the edges between its top-level modules.
fn module_graph(crate_root: &Path) -> Graph {
    let root_text = strip_test_items(&blank_comments_and_literals(&read(crate_root)));
    let top: BTreeMap<String, Vec<PathBuf>> = module_files(crate_root, &root_text, true);
    // Names the root re-exports from a top-level module (`pub use sandbox::Sandbox`).
    let reexports = root_reexports(&root_text, &top);
    let mut graph = Graph::new();
    for (name, files) in &top {
        graph.entry(name.clone()).or_default();
        let mut queue: Vec<(PathBuf, Vec<String>)> = files
            .iter()
            .map(|f| (f.clone(), vec![name.clone()]))
            .collect();
        while let Some((file, module_path)) = queue.pop() {
            let text = strip_test_items(&blank_comments_and_literals(&read(&file)));
            let is_dir_owner = file.file_name().is_some_and(|n| n == "mod.rs");
            for (child, child_files) in module_files(&file, &text, is_dir_owner) {
                let mut path = module_path.clone();
                path.push(child);
                queue.extend(child_files.into_iter().map(|f| (f, path.clone())));
            }
            for target in named_top_modules(&text, &module_path, &top, &reexports) {
                if target != *name {
                    graph
                        .get_mut(name)
                        .unwrap()
                        .entry(target)
                        .or_insert_with(|| file.clone());
                }
            }
        }
    }
    graph
}

/// The files of the modules `file` declares (`mod x;`), by name. `owns_dir`: the file is
/// a crate root or a `mod.rs`, whose children sit beside it.
fn module_files(file: &Path, text: &str, owns_dir: bool) -> BTreeMap<String, Vec<PathBuf>> {
    let dir = file.parent().unwrap();
    let child_dir = if owns_dir {
        dir.to_path_buf()
    } else {
        dir.join(file.file_stem().unwrap())
    };
    let original = read(file);
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut at = 0;
    while let Some(found) = find_word(text, "mod", at) {
        at = found + 3;
        let rest = text[at..].trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = rest[name.len()..].trim_start();
        if name.is_empty() || !after.starts_with(';') {
            continue; // an inline module: its code is its parent file's
        }
        // `#[path = "..."]` just before (read from the original: the literal is blanked).
        let line_start = text[..found].rfind('\n').map_or(0, |i| i + 1);
        let before = &original[..line_start];
        let attributes: Vec<&str> = before
            .lines()
            .rev()
            .take_while(|l| l.trim_start().starts_with("#["))
            .collect();
        let path_attr = attributes.iter().find_map(|l| {
            let l = l.trim();
            l.strip_prefix("#[path = \"")
                .and_then(|p| p.strip_suffix("\"]"))
                .map(|p| dir.join(p))
        });
        let candidates = match path_attr {
            Some(path) => vec![path],
            None => vec![
                child_dir.join(format!("{name}.rs")),
                child_dir.join(&name).join("mod.rs"),
            ],
        };
        if let Some(path) = candidates.into_iter().find(|p| p.is_file()) {
            modules.entry(name).or_default().push(path);
        }
    }
    modules
}

/// Root-level names re-exported from a top-level module, mapped to that module.
fn root_reexports(
    root_text: &str,
    top: &BTreeMap<String, Vec<PathBuf>>,
) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let mut at = 0;
    while let Some(found) = find_word(root_text, "use", at) {
        let end = root_text[found..]
            .find(';')
            .map_or(root_text.len(), |e| found + e);
        at = end;
        let tree = root_text[found + 3..end].trim();
        let tree = tree
            .strip_prefix("crate::")
            .or_else(|| tree.strip_prefix("self::"))
            .unwrap_or(tree);
        for leaf in expand_use_tree(tree) {
            let Some(first) = leaf.path.first() else {
                continue;
            };
            if top.contains_key(first) && leaf.path.len() > 1 {
                names.insert(leaf.name, first.clone());
            }
        }
    }
    names
}

/// One leaf of a `use` tree: its full path and the name it is imported as.
struct UseLeaf {
    path: Vec<String>,
    name: String,
}

fn expand_use_tree(tree: &str) -> Vec<UseLeaf> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim())),
            None => (tree, None),
        };
        let path: Vec<String> = path.split("::").map(|s| s.trim().to_string()).collect();
        let name = alias.map_or_else(|| path.last().cloned().unwrap_or_default(), String::from);
        return vec![UseLeaf { path, name }];
    };
    let prefix: Vec<String> = tree[..open]
        .split("::")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    split_top_level(inner)
        .into_iter()
        .flat_map(expand_use_tree)
        .map(|mut leaf| {
            if leaf.path == ["self"] {
                leaf.path = prefix.clone();
                if leaf.name == "self" {
                    leaf.name = prefix.last().cloned().unwrap_or_default();
                }
            } else {
                leaf.path = prefix.iter().cloned().chain(leaf.path).collect();
            }
            leaf
        })
        .collect()
}

/// `a, b::{c, d}, e` split at the commas outside braces.
fn split_top_level(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in list.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The top-level modules `text` (the code of module `module_path`) names through
/// `crate::` and `super::` paths.
fn named_top_modules(
    text: &str,
    module_path: &[String],
    top: &BTreeMap<String, Vec<PathBuf>>,
    reexports: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut resolve = |first: &str| {
        if top.contains_key(first) {
            found.insert(first.to_string());
        } else if let Some(module) = reexports.get(first) {
            found.insert(module.clone());
        }
    };
    // Paths from the crate root (`$crate` in macros is another crate's).
    let mut at = 0;
    while let Some(i) = find_word(text, "crate", at) {
        at = i + 5;
        if text[..i].ends_with('$') {
            continue;
        }
        if let Some(rest) = text[at..].trim_start().strip_prefix("::") {
            for first in first_segments(rest) {
                resolve(&first);
            }
        }
    }
    // `super::super::x` from a module nested deep enough to reach the root.
    let mut at = 0;
    while let Some(i) = find_word(text, "super", at) {
        at = i + 5;
        if text[..i].trim_end().ends_with("::") {
            continue; // counted from the first `super`
        }
        let mut rest = &text[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super") {
            match r.trim_start().strip_prefix("::") {
                Some(r) => {
                    ups += 1;
                    rest = r.trim_start();
                }
                None => break,
            }
        }
        if ups >= module_path.len() {
            for first in first_segments(rest) {
                resolve(&first);
            }
        }
    }
    found
}

/// The first segment of a path (`sandbox::X` → `sandbox`), or of each branch of a group
/// (`{fs::X, mount::Y}` → `fs`, `mount`).
fn first_segments(rest: &str) -> Vec<String> {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 1;
        let end = group
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(group.len(), |(i, _)| i);
        split_top_level(&group[..end])
            .into_iter()
            .flat_map(first_segments)
            .collect()
    } else {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            Vec::new()
        } else {
            vec![name]
        }
    }
}

/// The circles of `graph` (its strongly connected components of more than one module),
/// each sorted, in order.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    let reaches = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for next in graph.get(&m).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reaches(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for m in graph.keys() {
        if done.contains(m) || !reach[m].contains(m) {
            continue;
        }
        let circle: Vec<String> = graph
            .keys()
            .filter(|n| *n == m || (reach[m].contains(*n) && reach[*n].contains(m)))
            .cloned()
            .collect();
        done.extend(circle.iter().cloned());
        found.push(circle);
    }
    found
}

// ---- Rule 2: protobuf names --------------------------------------------------------

/// Each protobuf name in `text`: `(line, what)`.
fn protobuf_names(text: &str, generated: &BTreeSet<String>) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let line_of = |i: usize| text[..i].matches('\n').count() + 1;
    let mut at = 0;
    while let Some(i) = find_word(text, "hull_protocols", at) {
        at = i + "hull_protocols".len();
        let rest = text[at..].trim_start();
        let Some(rest) = rest.strip_prefix("::") else {
            continue;
        };
        for first in first_segments(rest) {
            if generated.contains(&first) || first == "protobuf" {
                found.push((line_of(i), format!("hull_protocols::{first}")));
            }
        }
        if rest.trim_start().starts_with('*') {
            found.push((line_of(i), "hull_protocols::*".into()));
        }
    }
    let mut at = 0;
    while let Some(i) = find_word(text, "protobuf", at) {
        at = i + "protobuf".len();
        let before = text[..i].trim_end();
        let is_path_start = !before.ends_with("::");
        let after = text[at..].trim_start();
        if is_path_start && (after.starts_with("::") || before.ends_with("use")) {
            found.push((line_of(i), "the protobuf crate".into()));
        }
    }
    found.sort();
    found.dedup_by_key(|(line, _)| *line);
    found
}

// ---- Reading Rust as text ----------------------------------------------------------

/// The first `word` at or after byte `from` that is a whole identifier.
fn find_word(text: &str, word: &str, from: usize) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut at = from;
    while let Some(found) = text.get(at..)?.find(word) {
        let i = at + found;
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(i);
        }
        at = i + word.len();
    }
    None
}

/// `source` with comments, string and character literals replaced by spaces (line
/// breaks kept, so lines still count).
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br"..": up to the quote followed by as many hashes.
            let open = chars[i..].iter().position(|&c| c == '"').unwrap() + i;
            for &c in &chars[i..=open] {
                blank(&mut out, c);
            }
            i = open + 1;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime ('a) left as it is.
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    for &c in &chars[i..=end] {
                        blank(&mut out, c);
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At `i`, the start of a raw (byte) string literal: how many `#` it has.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let prev_is_ident = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
    if prev_is_ident {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = chars[j..].iter().take_while(|&&c| c == '#').count();
    (chars.get(j + hashes) == Some(&'"')).then_some(hashes)
}

/// `text` (already blanked) without the items marked `#[cfg(test)]` or
/// `#[cfg(all(test, ...))]`: a `mod tests { .. }`, a `fn`, a `use ..;`, `mod x;`.
fn strip_test_items(text: &str) -> String {
    let mut out = text.to_string();
    let mut at = 0;
    loop {
        let next = ["#[cfg(test)]", "#[cfg(all(test"]
            .iter()
            .filter_map(|m| out[at..].find(m).map(|i| at + i))
            .min();
        let Some(start) = next else { break };
        let bytes = out.as_bytes();
        // Past the attribute itself, to the item's end: its closing brace, or its `;`
        // outside any bracket (`const X: [u8; 2] = ..;`).
        let mut i = start + out[start..].find(']').map_or(0, |e| e + 1);
        let (mut braces, mut others) = (0usize, 0usize);
        let end = loop {
            if i >= bytes.len() {
                break bytes.len();
            }
            match bytes[i] {
                b'{' => braces += 1,
                b'}' => {
                    braces = braces.saturating_sub(1);
                    if braces == 0 && others == 0 {
                        break i + 1;
                    }
                }
                b'(' | b'[' => others += 1,
                b')' | b']' => others = others.saturating_sub(1),
                b';' if braces == 0 && others == 0 => break i + 1,
                _ => {}
            }
            i += 1;
        };
        let blanked: String = out[start..end]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(start..end, &blanked);
        at = end;
    }
    out
}

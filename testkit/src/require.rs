//! Checks that fail a test, naming what this host lacks, instead of letting it pass
//! without checking anything.

use std::path::Path;
use std::process::{Command, Stdio};

/// Fails unless this process runs as root; `why` says what needs it.
pub fn root(why: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "{why} needs root (running as uid {euid})");
}

/// Fails unless `tool --version` runs; `package` says where the tool comes from.
pub fn tool(tool: &str, package: &str) {
    let runs = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        runs,
        "this test needs `{tool}` ({package}), which does not run here"
    );
}

/// Fails unless `path` exists; `what` names it and where it comes from.
pub fn file(path: &Path, what: &str) {
    assert!(
        path.exists(),
        "this test needs {what} at {}",
        path.display()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "this test needs `hull-no-such-tool` (nowhere)")]
    fn a_missing_tool_is_named() {
        super::tool("hull-no-such-tool", "nowhere");
    }

    #[test]
    #[should_panic(expected = "this test needs a thing at /nonexistent/hull")]
    fn a_missing_file_is_named() {
        super::file(std::path::Path::new("/nonexistent/hull"), "a thing");
    }
}

//! Where the harness finds what it boots (kernel, initrd) and the host programs it runs.
//!
//! `just artifacts` builds everything into `build/` at the workspace root; `HULL_KERNEL`
//! and `HULL_INITRD` point elsewhere (relative paths are taken from the workspace root). Programs are looked up on `PATH` (the Justfile puts
//! the project's tool cache on it).

use std::path::{Path, PathBuf};

/// Something the harness needs and could not find, with the fix.
#[derive(Debug, thiserror::Error)]
pub enum MissingArtifact {
    /// A file that is not where the environment or `build/` says.
    #[error("{what} not found at {path} (set {env} or run `just artifacts`)")]
    File {
        /// What the file is, e.g. "guest kernel".
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that points elsewhere.
        env: &'static str,
    },
    /// A host program missing from `PATH`.
    #[error("program `{0}` not found on PATH (run `just setup`, which installs it)")]
    Program(&'static str),
}

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What a guest boots from.
#[derive(Debug, Clone)]
pub struct GuestArtifacts {
    /// The guest kernel: `HULL_KERNEL` or `build/kernel/bzImage`.
    pub kernel: PathBuf,
    /// The initrd with hull-init and the agent: `HULL_INITRD` or `build/initrd.img`.
    pub initrd: PathBuf,
}

impl GuestArtifacts {
    /// Finds the kernel and initrd, from the environment or `build/`.
    pub fn locate() -> Result<Self, MissingArtifact> {
        let build = workspace_root().join("build");
        Ok(Self {
            kernel: existing_file("guest kernel", "HULL_KERNEL", build.join("kernel/bzImage"))?,
            initrd: existing_file("initrd", "HULL_INITRD", build.join("initrd.img"))?,
        })
    }

    /// [`GuestArtifacts::locate`], with the initrd whose agent has the policy engine
    /// (`hull-agent-policy`, cargo feature `policy`; `just initrd` builds it):
    /// `HULL_INITRD_POLICY` or `build/initrd-policy.img`. The default initrd's agent
    /// answers `SetPolicy` `UNIMPLEMENTED`.
    pub fn locate_with_policy_engine() -> Result<Self, MissingArtifact> {
        Ok(Self {
            initrd: existing_file(
                "initrd with the policy-enabled agent",
                "HULL_INITRD_POLICY",
                workspace_root().join("build/initrd-policy.img"),
            )?,
            ..Self::locate()?
        })
    }
}

/// The guest kernel alone (image boots need no initrd): `HULL_KERNEL` or
/// `build/kernel/bzImage`.
pub fn kernel() -> Result<PathBuf, MissingArtifact> {
    existing_file(
        "guest kernel",
        "HULL_KERNEL",
        workspace_root().join("build/kernel/bzImage"),
    )
}

/// A disk image built by `just image`: `build/rootfs.<fstype>.img`, or
/// `HULL_IMAGE_EXT4` / `HULL_IMAGE_EROFS`.
pub fn image(fstype: &str) -> Result<PathBuf, MissingArtifact> {
    let (env, default) = match fstype {
        "erofs" => ("HULL_IMAGE_EROFS", "build/rootfs.erofs.img"),
        _ => ("HULL_IMAGE_EXT4", "build/rootfs.ext4.img"),
    };
    existing_file("disk image", env, workspace_root().join(default))
}

/// The debug image built by `just image-debug` (busybox and the debug-console marker):
/// `build/rootfs-debug.ext4.img`, or `HULL_IMAGE_DEBUG`.
pub fn debug_image() -> Result<PathBuf, MissingArtifact> {
    existing_file(
        "debug disk image",
        "HULL_IMAGE_DEBUG",
        workspace_root().join("build/rootfs-debug.ext4.img"),
    )
}

fn existing_file(
    what: &'static str,
    env: &'static str,
    default: PathBuf,
) -> Result<PathBuf, MissingArtifact> {
    // Tests run in their package's folder: a relative path means the workspace's.
    let path = std::env::var_os(env)
        .map(|value| workspace_root().join(value))
        .unwrap_or(default);
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingArtifact::File { what, path, env })
    }
}

/// The Rust target guest binaries are built for.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The cargo profile guest binaries are built with (`[profile.guest]`; `just guest` also
/// links them statically).
pub const GUEST_PROFILE: &str = "guest";

/// The agent with the policy engine, as `just guest` builds it beside the default one.
pub const POLICY_AGENT: &str = "hull-agent-policy";

/// A static guest binary (`hull-agent`, `hull-init`, [`POLICY_AGENT`]) as `just guest`
/// builds it.
pub fn guest_binary(name: &str) -> PathBuf {
    workspace_root()
        .join("target")
        .join(GUEST_TARGET)
        .join(GUEST_PROFILE)
        .join(name)
}

/// Finds an executable on `PATH`.
pub fn find_program(name: &'static str) -> Result<PathBuf, MissingArtifact> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or(MissingArtifact::Program(name))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_names_the_fix() {
        let err = find_program("hull-no-such-program-xyz").unwrap_err();
        assert!(err.to_string().contains("just setup"), "{err}");
    }

    #[test]
    fn finds_a_program_on_path() {
        assert!(find_program("sh").is_ok());
    }
}

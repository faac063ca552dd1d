//! Running the external steps of a kernel build: `tar`, `make allnoconfig`, `make bzImage`.
//!
//! Every command's output (stdout and stderr, merged line by line) goes to one log file; the
//! last lines are kept in memory for the error message.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::error::{KernelError, Result};
use crate::arch::Arch;
use crate::command::{CommandError, display_command};
use crate::fsutil::io_err;

/// Lines of output kept for a failure message.
pub const TAIL_LINES: usize = 40;

/// Environment variables that would change what kbuild does; removed from make's
/// environment so that a build depends on the key inputs only.
const SCRUBBED_ENV: &[&str] = &[
    "MAKEFLAGS",
    "MFLAGS",
    "GNUMAKEFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
    "KBUILD_OUTPUT",
    "KBUILD_VERBOSE",
    "KCONFIG_CONFIG",
    "KCONFIG_ALLCONFIG",
    "CROSS_COMPILE",
    "LLVM",
    "CC",
    "LD",
    "KCFLAGS",
    "KCPPFLAGS",
    "KAFLAGS",
    "KRUSTFLAGS",
    "LOCALVERSION",
    "INSTALL_MOD_PATH",
    "KBUILD_BUILD_TIMESTAMP",
    "KBUILD_BUILD_USER",
    "KBUILD_BUILD_HOST",
    "KBUILD_BUILD_VERSION",
];

/// Kills and reaps the child if the run ends early (error, panic).
struct ChildGuard {
    child: Child,
    reaped: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_reader(
    stream: impl Read + Send + 'static,
    tx: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Runs `cmd`, appending its merged output to `log`, calling `on_line` for every line and
/// `on_tick` every `tick`. Fails with [`CommandError::Failed`] (holding the last
/// [`TAIL_LINES`] lines and the log path) when the command exits unsuccessfully.
pub fn run_logged(
    cmd: &mut Command,
    log: &Path,
    tick: Duration,
    mut on_line: impl FnMut(&str),
    mut on_tick: impl FnMut(),
) -> Result<()> {
    let command = display_command(cmd);
    tracing::debug!("running {command}");
    let mut log_file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err("open log", log))?;
    writeln!(log_file, "$ {command}").map_err(io_err("write log", log))?;

    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    let (tx, rx) = mpsc::channel();
    let readers = [
        child.stdout.take().map(|s| spawn_reader(s, tx.clone())),
        child.stderr.take().map(|s| spawn_reader(s, tx.clone())),
    ];
    drop(tx);
    let mut guard = ChildGuard {
        child,
        reaped: false,
    };

    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut next_tick = Instant::now() + tick;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(line) => {
                writeln!(log_file, "{line}").map_err(io_err("write log", log))?;
                on_line(&line);
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_tick {
            on_tick();
            next_tick = Instant::now() + tick;
        }
    }
    for reader in readers.into_iter().flatten() {
        let _ = reader.join();
    }
    let status = guard.child.wait().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    guard.reaped = true;
    writeln!(log_file, "# {status}").map_err(io_err("write log", log))?;
    if status.success() {
        Ok(())
    } else {
        Err(CommandError::Failed {
            command,
            status,
            log: Some(log.to_path_buf()),
            tail: tail.into(),
        }
        .into())
    }
}

/// Extracts `tarball` into `dest` (which must exist and be empty) and returns the single
/// top-level directory it holds (the kernel tree).
pub fn extract(
    tarball: &Path,
    dest: &Path,
    log: &Path,
    tick: Duration,
    on_tick: impl FnMut(),
) -> Result<PathBuf> {
    let mut cmd = Command::new("tar");
    cmd.arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(dest)
        .arg("--no-same-owner");
    run_logged(&mut cmd, log, tick, |_| {}, on_tick)?;
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dest).map_err(io_err("read directory", dest))? {
        let entry = entry.map_err(io_err("read directory", dest))?;
        dirs.push(entry.path());
    }
    match dirs.as_slice() {
        [one] if one.is_dir() => Ok(one.clone()),
        _ => Err(KernelError::UnexpectedSourceLayout {
            tarball: tarball.to_path_buf(),
            found: dirs
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// A `make` command for `tree`, with a scrubbed environment and fixed build identity
/// (user, host, timestamp), so the result does not depend on who builds it or when.
pub fn make_command(tree: &Path, arch: Arch) -> Command {
    let mut cmd = Command::new("make");
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C")
        .env("KBUILD_BUILD_USER", "hull")
        .env("KBUILD_BUILD_HOST", "hull")
        .env("KBUILD_BUILD_VERSION", "1")
        .env("KBUILD_BUILD_TIMESTAMP", "Thu Jan  1 00:00:00 UTC 1970")
        .arg("-C")
        .arg(tree)
        .arg(format!("ARCH={}", arch.kernel_arch()));
    cmd
}

/// `make KCONFIG_ALLCONFIG=<allconfig> allnoconfig`.
pub fn configure(tree: &Path, arch: Arch, allconfig: &Path, log: &Path) -> Result<()> {
    let mut cmd = make_command(tree, arch);
    cmd.arg(format!("KCONFIG_ALLCONFIG={}", allconfig.display()))
        .arg("allnoconfig");
    run_logged(&mut cmd, log, Duration::from_secs(3600), |_| {}, || {})
}

/// `make -jN <image target>`, which also links `vmlinux` at the top of the tree.
pub fn compile(
    tree: &Path,
    arch: Arch,
    jobs: usize,
    log: &Path,
    tick: Duration,
    on_line: impl FnMut(&str),
    on_tick: impl FnMut(),
) -> Result<()> {
    let mut cmd = make_command(tree, arch);
    cmd.arg(format!("-j{jobs}")).arg(arch.image_target());
    run_logged(&mut cmd, log, tick, on_line, on_tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_logged_captures_output_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut seen = Vec::new();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("for i in $(seq 1 50); do echo out$i; done; sleep 0.2; echo err >&2; exit 3");
        let err = run_logged(
            &mut cmd,
            &log,
            Duration::from_secs(60),
            |l| seen.push(l.to_string()),
            || {},
        )
        .unwrap_err();
        assert_eq!(seen.len(), 51);
        match &err {
            KernelError::Command(CommandError::Failed {
                command,
                status,
                log: Some(l),
                tail,
            }) => {
                assert!(command.starts_with("sh -c"));
                assert_eq!(status.code(), Some(3));
                assert_eq!(l, &log);
                assert_eq!(tail.len(), TAIL_LINES);
                assert!(tail.iter().any(|l| l == "err"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains(&log.display().to_string()), "{msg}");
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("$ sh -c"));
        assert!(text.contains("out50\n"));
    }

    #[test]
    fn run_logged_reports_spawn_failure() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("/nonexistent/hull-no-such-program");
        let err = run_logged(
            &mut cmd,
            &dir.path().join("log"),
            Duration::from_secs(1),
            |_| {},
            || {},
        )
        .unwrap_err();
        assert!(
            matches!(err, KernelError::Command(CommandError::Spawn { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains("hull-no-such-program"));
    }

    #[test]
    fn run_logged_ticks() {
        let dir = tempfile::tempdir().unwrap();
        let mut ticks = 0;
        let mut cmd = Command::new("sleep");
        cmd.arg("0.35");
        run_logged(
            &mut cmd,
            &dir.path().join("log"),
            Duration::from_millis(100),
            |_| {},
            || ticks += 1,
        )
        .unwrap();
        assert!(ticks >= 2, "{ticks}");
    }

    #[test]
    fn extract_finds_the_single_top_directory() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("linux-source-x");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("Makefile"), "all:\n").unwrap();
        let tarball = dir.path().join("src.tar");
        let status = Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(dir.path())
            .arg("linux-source-x")
            .status()
            .unwrap();
        assert!(status.success());
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        let tree = extract(
            &tarball,
            &dest,
            &dir.path().join("log"),
            Duration::from_secs(60),
            || {},
        )
        .unwrap();
        assert_eq!(tree, dest.join("linux-source-x"));
        assert!(tree.join("Makefile").is_file());
    }

    #[test]
    fn make_command_pins_the_build_identity() {
        let cmd = make_command(Path::new("/src"), Arch::X86_64);
        assert_eq!(display_command(&cmd), "make -C /src ARCH=x86_64");
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(
            envs.iter()
                .any(|(k, v)| *k == "KBUILD_BUILD_HOST" && v.is_some())
        );
        assert!(envs.iter().any(|(k, v)| *k == "MAKEFLAGS" && v.is_none()));
    }
}

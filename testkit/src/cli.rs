//! Running one of hull's command-line tools (`hull-ctl`) from a test: with the
//! environment's `HULL_AGENT_ADDR` removed, so only what the test passes counts.
//!
//! Where the process's [`Reaper`] runs (a test serving an agent in-process, whose reaper
//! owns `waitpid(-1)`), the child is spawned through it: the reaper would otherwise take
//! the tool's exit status from under `Command::output` (ECHILD). Elsewhere (a test that
//! also runs a VM, whose harness waits for its own children) no reaper is started.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hull_container::process::{ExitStatus, Reaper};

/// Runs `binary` with `args` to its end.
pub fn run(binary: &str, args: &[&str]) -> Output {
    let mut command = Command::new(binary);
    command.args(args).env_remove("HULL_AGENT_ADDR");
    output(command)
}

/// Held (shared) while a child is waited for without the reaper; the reaper is only
/// started with it held exclusively ([`start_reaper`]), so it cannot start in the middle
/// of such a wait and take the child's status.
static SPAWN_GATE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Starts the process's reaper once no child is being waited for without it.
pub fn start_reaper() {
    let _gate = SPAWN_GATE.write().unwrap_or_else(|e| e.into_inner());
    Reaper::global().unwrap_or_else(|e| panic!("the process's reaper: {e}"));
}

/// `command.output()`, through the process's reaper where one runs (see the module
/// documentation); panics naming the program if it cannot be started.
pub fn output(mut command: Command) -> Output {
    let binary = command.get_program().to_string_lossy().into_owned();
    let gate = SPAWN_GATE.read().unwrap_or_else(|e| e.into_inner());
    let Some(reaper) = Reaper::started() else {
        let out = command
            .output()
            .unwrap_or_else(|e| panic!("running {binary}: {e}"));
        drop(gate);
        return out;
    };
    drop(gate);
    let (mut child, exited) = reaper
        .spawn_registered(|| {
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?;
            Ok((child.id() as i32, child))
        })
        .unwrap_or_else(|e| panic!("running {binary}: {e}"));
    let mut stderr_pipe = child.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut bytes);
        bytes
    });
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_end(&mut stdout);
    }
    let stderr = stderr.join().unwrap_or_default();
    let status = loop {
        if let Some(status) = exited.status() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status: match status {
            ExitStatus::Exited(code) => std::process::ExitStatus::from_raw(code << 8),
            ExitStatus::Signaled(signal) => std::process::ExitStatus::from_raw(signal),
        },
        stdout,
        stderr,
    }
}

/// [`run`] on the blocking pool, for async tests whose runtime serves the agent.
pub async fn run_async(binary: &str, args: &[&str]) -> Output {
    let binary = binary.to_string();
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&binary, &args)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Bytes as text (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What the tool printed on stdout.
pub fn stdout(output: &Output) -> String {
    text(&output.stdout)
}

/// What the tool printed on stderr.
pub fn stderr(output: &Output) -> String {
    text(&output.stderr)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn captures_both_streams() {
        let out = super::run_async("/bin/sh", &["-c", "echo o; echo e >&2; exit 3"]).await;
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(super::stdout(&out), "o\n");
        assert_eq!(super::stderr(&out), "e\n");
    }
}

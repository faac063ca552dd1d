//! Running one of hull's command-line tools (`hull-ctl`) from a test: with the
//! environment's `HULL_AGENT_ADDR` removed, so only what the test passes counts.

use std::process::{Command, Output};

/// Runs `binary` with `args` to its end.
pub fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env_remove("HULL_AGENT_ADDR")
        .output()
        .unwrap_or_else(|e| panic!("running {binary}: {e}"))
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

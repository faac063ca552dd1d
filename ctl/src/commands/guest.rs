//! `copy-file`, `set-time`, `reseed` and `metrics`: the guest services a Kata runtime
//! calls beside containers.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hull_protocols::AgentClient;
use hull_protocols::client::copy_file_requests;
use serde::Serialize;

use super::Outcome;
use crate::output::{Report, kv_lines, to_json};

/// How many random bytes `reseed` sends unless told.
pub const DEFAULT_RESEED_BYTES: usize = 64;

/// Guest service commands.
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum GuestCommand {
    /// AgentService.CopyFile: copy a host file, directory or symlink into the guest's
    /// shared directory (/run/kata-containers/shared/containers/...), in 1 MiB chunks as
    /// Kata's runtime does.
    CopyFile(CopyFileArgs),
    /// AgentService.SetGuestDateTime: set the guest's wall clock.
    SetTime(SetTimeArgs),
    /// AgentService.ReseedRandomDev: add random bytes from this host to the guest's
    /// entropy pool and reseed its RNG.
    Reseed(ReseedArgs),
    /// AgentService.GetMetrics: the guest's and the agent's figures (Prometheus text).
    Metrics,
}

/// `copy-file` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CopyFileArgs {
    /// The host file, directory or symlink (not followed).
    pub local: PathBuf,
    /// Where it goes in the guest: an absolute path beneath
    /// /run/kata-containers/shared/containers.
    pub guest_path: String,
    /// Copy a directory's contents too, each entry after its directory.
    #[arg(short, long)]
    pub recursive: bool,
}

/// `set-time` arguments: exactly one of `--now` and SECS.
#[derive(Debug, Clone, PartialEq, Args)]
#[group(required = true, multiple = false)]
pub struct SetTimeArgs {
    /// This host's current time.
    #[arg(long)]
    pub now: bool,
    /// Seconds since the Unix epoch, fractions allowed (`1700000000.25`).
    #[arg(value_name = "SECS", allow_negative_numbers = true)]
    pub secs: Option<f64>,
}

impl SetTimeArgs {
    /// Seconds and microseconds to send.
    pub fn time(&self) -> anyhow::Result<(i64, i64)> {
        if self.now {
            let since = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("this host's clock is before 1970")?;
            let sec = i64::try_from(since.as_secs()).context("this host's clock")?;
            return Ok((sec, i64::from(since.subsec_micros())));
        }
        let secs = self.secs.context("give SECS or --now")?;
        anyhow::ensure!(secs.is_finite(), "{secs} is not a time");
        let sec = secs.floor();
        let usec = ((secs - sec) * 1e6).round().min(999_999.0);
        // The agent judges the range (before the epoch is refused there, by name).
        Ok((sec as i64, usec as i64))
    }
}

/// `reseed` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReseedArgs {
    /// How many random bytes to send (0 sends none: the agent refuses that).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RESEED_BYTES)]
    pub bytes: usize,
}

/// Runs a guest service command.
pub async fn run(client: &AgentClient, command: &GuestCommand) -> anyhow::Result<Outcome> {
    match command {
        GuestCommand::CopyFile(args) => copy(client, args).await.map(Outcome::ok),
        GuestCommand::SetTime(args) => {
            let (sec, usec) = args.time()?;
            client.set_guest_date_time(sec, usec).await?;
            Ok(Outcome::ok(TimeReport { sec, usec }))
        }
        GuestCommand::Reseed(args) => {
            let mut data = vec![0u8; args.bytes];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut random| random.read_exact(&mut data))
                .context("reading /dev/urandom")?;
            client.reseed_random_dev(&data).await?;
            Ok(Outcome::ok(ReseedReport { bytes: data.len() }))
        }
        GuestCommand::Metrics => Ok(Outcome::ok(MetricsReport {
            metrics: client.get_metrics().await?,
        })),
    }
}

async fn copy(client: &AgentClient, args: &CopyFileArgs) -> anyhow::Result<CopyReport> {
    let mut report = CopyReport {
        guest_path: args.guest_path.clone(),
        files: 0,
        requests: 0,
        bytes: 0,
    };
    let mut pending = vec![(args.local.clone(), args.guest_path.clone())];
    while let Some((local, guest)) = pending.pop() {
        let requests = copy_file_requests(&local, &guest)
            .with_context(|| format!("reading {}", local.display()))?;
        for req in &requests {
            client
                .copy_file(req)
                .await
                .with_context(|| format!("copying {} to {guest}", local.display()))?;
            report.requests += 1;
            report.bytes += req.data.len() as u64;
        }
        report.files += 1;
        if args.recursive && std::fs::symlink_metadata(&local)?.is_dir() {
            // Reversed: popped in name order.
            let mut entries = children(&local)?;
            entries.reverse();
            pending.extend(entries.into_iter().map(|name| {
                let guest = format!("{}/{}", guest.trim_end_matches('/'), name);
                (local.join(&name), guest)
            }));
        }
    }
    Ok(report)
}

/// The names in `dir`, sorted; non-UTF-8 names are refused (the guest path is a string).
fn children(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry?.file_name();
        let name = name
            .into_string()
            .map_err(|name| anyhow::anyhow!("{}: {name:?} is not UTF-8", dir.display()))?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// `copy-file` result. JSON: `{"guest_path": "...", "files": N, "requests": N, "bytes": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// Where the copy went.
    pub guest_path: String,
    /// Files, directories and symlinks copied.
    pub files: u64,
    /// CopyFile requests sent.
    pub requests: u64,
    /// Bytes of file data (and symlink targets) sent.
    pub bytes: u64,
}

impl Report for CopyReport {
    fn human(&self) -> String {
        kv_lines(&[
            ("guest_path", self.guest_path.clone()),
            ("files", self.files.to_string()),
            ("requests", self.requests.to_string()),
            ("bytes", self.bytes.to_string()),
        ])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `set-time` result. JSON: `{"sec": N, "usec": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeReport {
    /// Seconds since the epoch the guest's clock was set to.
    pub sec: i64,
    /// And microseconds.
    pub usec: i64,
}

impl Report for TimeReport {
    fn human(&self) -> String {
        kv_lines(&[
            ("sec", self.sec.to_string()),
            ("usec", self.usec.to_string()),
        ])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `reseed` result. JSON: `{"bytes": N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReseedReport {
    /// Random bytes sent.
    pub bytes: usize,
}

impl Report for ReseedReport {
    fn human(&self) -> String {
        kv_lines(&[("bytes", self.bytes.to_string())])
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

/// `metrics` result: the text as the agent wrote it. JSON: `{"metrics": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricsReport {
    /// Prometheus text format.
    pub metrics: String,
}

impl Report for MetricsReport {
    fn human(&self) -> String {
        self.metrics.clone()
    }
    fn json(&self) -> serde_json::Value {
        to_json(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Format, render};

    #[test]
    fn set_time_takes_seconds_with_fractions_or_now() {
        let at = |secs| SetTimeArgs {
            now: false,
            secs: Some(secs),
        };
        assert_eq!(
            at(1_700_000_000.25).time().unwrap(),
            (1_700_000_000, 250_000)
        );
        assert_eq!(at(5.0).time().unwrap(), (5, 0));
        assert_eq!(at(-1.5).time().unwrap(), (-2, 500_000));
        assert!(at(f64::NAN).time().is_err());
        let (sec, usec) = SetTimeArgs {
            now: true,
            secs: None,
        }
        .time()
        .unwrap();
        assert!(sec > 1_600_000_000 && (0..1_000_000).contains(&usec));
    }

    #[test]
    fn reports_print_as_text_and_json() {
        let copy = CopyReport {
            guest_path: "/run/kata-containers/shared/containers/f".into(),
            files: 1,
            requests: 3,
            bytes: 2_097_162,
        };
        assert_eq!(
            render(&copy, Format::Human),
            "guest_path: /run/kata-containers/shared/containers/f\nfiles:      1\n\
             requests:   3\nbytes:      2097162\n"
        );
        assert_eq!(copy.json()["requests"], 3);
        let metrics = MetricsReport {
            metrics: "# TYPE a gauge\na 1\n".into(),
        };
        assert_eq!(render(&metrics, Format::Human), "# TYPE a gauge\na 1\n");
        assert_eq!(
            metrics.json(),
            serde_json::json!({"metrics": "# TYPE a gauge\na 1\n"})
        );
        assert_eq!(
            TimeReport { sec: 1, usec: 2 }.json(),
            serde_json::json!({"sec": 1, "usec": 2})
        );
        assert_eq!(ReseedReport { bytes: 64 }.human(), "bytes: 64");
    }

    #[test]
    fn children_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a", "c"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        assert_eq!(children(dir.path()).unwrap(), ["a", "b", "c"]);
    }
}

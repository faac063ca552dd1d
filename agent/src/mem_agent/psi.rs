//! Pressure stall information: the share of wall time in which some task waited for
//! memory (or I/O), from `/proc/pressure/*` or a cgroup's `*.pressure` files. Kata's
//! mem-agent adds memory and I/O stalls; so does this.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::MemAgentError;

/// The `total=` microseconds of a pressure file's `some` line.
pub fn some_total_us(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("some "))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("total="))?
        .parse()
        .ok()
}

/// Reads the summed `some` totals of the pressure files in `files` (missing ones count
/// as no stall, except the first, which must exist).
pub fn read_total_us(files: &[PathBuf]) -> Result<u64, MemAgentError> {
    let mut total = 0u64;
    for (i, file) in files.iter().enumerate() {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if i > 0 && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(MemAgentError::io(file, source)),
        };
        let value = some_total_us(&text).ok_or_else(|| MemAgentError::Parse {
            path: file.clone(),
            what: "a `some ... total=N` line",
        })?;
        total = total.saturating_add(value);
    }
    Ok(total)
}

/// The memory and I/O pressure files of a cgroup directory.
pub fn cgroup_files(cgroup: &Path) -> Vec<PathBuf> {
    vec![cgroup.join("memory.pressure"), cgroup.join("io.pressure")]
}

/// The system-wide memory and I/O pressure files under `proc` (normally `/proc`).
pub fn system_files(proc: &Path) -> Vec<PathBuf> {
    vec![proc.join("pressure/memory"), proc.join("pressure/io")]
}

/// The stall percentage between successive samples of one pressure source.
#[derive(Debug, Clone, Default)]
pub struct PsiWindow {
    last: Option<(u64, Instant)>,
}

impl PsiWindow {
    /// Records a sample and answers the stall percentage since the previous one (0 for
    /// the first, as Kata's mem-agent).
    pub fn percent(&mut self, total_us: u64, now: Instant) -> u64 {
        let percent = match self.last {
            Some((last_us, then)) if total_us > last_us && now > then => {
                let elapsed_us = now.duration_since(then).as_micros().max(1);
                let stalled = u128::from(total_us - last_us) * 100;
                u64::try_from(stalled / elapsed_us).unwrap_or(u64::MAX)
            }
            _ => 0,
        };
        self.last = Some((total_us, now));
        percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_some_total_is_read() {
        let text = "some avg10=0.00 avg60=0.00 avg300=0.00 total=1234\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=99\n";
        assert_eq!(some_total_us(text), Some(1234));
        assert_eq!(some_total_us("full total=3\n"), None);
        assert_eq!(some_total_us("some total=x\n"), None);
    }

    #[test]
    fn the_percentage_is_stall_time_over_wall_time() {
        let mut window = PsiWindow::default();
        let start = Instant::now();
        assert_eq!(window.percent(1_000, start), 0, "first sample");
        // 50 ms stalled in 1 s: 5 %.
        assert_eq!(window.percent(51_000, start + Duration::from_secs(1)), 5);
        // No new stall.
        assert_eq!(window.percent(51_000, start + Duration::from_secs(2)), 0);
        // 2 s stalled in 1 s (several tasks): over 100 %, as the kernel counts.
        assert_eq!(
            window.percent(2_051_000, start + Duration::from_secs(3)),
            200
        );
    }

    #[test]
    fn missing_secondary_files_count_as_calm() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("memory.pressure");
        std::fs::write(&memory, "some avg10=0 avg60=0 avg300=0 total=700\n").unwrap();
        let files = cgroup_files(dir.path());
        assert_eq!(read_total_us(&files).unwrap(), 700);
        std::fs::write(dir.path().join("io.pressure"), "some total=300\n").unwrap();
        assert_eq!(read_total_us(&files).unwrap(), 1000);
        std::fs::remove_file(&memory).unwrap();
        assert!(read_total_us(&files).is_err());
    }
}

//! Progress reporting on stderr: phases with elapsed times, and the compile counter.

use std::io::Write;
use std::time::{Duration, Instant};

/// Formats a duration as `0.4s`, `12.3s`, `3m07s` or `1h02m`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Formats a byte count as `3.9 MB` (decimal units) alongside the exact number.
pub fn fmt_size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else if bytes >= 1_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// Writes progress lines to stderr (or nowhere, when quiet).
#[derive(Debug, Clone)]
pub struct Progress {
    enabled: bool,
    start: Instant,
}

impl Progress {
    /// A reporter that prints when `enabled` (false with `-q`); its clock starts now.
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            start: Instant::now(),
        }
    }

    /// Whether progress lines are printed (not `-q`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Time since this reporter was created.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Prints one line.
    pub fn line(&self, msg: impl AsRef<str>) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{}", msg.as_ref());
        }
    }

    /// Starts a phase: prints `==> name: detail` and returns a guard that reports the
    /// phase's duration when finished.
    pub fn phase(&self, name: &'static str, detail: impl AsRef<str>) -> Phase<'_> {
        let detail = detail.as_ref();
        if detail.is_empty() {
            self.line(format!("==> {name}"));
        } else {
            self.line(format!("==> {name}: {detail}"));
        }
        Phase {
            progress: self,
            name,
            start: Instant::now(),
        }
    }
}

/// A running phase; see [`Progress::phase`].
#[derive(Debug)]
pub struct Phase<'a> {
    progress: &'a Progress,
    name: &'static str,
    start: Instant,
}

impl Phase<'_> {
    /// Time since the phase started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Prints an intermediate line belonging to this phase.
    pub fn note(&self, msg: impl AsRef<str>) {
        self.progress.line(format!("    {}", msg.as_ref()));
    }

    /// Ends the phase, printing its duration and an optional note. Returns the duration.
    pub fn done(self, note: impl AsRef<str>) -> Duration {
        let took = self.start.elapsed();
        let note = note.as_ref();
        let sep = if note.is_empty() { "" } else { ", " };
        self.progress.line(format!(
            "    {} done in {}{sep}{note}",
            self.name,
            fmt_duration(took)
        ));
        took
    }
}

/// Counts the objects kbuild reports while compiling, from its `  CC      path` lines.
#[derive(Debug, Clone)]
pub struct CompileCounter {
    /// Objects seen so far.
    pub done: u64,
    /// Expected total (from the previous build, or a measured default).
    pub estimate: u64,
    /// The last object seen.
    pub last: String,
}

/// kbuild's quiet-output tags that count as one compiled or linked object each.
const COUNTED_TAGS: &[&str] = &["CC", "AS", "LD", "AR"];

impl CompileCounter {
    /// A counter at zero expecting `estimate` objects (at least 1, so percentages are defined).
    pub fn new(estimate: u64) -> CompileCounter {
        CompileCounter {
            done: 0,
            estimate: estimate.max(1),
            last: String::new(),
        }
    }

    /// Looks at one line of make's output; returns whether it counted.
    pub fn observe(&mut self, line: &str) -> bool {
        let Some(rest) = line.strip_prefix("  ") else {
            return false;
        };
        let mut words = rest.split_whitespace();
        let (Some(tag), Some(obj)) = (words.next(), words.next()) else {
            return false;
        };
        if !COUNTED_TAGS.contains(&tag) {
            return false;
        }
        self.done += 1;
        self.last.clear();
        self.last.push_str(obj);
        true
    }

    /// `1234/~2900 objects (42%)`; the percentage stops at 99 until the build ends.
    pub fn summary(&self) -> String {
        let pct = (self.done * 100 / self.estimate).min(99);
        format!("{}/~{} objects ({pct}%)", self.done, self.estimate)
    }

    /// Time left at the average rate so far, once there is a rate to speak of.
    pub fn remaining(&self, elapsed: Duration) -> Option<Duration> {
        if self.done < 20 || self.done >= self.estimate {
            return None;
        }
        let left = (self.estimate - self.done) as f64 / self.done as f64;
        Some(elapsed.mul_f64(left))
    }

    /// The periodic progress line of the compile phase.
    pub fn progress_line(&self, elapsed: Duration) -> String {
        let eta = match self.remaining(elapsed) {
            Some(d) => format!(", ~{} left", fmt_duration(d)),
            None => String::new(),
        };
        format!(
            "    compiling: {}, {} elapsed{eta}, last {}",
            self.summary(),
            fmt_duration(elapsed),
            self.last
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(fmt_duration(Duration::from_secs(187)), "3m07s");
        assert_eq!(fmt_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn sizes() {
        assert_eq!(fmt_size(512), "512 B");
        assert_eq!(fmt_size(3_900_000), "3.9 MB");
    }

    #[test]
    fn counts_kbuild_object_lines() {
        let mut c = CompileCounter::new(4);
        for line in [
            "  SYNC    include/config/auto.conf.cmd",
            "  HOSTCC  scripts/basic/fixdep",
            "  CC      kernel/fork.o",
            "  AS      arch/x86/entry/entry_64.o",
            "  AR      kernel/built-in.a",
            "  LD      vmlinux.o",
            "  CC      init/main.o",
            "kernel/fork.c:1:1: warning: CC something",
            "make[1]: Leaving directory",
        ] {
            c.observe(line);
        }
        assert_eq!(c.done, 5);
        assert_eq!(c.last, "init/main.o");
        assert_eq!(c.summary(), "5/~4 objects (99%)");
        assert_eq!(c.remaining(Duration::from_secs(10)), None);
    }

    #[test]
    fn progress_line_has_an_estimate_of_time_left() {
        let mut c = CompileCounter::new(100);
        for _ in 0..25 {
            c.observe("  CC      kernel/fork.o");
        }
        assert_eq!(
            c.progress_line(Duration::from_secs(60)),
            "    compiling: 25/~100 objects (25%), 1m00s elapsed, ~3m00s left, last kernel/fork.o"
        );
    }
}

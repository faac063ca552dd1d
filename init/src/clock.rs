//! Monotonic time (CLOCK_MONOTONIC, which counts from boot) and sleeping.

use core::time::Duration;

use rustix::thread::{ClockId, NanosleepRelativeResult, clock_nanosleep_relative};
use rustix::time::Timespec;

/// A point on the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(Duration);

impl Instant {
    pub fn now() -> Self {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
        Self(Duration::new(secs, nanos.min(999_999_999)))
    }

    /// Time since boot.
    pub fn since_boot(self) -> Duration {
        self.0
    }

    pub fn elapsed(self) -> Duration {
        Self::now().saturating_duration_since(self)
    }

    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl core::ops::Add<Duration> for Instant {
    type Output = Self;

    fn add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }
}

/// Milliseconds since boot, for log lines.
pub fn uptime_ms() -> u64 {
    millis(Instant::now().since_boot())
}

/// Whole milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A `Timespec` for a timeout, rounded up to whole milliseconds so a short
/// remaining delay never spins.
pub fn timespec_ms_ceil(d: Duration) -> Timespec {
    let ms = d.as_nanos().div_ceil(1_000_000);
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    // Below 1000 ms, so it fits.
    let nanos = i64::try_from((ms % 1000) * 1_000_000).unwrap_or(0);
    Timespec {
        tv_sec: secs,
        tv_nsec: nanos,
    }
}

/// Sleeps for `d` (whole, even when interrupted by a signal handler).
pub fn sleep(d: Duration) {
    let mut left = Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    };
    while let NanosleepRelativeResult::Interrupted(rest) =
        clock_nanosleep_relative(ClockId::Monotonic, &left)
    {
        left = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t: Timespec) -> i64 {
        t.tv_sec * 1000 + t.tv_nsec / 1_000_000
    }

    #[test]
    fn timeout_rounding() {
        assert_eq!(ms(timespec_ms_ceil(Duration::ZERO)), 0);
        assert_eq!(ms(timespec_ms_ceil(Duration::from_micros(1))), 1);
        assert_eq!(ms(timespec_ms_ceil(Duration::from_millis(1500))), 1500);
        assert_eq!(timespec_ms_ceil(Duration::from_millis(1500)).tv_sec, 1);
        assert_eq!(
            timespec_ms_ceil(Duration::from_secs(u64::MAX)).tv_sec,
            i64::MAX
        );
    }

    #[test]
    fn monotonic_and_sleep() {
        let start = Instant::now();
        sleep(Duration::from_millis(20));
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(Instant::now() >= start);
        assert_eq!(
            start.saturating_duration_since(start + Duration::from_secs(1)),
            Duration::ZERO
        );
    }
}

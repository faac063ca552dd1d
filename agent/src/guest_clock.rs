//! `SetGuestDateTime`: the host sets the guest's wall clock, as Kata's runtime does after
//! it resumes a paused or restored VM (whose clock stood still meanwhile).
//!
//! The time is seconds and microseconds since the Unix epoch; it is set on
//! `CLOCK_REALTIME` (`clock_settime(2)`, the system call behind Kata's `settimeofday`).
//! Monotonic clocks and the RTC are not touched. Values the kernel would refuse are
//! refused here first, naming the field.

use nix::errno::Errno;
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_settime};

/// Microseconds in a second: `usec` must be below it.
const MICROS_PER_SEC: i64 = 1_000_000;

/// Why the clock was not set.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// The time asked for is not one the clock can show.
    #[error("invalid time sec={sec} usec={usec}: {reason}")]
    Invalid {
        /// Seconds as sent.
        sec: i64,
        /// Microseconds as sent.
        usec: i64,
        /// What is wrong with them.
        reason: &'static str,
    },
    /// The kernel refused to set the clock.
    #[error("setting the guest clock to sec={sec} usec={usec}: {errno}")]
    Set {
        /// Seconds asked for.
        sec: i64,
        /// Microseconds asked for.
        usec: i64,
        /// `clock_settime`'s error.
        errno: Errno,
    },
}

/// A wall-clock time, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallTime {
    sec: i64,
    usec: i64,
}

impl WallTime {
    /// `sec` seconds and `usec` microseconds since the epoch; both non-negative, `usec`
    /// below a million.
    pub fn new(sec: i64, usec: i64) -> Result<Self, ClockError> {
        let invalid = |reason| ClockError::Invalid { sec, usec, reason };
        if sec < 0 {
            return Err(invalid("sec is before the epoch"));
        }
        if !(0..MICROS_PER_SEC).contains(&usec) {
            return Err(invalid("usec must be in 0..1000000"));
        }
        Ok(Self { sec, usec })
    }

    fn timespec(self) -> TimeSpec {
        TimeSpec::new(self.sec, self.usec * 1_000)
    }
}

/// Sets the guest's wall clock to `time`.
pub fn set(time: WallTime) -> Result<(), ClockError> {
    clock_settime(ClockId::CLOCK_REALTIME, time.timespec()).map_err(|errno| ClockError::Set {
        sec: time.sec,
        usec: time.usec,
        errno,
    })?;
    tracing::info!(sec = time.sec, usec = time.usec, "guest clock set");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_the_clock_cannot_show_are_refused_naming_them() {
        for (sec, usec, needle) in [
            (-1, 0, "before the epoch"),
            (0, -1, "0..1000000"),
            (0, 1_000_000, "0..1000000"),
            (1, i64::MAX, "0..1000000"),
        ] {
            let err = WallTime::new(sec, usec).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(needle), "{text}");
            assert!(text.contains(&format!("usec={usec}")), "{text}");
        }
    }

    #[test]
    fn a_valid_time_becomes_a_timespec() {
        let time = WallTime::new(1_800_000_000, 999_999).unwrap();
        let spec = time.timespec();
        assert_eq!(
            (spec.tv_sec(), spec.tv_nsec()),
            (1_800_000_000, 999_999_000)
        );
        assert!(WallTime::new(0, 0).is_ok());
    }
}

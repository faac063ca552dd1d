//! The memory agent's two configurations, their defaults (Kata's mem-agent's), and the
//! partial updates `MemAgentMemcgSet` / `MemAgentCompactSet` carry: every field is
//! optional, an absent one keeps its current value, and a present one is checked.

use std::time::Duration;

use super::MemAgentError;

/// The longest period accepted (a year): longer ones are surely a mistake.
const PERIOD_SECS_MAX: u64 = 365 * 24 * 3600;
/// `swappiness` runs from 0 (file pages only) to 200 (anonymous pages only).
const SWAPPINESS_MAX: u32 = 200;
/// The highest page order the buddy allocator has on x86-64 (`MAX_ORDER - 1`).
pub const PAGE_ORDER_MAX: u32 = 10;
/// Kata's default `compact_order`: the order free page reporting works at.
const PAGE_REPORTING_ORDER: u8 = 9;

/// Proactive reclaim of memory cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemcgConfig {
    /// No reclaim at all.
    pub disabled: bool,
    /// Anonymous pages may be reclaimed to swap as well as file pages.
    pub swap: bool,
    /// The highest share of anonymous pages in a reclaim (0–200, as `vm.swappiness`).
    pub swappiness_max: u8,
    /// How often each memory cgroup is looked at.
    pub period: Duration,
    /// A cgroup whose memory+I/O pressure over the last period exceeds this percentage
    /// is left alone this period.
    pub period_psi_percent_limit: u8,
    /// A reclaim stops once the cgroup's pressure during it exceeds this percentage.
    pub eviction_psi_percent_limit: u8,
    /// A cgroup is reclaimed from only after this many calm periods in a row (Kata's
    /// "aging" rounds: pages that survived them are cold).
    pub eviction_run_aging_count_min: u64,
}

impl Default for MemcgConfig {
    fn default() -> Self {
        Self {
            disabled: false,
            swap: false,
            swappiness_max: 50,
            period: Duration::from_secs(10 * 60),
            period_psi_percent_limit: 1,
            eviction_psi_percent_limit: 1,
            eviction_run_aging_count_min: 3,
        }
    }
}

/// Memory compaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactConfig {
    /// No compaction at all.
    pub disabled: bool,
    /// How often compaction is considered.
    pub period: Duration,
    /// No compaction in a period whose system pressure exceeds this percentage.
    pub period_psi_percent_limit: u8,
    /// A running compaction is stopped once the pressure exceeds this percentage.
    pub compact_psi_percent_limit: u8,
    /// A running compaction is stopped after this long.
    pub compact_max: Duration,
    /// Free movable pages below this order count as fragmented.
    pub compact_order: u8,
    /// In pages: compact when the fragmented free pages grew by more than this since the
    /// last compaction, or free memory shrank by more than this.
    pub compact_threshold: u64,
    /// After this many periods without a compaction one is forced; `i64::MAX` or more:
    /// never.
    pub compact_force_times: u64,
}

impl Default for CompactConfig {
    fn default() -> Self {
        Self {
            disabled: false,
            period: Duration::from_secs(10 * 60),
            period_psi_percent_limit: 1,
            compact_psi_percent_limit: 5,
            compact_max: Duration::from_secs(5 * 60),
            compact_order: PAGE_REPORTING_ORDER,
            compact_threshold: 2 << PAGE_REPORTING_ORDER,
            compact_force_times: i64::MAX as u64,
        }
    }
}

impl CompactConfig {
    /// Whether `compact_force_times` asks for forced compactions at all.
    pub fn forces(&self) -> bool {
        self.compact_force_times < i64::MAX as u64
    }
}

/// `MemAgentMemcgSet`'s fields, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemcgUpdate {
    /// `disabled`, if sent.
    pub disabled: Option<bool>,
    /// `swap`, if sent.
    pub swap: Option<bool>,
    /// `swappiness_max`, if sent.
    pub swappiness_max: Option<u32>,
    /// `period_secs`, if sent.
    pub period_secs: Option<u64>,
    /// `period_psi_percent_limit`, if sent.
    pub period_psi_percent_limit: Option<u32>,
    /// `eviction_psi_percent_limit`, if sent.
    pub eviction_psi_percent_limit: Option<u32>,
    /// `eviction_run_aging_count_min`, if sent.
    pub eviction_run_aging_count_min: Option<u64>,
}

/// `MemAgentCompactSet`'s fields, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactUpdate {
    /// `disabled`, if sent.
    pub disabled: Option<bool>,
    /// `period_secs`, if sent.
    pub period_secs: Option<u64>,
    /// `period_psi_percent_limit`, if sent.
    pub period_psi_percent_limit: Option<u32>,
    /// `compact_psi_percent_limit`, if sent.
    pub compact_psi_percent_limit: Option<u32>,
    /// `compact_sec_max`, if sent.
    pub compact_sec_max: Option<i64>,
    /// `compact_order`, if sent.
    pub compact_order: Option<u32>,
    /// `compact_threshold`, if sent.
    pub compact_threshold: Option<u64>,
    /// `compact_force_times`, if sent.
    pub compact_force_times: Option<u64>,
}

fn invalid(field: &'static str, reason: String) -> MemAgentError {
    MemAgentError::Invalid { field, reason }
}

fn percent(field: &'static str, value: u32) -> Result<u8, MemAgentError> {
    u8::try_from(value)
        .ok()
        .filter(|v| *v <= 100)
        .ok_or_else(|| invalid(field, format!("{value} is not a percentage (0-100)")))
}

fn period(field: &'static str, secs: u64) -> Result<Duration, MemAgentError> {
    if secs == 0 || secs > PERIOD_SECS_MAX {
        return Err(invalid(
            field,
            format!("{secs} is outside 1..={PERIOD_SECS_MAX} seconds"),
        ));
    }
    Ok(Duration::from_secs(secs))
}

impl MemcgUpdate {
    /// `current` with this update's fields, each checked.
    pub fn apply(&self, current: &MemcgConfig) -> Result<MemcgConfig, MemAgentError> {
        let mut next = current.clone();
        if let Some(v) = self.disabled {
            next.disabled = v;
        }
        if let Some(v) = self.swap {
            next.swap = v;
        }
        if let Some(v) = self.swappiness_max {
            next.swappiness_max = u8::try_from(v)
                .ok()
                .filter(|_| v <= SWAPPINESS_MAX)
                .ok_or_else(|| {
                    invalid(
                        "swappiness_max",
                        format!("{v} is outside 0..={SWAPPINESS_MAX}"),
                    )
                })?;
        }
        if let Some(v) = self.period_secs {
            next.period = period("period_secs", v)?;
        }
        if let Some(v) = self.period_psi_percent_limit {
            next.period_psi_percent_limit = percent("period_psi_percent_limit", v)?;
        }
        if let Some(v) = self.eviction_psi_percent_limit {
            next.eviction_psi_percent_limit = percent("eviction_psi_percent_limit", v)?;
        }
        if let Some(v) = self.eviction_run_aging_count_min {
            next.eviction_run_aging_count_min = v;
        }
        Ok(next)
    }
}

impl CompactUpdate {
    /// `current` with this update's fields, each checked.
    pub fn apply(&self, current: &CompactConfig) -> Result<CompactConfig, MemAgentError> {
        let mut next = current.clone();
        if let Some(v) = self.disabled {
            next.disabled = v;
        }
        if let Some(v) = self.period_secs {
            next.period = period("period_secs", v)?;
        }
        if let Some(v) = self.period_psi_percent_limit {
            next.period_psi_percent_limit = percent("period_psi_percent_limit", v)?;
        }
        if let Some(v) = self.compact_psi_percent_limit {
            next.compact_psi_percent_limit = percent("compact_psi_percent_limit", v)?;
        }
        if let Some(v) = self.compact_sec_max {
            let secs = u64::try_from(v)
                .ok()
                .filter(|s| (1..=PERIOD_SECS_MAX).contains(s))
                .ok_or_else(|| {
                    invalid(
                        "compact_sec_max",
                        format!("{v} is outside 1..={PERIOD_SECS_MAX} seconds"),
                    )
                })?;
            next.compact_max = Duration::from_secs(secs);
        }
        if let Some(v) = self.compact_order {
            next.compact_order = u8::try_from(v)
                .ok()
                .filter(|_| v <= PAGE_ORDER_MAX)
                .ok_or_else(|| {
                    invalid(
                        "compact_order",
                        format!("{v} is not a page order (0..={PAGE_ORDER_MAX})"),
                    )
                })?;
        }
        if let Some(v) = self.compact_threshold {
            next.compact_threshold = v;
        }
        if let Some(v) = self.compact_force_times {
            next.compact_force_times = v;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: MemAgentError) -> &'static str {
        match error {
            MemAgentError::Invalid { field, .. } => field,
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn an_update_changes_only_its_fields() {
        let update = MemcgUpdate {
            period_secs: Some(2),
            swap: Some(true),
            ..Default::default()
        };
        let next = update.apply(&MemcgConfig::default()).unwrap();
        assert_eq!(next.period, Duration::from_secs(2));
        assert!(next.swap);
        assert_eq!(next.swappiness_max, MemcgConfig::default().swappiness_max);
        assert_eq!(MemcgUpdate::default().apply(&next).unwrap(), next);
    }

    #[test]
    fn bad_memcg_values_name_their_field() {
        let cases = [
            (
                MemcgUpdate {
                    swappiness_max: Some(201),
                    ..Default::default()
                },
                "swappiness_max",
            ),
            (
                MemcgUpdate {
                    period_secs: Some(0),
                    ..Default::default()
                },
                "period_secs",
            ),
            (
                MemcgUpdate {
                    period_psi_percent_limit: Some(101),
                    ..Default::default()
                },
                "period_psi_percent_limit",
            ),
            (
                MemcgUpdate {
                    eviction_psi_percent_limit: Some(300),
                    ..Default::default()
                },
                "eviction_psi_percent_limit",
            ),
        ];
        for (update, field) in cases {
            let error = update.apply(&MemcgConfig::default()).unwrap_err();
            assert!(error.to_string().contains(field), "{error}");
            assert_eq!(field_of(error), field);
        }
    }

    #[test]
    fn bad_compact_values_name_their_field() {
        let cases = [
            (
                CompactUpdate {
                    compact_order: Some(11),
                    ..Default::default()
                },
                "compact_order",
            ),
            (
                CompactUpdate {
                    compact_sec_max: Some(0),
                    ..Default::default()
                },
                "compact_sec_max",
            ),
            (
                CompactUpdate {
                    compact_sec_max: Some(-5),
                    ..Default::default()
                },
                "compact_sec_max",
            ),
            (
                CompactUpdate {
                    period_secs: Some(PERIOD_SECS_MAX + 1),
                    ..Default::default()
                },
                "period_secs",
            ),
            (
                CompactUpdate {
                    compact_psi_percent_limit: Some(101),
                    ..Default::default()
                },
                "compact_psi_percent_limit",
            ),
        ];
        for (update, field) in cases {
            assert_eq!(
                field_of(update.apply(&CompactConfig::default()).unwrap_err()),
                field
            );
        }
    }

    #[test]
    fn compaction_is_forced_only_below_i64_max() {
        assert!(!CompactConfig::default().forces());
        let every_time = CompactUpdate {
            compact_force_times: Some(0),
            ..Default::default()
        };
        assert!(
            every_time
                .apply(&CompactConfig::default())
                .unwrap()
                .forces()
        );
    }
}

//! The benchmark's table: one row per figure, its value (min / median / max for a time or
//! a rate) and, for a speed figure, its ratio to the baseline measured in the same run.

use std::time::Duration;

/// One figure.
pub struct Row {
    pub what: String,
    pub value: String,
    /// `ratio × baseline`, or empty.
    pub versus: String,
}

/// The rows, in the order they were measured.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// A figure without a baseline.
    pub fn push(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.push_versus(what, value, "");
    }

    /// A figure with its comparison to a baseline.
    pub fn push_versus(
        &mut self,
        what: impl Into<String>,
        value: impl Into<String>,
        versus: impl Into<String>,
    ) {
        self.rows.push(Row {
            what: what.into(),
            value: value.into(),
            versus: versus.into(),
        });
    }

    /// The table as Markdown.
    pub fn render(&self) -> String {
        let width = |f: fn(&Row) -> &str, title: &str| {
            self.rows
                .iter()
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
                .max(title.len())
        };
        let (w1, w2, w3) = (
            width(|r| &r.what, "figure"),
            width(|r| &r.value, "value"),
            width(|r| &r.versus, "vs baseline"),
        );
        let mut out = format!(
            "| {:w1$} | {:w2$} | {:w3$} |\n|-{}-|-{}-|-{}-|\n",
            "figure",
            "value",
            "vs baseline",
            "-".repeat(w1),
            "-".repeat(w2),
            "-".repeat(w3)
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {:w1$} | {:w2$} | {:w3$} |\n",
                r.what, r.value, r.versus
            ));
        }
        out
    }
}

/// min / median / max of durations, in milliseconds.
pub fn spread(samples: &[Duration]) -> String {
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    spread_of(&ms, "ms", 1)
}

/// min / median / max of `samples` in `unit`, with `decimals` digits.
pub fn spread_of(samples: &[f64], unit: &str, decimals: usize) -> String {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (sorted.first(), sorted.last()) {
        (Some(min), Some(max)) => format!(
            "{min:.decimals$} / {:.decimals$} / {max:.decimals$} {unit}",
            sorted[sorted.len() / 2]
        ),
        _ => "no samples".into(),
    }
}

/// The median of `samples` (the upper one of an even count), zero when empty.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// The median of `samples`, NaN when empty.
pub fn median_of(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `value / baseline` as `N.NN × name` (medians).
pub fn ratio(value: f64, baseline: f64, name: &str) -> String {
    if baseline > 0.0 && value.is_finite() {
        format!("{:.2} × {name}", value / baseline)
    } else {
        format!("n/a (no {name})")
    }
}

/// A byte count as MiB with the exact count.
pub fn bytes(count: u64) -> String {
    format!(
        "{:.2} MiB ({count} bytes)",
        count as f64 / f64::from(1 << 20)
    )
}

/// Kibibytes (as /proc reports them) as MiB.
pub fn kib(count: u64) -> String {
    format!("{:.2} MiB", count as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_min_median_max() {
        let samples = [3, 1, 2].map(Duration::from_millis);
        assert_eq!(spread(&samples), "1.0 / 2.0 / 3.0 ms");
        assert_eq!(median(&samples), Duration::from_millis(2));
        assert_eq!(spread(&[]), "no samples");
    }

    #[test]
    fn ratio_names_its_baseline() {
        assert_eq!(ratio(3.0, 2.0, "bare"), "1.50 × bare");
        assert_eq!(ratio(3.0, 0.0, "bare"), "n/a (no bare)");
    }

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::default();
        table.push("a", "1");
        table.push_versus("longer", "2", "1.00 × x");
        let text = table.render();
        assert!(text.contains("| a      | 1     |             |"), "{text}");
        assert!(text.contains("| longer | 2     | 1.00 × x    |"), "{text}");
    }
}

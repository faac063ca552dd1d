//! The Prometheus text exposition format (version 0.0.4), the format kata-monitor reads
//! from `GetMetrics` and the Prometheus Go client's `expfmt` parses:
//!
//! ```text
//! # HELP kata_guest_load Guest load averages and ...
//! # TYPE kata_guest_load gauge
//! kata_guest_load{item="load1"} 0.15
//! ```
//!
//! One `HELP` and one `TYPE` line per family, then one line per sample: the name, the
//! labels in braces (values in double quotes with `\`, `"` and newlines escaped), a space,
//! the value. A family without samples is left out, as the Prometheus client leaves it out.

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets at restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
        }
    }
}

/// A sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A count, printed exactly.
    Int(u64),
    /// Anything else.
    Float(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Int(v) => write!(f, "{v}"),
            Self::Float(v) if v.is_nan() => f.write_str("NaN"),
            Self::Float(v) if v.is_infinite() => f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
            Self::Float(v) => write!(f, "{v}"),
        }
    }
}

/// One metric family: a name, its help and type, the names of its labels, and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    label_names: &'static [&'static str],
    samples: Vec<(Vec<String>, Value)>,
}

impl Family {
    /// An empty family. `name` and each label name must be valid Prometheus names
    /// (`[a-zA-Z_][a-zA-Z0-9_]*`; checked by the tests, these are constants).
    pub fn new(
        name: &'static str,
        help: &'static str,
        kind: Kind,
        label_names: &'static [&'static str],
    ) -> Self {
        Self {
            name,
            help,
            kind,
            label_names,
            samples: Vec::new(),
        }
    }

    /// Adds a sample with one value per label name, in their order. Extra values are
    /// dropped, missing ones are empty.
    pub fn push(&mut self, labels: &[&str], value: Value) {
        let labels = (0..self.label_names.len())
            .map(|i| labels.get(i).copied().unwrap_or_default().to_owned())
            .collect();
        self.samples.push((labels, value));
    }

    /// The family's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How many samples it has.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether it has no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn encode(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape(self.help, false));
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind.as_str());
        for (labels, value) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in self.label_names.iter().zip(labels).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape(value, true));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// The families in the text format, in the order given.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        family.encode(&mut out);
    }
    out
}

/// Escapes `\` and newlines (and `"` in label values).
fn escape(text: &str, quotes: bool) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\\', '\n', '"']) {
        return text.into();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quotes => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped.into()
}

/// Whether `name` is a valid metric or label name.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_print_help_type_and_samples() {
        let mut load = Family::new("t_load", "Load.", Kind::Gauge, &["item"]);
        load.push(&["load1"], Value::Float(0.15));
        load.push(&["load5"], Value::Float(2.0));
        let mut count = Family::new("t_scrapes", "Scrapes.", Kind::Counter, &[]);
        count.push(&[], Value::Int(u64::MAX));
        let empty = Family::new("t_empty", "Never printed.", Kind::Gauge, &["x"]);
        assert_eq!(
            encode(&[load, empty, count]),
            "# HELP t_load Load.\n# TYPE t_load gauge\nt_load{item=\"load1\"} 0.15\n\
             t_load{item=\"load5\"} 2\n# HELP t_scrapes Scrapes.\n# TYPE t_scrapes counter\n\
             t_scrapes 18446744073709551615\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut family = Family::new("t", "a \\ b\nc \"q\"", Kind::Gauge, &["a", "b"]);
        family.push(&["x\"y\\z\nw"], Value::Int(1));
        assert_eq!(
            encode(&[family]),
            "# HELP t a \\\\ b\\nc \"q\"\n# TYPE t gauge\nt{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 1\n"
        );
    }

    #[test]
    fn special_floats_are_spelled_as_prometheus_spells_them() {
        let text = |v| Value::Float(v).to_string();
        assert_eq!(text(f64::NAN), "NaN");
        assert_eq!(text(f64::INFINITY), "+Inf");
        assert_eq!(text(f64::NEG_INFINITY), "-Inf");
        assert_eq!(text(-0.5), "-0.5");
        assert_eq!(text(1e21), "1000000000000000000000");
    }

    #[test]
    fn names_are_checked() {
        for good in ["a", "_a", "kata_guest_meminfo", "a1"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "1a", "a-b", "a b", "a:b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}

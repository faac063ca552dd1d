//! Rendering of command results: human-readable text or JSON.
//!
//! Every command produces a [`Report`]: a serializable value whose JSON
//! field names are part of hull-ctl's stable interface, plus its text form.

use serde::Serialize;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `key: value` lines for people.
    Human,
    /// One pretty-printed JSON document.
    Json,
}

/// A result ready to print.
pub trait Report: std::fmt::Debug {
    /// Text form, one `key: value` per line, without trailing newline.
    fn human(&self) -> String;
    /// JSON form.
    fn json(&self) -> serde_json::Value;
}

/// Implements [`Report::json`] through `Serialize`.
pub fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    // Serializing plain structs of strings, numbers, bools and vectors
    // cannot fail; fall back to null rather than panic.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The full text to print on stdout (ends with a newline when non-empty).
pub fn render(report: &dyn Report, format: Format) -> String {
    let mut text = match format {
        Format::Human => report.human(),
        Format::Json => {
            serde_json::to_string_pretty(&report.json()).unwrap_or_else(|_| String::from("null"))
        }
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// Formats `key: value` lines with the keys aligned.
pub fn kv_lines(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}", format!("{k}:"), width = width + 1))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Joins a list for text output; `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize)]
    struct Sample {
        name: String,
        size: u64,
    }

    impl Report for Sample {
        fn human(&self) -> String {
            kv_lines(&[
                ("name", self.name.clone()),
                ("size_bytes", self.size.to_string()),
            ])
        }
        fn json(&self) -> serde_json::Value {
            to_json(self)
        }
    }

    #[test]
    fn human_lines_are_aligned_and_terminated() {
        let s = Sample {
            name: "x".into(),
            size: 7,
        };
        assert_eq!(render(&s, Format::Human), "name:       x\nsize_bytes: 7\n");
    }

    #[test]
    fn json_is_pretty_and_terminated() {
        let s = Sample {
            name: "x".into(),
            size: 7,
        };
        assert_eq!(
            render(&s, Format::Json),
            "{\n  \"name\": \"x\",\n  \"size\": 7\n}\n"
        );
    }

    #[test]
    fn list_formatting() {
        assert_eq!(list(&[]), "-");
        assert_eq!(list(&["a".into(), "b".into()]), "a, b");
    }
}

//! A tiny `tracing` subscriber that prints one `key=value` line per event.
//!
//! Line format (one `write(2)` per line, so lines from init never interleave):
//!
//! ```text
//! init: <message> [key=value ...] level=<error|warn|info|debug|trace>
//! ```
//!
//! Values containing spaces, quotes, `=` or control characters are double-quoted
//! with `\"`, `\\`, `\n`, `\t`, `\r` escapes. Spans are not tracked (init has none).
//! `tracing-subscriber` is not used: it costs far more binary than these lines.

use alloc::borrow::ToOwned as _;
use alloc::string::{String, ToString as _};
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Prefix of every line, so the e2e harness can tell init's lines from the kernel's.
pub const PREFIX: &str = "init: ";

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turns debug-level lines on or off (set from `hull.debug`).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Installs the console subscriber as the global default. Returns false when
/// another subscriber was installed first (only possible in tests).
pub fn install() -> bool {
    tracing::subscriber::set_global_default(LineSubscriber::new(StderrSink)).is_ok()
}

/// Where finished lines go.
pub trait Sink: Send + Sync + 'static {
    fn write_line(&self, line: &str);
}

/// Writes to fd 2, which init points at the console early in boot. Errors are
/// dropped: there is nowhere else to report them.
pub struct StderrSink;

impl Sink for StderrSink {
    fn write_line(&self, line: &str) {
        crate::console::eprint(line);
    }
}

pub struct LineSubscriber<S> {
    sink: S,
}

impl<S: Sink> LineSubscriber<S> {
    pub fn new(sink: S) -> Self {
        Self { sink }
    }
}

fn level_enabled(level: Level, debug: bool) -> bool {
    // In tracing, more verbose levels compare greater.
    if debug {
        level <= Level::DEBUG
    } else {
        level <= Level::INFO
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S: Sink> Subscriber for LineSubscriber<S> {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change at run time (hull.debug), so ask every time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_enabled(*metadata.level(), DEBUG.load(Ordering::Relaxed))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let line = visitor.finish(*event.metadata().level());
        self.sink.write_line(&line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl LineVisitor {
    fn finish(self, level: Level) -> String {
        let mut line =
            String::with_capacity(PREFIX.len() + self.message.len() + self.fields.len() + 16);
        line.push_str(PREFIX);
        push_escaped(&mut line, &self.message);
        line.push_str(&self.fields);
        line.push_str(" level=");
        line.push_str(level_name(level));
        line.push('\n');
        line
    }

    fn push_field(&mut self, name: &str, value: &str) {
        self.fields.push(' ');
        self.fields.push_str(name);
        self.fields.push('=');
        push_value(&mut self.fields, value);
    }
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.push_field(field.name(), value);
        }
    }

    /// init logs no floats; printing whole numbers only keeps float
    /// formatting (about 15 KiB) out of the binary.
    fn record_f64(&mut self, field: &Field, value: f64) {
        // In range, the cast is exact for whole numbers (and `as` saturates).
        #[allow(clippy::cast_possible_truncation)]
        let whole = value as i64;
        #[allow(clippy::cast_precision_loss)]
        let is_whole = (-9.0e15..9.0e15).contains(&value) && whole as f64 == value;
        let text = if is_whole {
            whole.to_string()
        } else {
            "non-integer".to_owned()
        };
        self.push_field(field.name(), &text);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message.push_str(&text);
        } else {
            self.push_field(field.name(), &text);
        }
    }
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control())
}

/// Appends `value`, quoted and escaped when it would not survive `key=value` splitting.
fn push_value(out: &mut String, value: &str) {
    if needs_quotes(value) {
        out.push('"');
        push_escaped(out, value);
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Escapes characters that would break a one-line record.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct VecSink(Arc<Mutex<Vec<String>>>);

    impl Sink for VecSink {
        fn write_line(&self, line: &str) {
            if let Ok(mut lines) = self.0.lock() {
                lines.push(line.to_owned());
            }
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<String> {
        let sink = VecSink::default();
        tracing::subscriber::with_default(LineSubscriber::new(sink.clone()), f);
        sink.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    #[test]
    fn formats_message_fields_and_level() {
        let lines = capture(|| {
            tracing::info!(pid = 42, path = "/usr/bin/hull-agent", "agent started");
        });
        assert_eq!(
            lines,
            vec!["init: agent started pid=42 path=/usr/bin/hull-agent level=info\n"]
        );
    }

    #[test]
    fn quotes_values_with_spaces_and_escapes() {
        let lines = capture(|| {
            tracing::warn!(error = %"No such file or directory (os error 2)", empty = "", q = "a\"b\nc", "mount failed");
        });
        assert_eq!(
            lines,
            vec![concat!(
                "init: mount failed error=\"No such file or directory (os error 2)\" ",
                "empty=\"\" q=\"a\\\"b\\nc\" level=warn\n"
            )]
        );
    }

    #[test]
    fn message_newlines_are_escaped() {
        let lines = capture(|| tracing::error!("two\nlines"));
        assert_eq!(lines, vec!["init: two\\nlines level=error\n"]);
    }

    #[test]
    fn level_filter() {
        assert!(level_enabled(Level::ERROR, false));
        assert!(level_enabled(Level::INFO, false));
        assert!(!level_enabled(Level::DEBUG, false));
        assert!(level_enabled(Level::DEBUG, true));
        assert!(!level_enabled(Level::TRACE, true));
    }
}

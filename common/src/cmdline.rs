//! Splitting the kernel command line into `key[=value]` parameters, the way the
//! kernel's own `next_arg()` does: whitespace separates parameters unless it is
//! inside double quotes; a value that starts with `"` loses that quote and a
//! trailing one; a parameter that starts with `"` loses it and a trailing one.

use alloc::vec::Vec;

/// The kernel command line as the running kernel reports it.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// One kernel command-line parameter, borrowed from the command line it was split from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The text before the first `=` (the whole parameter if there is none), outer
    /// quotes removed.
    pub key: &'a str,
    /// `None` for a bare `key`, `Some("")` for `key=`.
    pub value: Option<&'a str>,
}

/// Splits `cmdline` into parameters, in order. Never fails: junk yields odd
/// parameters, which the caller ignores.
pub fn params(cmdline: &str) -> Vec<Param<'_>> {
    let bytes = cmdline.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let mut start = i;
        let mut in_quote = false;
        let mut quoted = false;
        if bytes[i] == b'"' {
            start += 1;
            i += 1;
            in_quote = true;
            quoted = true;
        }
        let mut equals = None;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_whitespace() && !in_quote {
                break;
            }
            if equals.is_none() && c == b'=' {
                equals = Some(i);
            }
            if c == b'"' {
                in_quote = !in_quote;
            }
            i += 1;
        }
        let end = i;
        // Every index used below sits on an ASCII byte or at an end, so it is a
        // char boundary; `get` keeps this panic-free regardless.
        let trailing_quote = end > start && bytes[end - 1] == b'"';
        let param = match equals {
            None => {
                let key_end = if quoted && trailing_quote {
                    end - 1
                } else {
                    end
                };
                Param {
                    key: cmdline.get(start..key_end).unwrap_or(""),
                    value: None,
                }
            }
            Some(eq) => {
                let mut value_start = eq + 1;
                let mut value_end = end;
                let value_quoted = value_start < end && bytes[value_start] == b'"';
                if value_quoted {
                    value_start += 1;
                }
                if (value_quoted || quoted) && trailing_quote && value_end > value_start {
                    value_end -= 1;
                }
                Param {
                    key: cmdline.get(start..eq).unwrap_or(""),
                    value: Some(cmdline.get(value_start..value_end).unwrap_or("")),
                }
            }
        };
        out.push(param);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn p<'a>(key: &'a str, value: Option<&'a str>) -> Param<'a> {
        Param { key, value }
    }

    #[test]
    fn plain_parameters() {
        assert_eq!(
            params("console=ttyS0 quiet  hull.debug\thull.hostname=box\n"),
            vec![
                p("console", Some("ttyS0")),
                p("quiet", None),
                p("hull.debug", None),
                p("hull.hostname", Some("box")),
            ]
        );
    }

    #[test]
    fn empty_and_blank() {
        assert!(params("").is_empty());
        assert!(params("   \n\t ").is_empty());
    }

    #[test]
    fn quoted_values() {
        assert_eq!(
            params(r#"a="x y" "b=c d" e="" f="unterminated g=h"#),
            vec![
                p("a", Some("x y")),
                p("b", Some("c d")),
                p("e", Some("")),
                p("f", Some("unterminated g=h")),
            ]
        );
    }

    #[test]
    fn quoted_bare_key() {
        assert_eq!(params(r#""flag" x"#), vec![p("flag", None), p("x", None)]);
    }

    #[test]
    fn value_keeps_later_equals() {
        assert_eq!(
            params("root=PARTUUID=1234 x=="),
            vec![p("root", Some("PARTUUID=1234")), p("x", Some("="))]
        );
    }

    #[test]
    fn junk_does_not_panic() {
        for junk in [
            "\"",
            "\"\"",
            "=",
            "==",
            "\"=\"",
            "a=\"",
            "\"a=",
            "é=ü \"ß",
            "--",
            "\u{0}=\u{1}",
            "a=\"b\"c\" d",
        ] {
            let _ = params(junk);
        }
        assert_eq!(params("\""), vec![p("", None)]);
        assert_eq!(params("="), vec![p("", Some(""))]);
        assert_eq!(params("é=ü"), vec![p("é", Some("ü"))]);
    }
}

//! Command lines as a POSIX shell reads them: the attach guide prints argument vectors
//! this way, so what it shows runs as the harness runs it.

/// Shell-quotes a word if needed (single quotes).
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@+%".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Lines are wrapped before an option that would take them past this width.
pub const WIDTH: usize = 88;

/// `program` and `args` as one shell command, quoted, an option and its value kept
/// together, wrapped with `\` continuation lines indented by four spaces.
pub fn render(program: &str, args: &[String]) -> String {
    // Group each option with the value that follows it.
    let mut groups: Vec<String> = Vec::new();
    let mut iter = args.iter().peekable();
    while let Some(arg) = iter.next() {
        let mut group = quote(arg);
        let value = if arg.starts_with('-') {
            iter.next_if(|next| !next.starts_with('-'))
        } else {
            None
        };
        if let Some(value) = value {
            group.push(' ');
            group.push_str(&quote(value));
        }
        groups.push(group);
    }
    let mut out = quote(program);
    let mut line_len = out.len();
    for group in groups {
        if line_len + 1 + group.len() > WIDTH {
            out.push_str(" \\\n    ");
            line_len = 4;
        } else {
            out.push(' ');
            line_len += 1;
        }
        line_len += group.len();
        out.push_str(&group);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            quote("file=/a/b.img,readonly=on"),
            "file=/a/b.img,readonly=on"
        );
        assert_eq!(quote("console=ttyS0 ro"), "'console=ttyS0 ro'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn keeps_options_with_their_values_and_wraps() {
        let args: Vec<String> = ["-nodefaults", "-m", "256M", "-append", "a b"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            render("qemu", &args),
            "qemu -nodefaults -m 256M -append 'a b'"
        );
        let long: Vec<String> = (0..20)
            .flat_map(|i| ["-x".into(), format!("v{i}")])
            .collect();
        let text = render("prog", &long);
        assert!(text.lines().count() > 1, "{text}");
        for line in text.lines() {
            assert!(line.len() <= WIDTH + 2, "{line:?}");
            assert!(line.ends_with(" \\") || line == text.lines().last().unwrap());
        }
        assert!(text.contains("-x v19"));
    }
}

//! POSIX shell quoting, for the rare command that must go through `sh -c`
//! (for example over SSH). Prefer argv everywhere else.

/// Quote `arg` so that a POSIX shell reads it back as exactly one word with
/// the same bytes. Safe words are returned as they are; everything else is
/// single-quoted, with `'` written as `'\''`.
pub fn quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '-' | '.' | '/' | ':' | ',' | '+' | '=' | '@' | '%')
        });
    if safe {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quote every element of `argv` and join them with spaces.
pub fn join(argv: &[&str]) -> String {
    argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_rules() {
        assert_eq!(quote("abc/d.e:f"), "abc/d.e:f");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(join(&["echo", "a b", "c"]), "echo 'a b' c");
    }

    /// The real test: /bin/sh must give back exactly the original words.
    #[test]
    fn round_trips_through_sh() -> Result<(), Box<dyn std::error::Error>> {
        let words = [
            "plain",
            "",
            "two words",
            "it's",
            "'",
            "''",
            "\"dq\"",
            "$HOME",
            "`id`",
            "$(id)",
            "back\\slash",
            "new\nline",
            "tab\there",
            "*",
            "~",
            "a;b|c&d>e<f",
            "!bang",
            "#hash",
            "ünïcödé",
            "-n",
        ];
        let mut argv = vec!["printf", "%s\\0"];
        argv.extend(words.iter());
        let script = join(&argv);
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()?;
        assert!(out.status.success(), "{script}");
        let got: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        let mut expected: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
        expected.push(String::new()); // after the last NUL
        assert_eq!(got, expected);
        Ok(())
    }
}

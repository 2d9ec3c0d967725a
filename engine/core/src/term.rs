//! Text on its way to a terminal. Names from bundles, registry error
//! bodies and what nodes print are not ours: an escape sequence in them
//! could recolour, hide or rewrite what the user reads. Every renderer and
//! the binary's error and progress printing pass such text through
//! [`escape_controls`]; only mirrorplan's own colour codes reach a
//! terminal raw.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal raw: the C0 controls (ESC, CR,
/// BEL, backspace, ...) but `\n` and `\t`, DEL, the C1 controls, and the
/// Unicode bidirectional overrides and isolates (which reorder what is
/// shown).
pub fn is_unsafe_char(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        c if c.is_control() => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => true,
        _ => false,
    }
}

/// `c` as shown: `\u{1b}`.
pub fn write_escaped(out: &mut String, c: char) {
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// `text` with every unsafe character ([`is_unsafe_char`]) shown as
/// `\u{1b}`; borrowed when there is none (the usual case).
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_char(c) {
            write_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_escaped_and_lines_kept() {
        assert_eq!(
            escape_controls("a\x1b[31mred\x1b[0m\r\x07\u{9b}b\u{202e}c\n\td"),
            "a\\u{1b}[31mred\\u{1b}[0m\\u{d}\\u{7}\\u{9b}b\\u{202e}c\n\td"
        );
        assert!(matches!(escape_controls("plain é ✓"), Cow::Borrowed(_)));
    }
}

//! Canonical formatting of configuration files (`mirrorplan fmt`).
//!
//! Line-oriented, as `terraform fmt` is: two-space indentation by nesting
//! depth, one space around `=`, the `=` of consecutive one-line attributes
//! aligned, trailing whitespace removed, runs of blank lines collapsed, one
//! final newline. Comments and heredoc bodies are kept as written. A file that
//! does not parse is refused, and the result is checked to mean exactly what
//! the input meant before it is returned.

/// Formats one file's text, or says why it cannot.
pub fn format_source(input: &str) -> Result<String, String> {
    let before: hcl::Body = hcl::from_str(input).map_err(|e| format!("not valid HCL: {e}"))?;
    let out = format_lines(input);
    let after: hcl::Body = hcl::from_str(&out)
        .map_err(|e| format!("formatting would break the file ({e}); please report this"))?;
    if before != after {
        return Err("formatting would change the file's meaning; please report this".into());
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
enum LineKind {
    /// A one-line attribute `key = value`: (key, value).
    Attr(String, String),
    /// The first line of a multi-line attribute.
    AttrOpen(String, String),
    /// Anything else, already trimmed.
    Other(String),
    /// Kept byte for byte (heredoc bodies, block comment bodies).
    Verbatim(String),
    Blank,
}

struct Line {
    depth: usize,
    kind: LineKind,
}

#[derive(Default)]
struct Scanner {
    depth: usize,
    heredoc: Option<String>,
    block_comment: bool,
}

impl Scanner {
    /// Returns (closers at the line start, net change of depth, heredoc opened).
    fn scan(&mut self, line: &str) -> (usize, isize, Option<String>) {
        let bytes: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut leading = 0usize;
        let mut seen_other = false;
        let mut net: isize = 0;
        let mut heredoc = None;
        // string/template nesting: each entry is the brace depth inside `${`
        let mut in_string = false;
        let mut interp: Vec<usize> = Vec::new();
        while i < bytes.len() {
            let c = bytes[i];
            if self.block_comment {
                if c == '*' && bytes.get(i + 1) == Some(&'/') {
                    self.block_comment = false;
                    i += 2;
                    continue;
                }
                i += 1;
                continue;
            }
            if in_string {
                match c {
                    '\\' => i += 2,
                    '"' => {
                        in_string = false;
                        i += 1;
                    }
                    '$' | '%' if bytes.get(i + 1) == Some(&'{') => {
                        interp.push(0);
                        in_string = false;
                        i += 2;
                    }
                    _ => i += 1,
                }
                continue;
            }
            match c {
                '#' => break,
                '/' if bytes.get(i + 1) == Some(&'/') => break,
                '/' if bytes.get(i + 1) == Some(&'*') => {
                    self.block_comment = true;
                    i += 2;
                    continue;
                }
                '"' => {
                    in_string = true;
                    seen_other = true;
                }
                '<' if bytes.get(i + 1) == Some(&'<') => {
                    let rest: String = bytes[i + 2..].iter().collect();
                    let rest = rest.strip_prefix('-').unwrap_or(&rest);
                    let marker: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !marker.is_empty() {
                        heredoc = Some(marker);
                        break;
                    }
                    seen_other = true;
                }
                '{' | '[' | '(' => {
                    if let Some(top) = interp.last_mut() {
                        *top += 1;
                    } else {
                        net += 1;
                    }
                    seen_other = true;
                }
                '}' | ']' | ')' => {
                    if let Some(top) = interp.last_mut() {
                        if *top == 0 && c == '}' {
                            interp.pop();
                            in_string = true;
                            i += 1;
                            continue;
                        }
                        *top = top.saturating_sub(1);
                    } else {
                        net -= 1;
                        if !seen_other {
                            leading += 1;
                        }
                    }
                }
                c if c.is_whitespace() => {}
                _ => seen_other = true,
            }
            i += 1;
        }
        (leading, net, heredoc)
    }
}

fn split_attr(trimmed: &str) -> Option<(String, String)> {
    let key_len = trimmed
        .char_indices()
        .take_while(|(i, c)| {
            if *i == 0 {
                c.is_ascii_alphabetic() || *c == '_'
            } else {
                c.is_ascii_alphanumeric() || *c == '_' || *c == '-'
            }
        })
        .count();
    if key_len == 0 {
        return None;
    }
    let (key, rest) = trimmed.split_at(key_len);
    let rest = rest.trim_start();
    let value = rest.strip_prefix('=')?;
    if value.starts_with('=') {
        return None;
    }
    Some((key.to_string(), value.trim().to_string()))
}

fn format_lines(input: &str) -> String {
    let mut sc = Scanner::default();
    let mut lines: Vec<Line> = Vec::new();
    for raw in input.lines() {
        if let Some(marker) = &sc.heredoc {
            let done = raw.trim() == marker;
            if done {
                sc.heredoc = None;
                lines.push(Line {
                    depth: 0,
                    kind: LineKind::Verbatim(raw.trim_end().to_string()),
                });
            } else {
                lines.push(Line {
                    depth: 0,
                    kind: LineKind::Verbatim(raw.to_string()),
                });
            }
            continue;
        }
        if sc.block_comment {
            let _ = sc.scan(raw);
            lines.push(Line {
                depth: 0,
                kind: LineKind::Verbatim(raw.trim_end().to_string()),
            });
            continue;
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            lines.push(Line {
                depth: sc.depth,
                kind: LineKind::Blank,
            });
            continue;
        }
        let (leading, net, heredoc) = sc.scan(trimmed);
        let depth = sc.depth.saturating_sub(leading);
        sc.depth = (sc.depth as isize + net).max(0) as usize;
        let multi = net > 0 || heredoc.is_some();
        if heredoc.is_some() {
            sc.heredoc = heredoc;
        }
        let kind = match split_attr(trimmed) {
            Some((k, v)) if multi => LineKind::AttrOpen(k, v),
            Some((k, v)) => LineKind::Attr(k, v),
            None => LineKind::Other(trimmed.to_string()),
        };
        lines.push(Line { depth, kind });
    }
    // alignment: runs of one-line attributes at the same depth
    let mut widths = vec![0usize; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        let key_of = |l: &Line| match &l.kind {
            LineKind::Attr(k, _) | LineKind::AttrOpen(k, _) => Some(k.chars().count()),
            _ => None,
        };
        if key_of(&lines[i]).is_none() {
            i += 1;
            continue;
        }
        let depth = lines[i].depth;
        let mut j = i;
        let mut width = 0;
        while j < lines.len() && lines[j].depth == depth {
            match key_of(&lines[j]) {
                Some(w) => width = width.max(w),
                None => break,
            }
            let open = matches!(lines[j].kind, LineKind::AttrOpen(..));
            j += 1;
            if open {
                break;
            }
        }
        for w in widths.iter_mut().take(j).skip(i) {
            *w = width;
        }
        i = j;
    }
    let mut out = String::new();
    let mut blank_run = 0;
    for (n, line) in lines.iter().enumerate() {
        let indent = "  ".repeat(line.depth);
        match &line.kind {
            LineKind::Blank => {
                blank_run += 1;
                if blank_run > 1 || out.is_empty() {
                    continue;
                }
                out.push('\n');
                continue;
            }
            LineKind::Attr(k, v) | LineKind::AttrOpen(k, v) => {
                let pad = widths[n].saturating_sub(k.chars().count());
                out.push_str(&format!("{indent}{k}{} = {v}\n", " ".repeat(pad)));
            }
            LineKind::Other(t) => out.push_str(&format!("{indent}{t}\n")),
            LineKind::Verbatim(t) => out.push_str(&format!("{t}\n")),
        }
        blank_run = 0;
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    if out.is_empty() {
        return out;
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_and_aligns() {
        let input = "registry \"m\" {\nendpoint=\"https://a.example\"\n    namespace   =  \"ns\"\n\n\n\ninsecure = true   \n}\n";
        let out = format_source(input);
        assert_eq!(
            out.as_deref(),
            Ok("registry \"m\" {\n  endpoint  = \"https://a.example\"\n  namespace = \"ns\"\n\n  insecure = true\n}\n")
        );
    }

    #[test]
    fn keeps_comments_heredocs_and_templates() {
        let input = "# top\nlocals {\n     # inside\n  a = <<EOT\n   keep   this\nEOT\n  b = \"${join(\",\", [\"x\"])}\" // trailing\n  c = {\n  k = 1\n  }\n}\n";
        let out = format_source(input);
        assert_eq!(
            out.as_deref(),
            Ok("# top\nlocals {\n  # inside\n  a = <<EOT\n   keep   this\nEOT\n  b = \"${join(\",\", [\"x\"])}\" // trailing\n  c = {\n    k = 1\n  }\n}\n")
        );
    }

    #[test]
    fn canonical_text_is_a_fixed_point() {
        let input =
            "cluster \"a\" {\n  nodes = [\"n1.example\"]\n  ssh {\n    user = \"root\"\n  }\n}\n";
        assert_eq!(format_source(input).as_deref(), Ok(input));
    }

    #[test]
    fn refuses_invalid_hcl() {
        assert!(format_source("registry \"m\" {\n").is_err());
    }
}

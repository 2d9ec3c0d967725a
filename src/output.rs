//! Output policy: colour only on a terminal and never with NO_COLOR; data on
//! stdout, diagnostics and progress on stderr.

use std::io::IsTerminal;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// ANSI colour on stdout.
    pub color_stdout: bool,
    /// ANSI colour on stderr.
    pub color_stderr: bool,
}

impl Output {
    /// Decides colour from the flag, NO_COLOR and whether the streams are terminals.
    pub fn new(no_color_flag: bool) -> Self {
        let allowed = !no_color_flag && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Output {
            color_stdout: allowed && std::io::stdout().is_terminal(),
            color_stderr: allowed && std::io::stderr().is_terminal(),
        }
    }

    /// Installs miette's graphical handler (colour per policy).
    pub fn install_miette_hook(&self) {
        let color = self.color_stderr;
        // wrap for a person at a terminal; logs and pipes get whole lines,
        // so that grep finds a message and ids can be copied
        let width = if std::io::stderr().is_terminal() {
            100
        } else {
            100_000
        };
        let _ = miette::set_hook(Box::new(move |_| {
            Box::new(
                miette::MietteHandlerOpts::new()
                    .color(color)
                    .unicode(color)
                    .terminal_links(false)
                    .width(width)
                    // never split a word at a hyphen: lock ids, digests and
                    // paths stay whole so that they can be copied
                    .break_words(false)
                    .word_splitter(textwrap::WordSplitter::NoHyphenation)
                    .build(),
            )
        }));
    }

    /// Prints a report to stderr.
    pub fn report(&self, report: &miette::Report) {
        eprintln!("{report:?}");
    }

    /// Prints every configuration diagnostic, then a count line.
    pub fn diagnostics(&self, diags: &[mirrorplan_config::ConfigDiagnostic]) {
        for d in diags {
            let report = miette::Report::new(d.clone());
            eprintln!("{report:?}");
        }
        if !diags.is_empty() {
            let n = diags.len();
            eprintln!(
                "{n} problem{} found in the configuration.",
                if n == 1 { "" } else { "s" }
            );
        }
    }
}

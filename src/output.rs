//! Output policy: colour only on a terminal and never with NO_COLOR; data on
//! stdout, diagnostics and progress on stderr. Progress bars only when
//! stderr is a terminal, colour is allowed and `TERM` is not `dumb`;
//! otherwise plain lines (see [`ProgressView`]). Text that is not
//! mirrorplan's own reaches the terminal only with its control characters
//! escaped ([`escape_controls`]): every report goes through [`Escaping`],
//! every progress line through [`ProgressView::line`].

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use miette::Diagnostic;
use mirrorplan_engine::escape_controls;

/// Where and how to print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// ANSI colour on stdout.
    pub color_stdout: bool,
    /// ANSI colour on stderr.
    pub color_stderr: bool,
    /// Progress bars on stderr (a terminal, colour allowed, `TERM` not `dumb`).
    pub bars: bool,
    /// The command prints JSON: its errors go to stdout as JSON too.
    pub json: bool,
}

/// Set once a command printed its JSON document: a later error goes to
/// stderr only (its document says what failed), so stdout stays one JSON
/// document.
static DOCUMENT_PRINTED: AtomicBool = AtomicBool::new(false);

/// Prints a command's JSON document on stdout (the one document it prints).
pub fn print_document(text: &str) {
    DOCUMENT_PRINTED.store(true, Ordering::Relaxed);
    if text.ends_with('\n') {
        print!("{text}");
    } else {
        println!("{text}");
    }
}

/// One diagnostic of the JSON error document (the shape of `validate
/// --json`'s diagnostics, with the location also split into its parts).
#[derive(Debug, Clone)]
pub struct JsonDiagnostic {
    /// The stable code, e.g. `mirrorplan::config::unknown_attribute`.
    pub code: String,
    /// The message.
    pub message: String,
    /// The help line, if any.
    pub help: Option<String>,
    /// The configuration file, if the problem is in one.
    pub file: Option<String>,
    /// Its line (1-based).
    pub line: Option<usize>,
    /// Its column (1-based).
    pub column: Option<usize>,
}

/// The JSON diagnostics document: `{"format_version": "1.0", "valid": ...,
/// "diagnostics": [...]}` (`validate --json`), with `"error": true` when the
/// command failed.
pub fn json_diagnostics_doc(valid: bool, diags: &[JsonDiagnostic]) -> serde_json::Value {
    let diagnostics: Vec<serde_json::Value> = diags
        .iter()
        .map(|d| {
            let location = match (&d.file, d.line, d.column) {
                (Some(f), Some(l), Some(c)) => Some(format!("{f}:{l}:{c}")),
                _ => None,
            };
            serde_json::json!({
                "severity": "error",
                "code": d.code,
                "message": d.message,
                "help": d.help,
                "file": d.file,
                "line": d.line,
                "column": d.column,
                "location": location,
            })
        })
        .collect();
    let mut doc = serde_json::json!({
        "format_version": "1.0",
        "valid": valid,
        "diagnostics": diagnostics,
    });
    if !valid {
        doc["error"] = true.into();
    }
    doc
}

/// Prints the failed command's diagnostics as the JSON document of
/// [`json_diagnostics_doc`] on stdout: what a CI job reading `--json`
/// output gets when the command fails. Nothing when the command already
/// printed its document (which says what failed).
pub fn print_json_errors(diags: &[JsonDiagnostic]) {
    if DOCUMENT_PRINTED.load(Ordering::Relaxed) {
        return;
    }
    let doc = json_diagnostics_doc(false, diags);
    print_document(&serde_json::to_string_pretty(&doc).unwrap_or_default());
}

/// Installs a panic hook that stays silent for a write to a closed stdout
/// (the pipe's reader has gone: `mirrorplan show | head -1`) and reports
/// every other panic as before.
pub fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_closed_pipe(info.payload()) {
            default(info);
        }
    }));
}

/// Whether a panic payload is the standard library's "failed printing to
/// stdout: Broken pipe".
pub fn is_closed_pipe(payload: &(dyn std::any::Any + Send)) -> bool {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    text.starts_with("failed printing to std") && text.contains("Broken pipe")
}

impl Output {
    /// Decides colour from the flag, NO_COLOR and whether the streams are terminals.
    pub fn new(no_color_flag: bool) -> Self {
        let allowed = !no_color_flag && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Output {
            color_stdout: allowed && !dumb && std::io::stdout().is_terminal(),
            color_stderr: allowed && !dumb && std::io::stderr().is_terminal(),
            bars: allowed && !dumb && std::io::stderr().is_terminal(),
            json: false,
        }
    }

    /// The same policy, for a command that prints JSON or not.
    pub fn with_json(mut self, json: bool) -> Self {
        self.json = json;
        self
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
            Box::new(Escaping(
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
            ))
        }));
    }

    /// Prints a report to stderr (and as JSON on stdout for a JSON command
    /// that has not printed its own document: stdout holds one document).
    pub fn report(&self, report: &miette::Report) {
        if self.json {
            print_json_errors(&[JsonDiagnostic {
                code: report
                    .code()
                    .map_or_else(|| "mirrorplan::error".to_string(), |c| c.to_string()),
                message: report.to_string(),
                help: report.help().map(|h| h.to_string()),
                file: None,
                line: None,
                column: None,
            }]);
        }
        eprintln!("{report:?}");
    }

    /// Prints every configuration diagnostic, then a count line.
    pub fn diagnostics(&self, diags: &[mirrorplan_config::ConfigDiagnostic]) {
        if self.json && !diags.is_empty() {
            print_json_errors(&diags.iter().map(json_diagnostic).collect::<Vec<_>>());
        }
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

/// The report handler: every report printed (errors, configuration
/// diagnostics) is drawn from a copy whose texts went through
/// [`escape_controls`], so that a registry's error body or a name from a
/// bundle cannot send escape sequences to the terminal; the handler's own
/// colours are drawn after.
struct Escaping(miette::MietteHandler);

impl miette::ReportHandler for Escaping {
    fn debug(&self, d: &dyn Diagnostic, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(&Escaped::of(d), f)
    }
}

/// A diagnostic with its message, help, labels, causes and related
/// diagnostics escaped ([`Escaping`]); the source code is the
/// configuration's own text and is shown as it is.
struct Escaped<'a> {
    inner: &'a dyn Diagnostic,
    message: String,
    help: Option<String>,
    cause: Option<Box<EscapedCause>>,
    related: Vec<Escaped<'a>>,
}

impl<'a> Escaped<'a> {
    fn of(d: &'a dyn Diagnostic) -> Self {
        // a diagnostic source is shown as the handler would, as a chain
        let first: Option<&dyn std::error::Error> = match d.diagnostic_source() {
            Some(ds) => Some(ds as &dyn std::error::Error),
            None => d.source(),
        };
        Escaped {
            inner: d,
            message: escape_controls(&d.to_string()).into_owned(),
            help: d
                .help()
                .map(|h| escape_controls(&h.to_string()).into_owned()),
            cause: first.map(EscapedCause::chain),
            related: d
                .related()
                .map(|r| r.map(Escaped::of).collect())
                .unwrap_or_default(),
        }
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Escaped<'_> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl Diagnostic for Escaped<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.inner.severity()
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
    fn url<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.inner.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let labels = self.inner.labels()?;
        Some(Box::new(labels.map(|l| {
            let label = l.label().map(|t| escape_controls(t).into_owned());
            if l.primary() {
                miette::LabeledSpan::new_primary_with_span(label, *l.inner())
            } else {
                miette::LabeledSpan::new_with_span(label, *l.inner())
            }
        })))
    }
    fn related<'b>(&'b self) -> Option<Box<dyn Iterator<Item = &'b dyn Diagnostic> + 'b>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
    }
}

/// One cause of an [`Escaped`] diagnostic, escaped, and the next.
#[derive(Debug)]
struct EscapedCause {
    message: String,
    next: Option<Box<EscapedCause>>,
}

impl EscapedCause {
    fn chain(e: &dyn std::error::Error) -> Box<Self> {
        Box::new(EscapedCause {
            message: escape_controls(&e.to_string()).into_owned(),
            next: e.source().map(EscapedCause::chain),
        })
    }
}

impl fmt::Display for EscapedCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EscapedCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.next
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

/// At most this many image bars at once (the overall bar comes on top).
const MAX_IMAGE_BARS: usize = 8;
/// In plain mode, the least time between two "pushed N of M" lines.
const PLAIN_BYTES_EVERY: Duration = Duration::from_secs(5);

/// Byte progress of one instance.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    done: u64,
    total: Option<u64>,
    started: Instant,
}

/// Progress on stderr: `indicatif` bars on a terminal (one per image being
/// pushed plus an overall bar, drawn by one [`MultiProgress`]; every other
/// line goes through [`ProgressView::line`] so that it prints above the
/// bars), plain lines otherwise (a byte line at most every
/// [`PLAIN_BYTES_EVERY`], never one per chunk).
pub struct ProgressView {
    bars: Option<Bars>,
    transfers: Mutex<HashMap<String, Transfer>>,
    last_plain: Mutex<Option<Instant>>,
    /// Set by [`ProgressView::finish`]: work abandoned at a second Ctrl-C
    /// may still report bytes, which must not draw bars again.
    closed: std::sync::atomic::AtomicBool,
}

struct Bars {
    multi: MultiProgress,
    overall: Mutex<Option<ProgressBar>>,
    /// Image bars, oldest first.
    images: Mutex<Vec<(String, ProgressBar)>>,
}

fn image_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} [{bar:24.cyan/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn overall_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} [{bar:24.green/blue}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} ({elapsed})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

pub use mirrorplan_engine::human_bytes;

/// `bytes` over `elapsed` as `12.3 MiB/s`.
pub fn human_rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{}/s", human_bytes((bytes as f64 / secs) as u64))
}

impl ProgressView {
    /// Bars when `bars`, plain lines otherwise.
    pub fn new(bars: bool) -> Self {
        ProgressView {
            bars: bars.then(|| Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                overall: Mutex::new(None),
                images: Mutex::new(Vec::new()),
            }),
            transfers: Mutex::new(HashMap::new()),
            last_plain: Mutex::new(None),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Prints one line on stderr (above the bars, if any), its control
    /// characters escaped: provider messages carry remote text.
    pub fn line(&self, text: &str) {
        let text = &*escape_controls(text);
        match &self.bars {
            Some(b) if !b.multi.is_hidden() => {
                if b.multi.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            _ => eprintln!("{text}"),
        }
    }

    /// `key` has transferred `done` bytes of `total`.
    pub fn bytes(&self, key: &str, done: u64, total: Option<u64>) {
        if self.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let (sum_done, sum_total) = {
            let Ok(mut t) = self.transfers.lock() else {
                return;
            };
            let e = t.entry(key.to_string()).or_insert(Transfer {
                done: 0,
                total: None,
                started: Instant::now(),
            });
            if e.done == 0 && done > 0 {
                // the rate counts from the first byte, not from the plan
                e.started = Instant::now();
            }
            e.done = done;
            e.total = total.or(e.total);
            t.values().fold((0, 0), |(d, s), x| {
                (d + x.done, s + x.total.unwrap_or(x.done).max(x.done))
            })
        };
        match &self.bars {
            Some(b) => b.update(key, done, total, sum_done, sum_total),
            None => self.plain_bytes(sum_done, sum_total),
        }
    }

    fn plain_bytes(&self, done: u64, total: u64) {
        if done == 0 {
            return;
        }
        let Ok(mut last) = self.last_plain.lock() else {
            return;
        };
        let now = Instant::now();
        let started = match self.transfers.lock() {
            Ok(t) => t.values().map(|x| x.started).min(),
            Err(_) => None,
        };
        match *last {
            // the first line waits a period too: short pushes print none
            None => {
                *last = Some(now);
                return;
            }
            Some(t) if now.duration_since(t) < PLAIN_BYTES_EVERY => return,
            _ => {}
        }
        *last = Some(now);
        let elapsed = started.map(|s| now.duration_since(s)).unwrap_or_default();
        let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
        let left = if rate > 0.0 && total > done {
            format!(", about {:.0}s left", (total - done) as f64 / rate)
        } else {
            String::new()
        };
        eprintln!(
            "Pushed {} of {} ({}{left})",
            human_bytes(done),
            human_bytes(total),
            human_rate(done, elapsed)
        );
    }

    /// `key` is finished: its bar goes away. Returns the bytes it moved and
    /// their rate, for the completion line.
    pub fn done(&self, key: &str) -> Option<String> {
        let (t, all_done) = {
            let t = self.transfers.lock().ok()?;
            let all = t
                .values()
                .all(|x| x.total.is_none_or(|total| x.done >= total));
            (t.get(key).copied(), all)
        };
        if let Some(b) = &self.bars {
            b.remove(key, all_done);
        }
        let t = t?;
        (t.done > 0).then(|| {
            format!(
                "{} at {}",
                human_bytes(t.done),
                human_rate(t.done, t.started.elapsed())
            )
        })
    }

    /// Clears every bar (success, failure or interrupt). Idempotent.
    pub fn finish(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.bars {
            if let Ok(mut imgs) = b.images.lock() {
                for (_, bar) in imgs.drain(..) {
                    bar.finish_and_clear();
                }
            }
            if let Ok(mut o) = b.overall.lock() {
                if let Some(bar) = o.take() {
                    bar.finish_and_clear();
                }
            }
            let _ = b.multi.clear();
        }
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Bars {
    fn update(&self, key: &str, done: u64, total: Option<u64>, sum_done: u64, sum_total: u64) {
        if let Ok(mut o) = self.overall.lock() {
            let bar = o.get_or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new(sum_total));
                bar.set_style(overall_style());
                bar.set_prefix("total");
                bar.enable_steady_tick(Duration::from_millis(250));
                bar
            });
            bar.set_length(sum_total);
            bar.set_position(sum_done);
        }
        if done == 0 {
            // planned, not started: only the overall total grows
            return;
        }
        let Ok(mut imgs) = self.images.lock() else {
            return;
        };
        if let Some((_, bar)) = imgs.iter().find(|(k, _)| k == key) {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(done);
            return;
        }
        if imgs.len() >= MAX_IMAGE_BARS {
            // make room by dropping the oldest finished bar, else show none
            let Some(i) = imgs
                .iter()
                .position(|(_, b)| b.length().is_some_and(|l| b.position() >= l))
            else {
                return;
            };
            let (_, old) = imgs.remove(i);
            old.finish_and_clear();
            self.multi.remove(&old);
        }
        let bar = self
            .multi
            .insert_from_back(1, ProgressBar::new(total.unwrap_or(done).max(done)));
        bar.set_style(image_style());
        bar.set_prefix(escape_controls(key).into_owned());
        bar.set_position(done);
        // drawn at once, even when the whole image takes less than a frame
        bar.force_draw();
        imgs.push((key.to_string(), bar));
    }

    /// Removes `key`'s bar; once every byte went out and no image bar is
    /// left, the overall bar goes too.
    fn remove(&self, key: &str, all_done: bool) {
        let Ok(mut imgs) = self.images.lock() else {
            return;
        };
        if let Some(i) = imgs.iter().position(|(k, _)| k == key) {
            let (_, bar) = imgs.remove(i);
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        if all_done && imgs.is_empty() {
            if let Ok(mut o) = self.overall.lock() {
                if let Some(bar) = o.take() {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
        }
    }
}

/// A configuration diagnostic in the JSON error shape.
pub fn json_diagnostic(d: &mirrorplan_config::ConfigDiagnostic) -> JsonDiagnostic {
    let (file, line, column) = match d.location() {
        Some(loc) => {
            let mut parts = loc.rsplitn(3, ':');
            let column = parts.next().and_then(|c| c.parse().ok());
            let line = parts.next().and_then(|l| l.parse().ok());
            (parts.next().map(str::to_string), line, column)
        }
        None => (None, None, None),
    };
    JsonDiagnostic {
        code: d.kind.code().to_string(),
        message: d.message.clone(),
        help: d.help.clone(),
        file,
        line,
        column,
    }
}

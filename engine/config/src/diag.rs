//! Diagnostics for configuration problems.
//!
//! Every problem found in the user's files is one [`ConfigDiagnostic`]: a stable
//! code (`mirrorplan::config::...`), a message, the file it is in with a labelled
//! span, and a help line. Loading never stops at the first problem: all of them
//! are collected and reported together.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

/// The kinds of configuration problems, each with a stable diagnostic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiagKind {
    /// The file is not valid HCL.
    Syntax,
    /// A block type that mirrorplan does not know.
    UnknownBlock,
    /// An attribute that the block does not take.
    UnknownAttribute,
    /// A value of the wrong type.
    WrongType,
    /// A required attribute or block is missing.
    MissingRequired,
    /// Two blocks of the same kind have the same name, or an attribute is set twice.
    Duplicate,
    /// A reference to a variable, local or block that does not exist.
    UndefinedReference,
    /// A reference to a block of the wrong kind (e.g. `registry = image_set.x`).
    WrongReferenceKind,
    /// A dependency cycle.
    Cycle,
    /// An invalid registry endpoint.
    InvalidEndpoint,
    /// An invalid node host.
    InvalidHost,
    /// An invalid platform string.
    InvalidPlatform,
    /// An invalid image reference.
    InvalidImage,
    /// Two image sources that map to the same mirror repository and tag.
    MirrorConflict,
    /// A variable without a value (checked from `plan` on).
    MissingVariable,
    /// A value was rejected by a variable's validation rule.
    ValidationFailed,
    /// Evaluating an expression failed (bad function call, bad operation).
    Evaluation,
    /// An invalid value that fits no narrower kind.
    InvalidValue,
    /// A sensitive value used where it would be shown.
    SensitiveOutput,
    /// A file could not be read.
    Io,
    /// A `moved` block that cannot be followed.
    Moved,
    /// A plan would destroy an instance whose block has
    /// `lifecycle { prevent_destroy = true }`.
    PreventDestroy,
}

impl DiagKind {
    /// The stable code of this kind, e.g. `mirrorplan::config::unknown_block`.
    pub fn code(self) -> &'static str {
        match self {
            DiagKind::Syntax => "mirrorplan::config::syntax",
            DiagKind::UnknownBlock => "mirrorplan::config::unknown_block",
            DiagKind::UnknownAttribute => "mirrorplan::config::unknown_attribute",
            DiagKind::WrongType => "mirrorplan::config::wrong_type",
            DiagKind::MissingRequired => "mirrorplan::config::missing_required",
            DiagKind::Duplicate => "mirrorplan::config::duplicate",
            DiagKind::UndefinedReference => "mirrorplan::config::undefined_reference",
            DiagKind::WrongReferenceKind => "mirrorplan::config::wrong_reference_kind",
            DiagKind::Cycle => "mirrorplan::config::cycle",
            DiagKind::InvalidEndpoint => "mirrorplan::config::invalid_endpoint",
            DiagKind::InvalidHost => "mirrorplan::config::invalid_host",
            DiagKind::InvalidPlatform => "mirrorplan::config::invalid_platform",
            DiagKind::InvalidImage => "mirrorplan::config::invalid_image",
            DiagKind::MirrorConflict => "mirrorplan::config::mirror_conflict",
            DiagKind::MissingVariable => "mirrorplan::config::missing_variable",
            DiagKind::ValidationFailed => "mirrorplan::config::validation_failed",
            DiagKind::Evaluation => "mirrorplan::config::evaluation",
            DiagKind::InvalidValue => "mirrorplan::config::invalid_value",
            DiagKind::SensitiveOutput => "mirrorplan::config::sensitive_output",
            DiagKind::Io => "mirrorplan::config::io",
            DiagKind::Moved => "mirrorplan::config::moved",
            DiagKind::PreventDestroy => "mirrorplan::config::prevent_destroy",
        }
    }
}

/// One configuration file, kept for spans in diagnostics.
#[derive(Clone)]
pub struct SourceFile {
    /// The name shown in diagnostics (relative to the configuration directory).
    pub name: String,
    /// The file's text.
    pub text: Arc<str>,
    named: NamedSource<Arc<str>>,
}

impl SourceFile {
    /// A file with its display name and text.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        let name = name.into();
        let text = text.into();
        let named = NamedSource::new(name.clone(), text.clone());
        SourceFile { name, text, named }
    }
}

impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFile")
            .field("name", &self.name)
            .finish()
    }
}

impl SourceFile {
    /// The 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// One configuration problem.
#[derive(Debug, Clone)]
pub struct ConfigDiagnostic {
    /// What kind of problem this is.
    pub kind: DiagKind,
    /// The one-line message.
    pub message: String,
    /// The file, when the problem is in one.
    pub file: Option<SourceFile>,
    /// The byte range in the file.
    pub span: Option<Range<usize>>,
    /// The label on the span.
    pub label: String,
    /// What to do about it.
    pub help: Option<String>,
    /// Other places the problem involves (e.g. the other of two blocks in
    /// conflict), each shown with its own file and span.
    pub related: Vec<ConfigDiagnostic>,
    /// A note about another diagnostic (one of its `related`), not a
    /// problem of its own.
    pub note: bool,
}

impl ConfigDiagnostic {
    /// A new diagnostic without location.
    pub fn new(kind: DiagKind, message: impl Into<String>) -> Self {
        ConfigDiagnostic {
            kind,
            message: message.into(),
            file: None,
            span: None,
            label: String::new(),
            help: None,
            related: Vec::new(),
            note: false,
        }
    }

    /// Attaches a location and its label.
    pub fn at(
        mut self,
        file: &SourceFile,
        span: Option<Range<usize>>,
        label: impl Into<String>,
    ) -> Self {
        self.file = Some(file.clone());
        self.span = span;
        self.label = label.into();
        self
    }

    /// Attaches a help line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds another place involved, shown after the diagnostic with its
    /// own file and span.
    pub fn also(mut self, mut related: ConfigDiagnostic) -> Self {
        related.note = true;
        self.related.push(related);
        self
    }

    /// `file:line:column` of the span, for one-line renderings and tests.
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        let (line, col) = file.line_col(self.span.as_ref().map_or(0, |s| s.start));
        Some(format!("{}:{}:{}", file.name, line, col))
    }
}

impl fmt::Display for ConfigDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigDiagnostic {}

impl Diagnostic for ConfigDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.file.as_ref().map(|f| &f.named as &dyn SourceCode)
    }

    fn severity(&self) -> Option<miette::Severity> {
        self.note.then_some(miette::Severity::Advice)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|d| d as &dyn Diagnostic)))
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span.clone()?;
        let len = span.end.saturating_sub(span.start);
        Some(Box::new(std::iter::once(LabeledSpan::new(
            Some(self.label.clone()),
            span.start,
            len,
        ))))
    }
}

/// A helper that accumulates diagnostics.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<ConfigDiagnostic>,
}

impl Diagnostics {
    /// Adds one diagnostic.
    pub fn push(&mut self, d: ConfigDiagnostic) {
        self.items.push(d);
    }
    /// True when nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// The collected diagnostics, in the order found.
    pub fn into_vec(self) -> Vec<ConfigDiagnostic> {
        self.items
    }
    /// The collected diagnostics.
    pub fn as_slice(&self) -> &[ConfigDiagnostic] {
        &self.items
    }
}

/// "did you mean" for a misspelt name, when a candidate is close enough.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

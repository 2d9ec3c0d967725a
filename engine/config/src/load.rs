//! Loading: HCL files → checked [`Config`] plus every diagnostic found.
//!
//! The steps, each collecting diagnostics rather than stopping:
//! 1. parse every file (hcl-edit keeps spans);
//! 2. collect declarations, check block types, labels, names and body shapes;
//! 3. find references, check them, build the declaration graph, find cycles;
//! 4. evaluate declarations in dependency order (hcl-rs) and decode them
//!    into the model, checking types and value syntax;
//! 5. cross-block checks (two image sources mapped to one mirror tag).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate};
use hcl::{Map, Value};
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::Span;
use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::arith;
use crate::diag::{did_you_mean, ConfigDiagnostic, DiagKind, Diagnostics, SourceFile};
use crate::functions::{self, is_unknown, UNKNOWN};
use crate::model::*;
use crate::refs::{as_block_ref, references, RefUse};
use crate::schema::{self, AttrType, BodySchema};
use crate::syntax;

mod cluster_config;

/// When values are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `validate`: no variable values or files needed.
    #[default]
    Validate,
    /// `plan` and later: every variable needs a value, `file()` reads files.
    Plan,
}

/// Inputs besides the files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--var NAME=VALUE`, in order.
    pub vars: Vec<(String, String)>,
    /// `--var-file FILE`, in order.
    pub var_files: Vec<PathBuf>,
    /// `MIRRORPLAN_VAR_NAME` environment variables (name without prefix, value).
    pub env_vars: Vec<(String, String)>,
    /// Validate or plan.
    pub mode: Mode,
    /// The selected workspace, the value of `mirrorplan.workspace`
    /// (`None`: `default`).
    pub workspace: Option<String>,
}

impl LoadOptions {
    /// Collects `MIRRORPLAN_VAR_*` from the process environment.
    pub fn with_process_env(mut self) -> Self {
        self.env_vars = std::env::vars()
            .filter_map(|(k, v)| {
                k.strip_prefix("MIRRORPLAN_VAR_")
                    .map(|n| (n.to_string(), v))
            })
            .collect();
        self
    }
}

/// The result of loading: the model (as far as it could be built) and every problem.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Every problem found, in file order.
    pub diagnostics: Vec<ConfigDiagnostic>,
    /// The files read.
    pub files: Vec<SourceFile>,
    /// Raw variable values (secrets included) for later evaluation needs.
    pub sensitive_values: Vec<Secret>,
}

impl Loaded {
    /// True when there is no problem.
    pub fn is_ok(&self) -> bool {
        self.diagnostics.is_empty()
    }
}

/// Loads every `*.hcl` file of `dir` (sorted by name).
pub fn load_dir(dir: &Path, opts: &LoadOptions) -> Loaded {
    let mut files = Vec::new();
    let mut diags = Diagnostics::default();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "hcl") && p.is_file())
                .collect();
            paths.sort();
            for p in paths {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match std::fs::read_to_string(&p) {
                    Ok(text) => files.push(SourceFile::new(name, text)),
                    Err(e) => diags.push(
                        ConfigDiagnostic::new(
                            DiagKind::Io,
                            format!("cannot read {}: {e}", p.display()),
                        )
                        .help("check the file's permissions and that it is UTF-8 text"),
                    ),
                }
            }
            if files.is_empty() && diags.is_empty() {
                diags.push(
                    ConfigDiagnostic::new(
                        DiagKind::Io,
                        format!("no *.hcl files in {}", dir.display()),
                    )
                    .help("run mirrorplan in the directory that holds your configuration, or pass -C DIR"),
                );
            }
        }
        Err(e) => diags.push(
            ConfigDiagnostic::new(
                DiagKind::Io,
                format!(
                    "cannot read the configuration directory {}: {e}",
                    dir.display()
                ),
            )
            .help("pass an existing directory with -C DIR"),
        ),
    }
    let mut loaded = load_sources(dir, files, opts);
    let mut all = diags.into_vec();
    all.append(&mut loaded.diagnostics);
    loaded.diagnostics = all;
    loaded
}

/// Loads the given sources as if they were the files of `dir`.
pub fn load_sources(dir: &Path, files: Vec<SourceFile>, opts: &LoadOptions) -> Loaded {
    let mut l = Loader {
        dir: dir.to_path_buf(),
        files,
        opts: opts.clone(),
        diags: Diagnostics::default(),
        decls: Vec::new(),
        by_name: HashMap::new(),
        values: Values::default(),
        config: Config {
            dir: dir.to_path_buf(),
            ..Config::default()
        },
        sensitive_vars: Vec::new(),
        sensitive_locals: Default::default(),
        secrets: Vec::new(),
        tainted: Default::default(),
        quiet: false,
    };
    functions::set_file_base(match opts.mode {
        Mode::Plan => Some(dir.to_path_buf()),
        Mode::Validate => None,
    });
    l.run();
    functions::set_file_base(None);
    let mut diagnostics = l.diags.into_vec();
    for d in &mut diagnostics {
        redact(d, &l.secrets);
    }
    // file order, then position: stable output for people and snapshots
    let order: HashMap<String, usize> = l
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.clone(), i))
        .collect();
    diagnostics.sort_by_key(|d| {
        (
            d.file.as_ref().and_then(|f| order.get(&f.name).copied()),
            d.span.as_ref().map(|s| s.start),
        )
    });
    Loaded {
        config: l.config,
        diagnostics,
        files: l.files,
        sensitive_values: l.secrets,
    }
}

#[derive(Debug, Clone)]
enum DeclBody {
    Block(Block),
    Local(Expression),
}

#[derive(Debug, Clone)]
struct Decl {
    kind: &'static str,
    name: String,
    file: usize,
    span: Option<Range<usize>>,
    body: DeclBody,
}

impl Decl {
    fn address(&self) -> String {
        format!("{}.{}", self.kind_prefix(), self.name)
    }
    fn kind_prefix(&self) -> &'static str {
        match self.kind {
            "variable" => "var",
            "locals" => "local",
            k => k,
        }
    }
}

#[derive(Default)]
struct Values {
    var: Map<String, Value>,
    local: Map<String, Value>,
    registry: Map<String, Value>,
    image_set: Map<String, Value>,
    cluster: Map<String, Value>,
}

struct Loader {
    dir: PathBuf,
    files: Vec<SourceFile>,
    opts: LoadOptions,
    diags: Diagnostics,
    decls: Vec<Decl>,
    by_name: HashMap<String, usize>,
    values: Values,
    config: Config,
    sensitive_vars: Vec<String>,
    /// Locals whose value derives from a sensitive variable (or such a local).
    sensitive_locals: std::collections::HashSet<String>,
    /// The values of sensitive variables (their strings and numbers), and
    /// passwords: never shown in a diagnostic.
    secrets: Vec<Secret>,
    /// Declarations with reference errors or in a cycle: their evaluation errors are not reported again.
    tainted: std::collections::HashSet<String>,
    quiet: bool,
}

/// The attributes that may hold a sensitive value: each reaches the engine
/// as a sensitive attribute (shown as `(sensitive value)`, stored as a salted
/// digest), or, for `error_message`, is not shown. Every other attribute is
/// shown in plans or names instances and files, so a sensitive value there
/// is an error.
const MAY_BE_SENSITIVE: &[&str] = &[
    "password",
    "passphrase",
    "proxy",
    "restart_command",
    "update_command",
    "error_message",
];

const REF_ROOTS: &[&str] = &[
    "var",
    "local",
    "registry",
    "image_set",
    "cluster",
    "each",
    "path",
    "mirrorplan",
];

fn label_of(kind: &str) -> &'static str {
    match kind {
        "var" | "variable" => "variable",
        "local" | "locals" => "local value",
        "registry" => "registry",
        "image_set" => "image set",
        "cluster" => "cluster",
        "output" => "output",
        _ => "block",
    }
}

impl Loader {
    fn d(
        &mut self,
        kind: DiagKind,
        msg: impl Into<String>,
        file: usize,
        span: Option<Range<usize>>,
        label: impl Into<String>,
    ) -> usize {
        let d = ConfigDiagnostic::new(kind, msg).at(&self.files[file], span, label);
        self.diags.push(d);
        self.diags.as_slice().len() - 1
    }

    fn dh(
        &mut self,
        kind: DiagKind,
        msg: impl Into<String>,
        file: usize,
        span: Option<Range<usize>>,
        label: impl Into<String>,
        help: impl Into<String>,
    ) {
        let d = ConfigDiagnostic::new(kind, msg)
            .at(&self.files[file], span, label)
            .help(help);
        self.diags.push(d);
    }

    fn loc(&self, file: usize, span: &Option<Range<usize>>) -> String {
        let f = &self.files[file];
        let (line, col) = f.line_col(span.as_ref().map_or(0, |s| s.start));
        format!("{}:{line}:{col}", f.name)
    }

    fn run(&mut self) {
        let mut bodies = Vec::new();
        for i in 0..self.files.len() {
            match hcl_edit::parser::parse_body(&self.files[i].text) {
                Ok(body) => bodies.push((i, body)),
                Err(e) => {
                    let text = &self.files[i].text;
                    // hcl-edit may point inside a multi-byte character
                    // (found by fuzzing): back up to its start
                    let mut off = e.location().offset().min(text.len());
                    while !text.is_char_boundary(off) {
                        off -= 1;
                    }
                    let end = text[off.min(text.len())..]
                        .char_indices()
                        .nth(1)
                        .map_or(text.len(), |(n, _)| off + n);
                    if let Some((span, literal)) = out_of_range_number(text, off) {
                        self.dh(
                            DiagKind::Syntax,
                            format!("the number {literal} is out of range"),
                            i,
                            Some(span),
                            "too large",
                            "a number must be finite: at most about 1.8e308 in size",
                        );
                        continue;
                    }
                    self.dh(
                        DiagKind::Syntax,
                        format!("invalid HCL: {}", e.message()),
                        i,
                        Some(off.min(text.len())..end.max(off.min(text.len()))),
                        "here",
                        "fix the syntax; `mirrorplan fmt` only formats files that parse",
                    );
                }
            }
        }
        for (i, body) in &bodies {
            self.collect(*i, body);
        }
        self.check_references();
        self.evaluate_all();
        self.cross_checks();
        self.check_moved();
    }

    /// The `moved` blocks against the declarations (see [`crate::moved`]).
    fn check_moved(&mut self) {
        if self.config.moved.is_empty() {
            return;
        }
        let blocks = self
            .decls
            .iter()
            .filter(|d| matches!(d.kind, "cluster" | "image_set"))
            .map(|d| {
                let for_each = match &d.body {
                    DeclBody::Block(b) => b.body.get_attribute("for_each").is_some(),
                    DeclBody::Local(_) => false,
                };
                (d.kind.to_string(), d.name.clone(), for_each)
            })
            .collect();
        let instances = self
            .config
            .clusters
            .iter()
            .map(|c| ("cluster".to_string(), c.name.clone(), c.key.clone()))
            .chain(
                self.config
                    .image_sets
                    .iter()
                    .map(|s| ("image_set".to_string(), s.name.clone(), s.key.clone())),
            )
            .collect();
        let declared = crate::moved::Declared { blocks, instances };
        for d in crate::moved::check(&self.config.moved, &self.files, &declared) {
            self.diags.push(d);
        }
    }

    // ---------------------------------------------------------------- step 2
    fn collect(&mut self, file: usize, body: &Body) {
        for s in body.iter() {
            match s {
                Structure::Attribute(attr) => {
                    let key = attr.key.as_str().to_string();
                    self.dh(
                        DiagKind::UnknownAttribute,
                        format!("unexpected attribute `{key}` at the top level"),
                        file,
                        attr.key.span(),
                        "attributes belong inside a block",
                        "put it inside a block, or in a `locals { ... }` block to name a value",
                    );
                }
                Structure::Block(block) => self.collect_block(file, block),
            }
        }
    }

    fn collect_block(&mut self, file: usize, block: &Block) {
        let ident = block.ident.as_str();
        if ident == "mirrorplan" {
            let (backend, diags) = crate::backend::decode(&self.files[file], block);
            for d in diags {
                self.diags.push(d);
            }
            match (backend, &self.config.backend) {
                (Some(_), Some(first)) => {
                    let help = format!("the first is at {}; remove one", first.location);
                    self.dh(
                        DiagKind::Duplicate,
                        "the backend is configured twice",
                        file,
                        block.ident.span(),
                        "second mirrorplan block",
                        help,
                    );
                }
                (Some(b), None) => self.config.backend = Some(b),
                (None, _) => {}
            }
            return;
        }
        if ident == "moved" {
            let (moved, diags) = crate::moved::decode(&self.files[file], file, block);
            diags.into_iter().for_each(|d| self.diags.push(d));
            self.config.moved.extend(moved);
            return;
        }
        let Some((kind, nlabels)) = schema::TOP_LEVEL.iter().find(|(k, _)| *k == ident).copied()
        else {
            let help = did_you_mean(ident, schema::TOP_LEVEL.iter().map(|(k, _)| *k))
                .unwrap_or_else(|| {
                    "blocks are variable, locals, registry, image_set, cluster, output and moved"
                        .into()
                });
            self.dh(
                DiagKind::UnknownBlock,
                format!("unknown block type `{ident}`"),
                file,
                block.ident.span(),
                "not a mirrorplan block",
                help,
            );
            return;
        };
        if block.labels.len() != nlabels {
            let msg = if nlabels == 0 {
                format!("`{kind}` blocks take no name")
            } else {
                format!("`{kind}` blocks take exactly one name, e.g. `{kind} \"NAME\" {{ ... }}`")
            };
            let span = block
                .labels
                .first()
                .and_then(|l| l.span())
                .or(block.ident.span());
            self.d(DiagKind::InvalidValue, msg, file, span, "block labels");
            return;
        }
        if kind == "locals" {
            for s in block.body.iter() {
                match s {
                    Structure::Attribute(attr) => {
                        let decl = Decl {
                            kind: "locals",
                            name: attr.key.as_str().to_string(),
                            file,
                            span: attr.key.span(),
                            body: DeclBody::Local(attr.value.clone()),
                        };
                        self.add_decl(decl);
                    }
                    Structure::Block(b) => {
                        self.d(
                            DiagKind::UnknownBlock,
                            format!("unexpected block `{}` in locals", b.ident.as_str()),
                            file,
                            b.ident.span(),
                            "locals holds only attributes",
                        );
                    }
                }
            }
            return;
        }
        let name = block.labels[0].as_str().to_string();
        let label_span = block.labels[0].span();
        if !is_identifier(&name) {
            self.dh(
                DiagKind::InvalidValue,
                format!("`{name}` is not a valid {} name", label_of(kind)),
                file,
                label_span.clone(),
                "invalid name",
                "names start with a letter or `_` and contain letters, digits, `_` and `-`",
            );
        }
        if let Some(s) = schema::top_level(kind) {
            self.check_body(file, &block.body, s, kind, label_span.clone());
        }
        self.add_decl(Decl {
            kind: schema::TOP_LEVEL
                .iter()
                .find(|(k, _)| *k == kind)
                .map_or("output", |(k, _)| k),
            name,
            file,
            span: label_span,
            body: DeclBody::Block(block.clone()),
        });
    }

    fn add_decl(&mut self, decl: Decl) {
        let addr = decl.address();
        if let Some(&first) = self.by_name.get(&addr) {
            let prev = self.loc(self.decls[first].file, &self.decls[first].span);
            self.dh(
                DiagKind::Duplicate,
                format!("{} `{}` is declared twice", label_of(decl.kind), decl.name),
                decl.file,
                decl.span.clone(),
                "second declaration",
                format!("the first is at {prev}; rename or remove one"),
            );
            return;
        }
        self.by_name.insert(addr, self.decls.len());
        self.decls.push(decl);
    }

    fn check_body(
        &mut self,
        file: usize,
        body: &Body,
        s: &'static BodySchema,
        what: &str,
        header: Option<Range<usize>>,
    ) {
        let mut seen_attrs: HashMap<String, Option<Range<usize>>> = HashMap::new();
        let mut seen_blocks: HashMap<&str, usize> = HashMap::new();
        for st in body.iter() {
            match st {
                Structure::Attribute(attr) => {
                    let key = attr.key.as_str();
                    if s.attr(key).is_none() {
                        let help = did_you_mean(key, s.attrs.iter().map(|a| a.name))
                            .or_else(|| {
                                s.block(key)
                                    .map(|_| format!("`{key}` is a block: write `{key} {{ ... }}`"))
                            })
                            .unwrap_or_else(|| {
                                format!(
                                    "`{what}` takes: {}",
                                    s.attrs
                                        .iter()
                                        .map(|a| a.name)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            });
                        self.dh(
                            DiagKind::UnknownAttribute,
                            format!("`{what}` has no attribute `{key}`"),
                            file,
                            attr.key.span(),
                            "unknown attribute",
                            help,
                        );
                        continue;
                    }
                    if let Some(prev) = seen_attrs.get(key) {
                        let prev = self.loc(file, prev);
                        self.dh(
                            DiagKind::Duplicate,
                            format!("attribute `{key}` is set twice"),
                            file,
                            attr.key.span(),
                            "set again here",
                            format!("the first is at {prev}; keep one"),
                        );
                        continue;
                    }
                    seen_attrs.insert(key.to_string(), attr.key.span());
                }
                Structure::Block(b) => {
                    let ident = b.ident.as_str();
                    let Some(bs) = s.block(ident) else {
                        let help = did_you_mean(ident, s.blocks.iter().map(|b| b.name))
                            .or_else(|| {
                                s.attr(ident).map(|_| {
                                    format!("`{ident}` is an attribute: write `{ident} = ...`")
                                })
                            })
                            .unwrap_or_else(|| {
                                if s.blocks.is_empty() {
                                    format!("`{what}` takes no nested blocks")
                                } else {
                                    format!(
                                        "`{what}` takes the blocks: {}",
                                        s.blocks
                                            .iter()
                                            .map(|b| b.name)
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    )
                                }
                            });
                        self.dh(
                            DiagKind::UnknownBlock,
                            format!("`{what}` has no block `{ident}`"),
                            file,
                            b.ident.span(),
                            "unknown block",
                            help,
                        );
                        continue;
                    };
                    if !b.labels.is_empty() {
                        self.d(
                            DiagKind::InvalidValue,
                            format!("`{ident}` blocks take no name"),
                            file,
                            b.labels[0].span(),
                            "remove this label",
                        );
                    }
                    let n = seen_blocks.entry(bs.name).or_insert(0);
                    *n += 1;
                    if *n > 1 && !bs.repeatable {
                        self.d(
                            DiagKind::Duplicate,
                            format!("`{what}` takes at most one `{ident}` block"),
                            file,
                            b.ident.span(),
                            "second block",
                        );
                    }
                    self.check_body(file, &b.body, bs.body, ident, b.ident.span());
                }
            }
        }
        let span = header;
        for a in s.attrs.iter().filter(|a| a.required) {
            if !seen_attrs.contains_key(a.name) {
                self.dh(
                    DiagKind::MissingRequired,
                    format!("`{what}` needs the attribute `{}`", a.name),
                    file,
                    span.clone(),
                    format!("`{}` is missing in this block", a.name),
                    format!("add `{} = ...` ({})", a.name, a.ty.describe()),
                );
            }
        }
        for b in s.blocks.iter().filter(|b| b.required) {
            if !seen_blocks.contains_key(b.name) {
                self.dh(
                    DiagKind::MissingRequired,
                    format!("`{what}` needs at least one `{}` block", b.name),
                    file,
                    span.clone(),
                    format!("no `{}` block here", b.name),
                    format!("add `{} {{ ... }}`", b.name),
                );
            }
        }
    }

    // ---------------------------------------------------------------- step 3
    /// Checks every reference; builds the graph; reports cycles. False when evaluation must not go on.
    /// Checks every reference, builds the declaration graph, reports cycles and
    /// orders the declarations for evaluation.
    fn check_references(&mut self) {
        let mut graph: DiGraph<usize, bool> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..self.decls.len()).map(|i| graph.add_node(i)).collect();
        let mut tainted: std::collections::HashSet<usize> = std::collections::HashSet::new();
        for i in 0..self.decls.len() {
            let decl = self.decls[i].clone();
            let has_for_each = matches!(&decl.body, DeclBody::Block(b) if b.body.get_attribute("for_each").is_some());
            for (attr_name, expr, ty) in decl_exprs(&decl) {
                match ty {
                    AttrType::Ref(kind) => match as_block_ref(expr) {
                        Some(r) => {
                            if let Some(j) = self.check_block_ref(&decl, &r, Some(kind)) {
                                graph.add_edge(nodes[j], nodes[i], false);
                            } else {
                                tainted.insert(i);
                            }
                        }
                        None => {
                            tainted.insert(i);
                            self.dh(
                                DiagKind::WrongType,
                                format!(
                                    "`{attr_name}` must be a reference to a {} block",
                                    label_of(kind)
                                ),
                                decl.file,
                                expr.span(),
                                format!("expected `{kind}.NAME`"),
                                format!("write `{attr_name} = {kind}.NAME` without quotes"),
                            );
                        }
                    },
                    AttrType::RefList => {
                        let Expression::Array(items) = expr else {
                            tainted.insert(i);
                            self.dh(
                                DiagKind::WrongType,
                                format!("`{attr_name}` must be a list of block references"),
                                decl.file,
                                expr.span(),
                                "expected `[KIND.NAME, ...]`",
                                "e.g. `depends_on = [image_set.anthos]`",
                            );
                            continue;
                        };
                        for item in items.iter() {
                            match as_block_ref(item) {
                                Some(r) => match self.check_block_ref(&decl, &r, None) {
                                    Some(j) => {
                                        graph.add_edge(nodes[j], nodes[i], true);
                                    }
                                    None => {
                                        tainted.insert(i);
                                    }
                                },
                                None => {
                                    tainted.insert(i);
                                    self.dh(
                                        DiagKind::WrongType,
                                        "depends_on entries must be block references",
                                        decl.file,
                                        item.span(),
                                        "expected `KIND.NAME`",
                                        "e.g. `depends_on = [image_set.anthos]` (no quotes)",
                                    );
                                }
                            }
                        }
                    }
                    AttrType::TypeExpr | AttrType::AttrNames => {}
                    _ => {
                        for r in references(expr) {
                            match self.check_value_ref(&decl, &r, has_for_each) {
                                Ok(Some(j)) => {
                                    graph.add_edge(nodes[j], nodes[i], false);
                                }
                                Ok(None) => {}
                                Err(()) => {
                                    tainted.insert(i);
                                }
                            }
                        }
                    }
                }
            }
        }
        // cycles
        for scc in petgraph::algo::tarjan_scc(&graph) {
            let cyclic = scc.len() > 1 || scc.first().is_some_and(|n| graph.contains_edge(*n, *n));
            if !cyclic {
                continue;
            }
            for n in &scc {
                tainted.insert(graph[*n]);
            }
            let path = cycle_path(&graph, &scc);
            let names: Vec<String> = path
                .iter()
                .map(|n| self.decls[graph[*n]].address())
                .collect();
            let first = graph[path[0]];
            let (file, span) = (self.decls[first].file, self.decls[first].span.clone());
            self.dh(
                DiagKind::Cycle,
                format!("dependency cycle: {}", names.join(" -> ")),
                file,
                span,
                "this block depends on itself through the cycle",
                "remove one of the references or depends_on entries in the cycle",
            );
        }
        // evaluation order: dependencies first; members of a cycle in any order
        let sccs = petgraph::algo::tarjan_scc(&graph);
        let order: Vec<usize> = sccs.iter().rev().flatten().map(|n| graph[*n]).collect();
        self.tainted = order
            .iter()
            .filter(|i| tainted.contains(i))
            .map(|i| self.decls[*i].address())
            .collect();
        self.decls = order.into_iter().map(|i| self.decls[i].clone()).collect();
        self.by_name = self
            .decls
            .iter()
            .enumerate()
            .map(|(i, d)| (d.address(), i))
            .collect();
    }

    fn check_block_ref(&mut self, decl: &Decl, r: &RefUse, want: Option<&str>) -> Option<usize> {
        let Some(attr) = &r.attr else { return None };
        let kinds = ["registry", "image_set", "cluster"];
        if !kinds.contains(&r.root.as_str()) {
            let help = match want {
                Some(k) => format!("write `{k}.NAME`"),
                None => "depends_on takes registry.NAME, image_set.NAME or cluster.NAME".into(),
            };
            self.dh(
                DiagKind::WrongReferenceKind,
                format!("`{}.{attr}` is not a block reference", r.root),
                decl.file,
                r.span.clone(),
                "not a registry, image_set or cluster",
                help,
            );
            return None;
        }
        if let Some(want) = want {
            if r.root != want {
                self.dh(
                    DiagKind::WrongReferenceKind,
                    format!(
                        "`{}.{attr}` is {} {}, but a {} is expected here",
                        r.root,
                        if r.root == "image_set" { "an" } else { "a" },
                        label_of(&r.root),
                        label_of(want)
                    ),
                    decl.file,
                    r.span.clone(),
                    format!("expected `{want}.NAME`"),
                    format!("refer to a {} block", label_of(want)),
                );
                return None;
            }
        }
        let addr = format!("{}.{attr}", r.root);
        match self.by_name.get(&addr) {
            Some(&j) => Some(j),
            None => {
                let help = did_you_mean(
                    attr,
                    self.decls
                        .iter()
                        .filter(|d| d.kind == r.root)
                        .map(|d| d.name.as_str()),
                )
                .unwrap_or_else(|| format!("declare `{} \"{attr}\" {{ ... }}`", r.root));
                self.dh(
                    DiagKind::UndefinedReference,
                    format!("there is no {} named `{attr}`", label_of(&r.root)),
                    decl.file,
                    r.span.clone(),
                    "undefined",
                    help,
                );
                None
            }
        }
    }

    fn check_value_ref(
        &mut self,
        decl: &Decl,
        r: &RefUse,
        has_for_each: bool,
    ) -> Result<Option<usize>, ()> {
        match r.root.as_str() {
            "each" => {
                if !has_for_each {
                    self.dh(
                        DiagKind::UndefinedReference,
                        "`each` is only defined in blocks that use `for_each`",
                        decl.file,
                        r.span.clone(),
                        "no for_each here",
                        "add `for_each = ...` to this block, or remove the reference",
                    );
                    return Err(());
                }
                Ok(None)
            }
            "path" => Ok(None),
            "mirrorplan" => {
                if r.attr.as_deref() == Some("workspace") {
                    return Ok(None);
                }
                self.dh(
                    DiagKind::UndefinedReference,
                    "`mirrorplan` has one attribute: `mirrorplan.workspace`",
                    decl.file,
                    r.span.clone(),
                    "undefined",
                    "write `mirrorplan.workspace` (the selected workspace's name)",
                );
                Err(())
            }
            "var" | "local" | "registry" | "image_set" | "cluster" => {
                let Some(attr) = &r.attr else {
                    self.dh(
                        DiagKind::UndefinedReference,
                        format!("`{}` alone is not a value", r.root),
                        decl.file,
                        r.span.clone(),
                        "incomplete reference",
                        format!("write `{}.NAME`", r.root),
                    );
                    return Err(());
                };
                let prefix = r.root.as_str();
                let addr = format!("{prefix}.{attr}");
                match self.by_name.get(&addr) {
                    // a variable's validation refers to the variable itself: not a dependency
                    Some(&j) if self.decls[j].address() == decl.address() => Ok(None),
                    Some(&j) => Ok(Some(j)),
                    None => {
                        let kind = match prefix {
                            "var" => "variable",
                            "local" => "locals",
                            k => k,
                        };
                        let help = did_you_mean(
                            attr,
                            self.decls
                                .iter()
                                .filter(|d| d.kind == kind)
                                .map(|d| d.name.as_str()),
                        )
                        .unwrap_or_else(|| match prefix {
                            "var" => format!("declare `variable \"{attr}\" {{ type = string }}`"),
                            "local" => format!("define `{attr}` in a `locals {{ ... }}` block"),
                            k => format!("declare `{k} \"{attr}\" {{ ... }}`"),
                        });
                        self.dh(
                            DiagKind::UndefinedReference,
                            format!("there is no {} named `{attr}`", label_of(prefix)),
                            decl.file,
                            r.span.clone(),
                            "undefined",
                            help,
                        );
                        Err(())
                    }
                }
            }
            other => {
                let help = did_you_mean(other, REF_ROOTS.iter().copied())
                    .unwrap_or_else(|| "values come from var.NAME, local.NAME or KIND.NAME".into());
                self.dh(
                    DiagKind::UndefinedReference,
                    format!("unknown name `{other}`"),
                    decl.file,
                    r.span.clone(),
                    "undefined",
                    help,
                );
                Err(())
            }
        }
    }

    // ---------------------------------------------------------------- step 4
    fn context(&self, each: Option<(&Value, &Value)>) -> Context<'static> {
        let mut ctx = Context::new();
        functions::declare_all(&mut ctx);
        arith::declare(&mut ctx);
        ctx.declare_var("var", Value::Object(self.values.var.clone()));
        ctx.declare_var("local", Value::Object(self.values.local.clone()));
        ctx.declare_var("registry", Value::Object(self.values.registry.clone()));
        ctx.declare_var("image_set", Value::Object(self.values.image_set.clone()));
        ctx.declare_var("cluster", Value::Object(self.values.cluster.clone()));
        let mut path = Map::new();
        path.insert("module".into(), Value::from(self.dir.display().to_string()));
        ctx.declare_var("path", Value::Object(path));
        let mut mirrorplan = Map::new();
        mirrorplan.insert(
            "workspace".into(),
            Value::from(self.opts.workspace.as_deref().unwrap_or("default")),
        );
        ctx.declare_var("mirrorplan", Value::Object(mirrorplan));
        if let Some((k, v)) = each {
            let mut m = Map::new();
            m.insert("key".into(), k.clone());
            m.insert("value".into(), v.clone());
            ctx.declare_var("each", Value::Object(m));
        }
        ctx
    }

    fn eval(&mut self, file: usize, expr: &Expression, ctx: &Context) -> Option<Value> {
        let (e, op_spans) = arith::rewrite(expr);
        arith::take_failure();
        match e.evaluate(ctx) {
            Ok(v) => Some(v),
            Err(err) => {
                let failed_op = arith::take_failure();
                let msg = err.to_string();
                // a value of an unknown variable used in an operation stays unknown
                if msg.contains(UNKNOWN) || self.quiet {
                    return Some(Value::from(UNKNOWN));
                }
                if let Some((i, why)) = failed_op {
                    // the reason names no operand value: safe to show even for a secret
                    let span = op_spans.get(i).cloned().flatten().or(expr.span());
                    self.dh(
                        DiagKind::Evaluation,
                        format!("cannot evaluate this expression: {why}"),
                        file,
                        span,
                        why,
                        "check the operands of this operation",
                    );
                    return None;
                }
                let msg = if self.sensitive_ref(expr).is_some() {
                    // hcl-rs's messages quote values: none of a secret's may be shown
                    "the error is not shown because the expression uses a sensitive value"
                        .to_string()
                } else {
                    msg.replace(UNKNOWN, "(known after plan)")
                };
                self.dh(
                    DiagKind::Evaluation,
                    format!("cannot evaluate this expression: {msg}"),
                    file,
                    expr.span(),
                    "evaluation failed",
                    "check the function arguments and operand types",
                );
                None
            }
        }
    }

    /// The first reference in `expr` to a sensitive value: a sensitive
    /// variable, or a local whose value derives from one. Anything computed
    /// from such a reference (by an operator, a function, a conditional, a
    /// collection or a template) is itself sensitive.
    fn sensitive_ref(&self, expr: &Expression) -> Option<RefUse> {
        references(expr)
            .into_iter()
            .find(|r| match (r.root.as_str(), &r.attr) {
                ("var", Some(a)) => self.sensitive_vars.contains(a),
                ("local", Some(a)) => self.sensitive_locals.contains(a),
                _ => false,
            })
    }

    /// Reports a sensitive value used in an attribute that plans show.
    fn sensitive_use(&mut self, file: usize, what: &str, r: &RefUse) {
        let source = match r.root.as_str() {
            "var" => format!(
                "the sensitive variable `var.{}`",
                r.attr.clone().unwrap_or_default()
            ),
            _ => format!(
                "`local.{}`, which derives from a sensitive value",
                r.attr.clone().unwrap_or_default()
            ),
        };
        self.dh(
            DiagKind::SensitiveOutput,
            format!("{what} uses {source}, but it is shown in plans and saved in the state"),
            file,
            r.span.clone(),
            "sensitive value",
            format!(
                "only {} may hold sensitive values; use a value that is not sensitive here",
                MAY_BE_SENSITIVE
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }

    fn evaluate_all(&mut self) {
        let decls = self.decls.clone();
        for decl in &decls {
            self.quiet = self.tainted.contains(&decl.address());
            match (&decl.body, decl.kind) {
                (DeclBody::Local(expr), _) => {
                    if self.sensitive_ref(expr).is_some() {
                        self.sensitive_locals.insert(decl.name.clone());
                    }
                    let ctx = self.context(None);
                    let v = self
                        .eval(decl.file, expr, &ctx)
                        .unwrap_or(Value::from(UNKNOWN));
                    self.values.local.insert(decl.name.clone(), v);
                }
                (DeclBody::Block(b), "variable") => self.eval_variable(decl, b),
                (DeclBody::Block(b), "registry") => self.eval_registry(decl, b),
                (DeclBody::Block(b), "image_set") => self.eval_image_set(decl, b),
                (DeclBody::Block(b), "cluster") => self.eval_cluster(decl, b),
                (DeclBody::Block(b), "output") => self.eval_output(decl, b),
                _ => {}
            }
        }
        self.config.edges = self.instance_edges();
    }

    fn eval_variable(&mut self, decl: &Decl, b: &Block) {
        let file = decl.file;
        let ctx = self.context(None);
        let type_name = b
            .body
            .get_attribute("type")
            .map(|a| type_text(&a.value))
            .unwrap_or_else(|| "any".into());
        let ty = match VarType::parse(&type_name) {
            Some(t) => t,
            None => {
                let span = b.body.get_attribute("type").and_then(|a| a.value.span());
                self.dh(
                    DiagKind::WrongType,
                    format!("`{type_name}` is not a type mirrorplan knows"),
                    file,
                    span,
                    "unknown type",
                    "use string, number, bool, list(T), set(T), map(T) or any",
                );
                VarType::Any
            }
        };
        let sensitive = self
            .bool_attr(file, &b.body, "sensitive", &ctx)
            .unwrap_or(false);
        let description = self.string_attr(file, &b.body, "description", &ctx);
        // value precedence: default < environment < var files < --var
        let mut value: Option<(Value, String)> = None;
        if let Some(attr) = b.body.get_attribute("default") {
            if let Some(v) = self.eval(file, &attr.value, &ctx) {
                if !v.is_null() {
                    value = Some((v, "its default".into()));
                }
            }
        }
        let name = decl.name.clone();
        if let Some((_, raw)) = self.opts.env_vars.iter().rev().find(|(n, _)| *n == name) {
            value = Some((raw_value(raw, &ty), format!("MIRRORPLAN_VAR_{name}")));
        }
        for f in self.opts.var_files.clone() {
            if let Some(v) = self.var_file_value(&f, &name) {
                value = Some((v, f.display().to_string()));
            }
        }
        if let Some((_, raw)) = self.opts.vars.iter().rev().find(|(n, _)| *n == name) {
            value = Some((raw_value(raw, &ty), "--var".into()));
        }
        let has_value = value.is_some();
        if let (true, Some((v, _))) = (sensitive, &value) {
            // as given, before conversion: the form a message would quote
            secret_texts(v, &mut self.secrets);
        }
        let value = match value {
            Some((v, from)) => match ty.convert(&v) {
                Ok(v) => v,
                Err(why) => {
                    let why = if sensitive {
                        "(the value is sensitive and not shown)".to_string()
                    } else {
                        why
                    };
                    self.dh(
                        DiagKind::WrongType,
                        format!("the value of variable `{name}` from {from} is not a {type_name}: {why}"),
                        file,
                        decl.span.clone(),
                        "declared here",
                        format!("give a {type_name} value"),
                    );
                    ty.unknown()
                }
            },
            None => {
                if self.opts.mode == Mode::Plan {
                    self.dh(
                        DiagKind::MissingVariable,
                        format!("variable `{name}` has no value"),
                        file,
                        decl.span.clone(),
                        "needs a value",
                        format!(
                            "give it one with `--var {name}=VALUE`, a `--var-file`, or the environment variable MIRRORPLAN_VAR_{name}"
                        ),
                    );
                }
                ty.unknown()
            }
        };
        if sensitive {
            self.sensitive_vars.push(name.clone());
            secret_texts(&value, &mut self.secrets);
        }
        // validation rules
        if !is_unknown(&value) {
            let mut vctx = self.context(None);
            let mut var = self.values.var.clone();
            var.insert(name.clone(), value.clone());
            vctx.declare_var("var", Value::Object(var));
            for vb in b.body.get_blocks("validation") {
                let Some(cond) = vb.body.get_attribute("condition") else {
                    continue;
                };
                let msg = match vb.body.get_attribute("error_message") {
                    Some(m) if self.sensitive_ref(&m.value).is_some() => {
                        "(the error message uses a sensitive value and is not shown)".into()
                    }
                    _ => self
                        .string_attr(file, &vb.body, "error_message", &vctx)
                        .unwrap_or_else(|| "the value is invalid".into()),
                };
                match self.eval(file, &cond.value, &vctx) {
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => self.dh(
                        DiagKind::ValidationFailed,
                        format!("invalid value for variable `{name}`: {msg}"),
                        file,
                        cond.value.span(),
                        "this condition is false",
                        "give a value that satisfies the variable's validation rule",
                    ),
                    Some(_) => {
                        self.d(
                            DiagKind::WrongType,
                            "a validation condition must be true or false",
                            file,
                            cond.value.span(),
                            "not a bool",
                        );
                    }
                    None => {}
                }
            }
        }
        self.values.var.insert(name.clone(), value);
        self.config.variables.insert(
            name.clone(),
            Variable {
                name,
                type_name,
                description,
                sensitive,
                has_value,
            },
        );
    }

    fn var_file_value(&mut self, path: &Path, name: &str) -> Option<Value> {
        let text = std::fs::read_to_string(path).ok()?;
        let body = hcl_edit::parser::parse_body(&text).ok()?;
        let attr = body.get_attribute(name)?;
        let (e, op_spans) = arith::rewrite(&attr.value);
        let ctx = self.context(None);
        arith::take_failure();
        let result = e.evaluate(&ctx);
        if let (Err(_), Some((i, why))) = (&result, arith::take_failure()) {
            let file = SourceFile::new(path.display().to_string(), text.as_str());
            let span = op_spans.get(i).cloned().flatten().or(attr.value.span());
            self.diags.push(
                ConfigDiagnostic::new(
                    DiagKind::Evaluation,
                    format!("cannot evaluate the value of variable `{name}`: {why}"),
                )
                .at(&file, span, why)
                .help("check the operands of this operation"),
            );
        }
        result.ok()
    }

    fn attr_value(
        &mut self,
        file: usize,
        body: &Body,
        name: &str,
        ctx: &Context,
    ) -> Option<(Value, Option<Range<usize>>)> {
        let attr = body.get_attribute(name)?;
        if !MAY_BE_SENSITIVE.contains(&name) {
            if let Some(r) = self.sensitive_ref(&attr.value) {
                self.sensitive_use(file, &format!("`{name}`"), &r);
                return None;
            }
        }
        let v = self.eval(file, &attr.value, ctx)?;
        if v.is_null() {
            return None;
        }
        Some((v, attr.value.span()))
    }

    fn string_attr(
        &mut self,
        file: usize,
        body: &Body,
        name: &str,
        ctx: &Context,
    ) -> Option<String> {
        let (v, span) = self.attr_value(file, body, name, ctx)?;
        match v {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.dh(
                    DiagKind::WrongType,
                    format!("`{name}` must be a string, not {}", describe(&other)),
                    file,
                    span,
                    "expected a string",
                    format!("write `{name} = \"...\"`"),
                );
                None
            }
        }
    }

    fn bool_attr(&mut self, file: usize, body: &Body, name: &str, ctx: &Context) -> Option<bool> {
        let (v, span) = self.attr_value(file, body, name, ctx)?;
        match v {
            Value::Bool(b) => Some(b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            v if is_unknown(&v) => None,
            other => {
                self.dh(
                    DiagKind::WrongType,
                    format!("`{name}` must be true or false, not {}", describe(&other)),
                    file,
                    span,
                    "expected a bool",
                    format!("write `{name} = true` or `{name} = false`"),
                );
                None
            }
        }
    }

    fn number_attr(&mut self, file: usize, body: &Body, name: &str, ctx: &Context) -> Option<u64> {
        let (v, span) = self.attr_value(file, body, name, ctx)?;
        let n = match &v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse::<u64>().ok(),
            v if is_unknown(v) => return None,
            _ => None,
        };
        if n.is_none() {
            self.dh(
                DiagKind::WrongType,
                format!("`{name}` must be a whole number, not {}", describe(&v)),
                file,
                span,
                "expected a number",
                format!("write `{name} = 1`"),
            );
        }
        n
    }

    fn list_attr(
        &mut self,
        file: usize,
        body: &Body,
        name: &str,
        ctx: &Context,
    ) -> Option<Vec<(String, Option<Range<usize>>)>> {
        let attr = body.get_attribute(name)?;
        let item_spans: Vec<Option<Range<usize>>> = match &attr.value {
            Expression::Array(a) => a.iter().map(|e| e.span()).collect(),
            _ => Vec::new(),
        };
        let (v, span) = self.attr_value(file, body, name, ctx)?;
        match v {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    let ispan = item_spans.get(i).cloned().flatten().or(span.clone());
                    match item {
                        Value::String(s) => out.push((s, ispan)),
                        Value::Number(n) => out.push((n.to_string(), ispan)),
                        other => self.dh(
                            DiagKind::WrongType,
                            format!(
                                "`{name}` must be a list of strings, but item {} is {}",
                                i + 1,
                                describe(&other)
                            ),
                            file,
                            ispan,
                            "expected a string",
                            "quote the value",
                        ),
                    }
                }
                Some(out)
            }
            v if is_unknown(&v) => Some(vec![(UNKNOWN.to_string(), span)]),
            other => {
                self.dh(
                    DiagKind::WrongType,
                    format!(
                        "`{name}` must be a list of strings, not {}",
                        describe(&other)
                    ),
                    file,
                    span,
                    "expected a list",
                    format!("write `{name} = [\"...\", ...]`"),
                );
                None
            }
        }
    }

    fn path_attr(
        &mut self,
        file: usize,
        body: &Body,
        name: &str,
        ctx: &Context,
    ) -> Option<PathBuf> {
        self.string_attr(file, body, name, ctx).map(|s| {
            if s.contains(UNKNOWN) {
                PathBuf::from(s)
            } else {
                crate::syntax::config_relative(&self.dir, Path::new(&s))
            }
        })
    }

    fn depends_on(b: &Block) -> Vec<String> {
        let Some(attr) = b.body.get_attribute("depends_on") else {
            return Vec::new();
        };
        let Expression::Array(items) = &attr.value else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(as_block_ref)
            .map(|r| match (r.attr, r.key) {
                (Some(a), Some(k)) => instance_address(&r.root, &a, Some(&k)),
                (Some(a), None) => format!("{}.{a}", r.root),
                _ => r.root,
            })
            .collect()
    }

    fn origin(&self, decl: &Decl) -> Origin {
        let span = decl.span.clone().unwrap_or(0..0);
        let (line, _) = self.files[decl.file].line_col(span.start);
        Origin {
            file: self.files[decl.file].name.clone(),
            span,
            line,
        }
    }

    fn ref_name(b: &Body, attr: &str) -> String {
        b.get_attribute(attr)
            .and_then(|a| as_block_ref(&a.value))
            .and_then(|r| r.attr)
            .unwrap_or_default()
    }

    fn eval_registry(&mut self, decl: &Decl, b: &Block) {
        let file = decl.file;
        let ctx = self.context(None);
        let body = &b.body;
        let endpoint_span = body.get_attribute("endpoint").and_then(|a| a.value.span());
        let endpoint_raw = self.string_attr(file, body, "endpoint", &ctx);
        let endpoint = match &endpoint_raw {
            Some(s) if s.contains(UNKNOWN) => Some(Endpoint::Https {
                host: UNKNOWN.into(),
                port: None,
            }),
            Some(s) => match syntax::parse_endpoint(s, &self.dir) {
                Ok(e) => Some(e),
                Err(why) => {
                    self.dh(
                        DiagKind::InvalidEndpoint,
                        format!("invalid registry endpoint: {why}"),
                        file,
                        endpoint_span.clone(),
                        "invalid endpoint",
                        "e.g. `https://mirror.example:5000`, `http://127.0.0.1:5001` or `oci:./store`",
                    );
                    None
                }
            },
            None => None,
        };
        let namespace = self
            .string_attr(file, body, "namespace", &ctx)
            .map(|n| n.trim_matches('/').to_string());
        if let Some(ns) = &namespace {
            if !ns.contains(UNKNOWN) {
                if let Err(why) = syntax::check_repo_path(ns) {
                    let span = body.get_attribute("namespace").and_then(|a| a.value.span());
                    self.d(
                        DiagKind::InvalidValue,
                        format!("invalid namespace: {why}"),
                        file,
                        span,
                        "invalid namespace",
                    );
                }
            }
        }
        let ca_cert = self.path_attr(file, body, "ca_cert", &ctx);
        let username = self.string_attr(file, body, "username", &ctx);
        let password = self
            .string_attr(file, body, "password", &ctx)
            .map(Secret::new);
        let docker_config = self.path_attr(file, body, "docker_config", &ctx);
        let credentials_from = self.string_attr(file, body, "credentials_from", &ctx);
        if let Some(v) = credentials_from
            .as_deref()
            .filter(|v| !matches!(*v, "environment" | "none"))
        {
            let span = body
                .get_attribute("credentials_from")
                .and_then(|a| a.value.span());
            self.dh(
                DiagKind::InvalidValue,
                format!("`credentials_from` must be \"environment\" or \"none\", not {v:?}"),
                file,
                span,
                "unknown credential source",
                "\"environment\" (the default) reads the credential files of docker, podman and skopeo; \"none\" goes anonymous",
            );
        }
        let proxy = self.string_attr(file, body, "proxy", &ctx);
        let proxy_sensitive = body
            .get_attribute("proxy")
            .is_some_and(|a| self.sensitive_ref(&a.value).is_some());
        let insecure = self
            .bool_attr(file, body, "insecure", &ctx)
            .unwrap_or(false);
        let timeout_seconds = self.number_attr(file, body, "timeout", &ctx);
        if timeout_seconds == Some(0) {
            let span = body.get_attribute("timeout").and_then(|a| a.value.span());
            self.dh(
                DiagKind::InvalidValue,
                "`timeout` must be at least 1 second",
                file,
                span,
                "zero timeout",
                "write e.g. `timeout = 60` (seconds)",
            );
        }
        let limits = self.registry_limits(file, body, &ctx, endpoint.as_ref());
        if password.is_some() && username.is_none() {
            let span = body
                .get_attribute("password")
                .map(|a| a.key.span())
                .unwrap_or(None);
            self.dh(
                DiagKind::MissingRequired,
                "`password` is set but `username` is not",
                file,
                span,
                "password without user",
                "add `username = \"...\"`",
            );
        }
        if password.is_some() && docker_config.is_some() {
            let span = body
                .get_attribute("docker_config")
                .map(|a| a.key.span())
                .unwrap_or(None);
            self.dh(
                DiagKind::InvalidValue,
                "give either `username`/`password` or `docker_config`, not both",
                file,
                span,
                "second credential source",
                "remove one of them",
            );
        }
        if let (Some(Endpoint::Oci { .. }), true) = (
            &endpoint,
            ca_cert.is_some() || username.is_some() || insecure,
        ) {
            self.dh(
                DiagKind::InvalidValue,
                "an `oci:` store takes no TLS or credential settings",
                file,
                endpoint_span.clone(),
                "local store",
                "remove ca_cert, username, password and insecure",
            );
        }
        if let Some(p) = &password {
            self.secrets.push(p.clone());
        }
        let mut obj = Map::new();
        obj.insert("name".into(), Value::from(decl.name.clone()));
        obj.insert(
            "endpoint".into(),
            Value::from(endpoint_raw.unwrap_or_default()),
        );
        obj.insert(
            "namespace".into(),
            namespace.clone().map_or(Value::Null, Value::from),
        );
        obj.insert(
            "username".into(),
            username.clone().map_or(Value::Null, Value::from),
        );
        self.values
            .registry
            .insert(decl.name.clone(), Value::Object(obj));
        if let Some(endpoint) = endpoint {
            let origin = self.origin(decl);
            self.config.registries.insert(
                decl.name.clone(),
                Registry {
                    name: decl.name.clone(),
                    endpoint,
                    namespace,
                    ca_cert,
                    username,
                    password,
                    docker_config,
                    no_environment_credentials: credentials_from.as_deref() == Some("none"),
                    proxy,
                    proxy_sensitive,
                    insecure,
                    timeout_seconds: timeout_seconds.filter(|t| *t > 0),
                    limits,
                    origin,
                },
            );
        }
    }

    /// `max_concurrency`, `rate_limit` and `retry { attempts, max_delay }`
    /// of a registry block, each checked.
    fn registry_limits(
        &mut self,
        file: usize,
        body: &Body,
        ctx: &Context,
        endpoint: Option<&Endpoint>,
    ) -> RegistryLimits {
        let mut limits = RegistryLimits::default();
        let span_of = |b: &Body, name: &str| b.get_attribute(name).and_then(|a| a.value.span());
        if let Some(n) = self.number_attr(file, body, "max_concurrency", ctx) {
            if n == 0 {
                self.dh(
                    DiagKind::InvalidValue,
                    "`max_concurrency` must be at least 1",
                    file,
                    span_of(body, "max_concurrency"),
                    "zero",
                    "write e.g. `max_concurrency = 4` (requests to this registry at once)",
                );
            } else {
                limits.max_concurrency = Some(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
        if let Some(r) = self.string_attr(file, body, "rate_limit", ctx) {
            if !r.contains(UNKNOWN) {
                match syntax::parse_rate_limit(&r) {
                    Ok(rate) => limits.rate_limit = Some(rate),
                    Err(why) => self.dh(
                        DiagKind::InvalidValue,
                        format!("invalid rate_limit: {why}"),
                        file,
                        span_of(body, "rate_limit"),
                        "invalid rate",
                        "write \"N/s\" or \"N/m\", e.g. `rate_limit = \"10/s\"`",
                    ),
                }
            }
        }
        if let Some(rb) = body.get_blocks("retry").next() {
            if let Some(n) = self.number_attr(file, &rb.body, "attempts", ctx) {
                if n == 0 {
                    self.dh(
                        DiagKind::InvalidValue,
                        "`retry.attempts` must be at least 1 (1: no retry)",
                        file,
                        span_of(&rb.body, "attempts"),
                        "zero",
                        "write e.g. `attempts = 5` (attempts in all)",
                    );
                } else {
                    limits.retry_attempts = Some(u32::try_from(n).unwrap_or(u32::MAX));
                }
            }
            if let Some(d) = self.string_attr(file, &rb.body, "max_delay", ctx) {
                if !d.contains(UNKNOWN) {
                    match syntax::parse_duration(&d) {
                        Ok(d) if !d.is_zero() => limits.retry_max_delay = Some(d),
                        Ok(_) => self.dh(
                            DiagKind::InvalidValue,
                            "`retry.max_delay` must be more than 0",
                            file,
                            span_of(&rb.body, "max_delay"),
                            "zero",
                            "write e.g. `max_delay = \"30s\"`",
                        ),
                        Err(why) => self.dh(
                            DiagKind::InvalidValue,
                            format!("invalid retry.max_delay: {why}"),
                            file,
                            span_of(&rb.body, "max_delay"),
                            "invalid duration",
                            "write a duration such as \"500ms\", \"30s\" or \"2m\"",
                        ),
                    }
                }
            }
        }
        let set = limits != RegistryLimits::default() || body.get_blocks("retry").next().is_some();
        if let (Some(Endpoint::Oci { .. }), true) = (endpoint, set) {
            let span = ["max_concurrency", "rate_limit"]
                .iter()
                .find_map(|a| body.get_attribute(a).map(|a| a.key.span()))
                .flatten()
                .or_else(|| body.get_blocks("retry").next().and_then(|b| b.ident.span()));
            self.dh(
                DiagKind::InvalidValue,
                "an `oci:` store takes no request limits",
                file,
                span,
                "local store",
                "remove max_concurrency, rate_limit and retry { }",
            );
        }
        limits
    }

    /// Evaluates `for_each`: `None` for a block without it, else its (key, value) pairs.
    fn for_each(&mut self, decl: &Decl, b: &Block) -> Option<Vec<(Value, Value)>> {
        let attr = b.body.get_attribute("for_each")?;
        if let Some(r) = self.sensitive_ref(&attr.value) {
            // its keys name instances, and addresses are never masked
            self.sensitive_use(decl.file, "`for_each`", &r);
            return Some(Vec::new());
        }
        let ctx = self.context(None);
        let v = self.eval(decl.file, &attr.value, &ctx)?;
        if is_unknown(&v) {
            return Some(vec![(Value::from(UNKNOWN), Value::from(UNKNOWN))]);
        }
        match v {
            Value::Array(items) => {
                let mut out = Vec::new();
                for item in items {
                    match &item {
                        Value::String(_) => out.push((item.clone(), item)),
                        other => {
                            self.dh(
                                DiagKind::WrongType,
                                format!(
                                    "for_each over a list needs strings, found {}",
                                    describe(other)
                                ),
                                decl.file,
                                attr.value.span(),
                                "not a set of strings",
                                "use toset([...]) of strings, or a map",
                            );
                            return Some(Vec::new());
                        }
                    }
                }
                Some(out)
            }
            Value::Object(m) => Some(m.into_iter().map(|(k, v)| (Value::from(k), v)).collect()),
            other => {
                self.dh(
                    DiagKind::WrongType,
                    format!(
                        "for_each must be a set of strings or a map, not {}",
                        describe(&other)
                    ),
                    decl.file,
                    attr.value.span(),
                    "cannot iterate",
                    "e.g. `for_each = toset([\"a\", \"b\"])` or a map",
                );
                Some(Vec::new())
            }
        }
    }

    /// The block's `lifecycle`, its diagnostics reported once.
    fn lifecycle(&mut self, decl: &Decl, b: &Block) -> crate::lifecycle::Lifecycle {
        let (l, diags) = crate::lifecycle::decode(&self.files[decl.file], decl.kind, &b.body);
        for d in diags {
            self.diags.push(d);
        }
        l
    }

    /// The `repository { }` tag selections of an image set body, each part
    /// checked: the name is a repository (no tag or digest), each
    /// `include`/`exclude` a regular expression, `semver` a range and
    /// `newest` at least 1.
    fn tag_selections(
        &mut self,
        file: usize,
        body: &Body,
        ctx: &Context,
    ) -> Vec<crate::tags::TagSelection> {
        let mut out = Vec::new();
        for rb in body.get_blocks("repository") {
            let rbody = &rb.body;
            let Some(name) = self.string_attr(file, rbody, "name", ctx) else {
                continue;
            };
            let name_span = rbody.get_attribute("name").and_then(|a| a.value.span());
            if !name.contains(UNKNOWN) {
                let why = match syntax::parse_image(&name) {
                    Err(why) => Some(why.to_string()),
                    Ok(_)
                        if name.contains('@')
                            || name.rsplit('/').next().is_some_and(|l| l.contains(':')) =>
                    {
                        Some("a repository names no tag or digest".to_string())
                    }
                    Ok(_)
                        if !name.split('/').next().is_some_and(|h| {
                            h.contains('.') || h.contains(':') || h == "localhost"
                        }) =>
                    {
                        Some(
                            "give the registry host, e.g. `registry.k8s.io/kube-apiserver`"
                                .to_string(),
                        )
                    }
                    Ok(_) => None,
                };
                if let Some(why) = why {
                    self.dh(
                        DiagKind::InvalidImage,
                        format!("invalid repository `{name}`: {why}"),
                        file,
                        name_span,
                        "invalid repository",
                        "write HOST/PATH, e.g. `registry.k8s.io/kube-apiserver`",
                    );
                }
            }
            let patterns = |key: &str, this: &mut Self| -> Vec<String> {
                let list = this.list_attr(file, rbody, key, ctx).unwrap_or_default();
                for (p, span) in &list {
                    if p.contains(UNKNOWN) {
                        continue;
                    }
                    if let Err(why) = crate::tags::check_regex(p) {
                        let first = why.lines().last().unwrap_or(&why).trim().to_string();
                        this.dh(
                            DiagKind::InvalidValue,
                            format!("invalid regular expression in `{key}`: {first}"),
                            file,
                            span.clone(),
                            "invalid regular expression",
                            "write a regular expression in Rust `regex` syntax, e.g. \"^v1[.]2[89][.]\"",
                        );
                    }
                }
                list.into_iter().map(|(p, _)| p).collect()
            };
            let include = patterns("include", self);
            let exclude = patterns("exclude", self);
            let semver = self.string_attr(file, rbody, "semver", ctx);
            if let Some(r) = semver.as_deref().filter(|r| !r.contains(UNKNOWN)) {
                if let Err(why) = crate::tags::check_range(r) {
                    let span = rbody.get_attribute("semver").and_then(|a| a.value.span());
                    self.dh(
                        DiagKind::InvalidValue,
                        format!("invalid semver range `{r}`: {why}"),
                        file,
                        span,
                        "invalid semver range",
                        "write comparators separated by commas, e.g. \">=1.28, <1.30\"",
                    );
                }
            }
            let newest = self.number_attr(file, rbody, "newest", ctx);
            if newest == Some(0) {
                let span = rbody.get_attribute("newest").and_then(|a| a.value.span());
                self.dh(
                    DiagKind::InvalidValue,
                    "`newest = 0` selects no tag".to_string(),
                    file,
                    span,
                    "must be at least 1",
                    "give how many of the newest versions to keep, e.g. `newest = 3`, or leave it out",
                );
            }
            out.push(crate::tags::TagSelection {
                repository: name,
                include,
                exclude,
                semver,
                newest,
            });
        }
        out
    }

    fn eval_image_set(&mut self, decl: &Decl, b: &Block) {
        let lifecycle = self.lifecycle(decl, b);
        let instances: Vec<Option<(Value, Value)>> = match self.for_each(decl, b) {
            None => vec![None],
            Some(pairs) => pairs.into_iter().map(Some).collect(),
        };
        let mut objs = Map::new();
        for inst in instances {
            let file = decl.file;
            let ctx = self.context(inst.as_ref().map(|(k, v)| (k, v)));
            let body = &b.body;
            let key = inst
                .as_ref()
                .and_then(|(k, _)| k.as_str().map(str::to_string));
            let registry = Self::ref_name(body, "registry");
            let bundle = self.path_attr(file, body, "bundle", &ctx);
            let images = self
                .list_attr(file, body, "images", &ctx)
                .unwrap_or_default();
            let platforms = self
                .list_attr(file, body, "platforms", &ctx)
                .unwrap_or_default();
            let prune = self.bool_attr(file, body, "prune", &ctx).unwrap_or(false);
            let referrers = self
                .bool_attr(file, body, "referrers", &ctx)
                .unwrap_or(false);
            let repositories = self.tag_selections(file, body, &ctx);
            if bundle.is_none()
                && body.get_attribute("images").is_none()
                && body.get_blocks("repository").next().is_none()
            {
                let span = decl.span.clone();
                self.dh(
                    DiagKind::MissingRequired,
                    format!("image set `{}` has no images", decl.name),
                    file,
                    span,
                    "needs `bundle`, `images` or a `repository` block",
                    "add `bundle = \"FILE.tar.xz\"` and/or `images = [\"gcr.io/...:TAG\"]`",
                );
            }
            for (img, span) in &images {
                if img.contains(UNKNOWN) {
                    continue;
                }
                if let Err(why) = syntax::parse_image(img) {
                    self.dh(
                        DiagKind::InvalidImage,
                        format!("invalid image reference `{img}`: {why}"),
                        file,
                        span.clone(),
                        "invalid image",
                        "write HOST/PATH:TAG or HOST/PATH@sha256:DIGEST",
                    );
                }
            }
            for (p, span) in &platforms {
                if p.contains(UNKNOWN) {
                    continue;
                }
                if let Err(why) = syntax::check_platform(p) {
                    self.dh(
                        DiagKind::InvalidPlatform,
                        format!("invalid platform: {why}"),
                        file,
                        span.clone(),
                        "invalid platform",
                        "write os/arch[/variant], e.g. linux/amd64 or linux/arm/v7",
                    );
                }
            }
            let mut obj = Map::new();
            obj.insert("name".into(), Value::from(decl.name.clone()));
            obj.insert("registry".into(), Value::from(registry.clone()));
            obj.insert(
                "images".into(),
                Value::Array(
                    images
                        .iter()
                        .map(|(s, _)| Value::from(s.as_str()))
                        .collect(),
                ),
            );
            let origin = self.origin(decl);
            let set = ImageSet {
                name: decl.name.clone(),
                key: key.clone(),
                registry,
                bundle,
                images: images.into_iter().map(|(s, _)| s).collect(),
                repositories,
                platforms: platforms.into_iter().map(|(s, _)| s).collect(),
                prune,
                referrers,
                depends_on: Self::depends_on(b),
                lifecycle: lifecycle.clone(),
                origin,
            };
            match key {
                Some(k) => {
                    objs.insert(k, Value::Object(obj));
                }
                None => objs = obj,
            }
            self.config.image_sets.push(set);
        }
        self.values
            .image_set
            .insert(decl.name.clone(), Value::Object(objs));
    }

    fn eval_cluster(&mut self, decl: &Decl, b: &Block) {
        let lifecycle = self.lifecycle(decl, b);
        let instances: Vec<Option<(Value, Value)>> = match self.for_each(decl, b) {
            None => vec![None],
            Some(pairs) => pairs.into_iter().map(Some).collect(),
        };
        let mut objs = Map::new();
        for inst in instances {
            let file = decl.file;
            let ctx = self.context(inst.as_ref().map(|(k, v)| (k, v)));
            let body = &b.body;
            let key = inst
                .as_ref()
                .and_then(|(k, _)| k.as_str().map(str::to_string));
            let mut nodes = Vec::new();
            let mut seen: HashMap<String, Option<Range<usize>>> = HashMap::new();
            for (n, span) in self
                .list_attr(file, body, "nodes", &ctx)
                .unwrap_or_default()
            {
                if n.contains(UNKNOWN) {
                    continue;
                }
                match syntax::parse_node(&n, &self.dir) {
                    Ok(addr) => {
                        let k = addr.key();
                        if let Some(prev) = seen.get(&k) {
                            let prev = self.loc(file, prev);
                            self.dh(
                                DiagKind::Duplicate,
                                format!("node `{k}` is listed twice"),
                                file,
                                span.clone(),
                                "listed again",
                                format!("first listed at {prev}"),
                            );
                        } else {
                            seen.insert(k, span.clone());
                            nodes.push(addr);
                        }
                    }
                    Err(why) => self.dh(
                        DiagKind::InvalidHost,
                        format!("invalid node `{n}`: {why}"),
                        file,
                        span,
                        "invalid node",
                        "write HOST, HOST:PORT or local:PATH",
                    ),
                }
            }
            let gcr_key = self.path_attr(file, body, "gcr_key", &ctx);
            let mut ssh = Ssh::default();
            if let Some(sb) = body.get_blocks("ssh").next() {
                let sbody = &sb.body;
                if let Some(u) = self.string_attr(file, sbody, "user", &ctx) {
                    ssh.user = u;
                }
                ssh.private_key = self.path_attr(file, sbody, "private_key", &ctx);
                ssh.passphrase = self
                    .string_attr(file, sbody, "passphrase", &ctx)
                    .map(Secret::new);
                ssh.known_hosts = self.path_attr(file, sbody, "known_hosts", &ctx);
                ssh.host_key = self.string_attr(file, sbody, "host_key", &ctx);
                if let Some(a) = self.bool_attr(file, sbody, "use_agent", &ctx) {
                    ssh.use_agent = a;
                }
                if let Some(t) = self.number_attr(file, sbody, "timeout", &ctx) {
                    ssh.timeout_seconds = t;
                }
                if let Some(p) = &ssh.passphrase {
                    self.secrets.push(p.clone());
                }
            }
            let mut mirrors = Vec::new();
            for mb in body.get_blocks("registry_mirror") {
                let mbody = &mb.body;
                let registry = Self::ref_name(mbody, "registry");
                let mut hosts = Vec::new();
                for (h, span) in self
                    .list_attr(file, mbody, "hosts", &ctx)
                    .unwrap_or_default()
                {
                    if h.contains(UNKNOWN) {
                        continue;
                    }
                    match syntax::split_host_port(&h) {
                        Ok(_) => hosts.push(h),
                        Err(why) => self.dh(
                            DiagKind::InvalidHost,
                            format!("invalid mirrored host `{h}`: {why}"),
                            file,
                            span,
                            "invalid host",
                            "list upstream registry hosts such as `somehost.io` or `quay.io`",
                        ),
                    }
                }
                let pull_credentials = self.path_attr(file, mbody, "pull_credentials", &ctx);
                mirrors.push(RegistryMirror {
                    registry,
                    hosts,
                    pull_credentials,
                });
            }
            let mut containerd = Containerd::default();
            if let Some(cb) = body.get_blocks("containerd").next() {
                let cbody = &cb.body;
                if let Some(style) = self.string_attr(file, cbody, "config_style", &ctx) {
                    match ConfigStyle::NAMES.iter().find(|(n, _)| *n == style) {
                        Some((_, s)) => containerd.config_style = *s,
                        None if style.contains(UNKNOWN) => {}
                        None => {
                            let other = style.as_str();
                            let span = cbody
                                .get_attribute("config_style")
                                .and_then(|a| a.value.span());
                            let names = ConfigStyle::NAMES.map(|(n, _)| n);
                            let help = did_you_mean(other, names).unwrap_or_else(|| "use \"hosts\" (containerd 1.5+ and 2.x), \"legacy\" (containerd 1.x config.toml mirrors), \"registries_conf\" (CRI-O, podman), \"k3s\" or \"rke2\"".into());
                            self.dh(
                                DiagKind::InvalidValue,
                                format!(
                                    "config_style must be \"hosts\", \"legacy\", \"registries_conf\", \"k3s\" or \"rke2\", not \"{other}\""
                                ),
                                file,
                                span,
                                "unknown style",
                                help,
                            );
                        }
                    }
                }
                if !containerd.config_style.is_containerd() {
                    if let Some(attr) = cbody.get_attribute("config_file") {
                        self.dh(
                            DiagKind::InvalidValue,
                            format!(
                                "config_file does not apply to config_style = \"{}\": it never reads nor writes containerd's config.toml",
                                ConfigStyle::NAMES
                                    .iter()
                                    .find(|(_, s)| *s == containerd.config_style)
                                    .map_or("", |(n, _)| n)
                            ),
                            file,
                            attr.value.span(),
                            "not used by this style",
                            "remove config_file; config_path names the directory this style writes under",
                        );
                    }
                }
                if let Some(p) = self.string_attr(file, cbody, "config_path", &ctx) {
                    if !p.starts_with('/') && !p.contains(UNKNOWN) {
                        let span = cbody
                            .get_attribute("config_path")
                            .and_then(|a| a.value.span());
                        self.dh(
                            DiagKind::InvalidValue,
                            "config_path must be an absolute path on the node",
                            file,
                            span,
                            "not absolute",
                            "give an absolute directory on the node, or leave config_path out for the style's default directory",
                        );
                    }
                    containerd.config_path = Some(p.trim_end_matches('/').to_string());
                }
                if let Some(p) = self.string_attr(file, cbody, "config_file", &ctx) {
                    containerd.config_file = p;
                }
                if let Some(c) = self.string_attr(file, cbody, "restart_command", &ctx) {
                    containerd.restart_command = Some(c);
                    containerd.restart_command_sensitive = cbody
                        .get_attribute("restart_command")
                        .is_some_and(|a| self.sensitive_ref(&a.value).is_some());
                }
            }
            let mut rollout = Rollout::default();
            if let Some(rb) = body.get_blocks("rollout").next() {
                if let Some(n) = self.number_attr(file, &rb.body, "max_unavailable", &ctx) {
                    if n == 0 {
                        let span = rb
                            .body
                            .get_attribute("max_unavailable")
                            .and_then(|a| a.value.span());
                        self.dh(
                            DiagKind::InvalidValue,
                            "max_unavailable must be at least 1",
                            file,
                            span,
                            "zero",
                            "use 1 to change one node at a time",
                        );
                    }
                    rollout.max_unavailable = u32::try_from(n).unwrap_or(u32::MAX);
                }
                if let Some(n) = self.number_attr(file, &rb.body, "max_failures", &ctx) {
                    rollout.max_failures = u32::try_from(n).unwrap_or(u32::MAX);
                }
            }
            let mut obj = Map::new();
            obj.insert("name".into(), Value::from(decl.name.clone()));
            obj.insert(
                "nodes".into(),
                Value::Array(nodes.iter().map(|n| Value::from(n.key())).collect()),
            );
            let cluster_config = self.cluster_config_block(file, body, &ctx);
            let origin = self.origin(decl);
            let c = Cluster {
                name: decl.name.clone(),
                key: key.clone(),
                nodes,
                ssh,
                mirrors,
                gcr_key,
                containerd,
                rollout,
                cluster_config,
                depends_on: Self::depends_on(b),
                lifecycle: lifecycle.clone(),
                origin,
            };
            match key {
                Some(k) => {
                    objs.insert(k, Value::Object(obj));
                }
                None => objs = obj,
            }
            self.config.clusters.push(c);
        }
        self.values
            .cluster
            .insert(decl.name.clone(), Value::Object(objs));
    }

    fn eval_output(&mut self, decl: &Decl, b: &Block) {
        let file = decl.file;
        let ctx = self.context(None);
        let sensitive = self
            .bool_attr(file, &b.body, "sensitive", &ctx)
            .unwrap_or(false);
        let description = self.string_attr(file, &b.body, "description", &ctx);
        let Some(attr) = b.body.get_attribute("value") else {
            return;
        };
        if !sensitive {
            for r in references(&attr.value) {
                let attr_name = r.attr.clone().unwrap_or_default();
                let shown = match r.root.as_str() {
                    "local" if self.sensitive_locals.contains(&attr_name) => Some(format!(
                        "`local.{attr_name}`, which derives from a sensitive value"
                    )),
                    "var" if self.sensitive_vars.contains(&attr_name) => {
                        Some(format!("the sensitive variable `var.{attr_name}`"))
                    }
                    _ => None,
                };
                if let Some(shown) = shown {
                    self.dh(
                        DiagKind::SensitiveOutput,
                        format!("output `{}` shows {shown}", decl.name),
                        file,
                        r.span.clone(),
                        "sensitive value",
                        "add `sensitive = true` to the output, or do not output the secret",
                    );
                }
                if r.root == "registry" && attr_after(&attr.value, "password") {
                    self.dh(
                        DiagKind::SensitiveOutput,
                        format!("output `{}` shows a registry password", decl.name),
                        file,
                        attr.value.span(),
                        "sensitive value",
                        "add `sensitive = true` to the output",
                    );
                }
            }
        }
        let v = self.eval(file, &attr.value, &ctx).unwrap_or(Value::Null);
        let json = serde_json::to_value(&v).unwrap_or(serde_json::Value::Null);
        let json = if is_unknown(&v) {
            serde_json::Value::String("(known after plan)".into())
        } else {
            json
        };
        self.config.outputs.insert(
            decl.name.clone(),
            Output {
                name: decl.name.clone(),
                value: json,
                sensitive,
                description,
            },
        );
    }

    // ---------------------------------------------------------------- step 5
    fn cross_checks(&mut self) {
        // two image sources mapped to the same mirror repository and tag
        let mut seen: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
        let sets = self.config.image_sets.clone();
        for set in &sets {
            let Some(reg) = self.config.registries.get(&set.registry) else {
                continue;
            };
            let ns = reg.namespace.clone().unwrap_or_default();
            for img in &set.images {
                let Ok(name) = syntax::parse_image(img) else {
                    continue;
                };
                let target = if ns.is_empty() {
                    name.mirror_key()
                } else {
                    format!("{ns}/{}", name.mirror_key())
                };
                let k = (set.registry.clone(), target.clone());
                match seen.get(&k) {
                    Some((prev_img, prev_set)) if prev_img != img => {
                        let (file, span) = self.find_image_span(set, img);
                        let msg = format!(
                            "`{img}` and `{prev_img}` both map to `{target}` in registry `{}`",
                            set.registry
                        );
                        let help = format!(
                            "the mirror drops the upstream host; `{prev_img}` comes from {prev_set}: keep one of them or push them to different registries or namespaces"
                        );
                        match file {
                            Some(f) => self.dh(
                                DiagKind::MirrorConflict,
                                msg,
                                f,
                                span,
                                "same mirror repository and tag",
                                help,
                            ),
                            None => self.diags.push(
                                ConfigDiagnostic::new(DiagKind::MirrorConflict, msg).help(help),
                            ),
                        }
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(k, (img.clone(), set.address()));
                    }
                }
            }
        }
        self.node_owner_checks();
        // a cluster's registry_mirror must name a registry that nodes can reach
        let clusters = self.config.clusters.clone();
        for c in &clusters {
            for m in &c.mirrors {
                if let Some(Registry {
                    endpoint: Endpoint::Oci { .. },
                    ..
                }) = self.config.registries.get(&m.registry)
                {
                    let has_local_only =
                        c.nodes.iter().all(|n| matches!(n, NodeAddr::Local { .. }));
                    if !has_local_only {
                        if let Some(d) = self
                            .decls
                            .iter()
                            .find(|d| d.kind == "cluster" && d.name == c.name)
                        {
                            let (file, span) = (d.file, d.span.clone());
                            self.dh(DiagKind::InvalidValue, format!("cluster `{}` mirrors through `oci:` registry `{}`, which SSH nodes cannot pull from", c.name, m.registry), file, span, "oci: store", "use an https:// or http:// registry for clusters with SSH nodes");
                        }
                    }
                }
            }
        }
    }

    /// Two node entries that reach the same node (see [`crate::ownership`]):
    /// one diagnostic each, at the second entry, naming both blocks.
    fn node_owner_checks(&mut self) {
        let clusters = self.config.clusters.clone();
        for c in crate::ownership::conflicts(&clusters) {
            let (first, second) = (&clusters[c.first.0], &clusters[c.second.0]);
            let (n1, n2) = (&first.nodes[c.first.1], &second.nodes[c.second.1]);
            let (Some((f2, s2)), Some((f1, s1))) =
                (self.node_span(second, n2), self.node_span(first, n1))
            else {
                continue;
            };
            let (a1, a2) = (first.address(), second.address());
            let msg = if a1 == a2 {
                format!(
                    "`{}` and `{}` are the same node, listed twice in {a1}",
                    n1.key(),
                    n2.key()
                )
            } else {
                format!("node `{}` is configured by both {a1} and {a2}", n2.key())
            };
            let first_at = self.loc(f1, &s1);
            let related = ConfigDiagnostic::new(
                DiagKind::Duplicate,
                format!("{a1} configures `{}` here", n1.key()),
            )
            .at(&self.files[f1], s1, format!("first configured by {a1}"));
            let d = ConfigDiagnostic::new(DiagKind::Duplicate, msg)
                .at(&self.files[f2], s2, format!("configured again by {a2}"))
                .help(format!(
                    "a node's containerd files (hosts.toml, config.toml) can have one owner; {a1} configures it at {first_at}: list the node in one cluster only (a cluster takes several registry_mirror blocks)"
                ))
                .also(related);
            self.diags.push(d);
        }
    }

    /// Where `cluster` lists `node`: the matching string of a literal
    /// `nodes` list, else the `nodes` attribute, else the block's name.
    fn node_span(
        &self,
        cluster: &Cluster,
        node: &NodeAddr,
    ) -> Option<(usize, Option<Range<usize>>)> {
        let d = self
            .decls
            .iter()
            .find(|d| d.kind == "cluster" && d.name == cluster.name)?;
        let DeclBody::Block(b) = &d.body else {
            return Some((d.file, d.span.clone()));
        };
        let Some(attr) = b.body.get_attribute("nodes") else {
            return Some((d.file, d.span.clone()));
        };
        if let Expression::Array(items) = &attr.value {
            for it in items.iter() {
                if let Expression::String(s) = it {
                    if syntax::parse_node(s.value(), &self.dir).as_ref() == Ok(node) {
                        return Some((d.file, it.span()));
                    }
                }
            }
        }
        Some((d.file, attr.value.span().or(d.span.clone())))
    }

    fn find_image_span(&self, set: &ImageSet, img: &str) -> (Option<usize>, Option<Range<usize>>) {
        for d in &self.decls {
            if d.kind != "image_set" || d.name != set.name {
                continue;
            }
            if let DeclBody::Block(b) = &d.body {
                if let Some(Expression::Array(items)) =
                    b.body.get_attribute("images").map(|a| &a.value)
                {
                    for it in items.iter() {
                        if let Expression::String(s) = it {
                            if s.value() == img {
                                return (Some(d.file), it.span());
                            }
                        }
                    }
                }
                return (Some(d.file), d.span.clone());
            }
        }
        (None, None)
    }

    /// Instance-level edges for the graph: registry → image sets and nodes,
    /// image sets a cluster uses → its nodes, depends_on → nodes, nodes → cluster.
    fn instance_edges(&self) -> Vec<Edge> {
        let mut edges = Vec::new();
        let mut push = |from: String, to: String, explicit: bool| {
            let e = Edge { from, to, explicit };
            if !edges.contains(&e) {
                edges.push(e);
            }
        };
        for s in &self.config.image_sets {
            push(format!("registry.{}", s.registry), s.address(), false);
            for d in &s.depends_on {
                for from in self.expand_block_address(d) {
                    push(from, s.address(), true);
                }
            }
        }
        for c in &self.config.clusters {
            let node_addrs: Vec<String> = c
                .nodes
                .iter()
                .map(|n| instance_address("node", &c.instance_name(), Some(&n.key())))
                .collect();
            let mut deps: Vec<(String, bool)> = Vec::new();
            for m in &c.mirrors {
                deps.push((format!("registry.{}", m.registry), false));
                for s in self
                    .config
                    .image_sets
                    .iter()
                    .filter(|s| s.registry == m.registry)
                {
                    deps.push((s.address(), false));
                }
            }
            for d in &c.depends_on {
                for from in self.expand_block_address(d) {
                    deps.retain(|(a, _)| *a != from);
                    deps.push((from, true));
                }
            }
            for n in &node_addrs {
                for (from, explicit) in &deps {
                    push(from.clone(), n.clone(), *explicit);
                }
                push(n.clone(), c.address(), false);
            }
            if node_addrs.is_empty() {
                for (from, explicit) in &deps {
                    push(from.clone(), c.address(), *explicit);
                }
            }
        }
        edges
    }

    /// `image_set.x` → every instance address of it (for_each aware).
    fn expand_block_address(&self, addr: &str) -> Vec<String> {
        if addr.contains('[') {
            return vec![addr.to_string()];
        }
        let (kind, name) = addr.split_once('.').unwrap_or((addr, ""));
        match kind {
            "image_set" => self
                .config
                .image_sets
                .iter()
                .filter(|s| s.name == name)
                .map(|s| s.address())
                .collect(),
            "cluster" => self
                .config
                .clusters
                .iter()
                .filter(|c| c.name == name)
                .map(|c| c.address())
                .collect(),
            _ => vec![addr.to_string()],
        }
    }
}

/// The expressions of a declaration with their attribute names and types.
fn decl_exprs(decl: &Decl) -> Vec<(String, &Expression, AttrType)> {
    let mut out = Vec::new();
    match &decl.body {
        DeclBody::Local(e) => out.push((decl.name.clone(), e, AttrType::Any)),
        DeclBody::Block(b) => {
            let s = schema::top_level(decl.kind);
            collect_exprs(&b.body, s, &mut out);
        }
    }
    out
}

fn collect_exprs<'a>(
    body: &'a Body,
    s: Option<&'static BodySchema>,
    out: &mut Vec<(String, &'a Expression, AttrType)>,
) {
    for st in body.iter() {
        match st {
            Structure::Attribute(a) => {
                let ty = s
                    .and_then(|s| s.attr(a.key.as_str()))
                    .map_or(AttrType::Any, |a| a.ty);
                out.push((a.key.as_str().to_string(), &a.value, ty));
            }
            Structure::Block(b) => {
                let inner = s.and_then(|s| s.block(b.ident.as_str())).map(|b| b.body);
                collect_exprs(&b.body, inner, out);
            }
        }
    }
}

/// True when the expression contains `.NAME` as a traversal attribute.
fn attr_after(expr: &Expression, name: &str) -> bool {
    let text = expr.to_string();
    text.contains(&format!(".{name}"))
}

fn cycle_path(graph: &DiGraph<usize, bool>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let start = scc
        .iter()
        .copied()
        .min_by_key(|n| graph[*n])
        .unwrap_or(scc[0]);
    let members: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
    // DFS from start staying inside the SCC until we return to start
    let mut path = vec![start];
    let mut visited = std::collections::HashSet::new();
    fn dfs(
        g: &DiGraph<usize, bool>,
        cur: NodeIndex,
        start: NodeIndex,
        members: &std::collections::HashSet<NodeIndex>,
        visited: &mut std::collections::HashSet<NodeIndex>,
        path: &mut Vec<NodeIndex>,
    ) -> bool {
        let mut next: Vec<NodeIndex> = g.neighbors(cur).filter(|n| members.contains(n)).collect();
        next.sort_by_key(|n| g[*n]);
        for n in next {
            if n == start {
                path.push(start);
                return true;
            }
            if visited.insert(n) {
                path.push(n);
                if dfs(g, n, start, members, visited, path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    visited.insert(start);
    dfs(graph, start, start, &members, &mut visited, &mut path);
    path
}

/// Whether `s` is a valid block name.
pub(crate) fn is_identifier_pub(s: &str) -> bool {
    is_identifier(s)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a bool".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn type_text(e: &Expression) -> String {
    let mut s = e.to_string();
    s.retain(|c| !c.is_whitespace());
    s
}

/// A variable's declared type.
#[derive(Debug, Clone, PartialEq)]
enum VarType {
    Any,
    String,
    Number,
    Bool,
    List(Box<VarType>),
    Map(Box<VarType>),
}

impl VarType {
    fn parse(s: &str) -> Option<VarType> {
        Some(match s {
            "any" => VarType::Any,
            "string" => VarType::String,
            "number" => VarType::Number,
            "bool" => VarType::Bool,
            "list" | "set" => VarType::List(Box::new(VarType::Any)),
            "map" | "object" => VarType::Map(Box::new(VarType::Any)),
            _ => {
                let (outer, inner) = s.strip_suffix(')')?.split_once('(')?;
                let inner = VarType::parse(inner)?;
                match outer {
                    "list" | "set" => VarType::List(Box::new(inner)),
                    "map" => VarType::Map(Box::new(inner)),
                    _ => return None,
                }
            }
        })
    }

    fn unknown(&self) -> Value {
        match self {
            VarType::List(_) => Value::Array(vec![Value::from(UNKNOWN)]),
            VarType::Map(_) => Value::Object(Map::new()),
            _ => Value::from(UNKNOWN),
        }
    }

    fn convert(&self, v: &Value) -> Result<Value, String> {
        match (self, v) {
            (VarType::Any, v) => Ok(v.clone()),
            (VarType::String, Value::String(_)) => Ok(v.clone()),
            (VarType::String, Value::Number(n)) => Ok(Value::from(n.to_string())),
            (VarType::String, Value::Bool(b)) => Ok(Value::from(b.to_string())),
            (VarType::Number, Value::Number(_)) => Ok(v.clone()),
            (VarType::Number, Value::String(s)) => s
                .parse::<f64>()
                .ok()
                .and_then(hcl::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("`{s}` is not a number")),
            (VarType::Bool, Value::Bool(_)) => Ok(v.clone()),
            (VarType::Bool, Value::String(s)) if s == "true" || s == "false" => {
                Ok(Value::Bool(s == "true"))
            }
            (VarType::List(t), Value::Array(items)) => items
                .iter()
                .map(|i| t.convert(i))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            (VarType::Map(t), Value::Object(m)) => {
                let mut out = Map::new();
                for (k, val) in m {
                    out.insert(k.clone(), t.convert(val)?);
                }
                Ok(Value::Object(out))
            }
            (_, other) => Err(format!("got {}", describe(other))),
        }
    }
}

/// `--var` and environment values: strings stay strings; other types are parsed as HCL.
fn raw_value(raw: &str, ty: &VarType) -> Value {
    match ty {
        VarType::String => Value::from(raw),
        _ => match hcl_edit::parser::parse_expr(raw) {
            Ok(e) => {
                let mut ctx = Context::new();
                arith::declare(&mut ctx);
                let (e, _) = arith::rewrite(&e);
                // a value that does not evaluate stays text: the type check names it
                e.evaluate(&ctx).unwrap_or_else(|_| Value::from(raw))
            }
            Err(_) => Value::from(raw),
        },
    }
}

/// Collects the strings and numbers of a sensitive value (never shown in a diagnostic).
fn secret_texts(v: &Value, out: &mut Vec<Secret>) {
    match v {
        Value::String(s) if !s.is_empty() && !s.contains(UNKNOWN) => out.push(Secret::new(s)),
        Value::Number(n) => out.push(Secret::new(n.to_string())),
        Value::Array(items) => items.iter().for_each(|i| secret_texts(i, out)),
        Value::Object(m) => m.values().for_each(|i| secret_texts(i, out)),
        _ => {}
    }
}

/// The shortest secret text [`redact`] looks for: shorter ones (a one-digit
/// number) would mask unrelated words; the messages that could quote a
/// secret already leave it out.
const REDACT_MIN: usize = 4;

/// Masks every secret text in a diagnostic (a last line of defence: the
/// messages that could quote a sensitive value already leave it out).
fn redact(d: &mut ConfigDiagnostic, secrets: &[Secret]) {
    for s in secrets {
        let s = s.expose();
        if s.chars().count() < REDACT_MIN {
            continue;
        }
        for text in [&mut d.message, &mut d.label] {
            if text.contains(s) {
                *text = text.replace(s, "(sensitive value)");
            }
        }
        if let Some(h) = &mut d.help {
            if h.contains(s) {
                *h = h.replace(s, "(sensitive value)");
            }
        }
    }
    for r in &mut d.related {
        redact(r, secrets);
    }
}

/// Parses `NAME=VALUE` from `--var`.
pub fn parse_var_flag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, v)) if !n.is_empty() && is_identifier(n) => Ok((n.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

/// Registries as a name → model map, in declaration order (helper for callers).
pub fn registries(config: &Config) -> &IndexMap<String, Registry> {
    &config.registries
}

/// The number literal around byte `at` of `text` when it is one the parser
/// refused because it does not fit a finite float (`1e400`): its span and
/// text. The parser itself only says "expected newline or eof" there.
fn out_of_range_number(text: &str, at: usize) -> Option<(Range<usize>, &str)> {
    let is_num = |b: u8| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-');
    let bytes = text.as_bytes();
    let mut start = at.min(bytes.len());
    while start > 0 && is_num(bytes[start - 1]) {
        start -= 1;
    }
    // a literal starts with a digit
    while start < bytes.len() && !bytes[start].is_ascii_digit() {
        start += 1;
    }
    let mut end = start;
    while end < bytes.len() && is_num(bytes[end]) {
        end += 1;
    }
    let literal = text.get(start..end)?;
    let value: f64 = literal.parse().ok()?;
    (!value.is_finite() && literal.contains(['e', 'E'])).then_some((start..end, literal))
}

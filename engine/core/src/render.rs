//! Rendering plans and apply reports: pure functions returning `String`s.
//!
//! Human output follows Terraform's layout (drift first, then actions with
//! `+ ~ - -/+`, then the summary line). The JSON form is documented in
//! `docs/plan-json.md` and versioned by [`JSON_FORMAT_VERSION`]. Neither form
//! ever contains a sensitive value, not even as a digest.
//!
//! Human output shows text that is not mirrorplan's own (provider details
//! and warnings, multi-line values, failure reasons) through
//! [`crate::term::escape_controls`]: its colour codes are the only escape
//! sequences it writes. Addresses escape themselves; one-line values are
//! JSON text, which escapes control characters. JSON output is escaped by
//! JSON itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};
use similar::TextDiff;

use crate::apply::ApplyReport;
use crate::plan::{Action, AttrChange, Plan, ResourceChange};
use crate::term::escape_controls as esc;
use crate::value::{is_multiline, AttrValue, SENSITIVE_MASK};

/// The version of the `--json` plan format.
pub const JSON_FORMAT_VERSION: &str = "1.2";

/// How to render.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Use ANSI colours (the binary decides: a terminal and no `NO_COLOR`).
    pub color: bool,
    /// The report is of `destroy`: "Destroy complete! Resources: N
    /// destroyed." as Terraform says it.
    pub destroy: bool,
}

const GREEN: &str = "32";
const YELLOW: &str = "33";
const RED: &str = "31";
const BOLD: &str = "1";

fn paint(text: &str, code: &str, options: RenderOptions) -> String {
    if options.color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

fn symbol(action: Action, options: RenderOptions) -> String {
    match action {
        Action::Create => paint("+", GREEN, options),
        Action::Update => paint("~", YELLOW, options),
        Action::Delete => paint("-", RED, options),
        Action::Replace => format!(
            "{}/{}",
            paint("-", RED, options),
            paint("+", GREEN, options)
        ),
        Action::Read => paint("<=", BOLD, options),
        Action::Import => paint("=", GREEN, options),
        Action::NoOp => " ".into(),
    }
}

/// One value on one line: JSON text, or the sensitive mask.
fn inline(value: Option<&AttrValue>, sensitive: bool) -> String {
    match (value, sensitive) {
        (_, true) => SENSITIVE_MASK.to_owned(),
        (None, false) | (Some(AttrValue::Null), false) => "null".to_owned(),
        (Some(v), false) => v.to_string(),
    }
}

fn text_of(value: Option<&AttrValue>) -> &str {
    match value {
        Some(AttrValue::String(s)) => s,
        _ => "",
    }
}

/// One attribute to show: a value change, an addition or a removal.
struct AttrLine<'a> {
    sym: &'a str,
    name: &'a str,
    before: Option<&'a AttrValue>,
    after: Option<&'a AttrValue>,
    sensitive: bool,
    suffix: &'a str,
}

/// Writes one attribute line, names padded to `width`; multi-line text
/// becomes a unified diff.
fn write_attr(out: &mut String, line: &AttrLine<'_>, width: usize) {
    let AttrLine {
        sym,
        name,
        before,
        after,
        sensitive,
        suffix,
    } = *line;
    let is_text = |v: Option<&AttrValue>| v.is_none_or(AttrValue::is_string);
    let multiline = !sensitive
        && (before.is_some_and(is_multiline) || after.is_some_and(is_multiline))
        && is_text(before)
        && is_text(after);
    if multiline {
        let _ = writeln!(out, "      {sym} {name}:{suffix}");
        let diff = TextDiff::from_lines(text_of(before), text_of(after));
        let unified = diff
            .unified_diff()
            .context_radius(3)
            .header("before", "after")
            .to_string();
        for l in unified.lines() {
            let _ = writeln!(out, "{}", format!("            {}", esc(l)).trim_end());
        }
        return;
    }
    let pad = " ".repeat(width.saturating_sub(name.len()));
    let text = match (before, after) {
        (None, a) => inline(a, sensitive),
        (b, None) => format!("{} -> null", inline(b, sensitive)),
        _ if sensitive => SENSITIVE_MASK.to_owned(),
        (b, a) => format!("{} -> {}", inline(b, false), inline(a, false)),
    };
    let _ = writeln!(out, "      {sym} {name}{pad} = {text}{suffix}");
}

fn header(c: &ResourceChange) -> &'static str {
    if c.replace_requested {
        return match c.action {
            Action::Create => "will be created, as requested with -replace",
            _ => "must be replaced, as requested: it will be re-applied",
        };
    }
    match c.action {
        Action::Import => "is already present, will be recorded",
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Replace => "must be replaced",
        Action::Delete => "will be destroyed",
        Action::Read => "will be updated in the state",
        Action::NoOp => "has no changes",
    }
}

fn values_with_sensitive(
    public: Option<&BTreeMap<String, AttrValue>>,
    sensitive: &BTreeMap<String, String>,
) -> BTreeMap<String, (Option<AttrValue>, bool)> {
    let mut all: BTreeMap<String, (Option<AttrValue>, bool)> = BTreeMap::new();
    for (k, v) in public.into_iter().flatten() {
        all.insert(k.clone(), (Some(v.clone()), false));
    }
    for (k, digest) in sensitive {
        all.insert(k.clone(), (Some(AttrValue::String(digest.clone())), true));
    }
    all
}

/// The heading of a change: what happens to it, including a move or a
/// hand-over of the same object to another instance.
pub(crate) fn change_header(c: &ResourceChange) -> (String, String) {
    match (&c.previous_address, &c.replaced_by) {
        (Some(prev), _) if c.action == Action::NoOp => {
            (prev.to_string(), format!("has moved to {}", c.address))
        }
        (_, Some(new)) if c.action == Action::Delete => (
            c.address.to_string(),
            format!(
                "will be replaced by {new} {}",
                if c.address.kind() == "node" {
                    "on the same node"
                } else {
                    "at the same place"
                }
            ),
        ),
        _ => (c.address.to_string(), header(c).to_string()),
    }
}

/// Lines under the heading for a move or a hand-over.
pub(crate) fn move_notes(c: &ResourceChange) -> Vec<String> {
    let mut notes = Vec::new();
    if let (Some(prev), false) = (&c.previous_address, c.action == Action::NoOp) {
        notes.push(format!("(moved from {prev})"));
    }
    if let Some(old) = &c.replaces {
        notes.push(format!(
            "takes over from {old}: what it writes is kept, then {old} is removed"
        ));
    }
    if let (Some(new), Action::Delete) = (&c.replaced_by, c.action) {
        notes.push(format!(
            "runs after {new} is in place, and removes only what {new} does not write"
        ));
    }
    notes
}

fn write_change(out: &mut String, c: &ResourceChange, options: RenderOptions) {
    let address = c.address.to_string();
    let sym = symbol(c.action, options);
    let (shown, heading) = change_header(c);
    let _ = writeln!(
        out,
        "  {} {} {}",
        paint("#", BOLD, options),
        paint(&shown, BOLD, options),
        paint(&heading, BOLD, options)
    );
    let _ = writeln!(out, "{sym:>3} {address}");
    for n in move_notes(c) {
        let _ = writeln!(out, "      # {}", esc(&n));
    }
    for w in &c.warnings {
        let _ = writeln!(
            out,
            "      # {} {}",
            paint("Warning:", BOLD, options),
            esc(w)
        );
    }
    for d in &c.details {
        let _ = writeln!(out, "      # {}", esc(d));
    }
    match c.action {
        Action::Create | Action::Delete => {
            let (attrs, adding) = if c.action == Action::Create {
                (
                    values_with_sensitive(c.after.as_ref(), &c.after_sensitive),
                    true,
                )
            } else {
                (
                    values_with_sensitive(c.before.as_ref(), &c.before_sensitive),
                    false,
                )
            };
            let width = attrs
                .iter()
                .filter(|(_, (v, _))| !v.as_ref().is_some_and(is_multiline))
                .map(|(k, _)| k.len())
                .max()
                .unwrap_or(0);
            let attr_sym = symbol(c.action, options);
            for (name, (value, sensitive)) in &attrs {
                if adding {
                    if !sensitive && value.as_ref().is_some_and(is_multiline) {
                        let _ = writeln!(out, "      {attr_sym} {name} = <<-EOT");
                        for line in text_of(value.as_ref()).lines() {
                            let _ = writeln!(
                                out,
                                "{}",
                                format!("            {}", esc(line)).trim_end()
                            );
                        }
                        let _ = writeln!(out, "        EOT");
                    } else {
                        let line = AttrLine {
                            sym: &attr_sym,
                            name,
                            before: None,
                            after: value.as_ref(),
                            sensitive: *sensitive,
                            suffix: "",
                        };
                        write_attr(out, &line, width);
                    }
                } else if !sensitive && value.as_ref().is_some_and(is_multiline) {
                    let lines = text_of(value.as_ref()).lines().count();
                    let _ = writeln!(out, "      {attr_sym} {name} = ({lines} lines) -> null");
                } else {
                    let line = AttrLine {
                        sym: &attr_sym,
                        name,
                        before: value.as_ref(),
                        after: None,
                        sensitive: *sensitive,
                        suffix: "",
                    };
                    write_attr(out, &line, width);
                }
            }
        }
        Action::Update | Action::Replace | Action::Read => {
            let changed = c.changed_attributes();
            write_attr_changes(out, &changed, &c.replace_because, options);
            let total = values_with_sensitive(c.after.as_ref(), &c.after_sensitive).len();
            let unchanged =
                total.saturating_sub(changed.iter().filter(|a| a.after.is_some()).count());
            match unchanged {
                0 => {}
                1 => out.push_str("        # (1 unchanged attribute hidden)\n"),
                n => {
                    let _ = writeln!(out, "        # ({n} unchanged attributes hidden)");
                }
            }
        }
        Action::NoOp | Action::Import => {}
    }
    out.push('\n');
}

fn write_attr_changes(
    out: &mut String,
    changes: &[AttrChange],
    replace_because: &[String],
    options: RenderOptions,
) {
    let width = changes
        .iter()
        .filter(|c| {
            !c.sensitive
                && !c.before.as_ref().is_some_and(is_multiline)
                && !c.after.as_ref().is_some_and(is_multiline)
        })
        .map(|c| c.attribute.len())
        .max()
        .unwrap_or(0);
    for a in changes {
        let action = match (&a.before, &a.after) {
            (None, _) => Action::Create,
            (_, None) => Action::Delete,
            _ => Action::Update,
        };
        let suffix = if replace_because.contains(&a.attribute) {
            format!(" {}", paint("# forces replacement", RED, options))
        } else {
            String::new()
        };
        let sym = symbol(action, options);
        let line = AttrLine {
            sym: &sym,
            name: &a.attribute,
            before: a.before.as_ref(),
            after: a.after.as_ref(),
            sensitive: a.sensitive,
            suffix: &suffix,
        };
        write_attr(out, &line, width);
    }
}

/// The human rendering of a plan.
pub fn render_plan(plan: &Plan, options: RenderOptions) -> String {
    let mut out = String::new();
    if !plan.drift.is_empty() {
        let _ = writeln!(
            out,
            "{}\n",
            paint(
                "Note: Objects have changed outside of mirrorplan",
                BOLD,
                options
            )
        );
        let _ = writeln!(
            out,
            "mirrorplan detected the following changes made outside of mirrorplan since the\nlast \"mirrorplan apply\":\n"
        );
        for d in &plan.drift {
            let address = d.address.to_string();
            if d.gone {
                let _ = writeln!(
                    out,
                    "  {} {} has been deleted",
                    paint("#", BOLD, options),
                    paint(&address, BOLD, options)
                );
                let _ = writeln!(out, "{:>3} {address}\n", symbol(Action::Delete, options));
            } else {
                let _ = writeln!(
                    out,
                    "  {} {} has changed",
                    paint("#", BOLD, options),
                    paint(&address, BOLD, options)
                );
                let _ = writeln!(out, "{:>3} {address}", symbol(Action::Update, options));
                write_attr_changes(&mut out, &d.changes, &[], options);
                out.push('\n');
            }
        }
    }

    if plan.refresh_only {
        if plan.drift.is_empty() {
            out.push_str("No changes. The state matches the objects that exist.\n");
        } else {
            out.push_str(
                "This is a refresh-only plan: applying it updates the state to match the\nobjects above. No objects will be changed.\n",
            );
        }
        return out;
    }

    let acting: Vec<&ResourceChange> = plan
        .changes
        .iter()
        .filter(|c| {
            c.action.needs_provider() || c.action == Action::Import || c.previous_address.is_some()
        })
        .collect();
    if acting.is_empty() {
        out.push_str(&paint(
            "No changes. Your infrastructure matches the configuration.",
            BOLD,
            options,
        ));
        out.push('\n');
        write_warnings(&mut out, plan, options);
        return out;
    }
    out.push_str("mirrorplan will perform the following actions:\n\n");
    for c in acting {
        write_change(&mut out, c, options);
    }
    let s = plan.summary();
    let import = if s.import > 0 {
        format!("{} to import, ", s.import)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{} {import}{} to add, {} to change, {} to destroy.",
        paint("Plan:", BOLD, options),
        s.add,
        s.change,
        s.destroy
    );
    let moved = plan.moves().count();
    if moved > 0 {
        let _ = writeln!(
            out,
            "{moved} instance(s) move to a new address in the state: nothing is done on them for the move."
        );
    }
    write_warnings(&mut out, plan, options);
    if !plan.targets.is_empty() {
        let targets: Vec<String> = plan.targets.iter().map(|t| t.to_string()).collect();
        let _ = writeln!(
            out,
            "\nWarning: this plan is limited to {} and what it depends on.",
            targets.join(", ")
        );
    }
    out
}

/// The plan's warnings, each after an empty line (also under "No changes":
/// e.g. credentials sent in clear are sent by every plan).
fn write_warnings(out: &mut String, plan: &Plan, options: RenderOptions) {
    for (address, w) in plan.warnings() {
        let _ = writeln!(
            out,
            "\n{} {address} {}",
            paint("Warning:", BOLD, options),
            esc(w)
        );
    }
}

fn masked_values(
    public: Option<&BTreeMap<String, AttrValue>>,
    sensitive: &BTreeMap<String, String>,
) -> Value {
    match public {
        None if sensitive.is_empty() => Value::Null,
        _ => {
            let mut map = serde_json::Map::new();
            for (k, v) in public.into_iter().flatten() {
                map.insert(k.clone(), v.clone());
            }
            for k in sensitive.keys() {
                map.insert(k.clone(), Value::String(SENSITIVE_MASK.into()));
            }
            Value::Object(map)
        }
    }
}

fn sensitive_flags(sensitive: &BTreeMap<String, String>) -> Value {
    Value::Object(
        sensitive
            .keys()
            .map(|k| (k.clone(), Value::Bool(true)))
            .collect(),
    )
}

fn masked(value: Option<&AttrValue>, sensitive: bool) -> Value {
    match (value, sensitive) {
        (None, _) => Value::Null,
        (Some(_), true) => Value::String(SENSITIVE_MASK.into()),
        (Some(v), false) => v.clone(),
    }
}

/// The machine-readable plan (`--json`), format [`JSON_FORMAT_VERSION`].
pub fn plan_json(plan: &Plan) -> Value {
    let drift: Vec<Value> = plan
        .drift
        .iter()
        .map(|d| {
            json!({
                "address": d.address.to_string(),
                "provider": d.provider,
                "gone": d.gone,
                "changes": d.changes.iter().map(|c| json!({
                    "attribute": c.attribute,
                    "before": masked(c.before.as_ref(), c.sensitive),
                    "after": masked(c.after.as_ref(), c.sensitive),
                    "sensitive": c.sensitive,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let changes: Vec<Value> = plan
        .changes
        .iter()
        .map(|c| {
            let mut v = json!({
                "address": c.address.to_string(),
                "kind": c.address.kind(),
                "provider": c.provider,
                "action": c.action.to_string(),
                "before": masked_values(c.before.as_ref(), &c.before_sensitive),
                "after": masked_values(c.after.as_ref(), &c.after_sensitive),
                "before_sensitive": sensitive_flags(&c.before_sensitive),
                "after_sensitive": sensitive_flags(&c.after_sensitive),
                "changed_attributes": c.changed_attributes().iter().map(|a| a.attribute.clone()).collect::<Vec<_>>(),
                "replace_because": c.replace_because,
                "details": c.details,
                "replace_requested": c.replace_requested,
                "dependencies": c.dependencies.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            });
            // like Terraform's plan JSON: only on moved instances
            for (key, value) in [
                ("previous_address", &c.previous_address),
                ("replaced_by", &c.replaced_by),
                ("replaces", &c.replaces),
            ] {
                if let (Some(a), Some(obj)) = (value, v.as_object_mut()) {
                    obj.insert(key.into(), json!(a.to_string()));
                }
            }
            v
        })
        .collect();
    let s = plan.summary();
    json!({
        "format_version": JSON_FORMAT_VERSION,
        "lineage": plan.lineage,
        "serial": plan.serial,
        "refresh_only": plan.refresh_only,
        "targets": plan.targets.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "drift": drift,
        "resource_changes": changes,
        "warnings": plan.warnings().map(|(a, w)| json!({"address": a.to_string(), "message": w})).collect::<Vec<_>>(),
        "summary": {"add": s.add, "change": s.change, "destroy": s.destroy, "read": s.read, "import": s.import},
    })
}

/// `value` with every object's keys in sorted order, whatever serde_json's
/// map implementation (`preserve_order` may be enabled by another crate).
fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> =
                map.into_iter().map(|(k, v)| (k, sort_keys(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// [`plan_json`] as pretty-printed text (keys sorted) with a final newline.
pub fn render_plan_json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(&sort_keys(plan_json(plan))).unwrap_or_default();
    text.push('\n');
    text
}

/// The closing summary of an apply.
pub fn render_apply_report(report: &ApplyReport, options: RenderOptions) -> String {
    let (mut added, mut changed, mut destroyed, mut read, mut imported) = (0, 0, 0, 0, 0);
    for (_, action) in &report.done {
        match action {
            Action::Create => added += 1,
            Action::Update => changed += 1,
            Action::Replace => {
                added += 1;
                destroyed += 1;
            }
            Action::Delete => destroyed += 1,
            Action::Read => read += 1,
            Action::Import => imported += 1,
            Action::NoOp => {}
        }
    }
    let mut counts = format!("Resources: {added} added, {changed} changed, {destroyed} destroyed");
    if imported > 0 {
        counts = format!("Resources: {imported} imported, {added} added, {changed} changed, {destroyed} destroyed");
    }
    if read > 0 {
        let _ = write!(counts, ", {read} updated in state");
    }
    if options.destroy {
        counts = format!("Resources: {destroyed} destroyed");
    }
    let verb = if options.destroy { "Destroy" } else { "Apply" };
    let mut out = String::new();
    if report.is_success() {
        let _ = writeln!(
            out,
            "{} {counts}.",
            paint(
                &format!("{verb} complete!"),
                &format!("{BOLD};{GREEN}"),
                options
            )
        );
        return out;
    }
    let title = if report.state_error.is_some() {
        format!("{verb} stopped: the state could not be saved!")
    } else if report.interrupted {
        format!("{verb} interrupted!")
    } else {
        format!("{verb} failed!")
    };
    let _ = writeln!(
        out,
        "{} {counts}; {} failed, {} skipped.",
        paint(&title, &format!("{BOLD};{RED}"), options),
        report.failed.len(),
        report.skipped.len()
    );
    if !report.failed.is_empty() {
        out.push_str("\nFailed:\n");
        for (a, reason) in &report.failed {
            let _ = writeln!(out, "  - {a}: {}", esc(reason));
        }
    }
    if !report.skipped.is_empty() {
        out.push_str("\nSkipped:\n");
        for (a, reason) in &report.skipped {
            let _ = writeln!(out, "  - {a}: {}", esc(reason));
        }
    }
    out
}

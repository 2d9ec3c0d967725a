//! The Markdown rendering of a plan, for a merge-request comment
//! (`plan --format markdown`, `show PLANFILE --format markdown`): a pure
//! function of the [`Plan`].
//!
//! Layout: a title with the counts, then drift (always first, expanded),
//! then one collapsible `<details>` section per image set (images to push,
//! blob and byte totals) and per cluster (node file diffs), then anything
//! else. Sensitive values never appear, not even as digests: they are shown
//! as `(sensitive value)`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use similar::TextDiff;

use crate::plan::{Action, AttrChange, Plan, ResourceChange};
use crate::value::{is_multiline, AttrValue, SENSITIVE_MASK};

/// Prefix of the node provider's file attributes (`file:/etc/...`).
const FILE_PREFIX: &str = "file:";

/// `1536` → `1.5 KiB` (binary units, one decimal; bytes as they are).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Text safe inside a Markdown table cell or inline code.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('\n', " ")
        .replace('`', "'")
}

fn inline(value: Option<&AttrValue>, sensitive: bool) -> String {
    match (value, sensitive) {
        (None, _) => "null".into(),
        (Some(_), true) => SENSITIVE_MASK.into(),
        (Some(v), false) if is_multiline(v) => {
            format!("({} lines)", v.as_str().map_or(0, |s| s.lines().count()))
        }
        (Some(v), false) => v.to_string(),
    }
}

fn text_of(value: Option<&AttrValue>) -> &str {
    match value {
        Some(AttrValue::String(s)) => s,
        _ => "",
    }
}

/// One attribute change: a fenced unified diff for multi-line text, a
/// bullet otherwise.
fn write_attr_change(out: &mut String, a: &AttrChange) {
    let name = a
        .attribute
        .strip_prefix(FILE_PREFIX)
        .unwrap_or(&a.attribute);
    // a file that does not exist reads as null: treat it as absent
    let a = &AttrChange {
        attribute: a.attribute.clone(),
        before: a.before.clone().filter(|v| !v.is_null()),
        after: a.after.clone().filter(|v| !v.is_null()),
        sensitive: a.sensitive,
    };
    let is_text = |v: Option<&AttrValue>| v.is_none_or(AttrValue::is_string);
    let multiline = !a.sensitive
        && (a.before.as_ref().is_some_and(is_multiline)
            || a.after.as_ref().is_some_and(is_multiline)
            || a.attribute.starts_with(FILE_PREFIX))
        && is_text(a.before.as_ref())
        && is_text(a.after.as_ref());
    let what = match (&a.before, &a.after) {
        (None, _) => "added",
        (_, None) => "removed",
        _ => "changed",
    };
    if multiline {
        let _ = writeln!(out, "`{}` {what}:\n", cell(name));
        let diff = TextDiff::from_lines(text_of(a.before.as_ref()), text_of(a.after.as_ref()));
        let unified = diff
            .unified_diff()
            .context_radius(3)
            .header(
                if a.before.is_some() {
                    name
                } else {
                    "/dev/null"
                },
                if a.after.is_some() { name } else { "/dev/null" },
            )
            .to_string();
        out.push_str("```diff\n");
        for l in unified.lines() {
            let _ = writeln!(out, "{}", l.trim_end());
        }
        out.push_str("```\n\n");
    } else if a.sensitive {
        let _ = writeln!(out, "- `{}` {what}: {SENSITIVE_MASK}", cell(name));
    } else {
        let _ = writeln!(
            out,
            "- `{}`: `{}` → `{}`",
            cell(name),
            cell(&inline(a.before.as_ref(), false)),
            cell(&inline(a.after.as_ref(), false))
        );
    }
}

/// The attribute changes of a change, as a create/delete shows them too.
fn changes_of(c: &ResourceChange) -> Vec<AttrChange> {
    c.changed_attributes()
        .into_iter()
        .map(|mut a| {
            if a.sensitive {
                // only a mask is shown; the digests must not leak into the comment
                a.before = a.before.map(|_| AttrValue::String(SENSITIVE_MASK.into()));
                a.after = a.after.map(|_| AttrValue::String(SENSITIVE_MASK.into()));
            }
            a
        })
        .collect()
}

fn attr_u64(c: &ResourceChange, name: &str) -> u64 {
    c.after
        .as_ref()
        .or(c.before.as_ref())
        .and_then(|a| a.get(name))
        .and_then(AttrValue::as_u64)
        .unwrap_or(0)
}

fn attr_str<'a>(c: &'a ResourceChange, name: &str) -> Option<&'a str> {
    c.after
        .as_ref()
        .or(c.before.as_ref())
        .and_then(|a| a.get(name))
        .and_then(AttrValue::as_str)
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Delete => "destroy",
        Action::Read => "update state",
        Action::Import => "record (already present)",
        Action::NoOp => "no change",
    }
}

fn write_drift(out: &mut String, plan: &Plan) {
    if plan.drift.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<details open><summary><b>Drift</b>: {} changed outside mirrorplan</summary>\n",
        plural(plan.drift.len(), "object", "objects")
    );
    for d in &plan.drift {
        if d.gone {
            let _ = writeln!(
                out,
                "- `{}` **has been deleted**",
                cell(&d.address.to_string())
            );
        } else {
            let names: Vec<String> = d
                .changes
                .iter()
                .map(|a| {
                    format!(
                        "`{}`",
                        cell(
                            a.attribute
                                .strip_prefix(FILE_PREFIX)
                                .unwrap_or(&a.attribute)
                        )
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "- `{}` has changed: {}",
                cell(&d.address.to_string()),
                names.join(", ")
            );
        }
    }
    out.push('\n');
    for d in plan
        .drift
        .iter()
        .filter(|d| !d.gone && !d.changes.is_empty())
    {
        let _ = writeln!(out, "**`{}`**\n", cell(&d.address.to_string()));
        for a in &d.changes {
            let mut a = a.clone();
            if a.sensitive {
                a.before = a.before.map(|_| AttrValue::String(SENSITIVE_MASK.into()));
                a.after = a.after.map(|_| AttrValue::String(SENSITIVE_MASK.into()));
            }
            write_attr_change(out, &a);
        }
        out.push('\n');
    }
    out.push_str("</details>\n\n");
}

fn write_image_set(out: &mut String, name: &str, changes: &[&ResourceChange]) {
    let acting: Vec<&&ResourceChange> = changes
        .iter()
        .filter(|c| c.action.needs_provider())
        .collect();
    let pushing: Vec<&&&ResourceChange> = acting
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Update | Action::Replace))
        .collect();
    let blobs: u64 = pushing.iter().map(|c| attr_u64(c, "blobs")).sum();
    let bytes: u64 = pushing.iter().map(|c| attr_u64(c, "bytes")).sum();
    let removing = acting.len() - pushing.len();
    let mut summary = format!(
        "{} to push, {}, {}",
        plural(pushing.len(), "image", "images"),
        plural(blobs as usize, "blob", "blobs"),
        human_bytes(bytes)
    );
    if removing > 0 {
        let _ = write!(summary, ", {removing} to remove");
    }
    let _ = write!(summary, " ({} unchanged)", changes.len() - acting.len());
    let _ = writeln!(
        out,
        "<details><summary><b>Image set <code>{}</code></b>: {summary}</summary>\n",
        cell(name)
    );
    if acting.is_empty() {
        out.push_str("No changes.\n\n</details>\n\n");
        return;
    }
    out.push_str("| image | action | digest | blobs | bytes |\n|---|---|---|---:|---:|\n");
    for c in &acting {
        let key = c.address.key().unwrap_or_default();
        let digest = attr_str(c, "digest").unwrap_or("");
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} | {} |",
            cell(key),
            action_word(c.action),
            cell(digest),
            attr_u64(c, "blobs"),
            human_bytes(attr_u64(c, "bytes"))
        );
        for d in &c.details {
            if d.starts_with("warning") || d.starts_with("platform filter") {
                let _ = writeln!(out, "|  | ⚠ {} |  |  |  |", cell(d));
            }
        }
    }
    out.push_str("\n</details>\n\n");
}

fn write_cluster(out: &mut String, name: &str, changes: &[&ResourceChange]) {
    let nodes: Vec<&&ResourceChange> = changes.iter().filter(|c| c.provider == "node").collect();
    let acting_nodes: Vec<&&&ResourceChange> =
        nodes.iter().filter(|c| c.action.needs_provider()).collect();
    let check = changes
        .iter()
        .find(|c| c.provider == "cluster" && c.action.needs_provider());
    // a cluster whose cluster software writes its nodes: one file instead
    let file = changes.iter().find(|c| c.provider == "cluster_config");
    let acting_file = file.filter(|c| c.action.needs_provider());
    let mut summary = match file {
        Some(_) if acting_file.is_some() => {
            "its cluster configuration file to change (then its update command)".to_string()
        }
        Some(_) => "no change to its cluster configuration file".to_string(),
        None => format!(
            "{} of {} to change",
            acting_nodes.len(),
            plural(nodes.len(), "node", "nodes")
        ),
    };
    if check.is_some() {
        summary.push_str(", then a pull-through check");
    }
    let _ = writeln!(
        out,
        "<details><summary><b>Cluster <code>{}</code></b>: {summary}</summary>\n",
        cell(name)
    );
    if acting_nodes.is_empty() && check.is_none() && acting_file.is_none() {
        out.push_str("No changes.\n\n</details>\n\n");
        return;
    }
    if let Some(c) = acting_file {
        let _ = writeln!(out, "#### Cluster configuration file\n");
        out.push_str(&cluster_file_body(c));
    }
    // nodes with the very same changes are shown once
    let mut groups: Vec<(Vec<String>, String)> = Vec::new();
    for c in acting_nodes {
        let key = format!("`{}`", cell(c.address.key().unwrap_or_default()));
        let body = node_body(c);
        match groups.iter_mut().find(|(_, b)| *b == body) {
            Some((keys, _)) => keys.push(key),
            None => groups.push((vec![key], body)),
        }
    }
    for (keys, body) in groups {
        let _ = writeln!(out, "#### {}\n", keys.join(", "));
        out.push_str(&body);
    }
    if let Some(c) = check {
        for d in &c.details {
            let _ = writeln!(out, "- {}", cell(d));
        }
        out.push('\n');
    }
    out.push_str("</details>\n\n");
}

/// A cluster configuration file's change: action, the provider's notes
/// (its YAML diffs as `diff` blocks) and, for an update, the attributes
/// the diffs do not show (the CA contents it names).
fn cluster_file_body(c: &ResourceChange) -> String {
    let mut out = format!("Action: **{}**\n\n", action_word(c.action));
    for d in &c.details {
        match d.split_once('\n') {
            // `KEY in FILE:` then the unified diff, indented under it
            Some((head, diff)) => {
                let _ = writeln!(out, "{}\n\n```diff", cell(head));
                for line in diff.lines() {
                    let _ = writeln!(out, "{}", line.strip_prefix("        ").unwrap_or(line));
                }
                out.push_str("```\n\n");
            }
            None => {
                let _ = writeln!(out, "> {d}\n");
            }
        }
    }
    if c.action != Action::Create && c.action != Action::Delete {
        for a in changes_of(c)
            .iter()
            .filter(|a| a.attribute != "registryMirrors" && a.attribute != "gcrKeyPath")
        {
            write_attr_change(&mut out, a);
        }
    }
    out.push('\n');
    out
}

/// One node's changes: action, provider notes, file diffs, other attributes.
fn node_body(c: &ResourceChange) -> String {
    let mut out = format!("Action: **{}**\n\n", action_word(c.action));
    for d in &c.details {
        let _ = writeln!(out, "> {}", d.replace('\n', " "));
    }
    if !c.details.is_empty() {
        out.push('\n');
    }
    let all = changes_of(c);
    let files: Vec<&AttrChange> = all
        .iter()
        .filter(|a| a.attribute.starts_with(FILE_PREFIX))
        .collect();
    for a in &files {
        write_attr_change(&mut out, a);
    }
    let others: Vec<&AttrChange> = all
        .iter()
        .filter(|a| !a.attribute.starts_with(FILE_PREFIX))
        .collect();
    if c.action != Action::Create && c.action != Action::Delete {
        for a in &others {
            write_attr_change(&mut out, a);
        }
    }
    if files.is_empty() && others.is_empty() {
        out.push_str("No file changes.\n");
    }
    out.push('\n');
    out
}

/// The Markdown summary of a plan (drift first, then image sets and
/// clusters in collapsible sections), for a merge-request comment.
pub fn render_plan_markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let s = plan.summary();
    if plan.refresh_only {
        let _ = writeln!(
            out,
            "### mirrorplan drift check: {}\n",
            if plan.drift.is_empty() {
                "no drift".to_string()
            } else {
                plural(plan.drift.len(), "object changed", "objects changed")
            }
        );
    } else {
        let _ = writeln!(
            out,
            "### mirrorplan plan: {} to add, {} to change, {} to destroy\n",
            s.add, s.change, s.destroy
        );
    }
    if !plan.drift.is_empty() {
        let _ = writeln!(
            out,
            "> **Warning:** {} changed outside mirrorplan since the last apply (see Drift).\n",
            plural(plan.drift.len(), "object", "objects")
        );
    }
    for (address, w) in plan.warnings() {
        let _ = writeln!(
            out,
            "> **Warning:** `{}` {}\n",
            cell(&address.to_string()),
            w.replace('\n', " ")
        );
    }
    if !plan.targets.is_empty() {
        let t: Vec<String> = plan
            .targets
            .iter()
            .map(|t| format!("`{}`", cell(&t.to_string())))
            .collect();
        let _ = writeln!(
            out,
            "> Limited to {} and what it depends on.\n",
            t.join(", ")
        );
    }

    // counts per kind
    let mut kinds: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for c in &plan.changes {
        let row = kinds.entry(c.address.kind()).or_default();
        match c.action {
            Action::Create => row[0] += 1,
            Action::Update => row[1] += 1,
            Action::Replace => {
                row[0] += 1;
                row[2] += 1
            }
            Action::Delete => row[2] += 1,
            Action::NoOp | Action::Read | Action::Import => row[3] += 1,
        }
    }
    if !kinds.is_empty() {
        out.push_str("| kind | add | change | destroy | unchanged |\n|---|---:|---:|---:|---:|\n");
        for (kind, r) in &kinds {
            let _ = writeln!(
                out,
                "| {kind} | {} | {} | {} | {} |",
                r[0], r[1], r[2], r[3]
            );
        }
        out.push('\n');
    }

    // moves and hand-overs of one object between instances, in one list
    let moved: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.previous_address.is_some() || c.replaced_by.is_some())
        .map(|c| {
            let (shown, heading) = crate::render::change_header(c);
            let mut line = format!("- `{}` {}", cell(&shown), cell(&heading));
            if c.action != Action::NoOp && c.replaced_by.is_none() {
                let _ = write!(
                    line,
                    " ({} at `{}`)",
                    action_word(c.action),
                    cell(&c.address.to_string())
                );
            }
            line
        })
        .collect();
    if !moved.is_empty() {
        out.push_str("**Moves and hand-overs** (a move only rewrites the state):\n\n");
        for line in moved {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }

    write_drift(&mut out, plan);
    if plan.refresh_only {
        if plan.drift.is_empty() {
            out.push_str("The state matches the objects that exist.\n");
        } else {
            out.push_str(
                "Applying this refresh-only plan only updates the state; no object is changed.\n",
            );
        }
        return out;
    }

    let mut sets: BTreeMap<&str, Vec<&ResourceChange>> = BTreeMap::new();
    let mut clusters: BTreeMap<&str, Vec<&ResourceChange>> = BTreeMap::new();
    let mut others: Vec<&ResourceChange> = Vec::new();
    for c in &plan.changes {
        match c.address.kind() {
            "image" => sets.entry(c.address.name()).or_default().push(c),
            "node" | "cluster" | "cluster_config" => {
                clusters.entry(c.address.name()).or_default().push(c)
            }
            // the set's own barrier instance: its images are the summary
            "image_set" => {}
            _ => others.push(c),
        }
    }
    for (name, changes) in &sets {
        write_image_set(&mut out, name, changes);
    }
    for (name, changes) in &clusters {
        write_cluster(&mut out, name, changes);
    }
    let others: Vec<&&ResourceChange> = others
        .iter()
        .filter(|c| c.action.needs_provider())
        .collect();
    if !others.is_empty() {
        out.push_str("<details><summary><b>Other changes</b></summary>\n\n");
        for c in others {
            let _ = writeln!(
                out,
                "- `{}`: {}",
                cell(&c.address.to_string()),
                action_word(c.action)
            );
        }
        out.push_str("\n</details>\n\n");
    }
    if !plan.has_changes() {
        out.push_str("No changes. The infrastructure matches the configuration.\n");
    }
    // it has no escape sequences of its own: every one is someone else's
    match crate::term::escape_controls(&out) {
        std::borrow::Cow::Borrowed(_) => out,
        std::borrow::Cow::Owned(clean) => clean,
    }
}

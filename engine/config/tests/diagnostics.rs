//! Each mistake the language checks for, introduced into a copy of the
//! example configuration, gives its diagnostic at the right line and column.
//! The rendered output (miette's graphical report, no colour) is snapshotted.

use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme};
use mirrorplan_config::{load_sources, DiagKind, LoadOptions, Loaded, Mode, SourceFile};

const EXAMPLE: &str = include_str!("../../../examples/anthos/main.hcl");

fn load_text(text: &str, mode: Mode) -> Loaded {
    let opts = LoadOptions {
        mode,
        ..LoadOptions::default()
    };
    load_sources(
        Path::new("/config"),
        vec![SourceFile::new("main.hcl", text.to_string())],
        &opts,
    )
}

/// Applies `(find, replace)` to the example; the find text must occur.
fn mutate(edits: &[(&str, &str)]) -> String {
    let mut text = EXAMPLE.to_string();
    for (find, replace) in edits {
        assert!(
            text.contains(find),
            "the example no longer contains {find:?}"
        );
        text = text.replacen(find, replace, 1);
    }
    text
}

/// `LINE:column` in a block appended to the example after one blank line,
/// `line` lines below its first (so the tests follow the example's length).
fn appended_at(line: usize, column: usize) -> String {
    format!("{}:{column}", EXAMPLE.lines().count() + 2 + line)
}

fn render(loaded: &Loaded) -> String {
    let handler =
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(100);
    let mut out = String::new();
    for d in &loaded.diagnostics {
        let _ = handler.render_report(&mut out, d);
        out.push('\n');
    }
    out
}

/// Checks that exactly one diagnostic of `kind` is reported at `line:col` and snapshots the rendering.
fn check(name: &str, text: &str, mode: Mode, kind: DiagKind, location: &str) {
    let loaded = load_text(text, mode);
    let kinds: Vec<(DiagKind, Option<String>)> = loaded
        .diagnostics
        .iter()
        .map(|d| (d.kind, d.location()))
        .collect();
    assert_eq!(
        kinds,
        vec![(kind, Some(format!("main.hcl:{location}")))],
        "{name}: unexpected diagnostics:\n{}",
        render(&loaded)
    );
    insta::assert_snapshot!(name, render(&loaded));
}

#[test]
fn the_example_validates() {
    let loaded = load_text(EXAMPLE, Mode::Validate);
    assert!(loaded.is_ok(), "{}", render(&loaded));
    assert_eq!(loaded.config.registries.len(), 1);
    assert_eq!(loaded.config.image_sets.len(), 2);
    assert_eq!(loaded.config.clusters.len(), 2);
    let admin = &loaded.config.clusters[0];
    assert_eq!(admin.name, "admin1");
    assert_eq!(admin.nodes.len(), 2);
    assert_eq!(admin.nodes[1].key(), "cp2.admin1.example:2222");
    assert_eq!(admin.mirrors[0].hosts, vec!["somehost.io", "otherhost.io"]);
    assert_eq!(
        loaded.config.image_sets[0]
            .bundle
            .as_ref()
            .map(|b| b.display().to_string()),
        Some("/config/bundles/bmpackages_1.16.0.tar.xz".to_string())
    );
    assert_eq!(
        loaded.config.outputs["mirror_endpoint"].value,
        serde_json::json!("https://mirror.example:5000")
    );
}

#[test]
fn unknown_block() {
    let text = mutate(&[("registry \"mirror\" {", "registy \"mirror\" {")]);
    // the registry is gone too, so references to it fail: only look at the first
    let loaded = load_text(&text, Mode::Validate);
    let first = &loaded.diagnostics[0];
    assert_eq!(first.kind, DiagKind::UnknownBlock);
    assert_eq!(first.location().as_deref(), Some("main.hcl:15:1"));
    assert_eq!(first.help.as_deref(), Some("did you mean `registry`?"));
}

#[test]
fn unknown_attribute() {
    let text = mutate(&[("namespace = \"test", "namespase = \"test")]);
    check(
        "unknown_attribute",
        &text,
        Mode::Validate,
        DiagKind::UnknownAttribute,
        "17:3",
    );
}

#[test]
fn wrong_type() {
    let text = mutate(&[(
        "max_unavailable = 1\n  }\n  depends_on = [image_set.anthos]",
        "max_unavailable = \"one\"\n  }\n  depends_on = [image_set.anthos]",
    )]);
    check(
        "wrong_type",
        &text,
        Mode::Validate,
        DiagKind::WrongType,
        "52:23",
    );
}

#[test]
fn missing_required_attribute() {
    let text = mutate(&[("  endpoint  = \"https://mirror.example:5000\"\n", "")]);
    check(
        "missing_required",
        &text,
        Mode::Validate,
        DiagKind::MissingRequired,
        "15:10",
    );
}

#[test]
fn duplicate_names() {
    let text = format!("{EXAMPLE}\nimage_set \"extras\" {{\n  registry = registry.mirror\n  images   = [\"gcr.io/x/y:1\"]\n}}\n");
    check(
        "duplicate",
        &text,
        Mode::Validate,
        DiagKind::Duplicate,
        &appended_at(0, 11),
    );
}

#[test]
fn undefined_variable() {
    let text = mutate(&[(
        "password  = var.mirror_password",
        "password  = var.mirror_pasword",
    )]);
    check(
        "undefined_variable",
        &text,
        Mode::Validate,
        DiagKind::UndefinedReference,
        "20:15",
    );
}

#[test]
fn undefined_local() {
    let text = mutate(&[("${local.bundle_version}", "${local.bundle}")]);
    check(
        "undefined_local",
        &text,
        Mode::Validate,
        DiagKind::UndefinedReference,
        "25:36",
    );
}

#[test]
fn undefined_block_reference() {
    let text = mutate(&[(
        "depends_on = [image_set.anthos]\n}",
        "depends_on = [image_set.antos]\n}",
    )]);
    check(
        "undefined_block",
        &text,
        Mode::Validate,
        DiagKind::UndefinedReference,
        "54:17",
    );
}

#[test]
fn reference_to_the_wrong_kind() {
    let text = mutate(&[(
        "image_set \"extras\" {\n  registry  = registry.mirror",
        "image_set \"extras\" {\n  registry  = cluster.admin1",
    )]);
    check(
        "wrong_reference_kind",
        &text,
        Mode::Validate,
        DiagKind::WrongReferenceKind,
        "29:15",
    );
}

#[test]
fn cycle_prints_the_whole_path() {
    let text = mutate(&[(
        "depends_on = [image_set.anthos]\n}",
        "depends_on = [image_set.anthos, cluster.user1]\n}",
    )]);
    check("cycle", &text, Mode::Validate, DiagKind::Cycle, "34:9");
    let loaded = load_text(&text, Mode::Validate);
    assert_eq!(
        loaded.diagnostics[0].message,
        "dependency cycle: cluster.admin1 -> cluster.user1 -> cluster.admin1"
    );
}

#[test]
fn invalid_endpoint() {
    let text = mutate(&[(
        "https://mirror.example:5000",
        "https://mirror.example:500000",
    )]);
    check(
        "invalid_endpoint",
        &text,
        Mode::Validate,
        DiagKind::InvalidEndpoint,
        "16:15",
    );
}

#[test]
fn invalid_host() {
    let text = mutate(&[("cp2.admin1.example:2222", "cp2_admin1.example:2222")]);
    check(
        "invalid_host",
        &text,
        Mode::Validate,
        DiagKind::InvalidHost,
        "35:34",
    );
}

#[test]
fn invalid_platform() {
    let text = mutate(&[("linux/amd64", "linux/amd46")]);
    check(
        "invalid_platform",
        &text,
        Mode::Validate,
        DiagKind::InvalidPlatform,
        "31:16",
    );
}

#[test]
fn two_sources_mapped_to_one_mirror_tag() {
    let text = mutate(&[(
        "\"somehost.io/team/app:2.3\",",
        "\"somehost.io/team/app:2.3\", \"quay.io/team/app:2.3\",",
    )]);
    check(
        "mirror_conflict",
        &text,
        Mode::Validate,
        DiagKind::MirrorConflict,
        "30:44",
    );
}

#[test]
fn variable_without_value_only_from_plan_on() {
    assert!(load_text(EXAMPLE, Mode::Validate).is_ok());
    check(
        "missing_variable",
        EXAMPLE,
        Mode::Plan,
        DiagKind::MissingVariable,
        "6:10",
    );
}

#[test]
fn syntax_error() {
    let text = mutate(&[("bundle_version = \"1.16.0\"", "bundle_version = \"1.16.0")]);
    let loaded = load_text(&text, Mode::Validate);
    assert_eq!(loaded.diagnostics.len(), 1, "{}", render(&loaded));
    assert_eq!(loaded.diagnostics[0].kind, DiagKind::Syntax);
}

#[test]
fn sensitive_output() {
    let text = format!("{EXAMPLE}\noutput \"pw\" {{\n  value = var.mirror_password\n}}\n");
    check(
        "sensitive_output",
        &text,
        Mode::Validate,
        DiagKind::SensitiveOutput,
        &appended_at(1, 11),
    );
}

#[test]
fn all_problems_are_reported_together() {
    let text = mutate(&[
        ("namespace = \"test", "namespase = \"test"),
        ("linux/amd64", "linux/amd46"),
        ("cp2.admin1.example:2222", "cp2_admin1.example:2222"),
    ]);
    let loaded = load_text(&text, Mode::Validate);
    let kinds: Vec<DiagKind> = loaded.diagnostics.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        vec![
            DiagKind::UnknownAttribute,
            DiagKind::InvalidPlatform,
            DiagKind::InvalidHost
        ]
    );
}

#[test]
fn variables_from_flags_files_and_environment() {
    let dir = std::env::temp_dir().join(format!("mp-vars-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    let var_file = dir.join("vars.hcl");
    std::fs::write(&var_file, "n = 3\ns = \"from-file\"\n").ok();
    let text = "variable \"s\" {\n  type = string\n  default = \"dflt\"\n}\nvariable \"n\" {\n  type = number\n  validation {\n    condition = var.n > 1\n    error_message = \"n must be more than 1\"\n  }\n}\noutput \"o\" {\n  value = \"${var.s}-${var.n}\"\n}\n";
    let load = |opts: LoadOptions| {
        load_sources(
            Path::new("/config"),
            vec![SourceFile::new("main.hcl", text)],
            &LoadOptions {
                mode: Mode::Plan,
                ..opts
            },
        )
    };
    let l = load(LoadOptions {
        env_vars: vec![("n".into(), "2".into())],
        ..LoadOptions::default()
    });
    assert!(l.is_ok(), "{}", render(&l));
    assert_eq!(l.config.outputs["o"].value, serde_json::json!("dflt-2"));
    let l = load(LoadOptions {
        env_vars: vec![("n".into(), "2".into())],
        var_files: vec![var_file.clone()],
        ..LoadOptions::default()
    });
    assert_eq!(
        l.config.outputs["o"].value,
        serde_json::json!("from-file-3")
    );
    let l = load(LoadOptions {
        var_files: vec![var_file],
        vars: vec![("s".into(), "flag".into())],
        ..LoadOptions::default()
    });
    assert_eq!(l.config.outputs["o"].value, serde_json::json!("flag-3"));
    let l = load(LoadOptions {
        vars: vec![("n".into(), "1".into())],
        ..LoadOptions::default()
    });
    assert_eq!(
        l.diagnostics.iter().map(|d| d.kind).collect::<Vec<_>>(),
        vec![DiagKind::ValidationFailed]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn for_each_expands_instances() {
    let text = "registry \"r\" {\n  endpoint = \"oci:./store\"\n}\nimage_set \"s\" {\n  for_each = toset([\"a\", \"b\"])\n  registry = registry.r\n  images   = [\"gcr.io/${each.key}/x:1\"]\n}\ncluster \"c\" {\n  for_each = { one = \"local:./n1\", two = \"local:./n2\" }\n  nodes = [each.value]\n  registry_mirror {\n    registry = registry.r\n  }\n  depends_on = [image_set.s]\n}\n";
    let l = load_text(text, Mode::Validate);
    assert!(l.is_ok(), "{}", render(&l));
    let sets: Vec<String> = l.config.image_sets.iter().map(|s| s.address()).collect();
    assert_eq!(sets, vec!["image_set.s[\"a\"]", "image_set.s[\"b\"]"]);
    assert_eq!(l.config.image_sets[1].images, vec!["gcr.io/b/x:1"]);
    let clusters: Vec<String> = l.config.clusters.iter().map(|c| c.address()).collect();
    assert_eq!(clusters, vec!["cluster.c[\"one\"]", "cluster.c[\"two\"]"]);
    let each_outside = "registry \"r\" {\n  endpoint = \"oci:${each.key}\"\n}\n";
    let l = load_text(each_outside, Mode::Validate);
    assert_eq!(
        l.diagnostics.iter().map(|d| d.kind).collect::<Vec<_>>(),
        vec![DiagKind::UndefinedReference]
    );
}

#[test]
fn graph_has_registry_image_set_cluster_and_depends_on_edges() {
    let l = load_text(EXAMPLE, Mode::Validate);
    let dot = mirrorplan_config::graph::to_dot(&l.config);
    assert!(
        dot.contains("\"registry.mirror\" -> \"image_set.anthos\";"),
        "{dot}"
    );
    assert!(
        dot.contains("\"registry.mirror\" -> \"image_set.extras\";"),
        "{dot}"
    );
    // admin1 and user1 use cluster_config: their file instances, not nodes
    assert!(
        dot.contains("\"image_set.extras\" -> \"cluster_config.admin1\";"),
        "{dot}"
    );
    assert!(dot.contains("\"image_set.anthos\" -> \"cluster_config.admin1\" [style = dashed, label = \"depends_on\"];"), "{dot}");
    assert!(
        dot.contains("\"cluster_config.admin1\" -> \"cluster.admin1\";"),
        "{dot}"
    );
    assert!(
        dot.contains("\"cluster_config.admin1\" [shape = note];"),
        "{dot}"
    );
    assert!(dot.contains("\"cluster.admin1\" -> \"cluster_config.user1\" [style = dashed, label = \"depends_on\"];"), "{dot}");
    assert!(!dot.contains("node.admin1"), "{dot}");
    assert!(!dot.contains("node.user1"), "{dot}");
}

/// Found by fuzzing: a syntax error that hcl-edit places inside a
/// multi-byte character panicked (slicing the text there).
#[test]
fn syntax_error_inside_a_multibyte_character() {
    let text = "vle \"region\" {\n  type =z\n\nvariabl1 \u{796}ounu_\" {\n  ty = npetring\n}ariable \"region\" {\n  type =z\n\nvariabl1 \u{796}ounu_\" {\n  ty = npetring\n}\n\nvariable \u{796}";
    let loaded = load_text(text, Mode::Validate);
    assert!(
        loaded
            .diagnostics
            .iter()
            .any(|d| d.kind == DiagKind::Syntax),
        "{}",
        render(&loaded)
    );
}

/// A number literal too large for a float (`1e400`) is named as such, at
/// the literal, not "expected newline or eof" after its mantissa.
#[test]
fn an_out_of_range_number_literal_is_named() {
    let loaded = load_text("locals {\n  x = 2\n  y = 1e400 * 2\n}\n", Mode::Validate);
    let d = loaded
        .diagnostics
        .iter()
        .find(|d| d.kind == DiagKind::Syntax)
        .unwrap_or_else(|| panic!("{}", render(&loaded)));
    assert_eq!(
        d.message,
        "the number 1e400 is out of range",
        "{}",
        render(&loaded)
    );
    assert!(
        render(&loaded).contains("main.hcl:3:7"),
        "{}",
        render(&loaded)
    );
    // a finite exponent is fine
    let loaded = load_text("locals {\n  y = 1e300 * 2\n}\n", Mode::Validate);
    assert!(loaded.diagnostics.is_empty(), "{}", render(&loaded));
}

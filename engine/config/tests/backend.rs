//! The `mirrorplan { backend "pg" { ... } }` block and `mirrorplan.workspace`.

use std::path::Path;

use mirrorplan_config::{load_sources, LoadOptions, Loaded, Mode, SourceFile};

fn load(text: &str, workspace: Option<&str>) -> Loaded {
    load_sources(
        Path::new("/config"),
        vec![SourceFile::new("main.hcl", text.to_string())],
        &LoadOptions {
            mode: Mode::Plan,
            workspace: workspace.map(str::to_owned),
            ..LoadOptions::default()
        },
    )
}

fn messages(l: &Loaded) -> Vec<String> {
    l.diagnostics
        .iter()
        .map(|d| {
            format!(
                "{} {} {} | {}",
                d.kind.code(),
                d.location().unwrap_or_default(),
                d.message,
                d.help.clone().unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn pg_backend_block_is_decoded() {
    let l = load(
        r#"
mirrorplan {
  backend "pg" {
    conn_str    = "postgres://mirrorplan@db.example/mirrorplan?sslmode=verify-full"
    schema_name = "team_a"
  }
}
"#,
        None,
    );
    assert!(l.is_ok(), "{:?}", messages(&l));
    let b = l.config.backend.expect("a backend");
    assert_eq!(b.kind, "pg");
    assert_eq!(
        b.settings.get("conn_str").map(String::as_str),
        Some("postgres://mirrorplan@db.example/mirrorplan?sslmode=verify-full")
    );
    assert_eq!(
        b.settings.get("schema_name").map(String::as_str),
        Some("team_a")
    );
    assert_eq!(b.location, "main.hcl:3:3");
}

#[test]
fn backend_settings_are_literal_and_known() {
    let l = load(
        r#"
variable "c" {
  type    = string
  default = "x"
}
mirrorplan {
  backend "pg" {
    conn_str   = var.c
    schema_nam = "a"
  }
}
"#,
        None,
    );
    let m = messages(&l);
    assert!(
        m.iter().any(|d| d.contains("main.hcl:8:18")
            && d.contains("`conn_str` must be a literal string")
            && d.contains("--backend-config")),
        "{m:?}"
    );
    assert!(
        m.iter().any(|d| d.contains("unknown_attribute")
            && d.contains("main.hcl:9:5")
            && d.contains("did you mean `schema_name`?")),
        "{m:?}"
    );
    assert!(l.config.backend.is_none());
    let l = load("mirrorplan {\n  backend \"s3\" {}\n}\n", None);
    let m = messages(&l);
    assert!(
        m.iter().any(|d| d.contains("unknown backend type `s3`")),
        "{m:?}"
    );
}

#[test]
fn mirrorplan_workspace_is_the_selected_workspace() {
    let text = r#"
output "site" {
  value = "site-${mirrorplan.workspace}"
}
"#;
    let l = load(text, Some("staging"));
    assert!(l.is_ok(), "{:?}", messages(&l));
    assert_eq!(
        l.config.outputs["site"].value,
        serde_json::json!("site-staging")
    );
    let l = load(text, None);
    assert_eq!(
        l.config.outputs["site"].value,
        serde_json::json!("site-default")
    );
    let l = load("output \"x\" {\n  value = mirrorplan.name\n}\n", None);
    let m = messages(&l);
    assert!(
        m.iter().any(|d| d.contains("undefined_reference")
            && d.contains("main.hcl:2:11")
            && d.contains("mirrorplan.workspace")),
        "{m:?}"
    );
}

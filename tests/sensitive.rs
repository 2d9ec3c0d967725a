//! Sensitivity follows values: end-to-end tests of the `mirrorplan` binary
//! on a local OCI store and a `local:` node (no server needed).
//!
//! Every secret is the string [`SECRET`]; each test greps everything the
//! binary printed or wrote (the human, JSON and Markdown plans, the saved
//! plan file, the state) for it, and checks that the mask is shown instead.

mod common;
use common::*;

use std::path::Path;
use std::process::Output;

const SECRET: &str = "hunter2-S3CRET";
const MASK: &str = "(sensitive value)";

/// A configuration directory: the quickstart bundle pushed into an `oci:`
/// store, one `local:` node, and `extra` HCL (the blocks under test).
/// `store` is the body of the store registry besides its endpoint and
/// namespace; `containerd` the body of the cluster's `containerd` block.
fn config(store: &str, containerd: &str, extra: &str) -> tempfile::TempDir {
    let dir = common::with_quickstart_bundle();
    let hcl = format!(
        r#"registry "store" {{
  endpoint  = "oci:./store"
  namespace = "mirror"
{store}
}}

registry "mirror" {{
  endpoint  = "http://127.0.0.1:5000"
  namespace = "mirror"
}}

image_set "bundle" {{
  registry = registry.store
  bundle   = "bundles/quickstart.tar.gz"
}}

cluster "local" {{
  nodes = ["local:./nodes/node1"]
  registry_mirror {{
    registry = registry.mirror
    hosts    = ["quay.io"]
  }}
  containerd {{
{containerd}
  }}
  depends_on = [image_set.bundle]
}}
{extra}
"#
    );
    write(dir.path(), "main.hcl", &hcl);
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Both streams of a run.
fn both(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// Asserts that `what` holds neither the secret nor the forms the tests
/// derive from it (upper-cased, `-` replaced by `_`).
fn no_secret(what: &str, s: &str) {
    for form in [
        SECRET.to_string(),
        SECRET.to_uppercase(),
        SECRET.replace('-', "_"),
    ] {
        assert!(
            !s.contains(&form),
            "{what} shows the secret as {form}:\n{s}"
        );
    }
}

/// `main.hcl:LINE:COL` of the first `needle` in the configuration.
fn location(dir: &Path, needle: &str) -> String {
    let text = read(&dir.join("main.hcl"));
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in main.hcl"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("main.hcl:{line}:{col}")
}

/// `validate --json`: exit 1 and the diagnostics (code, message, location).
fn invalid(dir: &Path) -> Vec<serde_json::Value> {
    let o = run_ok(dir, &["validate", "--json"], 1);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("validate --json is not JSON ({e}): {}", both(&o)));
    doc["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no diagnostics: {doc}"))
}

/// The one diagnostic with `code`, asserting that there is one.
fn diagnostic(diags: &[serde_json::Value], code: &str) -> serde_json::Value {
    let found: Vec<&serde_json::Value> = diags.iter().filter(|d| d["code"] == code).collect();
    assert_eq!(found.len(), 1, "expected one {code} in {diags:#?}");
    found[0].clone()
}

const PW_VAR: &str = r#"
variable "pw" {
  type      = string
  sensitive = true
}
"#;

#[test]
fn restart_command_interpolating_sensitive_var_is_masked_everywhere() {
    let extra = format!(
        r#"{PW_VAR}
locals {{
  token = format("--token=%s", var.pw)
  all   = {{ first = [replace(var.pw, "-", "_")] }}
}}
"#
    );
    let qs = config(
        "",
        r#"    restart_command = "systemctl restart containerd ${local.token} ${join(",", local.all.first)} ${var.pw == "" ? "none" : upper(var.pw)}""#,
        &extra,
    );
    let dir = qs.path();
    let pw = format!("pw={SECRET}");
    let var = ["--var", pw.as_str()];

    let human = run_ok(dir, &[&["plan"][..], &var].concat(), 0);
    let human = both(&human);
    no_secret("the human plan", &human);
    assert!(
        human.contains(&format!("restart_command = {MASK}")),
        "restart_command is not masked:\n{human}"
    );
    assert!(
        human.contains(&format!("containerd is restarted with `{MASK}`")),
        "the restart detail shows the command:\n{human}"
    );

    let json = run_ok(dir, &[&["plan", "--format", "json"][..], &var].concat(), 0);
    let json = both(&json);
    no_secret("the JSON plan", &json);
    assert!(json.contains("restart_command"), "{json}");

    let md = run_ok(
        dir,
        &[&["plan", "--format", "markdown"][..], &var].concat(),
        0,
    );
    no_secret("the Markdown plan", &both(&md));

    let out = run_ok(dir, &[&["plan", "--out", "tfplan"][..], &var].concat(), 0);
    no_secret("plan --out", &both(&out));
    let saved = std::fs::read(dir.join("tfplan")).unwrap_or_else(|e| panic!("tfplan: {e}"));
    no_secret("the saved plan", &String::from_utf8_lossy(&saved));

    // the saved plan applies: the secret comes from the configuration again
    let apply = run_ok(dir, &[&["apply", "tfplan"][..], &var].concat(), 0);
    no_secret("apply", &both(&apply));
    let state = read(&state_path(dir));
    no_secret("the state", &state);
    let doc: serde_json::Value =
        serde_json::from_str(&state).unwrap_or_else(|e| panic!("state: {e}"));
    let text = doc.to_string();
    assert!(
        text.contains("\"restart_command\":\"blake3:"),
        "restart_command is not stored as a digest: {state}"
    );

    // applied: nothing left to do
    run_ok(
        dir,
        &[&["plan", "--detailed-exitcode"][..], &var].concat(),
        0,
    );

    // a new secret is a change (its digest differs), still not shown
    let other = "pw=another-S3CRET".to_string();
    let o = run_ok(
        dir,
        &["plan", "--detailed-exitcode", "--var", other.as_str()],
        2,
    );
    let o = both(&o);
    assert!(!o.contains("another-S3CRET"), "{o}");
    assert!(o.contains("restart_command"), "{o}");
    // the same secret again: nothing to do
    run_ok(
        dir,
        &[&["plan", "--detailed-exitcode"][..], &var].concat(),
        0,
    );
}

#[test]
fn output_of_local_holding_sensitive_is_an_error() {
    let extra = format!(
        r#"{PW_VAR}
locals {{
  p = var.pw
  q = "prefix-${{local.p}}"
}}

output "leak" {{
  value = local.q
}}
"#
    );
    let qs = config("", "", &extra);
    let dir = qs.path();
    let diags = invalid(dir);
    let d = diagnostic(&diags, "mirrorplan::config::sensitive_output");
    assert_eq!(d["location"], location(dir, "local.q\n"), "{d}");
    assert!(
        d["message"].as_str().is_some_and(|m| m.contains("local.q")),
        "{d}"
    );
    // and plan refuses it, without the value
    let pw = format!("pw={SECRET}");
    let o = run_ok(dir, &["plan", "--var", pw.as_str()], 1);
    let o = both(&o);
    no_secret("plan", &o);
    assert!(o.contains("mirrorplan::config::sensitive_output"), "{o}");
}

#[test]
fn sensitive_output_of_local_is_stored_and_shown_masked() {
    let extra = format!(
        r#"{PW_VAR}
locals {{
  p = var.pw
}}

output "pw" {{
  value     = local.p
  sensitive = true
}}
"#
    );
    let qs = config("", "", &extra);
    let dir = qs.path();
    let pw = format!("pw={SECRET}");
    let apply = run_ok(dir, &["apply", "--auto-approve", "--var", pw.as_str()], 0);
    let apply = both(&apply);
    no_secret("apply", &apply);
    assert!(apply.contains(&format!("pw = {MASK}")), "{apply}");
    no_secret("the state", &read(&state_path(dir)));
    let o = run_ok(dir, &["output", "pw"], 0);
    assert_eq!(text(&o.stdout).trim(), MASK);
    let o = run_ok(dir, &["output", "--json"], 0);
    let o = text(&o.stdout);
    no_secret("output --json", &o);
    assert!(o.contains("\"sensitive\": true"), "{o}");
}

#[test]
fn sensitive_value_in_an_attribute_plans_show_is_an_error() {
    let extra = format!(
        r#"{PW_VAR}
locals {{
  dir = "./nodes/${{var.pw}}"
}}

cluster "other" {{
  nodes = ["local:${{local.dir}}"]
  registry_mirror {{
    registry = registry.mirror
  }}
}}
"#
    );
    let qs = config("", "", &extra);
    let dir = qs.path();
    let diags = invalid(dir);
    let d = diagnostic(&diags, "mirrorplan::config::sensitive_output");
    assert_eq!(d["location"], location(dir, "local.dir}"), "{d}");
    let pw = format!("pw={SECRET}");
    let o = run_ok(dir, &["plan", "--var", pw.as_str()], 1);
    no_secret("plan", &both(&o));
}

#[test]
fn type_error_of_sensitive_variable_hides_value() {
    let extra = r#"
variable "pin" {
  type      = number
  sensitive = true
}
"#;
    let qs = config("", "", extra);
    let dir = qs.path();
    write(dir, "secret.vars", &format!("pin = \"{SECRET}\"\n"));
    let flag = format!("pin={SECRET}");
    let from_flag = run(dir, &["plan", "--var", flag.as_str()]);
    let from_file = run(dir, &["plan", "--var-file", "secret.vars"]);
    let from_env = bin()
        .arg("-C")
        .arg(dir)
        .arg("plan")
        .env("MIRRORPLAN_VAR_pin", SECRET)
        .output()
        .unwrap_or_else(|e| panic!("run: {e}"));
    for (how, o) in [
        ("--var", from_flag),
        ("--var-file", from_file),
        ("MIRRORPLAN_VAR_pin", from_env),
    ] {
        let all = both(&o);
        assert_eq!(o.status.code(), Some(1), "{how}: {all}");
        assert!(
            all.contains("mirrorplan::config::wrong_type"),
            "{how}: {all}"
        );
        assert!(all.contains("is not a number"), "{how}: {all}");
        no_secret(how, &all);
    }
}

#[test]
fn validation_error_of_sensitive_variable_hides_value() {
    let extra = r#"
variable "pw" {
  type      = string
  sensitive = true
  validation {
    condition     = length(var.pw) > 40
    error_message = "the password ${var.pw} is too short"
  }
}
"#;
    let qs = config("", "", extra);
    let dir = qs.path();
    let flag = format!("pw={SECRET}");
    let o = run_ok(dir, &["plan", "--var", flag.as_str()], 1);
    let all = both(&o);
    assert!(
        all.contains("mirrorplan::config::validation_failed"),
        "{all}"
    );
    assert!(all.contains("invalid value for variable `pw`"), "{all}");
    no_secret("the validation error", &all);
}

#[test]
fn evaluation_error_of_sensitive_value_hides_it() {
    let extra = r#"
variable "pw" {
  type      = string
  sensitive = true
}

locals {
  broken = var.pw.no_such_key
}
"#;
    let qs = config("", "", extra);
    let dir = qs.path();
    let flag = format!("pw={SECRET}");
    let o = run_ok(dir, &["plan", "--var", flag.as_str()], 1);
    let all = both(&o);
    assert!(all.contains("mirrorplan::config::evaluation"), "{all}");
    no_secret("the evaluation error", &all);
}

#[test]
fn proxy_credentials_masked_in_plan_and_state() {
    let store = format!("  proxy = \"http://user:{SECRET}@127.0.0.1:3128\"");
    let qs = config(&store, "", "");
    let dir = qs.path();
    let shown = format!("http://user:{MASK}@127.0.0.1:3128");

    let human = both(&run_ok(dir, &["plan"], 0));
    no_secret("the human plan", &human);
    assert!(
        human.contains(&shown),
        "the proxy is not shown masked:\n{human}"
    );
    let json = both(&run_ok(dir, &["plan", "--json"], 0));
    no_secret("the JSON plan", &json);
    assert!(json.contains(&shown), "{json}");
    no_secret(
        "the Markdown plan",
        &both(&run_ok(dir, &["plan", "--format", "markdown"], 0)),
    );
    run_ok(dir, &["plan", "--out", "tfplan"], 0);
    let saved = std::fs::read(dir.join("tfplan")).unwrap_or_else(|e| panic!("tfplan: {e}"));
    no_secret("the saved plan", &String::from_utf8_lossy(&saved));

    no_secret(
        "apply",
        &both(&run_ok(dir, &["apply", "--auto-approve"], 0)),
    );
    let state = read(&state_path(dir));
    no_secret("the state", &state);
    assert!(state.contains(&shown.replace('"', "\\\"")), "{state}");
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);

    // a new proxy password is a change
    let store = format!("  proxy = \"http://user:other-{SECRET}@127.0.0.1:3128\"");
    let changed = config(&store, "", "");
    std::fs::copy(changed.path().join("main.hcl"), dir.join("main.hcl"))
        .unwrap_or_else(|e| panic!("copy: {e}"));
    let o = both(&run_ok(dir, &["plan", "--detailed-exitcode"], 2));
    no_secret("the plan of a new proxy password", &o);
    assert!(o.contains("proxy"), "{o}");
}

#[test]
fn proxy_from_sensitive_variable_is_masked_whole() {
    let extra = r#"
variable "proxy" {
  type      = string
  sensitive = true
}
"#;
    let qs = config("  proxy = var.proxy", "", extra);
    let dir = qs.path();
    let flag = format!("proxy=http://{SECRET}.internal:3128");
    let human = both(&run_ok(dir, &["plan", "--var", flag.as_str()], 0));
    no_secret("the human plan", &human);
    assert!(human.contains(&format!("\"proxy\":\"{MASK}\"")), "{human}");
    run_ok(dir, &["apply", "--auto-approve", "--var", flag.as_str()], 0);
    no_secret("the state", &read(&state_path(dir)));
}

/// The cluster's `config_digest` is a digest over its nodes' files; when
/// they hold pull credentials it is sensitive too (stored salted, never as
/// an unkeyed hash one could test guesses against).
#[test]
fn cluster_digest_over_pull_credentials_is_sensitive() {
    let cfg = config("", "", "");
    let dir = cfg.path();
    let auth = base64_auth(&format!("puller:{SECRET}"));
    write(
        dir,
        "creds.json",
        &format!("{{\"auths\": {{\"127.0.0.1:5000\": {{\"auth\": \"{auth}\"}}}}}}"),
    );
    let main = dir.join("main.hcl");
    let hcl = read(&main).replace(
        "    hosts    = [\"quay.io\"]\n",
        "    hosts    = [\"quay.io\"]\n    pull_credentials = \"creds.json\"\n",
    );
    write(dir, "main.hcl", &hcl);
    let o = run_ok(dir, &["apply", "--auto-approve"], 0);
    no_secret("apply", &both(&o));
    let state: serde_json::Value =
        serde_json::from_str(&read(&state_path(dir))).unwrap_or_else(|e| panic!("state JSON: {e}"));
    let cluster = &state["instances"]["cluster.local"];
    assert!(
        cluster["attributes"].get("config_digest").is_none(),
        "unkeyed config_digest over credentials: {cluster}"
    );
    assert!(
        cluster["sensitive"].get("config_digest").is_some(),
        "{cluster}"
    );
    let state_text = read(&state_path(dir));
    no_secret("state", &state_text);
    assert!(
        !state_text.contains(&auth),
        "the credentials' base64 is in the state"
    );
    run_ok(dir, &["plan", "--detailed-exitcode"], 0);
}

fn base64_auth(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &c| (a << 8) | u32::from(c)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

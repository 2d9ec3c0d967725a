//! Helpers shared by the binary's end-to-end tests: running `mirrorplan`
//! with no colour and no standard input, checking exit codes, reading the
//! output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `mirrorplan` binary under test, with `NO_COLOR` and no standard input.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1");
    c.stdin(Stdio::null());
    c
}

/// Runs `mirrorplan -C DIR ARGS...`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    match bin().arg("-C").arg(dir).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run mirrorplan: {e}"),
    }
}

/// Bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and asserts the exit code, showing both streams on failure.
pub fn run_ok(dir: &Path, args: &[&str], code: i32) -> Output {
    let o = run(dir, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "mirrorplan {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

/// The diagnostic text with any line wrapping undone, so that ids read whole.
pub fn unwrapped(stderr: &str) -> String {
    let mut out = String::new();
    for line in stderr.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix('|').unwrap_or(line).trim();
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() && !out.ends_with('-') {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}

/// A new temporary directory holding the quickstart bundle as
/// `bundles/quickstart.tar.gz`, for a configuration to be written beside it.
pub fn with_quickstart_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let bundles = dir.path().join("bundles");
    std::fs::create_dir_all(&bundles).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/bundles/quickstart.tar.gz"),
        bundles.join("quickstart.tar.gz"),
    )
    .unwrap_or_else(|e| panic!("copy bundle: {e}"));
    dir
}

/// A configuration of the quickstart bundle and `nodes` local nodes, the
/// nodes after the images, in a new temporary directory.
pub fn local_nodes_config(nodes: usize) -> tempfile::TempDir {
    let dir = with_quickstart_bundle();
    let hcl = local_nodes_hcl(".", "bundles", nodes, ("store", "registry.store.endpoint"));
    std::fs::write(dir.path().join("main.hcl"), hcl).unwrap_or_else(|e| panic!("{e}"));
    dir
}

/// The HCL of [`local_nodes_config`]: the store, the bundle (in `bundles`)
/// and the nodes under `base`, and an output (name, expression).
#[allow(dead_code)]
pub fn local_nodes_hcl(base: &str, bundles: &str, nodes: usize, output: (&str, &str)) -> String {
    let (name, output) = output;
    let list: Vec<String> = (0..nodes)
        .map(|i| format!("\"local:{base}/nodes/n{i}\""))
        .collect();
    format!(
        r#"registry "store" {{
  endpoint  = "oci:{base}/store"
  namespace = "mirror"
}}

registry "mirror" {{
  endpoint  = "http://127.0.0.1:5000"
  namespace = "mirror"
}}

image_set "bundle" {{
  registry = registry.store
  bundle   = "{bundles}/quickstart.tar.gz"
}}

cluster "big" {{
  nodes = [{}]
  registry_mirror {{
    registry = registry.mirror
    hosts    = ["quay.io", "docker.io"]
  }}
  depends_on = [image_set.bundle]
}}

output "{name}" {{
  value = {output}
}}
"#,
        list.join(", ")
    )
}

/// The default state file of a configuration directory.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(".mirrorplan/state.json")
}

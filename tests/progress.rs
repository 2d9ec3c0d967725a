//! Progress output of `apply`: bars (bytes, rate, ETA per image and an
//! overall bar) when stderr is a terminal, plain lines otherwise.
//!
//! The terminal is a real pseudo-terminal: the binary runs under util-linux
//! `script`, whose transcript is what a person would see. The images go
//! into a local `oci:` store, so no server is needed.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::text;

/// A configuration pushing the quickstart bundle into `oci:./store`.
fn store_config() -> tempfile::TempDir {
    let dir = common::with_quickstart_bundle();
    std::fs::write(
        dir.path().join("main.hcl"),
        r#"registry "store" {
  endpoint  = "oci:./store"
  namespace = "mirror"
}

image_set "quick" {
  registry = registry.store
  bundle   = "bundles/quickstart.tar.gz"
}
"#,
    )
    .unwrap_or_else(|e| panic!("write main.hcl: {e}"));
    dir
}

const IMAGES: [&str; 3] = [
    "image.quick[\"docker.io/library/base-2:latest\"]",
    "image.quick[\"gcr.io/mirrorplan-fixtures/app-0:1.0\"]",
    "image.quick[\"quay.io/mirrorplan/tool-1:v1\"]",
];

/// `mirrorplan -C DIR apply --auto-approve` inside a pseudo-terminal
/// (`script`), with `env` set; returns the exit status and the transcript.
fn apply_in_terminal(dir: &Path, env: &[(&str, &str)]) -> Output {
    let bin = env!("CARGO_BIN_EXE_mirrorplan");
    let inner = format!("'{bin}' -C '{}' apply --auto-approve", dir.display());
    let mut c = Command::new("script");
    c.args(["-qec", &inner, "/dev/null"])
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run script (util-linux): {e}"))
}

fn stored_tags(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("store/index.json")).unwrap_or_default()
}

#[test]
fn terminal_gets_bars_with_rate_and_eta() {
    let dir = store_config();
    let o = apply_in_terminal(dir.path(), &[]);
    let t = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "apply under a terminal:\n{t}");
    // the bar template: bytes done/total, rate, ETA, for each image and in total
    assert!(t.contains("ETA"), "no ETA in the terminal output:\n{t}");
    assert!(
        t.contains("B/s"),
        "no transfer rate in the terminal output:\n{t}"
    );
    assert!(t.contains("total"), "no overall bar:\n{t}");
    for image in IMAGES {
        assert!(
            t.lines()
                .flat_map(|l| l.split('\r'))
                .any(|l| l.contains(image) && l.contains("ETA")),
            "no bar for {image}:\n{t}"
        );
        assert!(
            t.contains(&format!("{image}: Creation complete after")),
            "no completion line for {image}:\n{t}"
        );
    }
    // a terminal gets escape sequences: colour and bar redraws
    assert!(
        t.contains("\x1b["),
        "no escape sequences on a terminal:\n{t}"
    );
    // the bars are cleared at the end: the last thing on screen is the report
    let tail = &t[t.rfind("Apply complete!").unwrap_or(0)..];
    assert!(
        !tail.contains("ETA"),
        "a bar is still drawn after the report:\n{tail}"
    );
    assert_eq!(
        stored_tags(dir.path())
            .matches("org.opencontainers.image.ref.name")
            .count(),
        3,
        "three images tagged in the store"
    );
}

#[test]
fn no_color_or_dumb_terminal_gets_plain_lines() {
    for env in [[("NO_COLOR", "1")], [("TERM", "dumb")]] {
        let dir = store_config();
        let o = apply_in_terminal(dir.path(), &env);
        let t = text(&o.stdout);
        assert_eq!(o.status.code(), Some(0), "apply with {env:?}:\n{t}");
        assert!(!t.contains("ETA"), "bars with {env:?}:\n{t}");
        assert!(
            t.contains(&format!("{}: Creation complete after", IMAGES[1])),
            "no completion line with {env:?}:\n{t}"
        );
    }
}

#[test]
fn piped_stderr_gets_plain_lines_without_escapes() {
    let dir = store_config();
    let o = Command::new(env!("CARGO_BIN_EXE_mirrorplan"))
        .arg("-C")
        .arg(dir.path())
        .args(["apply", "--auto-approve"])
        // colour would be allowed: only the pipe turns the bars off
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run mirrorplan: {e}"));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "apply:\n{err}");
    assert!(!err.contains('\x1b'), "escape sequences on a pipe:\n{err}");
    assert!(
        !text(&o.stdout).contains('\x1b'),
        "escape sequences on stdout"
    );
    assert!(!err.contains("ETA"), "a bar on a pipe:\n{err}");
    for image in IMAGES {
        assert!(
            err.contains(&format!("{image}: Creating...")),
            "no start line for {image}:\n{err}"
        );
        // the completion line says how many bytes went out and how fast
        let done = err
            .lines()
            .find(|l| l.starts_with(&format!("{image}: Creation complete after")))
            .unwrap_or_else(|| panic!("no completion line for {image}:\n{err}"));
        assert!(
            done.contains("B at ") && done.ends_with("/s)"),
            "no bytes and rate in {done:?}"
        );
    }
    // no per-chunk flooding: one line per event, a handful per image
    assert!(
        err.lines().count() < 20,
        "too many progress lines for three small images:\n{err}"
    );
}

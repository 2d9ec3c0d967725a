//! Issue 17 item 6 through the `mirrorplan` binary: the debug log
//! (`MIRRORPLAN_LOG`, `--log-level`, `--log-file`) of an apply against a
//! TLS + htpasswd mirror with a password set and a real SSH node shows the
//! registry requests and the node commands, and never the password, its
//! Basic form, a bearer token or an `Authorization` value; off by default.

mod nodes_support;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Output;

use base64::Engine as _;
use nodes_support::*;

const REQUEST: &str = "mirrorplan_registry::request";
const COMMAND: &str = "mirrorplan_node::command";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `args` run in the lab with `env` set and `MIRRORPLAN_LOG` otherwise
/// unset.
fn run_with(lab: &Lab, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = bin();
    c.env_remove("MIRRORPLAN_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.arg("-C").arg(lab.path()).args(args);
    c.output()
        .unwrap_or_else(|e| panic!("cannot run mirrorplan: {e}"))
}

fn expect_code(o: &Output, code: i32, what: &str) {
    assert_eq!(o.status.code(), Some(code), "{what}\n{}", streams(o));
}

/// The log holds no secret: not the password, not its Basic form, no
/// `Authorization:` or `Bearer` followed by a value.
fn no_secret(what: &str, log: &str) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert!(
        !log.contains(PASSWORD),
        "{what}: the password leaked:\n{log}"
    );
    assert!(
        !log.contains(&basic),
        "{what}: the Basic value leaked:\n{log}"
    );
    for marker in ["authorization: ", "bearer "] {
        let lower = log.to_ascii_lowercase();
        let mut rest = lower.as_str();
        while let Some(i) = rest.find(marker) {
            let after = &rest[i + marker.len()..];
            assert!(
                after.is_empty() || after.starts_with(char::is_whitespace),
                "{what}: `{marker}` followed by a value:\n{log}"
            );
            rest = after;
        }
    }
}

/// The request lines of `log` (one per attempt).
fn requests(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(REQUEST)).collect()
}

/// Some request line has every one of `fields`.
fn has_request(log: &str, fields: &[&str]) -> bool {
    requests(log)
        .iter()
        .any(|l| fields.iter().all(|f| l.contains(f)))
}

#[test]
fn debug_log_shows_requests_and_commands_without_secrets() {
    let lab = Lab::start();
    let node = start_node();
    lab.write_config(&[&node], &ClusterConf::default());
    let host = lab.registry.host_port();
    let manifest_url = format!("url=https://{host}/v2/{NAMESPACE}/mirrorplan-fixtures/app-0/");
    let replace = format!("-replace=image.bundle[\"{GCR_IMAGE}\"]");

    // MIRRORPLAN_LOG=debug, to stderr: an apply that uploads an image
    // again (--replace) and configures the node over SSH
    let o = run_with(
        &lab,
        &[("MIRRORPLAN_LOG", "debug")],
        &["apply", "--auto-approve", &replace],
    );
    expect_code(&o, 0, "apply with MIRRORPLAN_LOG=debug");
    let log = text(&o.stderr);
    no_secret("MIRRORPLAN_LOG=debug", &format!("{log}{}", text(&o.stdout)));
    assert!(
        has_request(
            &log,
            &["method=HEAD", &manifest_url, "status=200", "auth=basic"]
        ),
        "a manifest HEAD answered 200 with basic auth:\n{log}"
    );
    assert!(
        has_request(
            &log,
            &[
                &format!("url=https://{host}/v2/"),
                "status=401",
                "auth=none"
            ]
        ),
        "the first request's 401 challenge:\n{log}"
    );
    assert!(
        has_request(&log, &["method=POST", "/blobs/uploads/", "status=202"]),
        "upload sessions opened:\n{log}"
    );
    assert!(
        has_request(
            &log,
            &[
                "method=PUT",
                "/blobs/uploads/",
                "digest=sha256",
                "status=201"
            ]
        ),
        "blobs uploaded (the digest shown, the session state not):\n{log}"
    );
    assert!(
        has_request(&log, &["method=PUT", &manifest_url, "status=201", "ms="]),
        "the manifest put:\n{log}"
    );
    assert!(
        requests(&log)
            .iter()
            .filter(|l| l.contains("/blobs/uploads/") && l.contains("_state="))
            .all(|l| l.contains("_state=%28redacted%29")),
        "upload session state redacted:\n{log}"
    );
    let node_key = node_key(&node);
    let commands: Vec<&str> = log.lines().filter(|l| l.contains(COMMAND)).collect();
    assert!(
        commands.iter().any(|l| l.contains(&node_key)
            && l.contains("command=read-files")
            && l.contains("exit=0")),
        "the node's files read over SSH:\n{log}"
    );
    assert!(
        commands.iter().any(|l| l.contains("command=write-files")
            && l.contains("exit=0")
            && !l.contains("stdin=0")),
        "the node's files written (stdin counted, not shown):\n{log}"
    );

    // --log-level with --log-file: the same apply logged to a 0600 file,
    // nothing of it on stderr
    let file = lab.path().join("debug.log");
    let o = run_with(
        &lab,
        &[],
        &[
            "apply",
            "--auto-approve",
            &replace,
            "--log-level",
            "debug",
            "--log-file",
            file.to_str().unwrap_or_else(|| panic!("path")),
        ],
    );
    expect_code(&o, 0, "apply with --log-file");
    assert!(
        !text(&o.stderr).contains(REQUEST),
        "the log went to the file only:\n{}",
        streams(&o)
    );
    let mode = std::fs::metadata(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the log file's mode");
    let logged = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    no_secret("--log-file", &logged);
    assert!(
        has_request(&logged, &["method=HEAD", &manifest_url, "status=200"]),
        "refresh's manifest HEADs in the file:\n{logged}"
    );
    assert!(
        has_request(&logged, &["method=PUT", &manifest_url, "status=201"]),
        "the manifest put in the file:\n{logged}"
    );
    assert!(
        logged
            .lines()
            .any(|l| l.contains(COMMAND) && l.contains(&node_key)),
        "the node's read in the file:\n{logged}"
    );

    // off by default: nothing of the log on stderr
    let o = run_with(&lab, &[], &["plan"]);
    expect_code(&o, 0, "plan without a log level");
    let err = text(&o.stderr);
    assert!(
        !err.contains(REQUEST) && !err.contains(COMMAND) && !err.contains(" DEBUG "),
        "no debug lines without a log level:\n{err}"
    );
}

#[test]
fn a_log_level_naming_another_crate_or_no_level_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for level in ["hyper=trace", "loud"] {
        let o = bin()
            .env_remove("MIRRORPLAN_LOG")
            .arg("-C")
            .arg(dir.path())
            .args(["--log-level", level, "validate"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        expect_code(&o, 1, level);
        let err = text(&o.stderr);
        assert!(
            err.contains("mirrorplan::cli::log_level") && err.contains(level),
            "{level}: {err}"
        );
    }
}

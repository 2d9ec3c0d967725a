//! Issue 11 through the `mirrorplan` binary, network and bundle side:
//! a registry that never answers, a bundle built to exhaust memory,
//! credentials that must not travel to a foreign or plain-HTTP place, and
//! escape sequences from bundles and registries that must not reach the
//! terminal. The misbehaving registries are small servers on 127.0.0.1
//! started by each test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mirrorplan_registry::fixtures::{write_json_bomb, write_oci_bundle, FixtureSpec, Packing};

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn tmp() -> tempfile::TempDir {
    ok(
        tempfile::Builder::new().prefix("mp-hardnet-").tempdir(),
        "tempdir",
    )
}

/// What one run of the binary did.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Run {
    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    fn expect(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            code,
            "{what}: expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.out(),
            self.err()
        );
        self
    }
}

/// `mirrorplan -C DIR ARGS` (no colour, no proxy variables, `HOME` in
/// `dir`), killed and reported as a hang if it runs longer than `limit`.
fn mp_within(dir: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1")
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.arg("-C").arg(dir).args(args);
    let mut child = ok(c.spawn(), "run mirrorplan");
    // read both pipes while waiting, so that a full pipe never blocks it
    let so = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b);
            b
        })
    });
    let se = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b);
            b
        })
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = ok(child.try_wait(), "wait for mirrorplan") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mirrorplan {args:?} still ran after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: so.and_then(|h| h.join().ok()).unwrap_or_default(),
        stderr: se.and_then(|h| h.join().ok()).unwrap_or_default(),
    }
}

fn mp(dir: &Path, args: &[&str]) -> Run {
    mp_within(dir, args, &[], Duration::from_secs(300))
}

fn small_bundle(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("bundle.tar");
    let spec = FixtureSpec {
        seed: 11,
        images: 1,
        layers_per_image: 1,
        shared_base_layers: 0,
        layer_size: 1024,
        multi_arch: false,
        ..FixtureSpec::default()
    };
    ok(write_oci_bundle(&path, &spec, Packing::Tar), "write bundle");
    path
}

fn write_config(dir: &Path, body: &str) {
    ok(std::fs::write(dir.join("main.hcl"), body), "write main.hcl");
}

fn set_block(bundle: &Path) -> String {
    format!(
        "image_set \"s\" {{\n  registry = registry.mirror\n  bundle   = \"{}\"\n}}\n",
        bundle.display()
    )
}

/// A TCP server on 127.0.0.1 that accepts connections and never answers
/// (it keeps them open and reads nothing). Returns its port.
fn silent_server() -> u16 {
    let l = ok(TcpListener::bind("127.0.0.1:0"), "bind");
    let port = ok(l.local_addr(), "addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    port
}

#[test]
fn registry_that_accepts_and_never_answers_fails_the_plan_with_a_timeout() {
    let dir = tmp();
    let bundle = small_bundle(dir.path());
    let port = silent_server();
    write_config(
        dir.path(),
        &format!(
            "registry \"mirror\" {{\n  endpoint = \"http://127.0.0.1:{port}\"\n  timeout  = 2\n}}\n{}",
            set_block(&bundle)
        ),
    );
    let run = mp_within(dir.path(), &["plan"], &[], Duration::from_secs(120));
    run.expect(1, "plan against a silent registry");
    let err = run.err();
    assert!(
        err.contains(&format!(
            "registry 127.0.0.1:{port} did not answer within 2s"
        )),
        "{err}"
    );
    // retried, a bounded number of times
    assert!(err.contains("5 attempt(s)"), "{err}");
}

#[test]
fn registry_timeout_of_zero_is_a_configuration_error() {
    let dir = tmp();
    write_config(
        dir.path(),
        "registry \"mirror\" {\n  endpoint = \"http://127.0.0.1:1\"\n  timeout  = 0\n}\n",
    );
    let run = mp(dir.path(), &["validate"]);
    run.expect(1, "validate with timeout = 0");
    assert!(
        run.err().contains("`timeout` must be at least 1 second"),
        "{}",
        run.err()
    );
}

#[test]
fn bundle_with_too_much_json_metadata_is_refused() {
    let dir = tmp();
    let bomb = dir.path().join("bomb.tar.zst");
    // 24 blobs of 4 MiB of `{` and zeros, each named by its true digest:
    // 96 MiB of "JSON" in a file of a few KiB
    ok(
        write_json_bomb(&bomb, 24, 4 * 1024 * 1024, Packing::TarZst),
        "write the bomb",
    );
    let size = ok(std::fs::metadata(&bomb), "stat").len();
    assert!(size < 1024 * 1024, "the bomb is {size} bytes");
    write_config(
        dir.path(),
        &format!(
            "registry \"mirror\" {{\n  endpoint = \"oci:{}\"\n}}\n{}",
            dir.path().join("store").display(),
            set_block(&bomb)
        ),
    );
    let run = mp(dir.path(), &["plan"]);
    run.expect(1, "plan of a JSON bomb");
    let err = run.err().replace('\n', " ");
    assert!(
        // named relative to the configuration directory, where it is
        err.contains("bundle bomb.tar.zst: more than 64 MiB of JSON metadata"),
        "{err}"
    );
    assert!(err.contains("not a valid image bundle"), "{err}");
}

/// A tiny HTTP/1.1 server on `ip` (127.0.0.0/8): every request head goes
/// to `seen`, and `answer(head)` is sent back (connection closed after
/// it). Returns its port.
fn http_server(
    ip: &str,
    seen: Arc<Mutex<Vec<String>>>,
    answer: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static,
) -> u16 {
    let l = ok(TcpListener::bind(format!("{ip}:0")), "bind");
    let port = ok(l.local_addr(), "addr").port();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let seen = seen.clone();
            let answer = answer.clone();
            std::thread::spawn(move || serve_one(s, &seen, &*answer));
        }
    });
    port
}

fn serve_one(mut s: TcpStream, seen: &Mutex<Vec<String>>, answer: &dyn Fn(&str) -> Vec<u8>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut b = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    if let Ok(mut v) = seen.lock() {
        v.push(head.clone());
    }
    let _ = s.write_all(&answer(&head));
}

fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

const PW: &str = "Sup3r-s3cret-pw";

fn credentials_config(endpoint: &str, bundle: &Path) -> String {
    format!(
        "variable \"pw\" {{\n  type      = string\n  sensitive = true\n}}\n\
         registry \"mirror\" {{\n  endpoint = \"{endpoint}\"\n  username = \"alice\"\n  password = var.pw\n}}\n{}",
        set_block(bundle)
    )
}

#[test]
fn basic_credentials_are_not_sent_to_a_plain_http_realm_on_another_host() {
    let dir = tmp();
    let bundle = small_bundle(dir.path());
    let token_seen = Arc::new(Mutex::new(Vec::new()));
    let token_port = http_server("127.0.0.2", token_seen.clone(), |_| {
        reply(
            "200 OK",
            &[("Content-Type", "application/json")],
            br#"{"token":"t0k"}"#,
        )
    });
    let realm = format!("http://127.0.0.2:{token_port}/token");
    let challenge = format!("Bearer realm=\"{realm}\",service=\"evil\"");
    let registry_seen = Arc::new(Mutex::new(Vec::new()));
    let port = http_server("127.0.0.1", registry_seen.clone(), move |_| {
        reply("401 Unauthorized", &[("WWW-Authenticate", &challenge)], b"")
    });
    write_config(
        dir.path(),
        &credentials_config(&format!("http://127.0.0.1:{port}"), &bundle),
    );
    let run = mp_within(
        dir.path(),
        &["plan"],
        &[("MIRRORPLAN_VAR_pw", PW)],
        Duration::from_secs(120),
    );
    run.expect(1, "plan against a registry naming a foreign http realm");
    let err = run.err().replace('\n', " ");
    assert!(
        err.contains(&format!(
            "refusing to send the credentials of user alice to the token realm {realm}"
        )),
        "{err}"
    );
    assert!(err.contains("not https"), "{err}");
    assert!(!err.contains(PW) && !run.out().contains(PW), "{err}");
    let heads = token_seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(
        heads
            .iter()
            .all(|h| !h.to_ascii_lowercase().contains("\nauthorization:")),
        "the token realm got credentials: {heads:?}"
    );
    // the registry itself was asked (so the refusal is the realm's, not a dead registry's)
    assert!(
        !registry_seen.lock().map(|v| v.is_empty()).unwrap_or(true),
        "the registry was never asked"
    );
}

/// A registry that knows nothing (`404` to everything) on 127.0.0.1.
fn empty_registry() -> u16 {
    http_server("127.0.0.1", Arc::new(Mutex::new(Vec::new())), |_| {
        reply("404 Not Found", &[], b"")
    })
}

#[test]
fn credentials_to_a_plain_http_registry_are_warned_about_in_every_plan_format() {
    let dir = tmp();
    let bundle = small_bundle(dir.path());
    let port = empty_registry();
    let endpoint = format!("http://127.0.0.1:{port}");
    // alice:pull-pw
    ok(
        std::fs::write(
            dir.path().join("pull.json"),
            format!("{{\"auths\":{{\"127.0.0.1:{port}\":{{\"auth\":\"YWxpY2U6cHVsbC1wdw==\"}}}}}}"),
        ),
        "write pull credentials",
    );
    write_config(
        dir.path(),
        &format!(
            "{}\ncluster \"c\" {{\n  nodes = [\"local:./node\"]\n  registry_mirror {{\n    registry         = registry.mirror\n    pull_credentials = \"pull.json\"\n  }}\n}}\n",
            credentials_config(&endpoint, &bundle)
        ),
    );
    let env = [("MIRRORPLAN_VAR_pw", PW)];
    let limit = Duration::from_secs(120);
    let registry_warning = format!(
        "registry.mirror ({endpoint}) is plain http: the password of user alice travels in clear"
    );
    let mirror_warning = format!(
        "registry_mirror registry.mirror ({endpoint}) is plain http: the pull_credentials containerd sends to it travel in clear"
    );

    let human = mp_within(dir.path(), &["plan"], &env, limit);
    human.expect(0, "plan");
    let text = human.out();
    assert!(
        text.contains(&format!("Warning: image_set.s {registry_warning}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Warning: cluster.c {mirror_warning}")),
        "{text}"
    );

    let json = mp_within(dir.path(), &["plan", "--json"], &env, limit);
    json.expect(0, "plan --json");
    let v: serde_json::Value = ok(serde_json::from_slice(&json.stdout), "plan JSON");
    let warnings: Vec<(String, String)> = v["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    (
                        w["address"].as_str().unwrap_or_default().to_string(),
                        w["message"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        warnings
            .iter()
            .any(|(a, m)| a == "image_set.s" && m.starts_with(&registry_warning)),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|(a, m)| a == "cluster.c" && m.starts_with(&mirror_warning)),
        "{warnings:?}"
    );

    let md = mp_within(dir.path(), &["plan", "--format", "markdown"], &env, limit);
    md.expect(0, "plan --format markdown");
    let text = md.out();
    assert!(text.contains(&registry_warning), "{text}");
    assert!(text.contains(&mirror_warning), "{text}");
    for run in [&human, &json, &md] {
        assert!(!run.out().contains(PW) && !run.err().contains(PW));
    }

    // credentials from a docker_config instead of username/password
    ok(
        std::fs::write(
            dir.path().join("push.json"),
            format!("{{\"auths\":{{\"127.0.0.1:{port}\":{{\"auth\":\"Ym9iOnB1c2gtcHc=\"}}}}}}"),
        ),
        "write push credentials",
    );
    write_config(
        dir.path(),
        &format!(
            "registry \"mirror\" {{\n  endpoint      = \"{endpoint}\"\n  docker_config = \"push.json\"\n}}\n{}",
            set_block(&bundle)
        ),
    );
    let human = mp_within(dir.path(), &["plan"], &[], limit);
    human.expect(0, "plan with a docker_config");
    let text = human.out();
    assert!(
        text.contains(&format!(
            "Warning: image_set.s registry.mirror ({endpoint}) is plain http: the credentials from its docker_config travel in clear"
        )),
        "{text}"
    );
    // bob:push-pw
    assert!(
        !text.contains("push-pw") && !human.err().contains("push-pw"),
        "{text}"
    );
}

/// No raw ESC (or other control but newline and tab) on either stream.
fn assert_no_raw_controls(run: &Run) {
    for (name, bytes) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        let bad: Vec<char> = text
            .chars()
            .filter(|c| c.is_control() && *c != '\n' && *c != '\t')
            .collect();
        assert!(
            bad.is_empty(),
            "{name} has raw control characters {bad:?}:\n{text}"
        );
    }
}

#[test]
fn escape_sequence_in_a_bundle_image_name_does_not_reach_the_terminal() {
    let dir = tmp();
    let path = dir.path().join("bundle.tar");
    let spec = FixtureSpec {
        seed: 12,
        images: 2,
        layers_per_image: 1,
        shared_base_layers: 0,
        layer_size: 512,
        multi_arch: false,
        ..FixtureSpec::default()
    };
    ok(write_oci_bundle(&path, &spec, Packing::Tar), "write bundle");
    // image 1's `org.opencontainers.image.ref.name` in index.json (not a
    // digested blob) becomes `quay.io/\x1b[31m/tool-1:v1`, same length
    let mut bytes = ok(std::fs::read(&path), "read bundle");
    let from = b"quay.io/mirrorplan/";
    let to = b"quay.io/\\u001b[31m/";
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("the fixture has no {from:?}"));
    bytes[at..at + from.len()].copy_from_slice(to);
    ok(std::fs::write(&path, &bytes), "write bundle");
    write_config(
        dir.path(),
        &format!(
            "registry \"mirror\" {{\n  endpoint = \"oci:{}\"\n}}\n{}",
            dir.path().join("store").display(),
            set_block(&path)
        ),
    );
    let run = mp(dir.path(), &["plan"]);
    run.expect(1, "plan of a bundle with an escape sequence in a name");
    assert_no_raw_controls(&run);
    let err = run.err();
    assert!(err.contains("quay.io/\\u{1b}[31m/tool-1:v1"), "{err}");
}

#[test]
fn escape_sequence_in_a_registry_error_body_does_not_reach_the_terminal() {
    let dir = tmp();
    let port = http_server("127.0.0.1", Arc::new(Mutex::new(Vec::new())), |_| {
        reply(
            "400 Bad Request",
            &[("Content-Type", "application/json")],
            br#"{"errors":[{"code":"DENIED","message":"\u001b[31mgo away\u001b[0m\u0007"}]}"#,
        )
    });
    write_config(
        dir.path(),
        &format!(
            "registry \"up\" {{\n  endpoint = \"http://127.0.0.1:{port}\"\n}}\n\
             registry \"mirror\" {{\n  endpoint = \"oci:{}\"\n}}\n\
             image_set \"s\" {{\n  registry = registry.mirror\n  images   = [\"127.0.0.1:{port}/a/b:1\"]\n}}\n",
            dir.path().join("store").display()
        ),
    );
    let run = mp(dir.path(), &["plan"]);
    run.expect(
        1,
        "plan with an upstream registry answering an escape sequence",
    );
    assert_no_raw_controls(&run);
    let err = run.err();
    assert!(
        err.contains("DENIED (\\u{1b}[31mgo away\\u{1b}[0m\\u{7})"),
        "{err}"
    );
}

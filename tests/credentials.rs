//! Issue 17 item 4 through the `mirrorplan` binary: a mirror that declares
//! no credentials gets them where docker, podman and skopeo keep them
//! (`REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json`, `$DOCKER_CONFIG/config.json`,
//! `~/.docker/config.json`, `credHelpers`, `credsStore`), pushing into a
//! REAL TLS + htpasswd registry on loopback; the first file that has the
//! host wins; a malformed file is an error naming it; the password is never
//! in the outputs or the debug log.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use mirrorplan_harness::{Credentials, Registry, RegistryOptions};
use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, Packing};

const USER: &str = "cred-pusher";
const PASSWORD: &str = "Env-S0urce-Passw0rd-77";
const WRONG: &str = "Not-The-Passw0rd-88";

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn write(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        ok(std::fs::create_dir_all(d), "mkdir");
    }
    ok(std::fs::write(path, text), "write");
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `{"auths": {HOST: {"auth": base64(USER:password)}}}`.
fn auths(reg: &Registry, password: &str) -> String {
    format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        reg.host_port(),
        b64(&format!("{USER}:{password}"))
    )
}

/// A project dir with a bundle pushed into `reg`, which has no
/// credentials in the configuration.
fn project(reg: &Registry, seed: u64) -> tempfile::TempDir {
    let dir = ok(
        tempfile::Builder::new().prefix("mp-creds-").tempdir(),
        "tempdir",
    );
    let bundle = dir.path().join("b.tar");
    let spec = FixtureSpec {
        seed,
        images: 1,
        layers_per_image: 1,
        shared_base_layers: 0,
        layer_size: 1024,
        multi_arch: false,
        ..Default::default()
    };
    ok(write_oci_bundle(&bundle, &spec, Packing::Tar), "bundle");
    let ca = reg.ca_cert_path().map(|p| p.display().to_string());
    write(
        &dir.path().join("main.hcl"),
        &format!(
            "registry \"mirror\" {{\n  endpoint = \"{}\"\n  ca_cert  = \"{}\"\n  namespace = \"s{seed}\"\n}}\nimage_set \"s\" {{\n  registry = registry.mirror\n  bundle   = \"{}\"\n}}\n",
            reg.url(),
            ca.unwrap_or_default(),
            bundle.display()
        ),
    );
    dir
}

/// A `docker-credential-test` helper in `dir/bin` answering `get` for
/// `host` with USER and `password` (and "not found" for other hosts).
fn helper(dir: &Path, host: &str, password: &str) -> PathBuf {
    let bin = dir.join("bin");
    let script = bin.join("docker-credential-test");
    write(
        &script,
        &format!(
            "#!/bin/sh\nread host\nif [ \"$1\" = get ] && [ \"$host\" = '{host}' ]; then\n  echo '{{\"ServerURL\":\"{host}\",\"Username\":\"{USER}\",\"Secret\":\"{password}\"}}'\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n"
        ),
    );
    ok(
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)),
        "chmod",
    );
    bin
}

struct Run {
    code: Option<i32>,
    out: String,
}

/// `mirrorplan -C DIR ARGS` with HOME = DIR, the credential variables of
/// the caller removed and `env` set, the debug log on.
fn mp(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mirrorplan"));
    c.env("NO_COLOR", "1")
        .env("HOME", dir)
        .env("MIRRORPLAN_LOG", "debug")
        .stdin(Stdio::null());
    for v in [
        "REGISTRY_AUTH_FILE",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
        "DOCKER_CONFIG",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.arg("-C").arg(dir).args(args);
    let o = ok(c.output(), "run mirrorplan");
    Run {
        code: o.status.code(),
        out: format!(
            "--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    }
}

/// Neither the password nor its Basic form, in any output or the log.
fn no_secret(what: &str, r: &Run) {
    for s in [PASSWORD, WRONG, &b64(&format!("{USER}:{PASSWORD}"))] {
        assert!(!r.out.contains(s), "{what}: a secret leaked:\n{}", r.out);
    }
}

fn apply(dir: &Path, env: &[(&str, String)]) -> Run {
    mp(dir, env, &["apply", "--auto-approve"])
}

fn secure_registry() -> Registry {
    ok(
        Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            ..Default::default()
        }),
        "start the TLS registry",
    )
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn each_credential_source_is_accepted_by_the_registry() {
    let reg = secure_registry();
    let host = reg.host_port();
    let mut seed = 700;
    let mut case = |what: &str, setup: &dyn Fn(&Path) -> Vec<(&'static str, String)>| {
        seed += 1;
        let dir = project(&reg, seed);
        let env = setup(dir.path());
        let r = apply(dir.path(), &env);
        assert_eq!(r.code, Some(0), "{what}: apply\n{}", r.out);
        assert!(
            r.out.contains("mirrorplan_registry::request"),
            "{what}: the debug log is on\n{}",
            r.out
        );
        no_secret(what, &r);
        let again = mp(
            dir.path(),
            &env,
            &["plan", "--detailed-exitcode", "--out", "saved.plan"],
        );
        assert_eq!(
            again.code,
            Some(0),
            "{what}: plan after apply\n{}",
            again.out
        );
        no_secret(what, &again);
        // Neither the state nor a saved plan holds the password.
        for f in [".mirrorplan/state.json", "saved.plan"] {
            let bytes = ok(std::fs::read(dir.path().join(f)), f);
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(PASSWORD), "{what}: the password is in {f}");
            assert!(
                !text.contains(&b64(&format!("{USER}:{PASSWORD}"))),
                "{what}: the Basic value is in {f}"
            );
        }
    };
    // Without any source the registry refuses: the sources below matter.
    let dir = project(&reg, 700);
    let r = apply(dir.path(), &[]);
    assert_eq!(r.code, Some(1), "anonymous apply\n{}", r.out);

    case("REGISTRY_AUTH_FILE", &|d| {
        let f = d.join("elsewhere/auth.json");
        write(&f, &auths(&reg, PASSWORD));
        vec![("REGISTRY_AUTH_FILE", s(&f))]
    });
    // The debug log says which file the credentials came from.
    let dir = project(&reg, 799);
    let f = dir.path().join("named/auth.json");
    write(&f, &auths(&reg, PASSWORD));
    let r = apply(dir.path(), &[("REGISTRY_AUTH_FILE", s(&f))]);
    assert_eq!(r.code, Some(0), "apply\n{}", r.out);
    assert!(
        r.out
            .lines()
            .any(|l| l.contains("mirrorplan_registry::auth")
                && l.contains("credentials from the environment")
                && l.contains(&s(&f))),
        "the log names the file\n{}",
        r.out
    );
    no_secret("log of the source", &r);
    case("XDG_RUNTIME_DIR", &|d| {
        write(
            &d.join("run/containers/auth.json"),
            &format!(r#"{{"auths":{{"{host}":{{"username":"{USER}","password":"{PASSWORD}"}}}}}}"#),
        );
        vec![("XDG_RUNTIME_DIR", s(&d.join("run")))]
    });
    case("XDG_CONFIG_HOME", &|d| {
        write(&d.join("cfg/containers/auth.json"), &auths(&reg, PASSWORD));
        vec![("XDG_CONFIG_HOME", s(&d.join("cfg")))]
    });
    case("~/.config/containers/auth.json", &|d| {
        write(
            &d.join(".config/containers/auth.json"),
            &auths(&reg, PASSWORD),
        );
        vec![]
    });
    case("DOCKER_CONFIG", &|d| {
        write(&d.join("dk/config.json"), &auths(&reg, PASSWORD));
        vec![("DOCKER_CONFIG", s(&d.join("dk")))]
    });
    case("~/.docker/config.json", &|d| {
        write(&d.join(".docker/config.json"), &auths(&reg, PASSWORD));
        vec![]
    });
    let path = |bin: PathBuf| {
        let mut p = bin.into_os_string();
        if let Some(sys) = std::env::var_os("PATH") {
            p.push(":");
            p.push(sys);
        }
        p.to_string_lossy().into_owned()
    };
    case("credHelpers", &|d| {
        let bin = helper(d, &host, PASSWORD);
        write(
            &d.join("dk/config.json"),
            &format!(r#"{{"credHelpers":{{"{host}":"test"}}}}"#),
        );
        vec![("DOCKER_CONFIG", s(&d.join("dk"))), ("PATH", path(bin))]
    });
    case("credsStore", &|d| {
        let bin = helper(d, &host, PASSWORD);
        write(
            &d.join(".docker/config.json"),
            &format!(r#"{{"auths":{{"{host}":{{}}}},"credsStore":"test"}}"#),
        );
        vec![("PATH", path(bin))]
    });
}

#[test]
fn the_first_file_with_the_host_wins_and_registry_auth_file_stands_alone() {
    let reg = secure_registry();
    // XDG_RUNTIME_DIR's auth.json comes before DOCKER_CONFIG's config.json.
    let dir = project(&reg, 801);
    let d = dir.path();
    write(&d.join("run/containers/auth.json"), &auths(&reg, PASSWORD));
    write(&d.join("dk/config.json"), &auths(&reg, WRONG));
    let env = vec![
        ("XDG_RUNTIME_DIR", s(&d.join("run"))),
        ("DOCKER_CONFIG", s(&d.join("dk"))),
    ];
    let r = apply(d, &env);
    assert_eq!(r.code, Some(0), "runtime dir first\n{}", r.out);
    no_secret("precedence", &r);

    // Swapped: the wrong password comes first and is used (then refused).
    let dir = project(&reg, 802);
    let d = dir.path();
    write(&d.join("run/containers/auth.json"), &auths(&reg, WRONG));
    write(&d.join("dk/config.json"), &auths(&reg, PASSWORD));
    let env = vec![
        ("XDG_RUNTIME_DIR", s(&d.join("run"))),
        ("DOCKER_CONFIG", s(&d.join("dk"))),
    ];
    let r = apply(d, &env);
    assert_eq!(r.code, Some(1), "wrong password first\n{}", r.out);
    assert!(r.out.contains(USER), "names the user\n{}", r.out);
    no_secret("precedence, refused", &r);

    // A file without the host is passed over.
    let dir = project(&reg, 803);
    let d = dir.path();
    write(
        &d.join("run/containers/auth.json"),
        r#"{"auths":{"other.example:5000":{"auth":"eDp5"}}}"#,
    );
    write(&d.join("dk/config.json"), &auths(&reg, PASSWORD));
    let env = vec![
        ("XDG_RUNTIME_DIR", s(&d.join("run"))),
        ("DOCKER_CONFIG", s(&d.join("dk"))),
    ];
    let r = apply(d, &env);
    assert_eq!(r.code, Some(0), "file without the host skipped\n{}", r.out);

    // REGISTRY_AUTH_FILE, when set, is the only file (as in podman/skopeo).
    let dir = project(&reg, 804);
    let d = dir.path();
    write(
        &d.join("only.json"),
        r#"{"auths":{"other.example:5000":{"auth":"eDp5"}}}"#,
    );
    write(&d.join(".docker/config.json"), &auths(&reg, PASSWORD));
    let r = apply(d, &[("REGISTRY_AUTH_FILE", s(&d.join("only.json")))]);
    assert_eq!(r.code, Some(1), "REGISTRY_AUTH_FILE alone\n{}", r.out);

    // Explicit credentials in the configuration beat every file.
    let dir = project(&reg, 805);
    let d = dir.path();
    let hcl = ok(std::fs::read_to_string(d.join("main.hcl")), "read");
    write(
        &d.join("main.hcl"),
        &format!(
            "variable \"pw\" {{\n  type      = string\n  sensitive = true\n}}\n{}",
            hcl.replace(
                "  namespace",
                &format!("  username = \"{USER}\"\n  password = var.pw\n  namespace"),
            )
        ),
    );
    write(&d.join(".docker/config.json"), &auths(&reg, WRONG));
    let r = apply(d, &[("MIRRORPLAN_VAR_pw", PASSWORD.to_string())]);
    assert_eq!(r.code, Some(0), "explicit credentials first\n{}", r.out);
    no_secret("explicit", &r);
}

#[test]
fn a_malformed_credential_file_is_an_error_naming_it() {
    let reg = secure_registry();
    let dir = project(&reg, 901);
    let d = dir.path();
    let f = d.join("dk/config.json");
    let secret_b64 = b64(&format!("{USER}:{PASSWORD}"));
    write(
        &f,
        &format!(
            r#"{{"auths": {{"{}": {{"auth": "{secret_b64}"}}"#,
            reg.host_port()
        ),
    );
    let r = apply(d, &[("DOCKER_CONFIG", s(&d.join("dk")))]);
    assert_eq!(r.code, Some(1), "malformed file\n{}", r.out);
    let flat = r.out.replace('\n', "");
    assert!(flat.contains("config.json"), "names the file\n{}", r.out);
    assert!(r.out.contains("not valid JSON"), "says why\n{}", r.out);
    assert!(!r.out.contains(&secret_b64), "quotes the file\n{}", r.out);
    no_secret("malformed", &r);
}

/// `credentials_from = "none"`: the files are not looked at, the registry
/// sees an anonymous client; an unknown value is a configuration error at
/// its line.
#[test]
fn credentials_from_none_stays_anonymous() {
    let reg = secure_registry();
    let with = |dir: &Path, value: &str| {
        let hcl = ok(std::fs::read_to_string(dir.join("main.hcl")), "read");
        write(
            &dir.join("main.hcl"),
            &hcl.replace(
                "  namespace",
                &format!("  credentials_from = \"{value}\"\n  namespace"),
            ),
        );
        write(&dir.join(".docker/config.json"), &auths(&reg, PASSWORD));
    };
    let dir = project(&reg, 951);
    with(dir.path(), "environment");
    let r = apply(dir.path(), &[]);
    assert_eq!(r.code, Some(0), "environment\n{}", r.out);

    let dir = project(&reg, 952);
    with(dir.path(), "none");
    let r = apply(dir.path(), &[]);
    assert_eq!(r.code, Some(1), "none: anonymous\n{}", r.out);
    assert!(
        r.out.contains(&reg.host_port()),
        "names the registry\n{}",
        r.out
    );
    no_secret("none", &r);

    let dir = project(&reg, 953);
    with(dir.path(), "docker");
    let r = mp(dir.path(), &[], &["validate"]);
    assert_eq!(r.code, Some(1), "unknown value\n{}", r.out);
    assert!(r.out.contains("credentials_from"), "{}", r.out);
    assert!(r.out.contains("main.hcl"), "names the file\n{}", r.out);
}

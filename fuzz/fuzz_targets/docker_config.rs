//! Docker `config.json` and credential helper answers. The input is a host
//! name, a newline, then the file; the same bytes after the newline are
//! also read as a helper's answer. No helper runs: the helper directory is
//! an empty scratch directory. Neither credentials nor errors may show a
//! password.
#![no_main]

use std::ffi::OsString;

use libfuzzer_sys::fuzz_target;
use mirrorplan_fuzz::{render, scratch, scratch_file, split_at_byte};
use mirrorplan_registry::auth::resolve_docker_config;
use mirrorplan_registry::{fuzzing, Credentials};

/// Secrets long enough that no fixed part of an error message can hold
/// them by chance: every `auth` and `password` string of the file, and
/// the `Secret` of a helper answer.
fn secrets(file: &[u8]) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v.as_str()) {
                        ("auth" | "password" | "Secret", Some(s)) if s.len() >= 40 => {
                            out.push(s.to_owned())
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(file) {
        walk(&v, &mut out);
    }
    out
}

/// `text` shows none of `secrets` (unless the secret is also a non-secret
/// part of it: the host or a helper's name).
fn assert_hidden(text: &str, secrets: &[String], public: &[&str]) {
    for s in secrets {
        if public.iter().any(|p| p.contains(s.as_str())) {
            continue;
        }
        assert!(!text.contains(s.as_str()), "a secret is shown: {text}");
    }
}

fn check_credentials(c: &Credentials, secrets: &[String], public: &[&str]) {
    let shown = format!("{c:?}").replace(&format!("{:?}", c.user), "");
    assert_hidden(&shown, secrets, &[public, &[c.user.as_str()]].concat());
}

fuzz_target!(|data: &[u8]| {
    let (host, file) = split_at_byte(data, b'\n');
    let Ok(host) = std::str::from_utf8(host) else {
        return;
    };
    let secrets = secrets(file);
    let helpers = OsString::from(scratch("docker_config").join("helpers"));
    let path = scratch_file("docker_config", "config.json", file);
    let path_text = path.to_string_lossy().into_owned();
    match resolve_docker_config(&path, host, Some(&helpers)) {
        Ok(Some(creds)) => check_credentials(&creds, &secrets, &[host]),
        Ok(None) => {}
        Err(e) => {
            // errors name the file, the host and a helper's program
            render(&e);
            let shown = format!("{e} {e:?}").replace(&path_text, "");
            let names = helper_names(&String::from_utf8_lossy(file));
            assert_hidden(&shown, &secrets, &[host, &names]);
        }
    }
    match fuzzing::helper_reply(file) {
        Ok(creds) => check_credentials(&creds, &secrets, &[host]),
        Err(e) => assert_hidden(&e, &secrets, &[]),
    }
});

/// The helper names of the file (`credHelpers` values and `credsStore`),
/// which errors may name.
fn helper_names(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return String::new();
    };
    let mut names = String::new();
    if let Some(h) = v.get("credHelpers").and_then(|h| h.as_object()) {
        for n in h.values().filter_map(|n| n.as_str()) {
            names.push_str(n);
            names.push('\n');
        }
    }
    if let Some(s) = v.get("credsStore").and_then(|s| s.as_str()) {
        names.push_str(s);
    }
    names
}

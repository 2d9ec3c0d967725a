//! Issue 17 item 5 through the `mirrorplan` binary: a registry block's
//! `max_concurrency`, `rate_limit` and `retry { attempts, max_delay }`,
//! checked at load, and applied to a real registry behind the harness's
//! fault proxy, which answers `429` with `Retry-After` and records when
//! each request came and when its answer was known.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{run, run_ok, text};
use mirrorplan_harness::{
    Fault, FaultProxy, ProxiedRequest, ProxyMode, Registry, RegistryOptions, Rule,
};
use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, LayerCompression, Packing};

/// A plain registry with the fault proxy in front of it.
fn proxied_registry(seed: u64) -> (Registry, FaultProxy) {
    let reg = Registry::start(RegistryOptions::default())
        .unwrap_or_else(|e| panic!("starting the registry: {e}"));
    let proxy = FaultProxy::start(reg.addr(), ProxyMode::Http, seed)
        .unwrap_or_else(|e| panic!("starting the proxy: {e}"));
    (reg, proxy)
}

/// A configuration directory with a bundle of `images` images pushed to
/// the registry at `endpoint`, whose block also has `limits`.
fn config(endpoint: &str, images: usize, limits: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write_oci_bundle(
        dir.path().join("b.tar.gz"),
        &FixtureSpec {
            seed: 17,
            images,
            layers_per_image: 2,
            shared_base_layers: 1,
            layer_size: 4096,
            multi_arch: false,
            layer_compression: LayerCompression::Gzip,
        },
        Packing::TarGz,
    )
    .unwrap_or_else(|e| panic!("writing the bundle: {e}"));
    write(
        dir.path(),
        &format!(
            "registry \"mirror\" {{\n  endpoint  = \"{endpoint}\"\n  namespace = \"ns\"\n{limits}}}\n\n\
             image_set \"b\" {{\n  registry = registry.mirror\n  bundle   = \"b.tar.gz\"\n}}\n"
        ),
    );
    dir
}

fn write(dir: &Path, hcl: &str) {
    std::fs::write(dir.join("main.hcl"), hcl).unwrap_or_else(|e| panic!("writing main.hcl: {e}"));
}

fn all(o: &std::process::Output) -> String {
    format!("{}\n{}", text(&o.stdout), text(&o.stderr))
}

/// The first request after `r` (in the proxy's log) with the same method
/// and target: its retry.
fn retry_of(log: &[ProxiedRequest], i: usize) -> Option<&ProxiedRequest> {
    let r = &log[i];
    log[i + 1..]
        .iter()
        .find(|n| n.method == r.method && n.target == r.target)
}

#[test]
fn too_many_requests_with_retry_after_is_waited_out() {
    let (_reg, proxy) = proxied_registry(1);
    proxy.set_rules(vec![Rule::always(Fault::Status {
        code: 429,
        retry_after: Some(1),
    })
    .times(3)]);
    let dir = config(
        &format!("http://{}", proxy.host_port()),
        2,
        "  retry {\n    attempts  = 4\n    max_delay = \"30s\"\n  }\n",
    );
    let o = run(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(0), "apply through 429s:\n{}", all(&o));

    let log = proxy.requests();
    assert_eq!(
        assert_retried_after_a_second(&log),
        3,
        "three requests refused: {log:#?}"
    );
    // everything arrived: nothing left to do
    run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);
}

/// Each 429 of `log` was retried no sooner than one second (its
/// `Retry-After`) after the proxy answered it; returns how many there were.
fn assert_retried_after_a_second(log: &[ProxiedRequest]) -> usize {
    let refused: Vec<usize> = (0..log.len())
        .filter(|i| log[*i].status == Some(429))
        .collect();
    for &i in &refused {
        let r = &log[i];
        let retry = retry_of(log, i)
            .unwrap_or_else(|| panic!("{} {} was not retried: {log:#?}", r.method, r.target));
        let answered = r
            .answered_at
            .unwrap_or_else(|| panic!("no answer time: {r:?}"));
        assert!(
            retry.received_at >= answered + Duration::from_secs(1),
            "{} {} retried {:?} after its 429, before the Retry-After of 1s",
            r.method,
            r.target,
            retry.received_at.saturating_sub(answered)
        );
    }
    refused.len()
}

/// An upstream's limits come from the registry block naming its host:
/// copies from it wait out its 429s and send one request at a time.
#[test]
fn an_upstream_registry_block_limits_the_copies_from_it() {
    let (upstream, proxy) = proxied_registry(4);
    let mirror = Registry::start(RegistryOptions::default())
        .unwrap_or_else(|e| panic!("starting the mirror: {e}"));
    // the images, pushed straight into the upstream (not through the proxy)
    let seed = config(&upstream.url(), 2, "");
    run_ok(seed.path(), &["apply", "--auto-approve"], 0);

    let p = proxy.host_port();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        dir.path(),
        &format!(
            "registry \"upstream\" {{\n  endpoint        = \"http://{p}\"\n  max_concurrency = 1\n  \
             retry {{\n    attempts  = 4\n    max_delay = \"30s\"\n  }}\n}}\n\n\
             registry \"mirror\" {{\n  endpoint  = \"{m}\"\n  namespace = \"copy\"\n}}\n\n\
             image_set \"c\" {{\n  registry = registry.mirror\n  images   = [\n    \
             \"{p}/ns/mirrorplan-fixtures/app-0:1.0\",\n    \"{p}/ns/mirrorplan/tool-1:v1\",\n  ]\n}}\n",
            m = mirror.url(),
        ),
    );
    proxy.set_rules(vec![Rule::always(Fault::Status {
        code: 429,
        retry_after: Some(1),
    })
    .times(2)]);
    let o = run(
        dir.path(),
        &["apply", "--auto-approve", "--parallelism", "8"],
    );
    assert_eq!(o.status.code(), Some(0), "copy through 429s:\n{}", all(&o));
    let log = proxy.requests();
    assert_eq!(assert_retried_after_a_second(&log), 2, "two 429s: {log:#?}");
    assert!(
        log.iter()
            .any(|r| r.method == "GET" && r.target.contains("/blobs/sha256:")),
        "the blobs were read through the proxy: {log:#?}"
    );
    assert_eq!(
        proxy.max_in_flight(),
        1,
        "one request at a time to the upstream"
    );
    run_ok(dir.path(), &["plan", "--detailed-exitcode"], 0);
}

#[test]
fn max_concurrency_one_sends_one_request_at_a_time() {
    let (_reg, proxy) = proxied_registry(2);
    let dir = config(
        &format!("http://{}", proxy.host_port()),
        4,
        "  max_concurrency = 1\n  rate_limit      = \"1000/s\"\n",
    );
    run_ok(
        dir.path(),
        &["apply", "--auto-approve", "--parallelism", "8"],
        0,
    );
    let log = proxy.requests();
    assert!(
        log.iter().filter(|r| r.method == "PUT").count() >= 4,
        "the images were pushed through the proxy: {log:#?}"
    );
    assert!(
        log.iter().all(|r| r.answered_at.is_some()),
        "every request answered"
    );
    assert_eq!(
        proxy.max_in_flight(),
        1,
        "at most one request in flight at the registry"
    );
}

#[test]
fn attempts_exhausted_is_a_clear_error_naming_the_registry_and_the_429() {
    let (_reg, proxy) = proxied_registry(3);
    proxy.set_rules(vec![Rule::always(Fault::Status {
        code: 429,
        retry_after: Some(1),
    })]);
    let dir = config(
        &format!("http://{}", proxy.host_port()),
        1,
        "  retry {\n    attempts  = 2\n    max_delay = \"1s\"\n  }\n",
    );
    let o = run(dir.path(), &["apply", "--auto-approve"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "apply against a registry that only answers 429:\n{}",
        all(&o)
    );
    let out = all(&o);
    assert!(
        out.contains(&proxy.host_port()),
        "names the registry:\n{out}"
    );
    assert!(
        out.contains("HTTP 429 after 2 attempts"),
        "names the 429 and the attempts:\n{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
    let log = proxy.requests();
    let first = &log[0];
    let tries = log
        .iter()
        .filter(|r| r.method == first.method && r.target == first.target)
        .count();
    assert_eq!(
        tries, 2,
        "{} {} tried twice: {log:#?}",
        first.method, first.target
    );
}

#[test]
fn invalid_limits_are_diagnostics_with_their_lines() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    write(
        dir.path(),
        "registry \"mirror\" {\n  endpoint        = \"http://127.0.0.1:5000\"\n  \
         max_concurrency = 0\n  rate_limit      = \"10/h\"\n  retry {\n    attempts  = 0\n    \
         max_delay = \"soon\"\n  }\n}\n\nregistry \"store\" {\n  endpoint   = \"oci:./store\"\n  \
         rate_limit = \"5/s\"\n}\n",
    );
    let o = run_ok(dir.path(), &["validate", "--json"], 1);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("validate --json is not JSON ({e}): {}", all(&o)));
    let diags = doc["diagnostics"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no diagnostics: {doc}"));
    let at = |needle: &str| -> (String, u64) {
        let d = diags
            .iter()
            .find(|d| d["message"].as_str().is_some_and(|m| m.contains(needle)))
            .unwrap_or_else(|| panic!("no diagnostic saying {needle:?}: {diags:#?}"));
        assert_eq!(d["code"], "mirrorplan::config::invalid_value", "{d}");
        assert_eq!(d["file"], "main.hcl", "{d}");
        (
            d["message"].as_str().unwrap_or_default().to_string(),
            d["line"].as_u64().unwrap_or(0),
        )
    };
    assert_eq!(at("`max_concurrency` must be at least 1").1, 3);
    let (m, line) = at("invalid rate_limit");
    assert_eq!(line, 4);
    assert!(m.contains("10/h") && m.contains("/s or /m"), "{m}");
    assert_eq!(at("`retry.attempts` must be at least 1").1, 6);
    assert_eq!(at("invalid retry.max_delay").1, 7);
    assert_eq!(at("an `oci:` store takes no request limits").1, 13);
}

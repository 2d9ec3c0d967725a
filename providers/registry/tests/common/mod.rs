//! Shared helpers of the network tests: start harness registries and build
//! clients for them.

#![allow(dead_code)]

use mirrorplan_harness::{Credentials, Registry, RegistryOptions};
use mirrorplan_registry::{
    Auth, ClientOptions, RegistryClient, RegistryTarget, RetryPolicy, Scheme, Secret,
};
use std::time::Duration;

pub const USER: &str = "mirror-user";
pub const PASSWORD: &str = "s3cret-Pa55";

pub fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

pub fn tmp() -> tempfile::TempDir {
    ok(tempfile::tempdir(), "tempdir")
}

/// A TLS + htpasswd registry.
pub fn secure_registry() -> Registry {
    ok(
        Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            ..Default::default()
        }),
        "start TLS registry",
    )
}

/// A plain HTTP registry without auth.
pub fn plain_registry() -> Registry {
    ok(
        Registry::start(RegistryOptions::default()),
        "start registry",
    )
}

/// Fast retries so failure tests stay short.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(400),
        },
        ..ClientOptions::default()
    }
}

pub fn target_for(reg: &Registry, password: Option<&str>) -> RegistryTarget {
    let scheme = if reg.ca_cert_path().is_some() {
        Scheme::Https
    } else {
        Scheme::Http
    };
    let mut t = RegistryTarget::new(scheme, reg.host_port());
    if let Some(ca) = reg.ca_cert_path() {
        t.ca_cert_pem = Some(ok(std::fs::read(ca), "read CA"));
    }
    if let Some(pw) = password {
        t.auth = Auth::Basic {
            user: USER.into(),
            password: Secret::new(pw),
        };
    }
    t
}

pub fn client_for(reg: &Registry) -> RegistryClient {
    let pw = reg.credentials().map(|_| PASSWORD);
    ok(
        RegistryClient::with_options(target_for(reg, pw), fast_options()),
        "client",
    )
}

/// Digest of `docker://HOST/REPO:TAG`'s manifest as skopeo reads it
/// (independent of this crate): `skopeo inspect --raw | sha256`.
pub fn skopeo_manifest_digest(reg: &Registry, reference: &str) -> Option<String> {
    use sha2::Digest as _;
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    match reg.certs_dir() {
        Some(d) => {
            cmd.arg("--cert-dir").arg(d);
        }
        None => {
            cmd.arg("--tls-verify=false");
        }
    }
    if let Some(c) = reg.credentials() {
        cmd.arg("--creds")
            .arg(format!("{}:{}", c.username(), c.password()));
    }
    cmd.arg(format!("docker://{}/{reference}", reg.host_port()));
    let out = ok(cmd.output(), "run skopeo");
    if !out.status.success() {
        return None;
    }
    let hash = sha2::Sha256::digest(&out.stdout);
    Some(format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Lines of the registry's access log matching all `needles`.
pub fn log_lines(reg: &Registry, needles: &[&str]) -> usize {
    let log = std::fs::read_to_string(reg.log_path()).unwrap_or_default();
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

//! The registry starts for real: TLS + htpasswd auth answers `/v2/` with
//! 200 for the right credentials and 401 without, survives stop/start on the
//! same port, and plain HTTP works without auth.

use std::error::Error;
use std::process::Command;

use mirrorplan_harness::{Credentials, Registry, RegistryOptions};

type TestResult = Result<(), Box<dyn Error>>;

/// `curl` exit code and the HTTP status it printed.
fn curl_v2(reg: &Registry, ca: bool, user: Option<&str>) -> Result<(i32, String), Box<dyn Error>> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "10",
    ]);
    if ca {
        let ca_path = reg.ca_cert_path().ok_or("TLS registry without CA")?;
        cmd.arg("--cacert").arg(ca_path);
    }
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    let out = cmd.arg(format!("{}/v2/", reg.url())).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[test]
fn tls_auth_registry_requires_credentials_and_survives_restart() -> TestResult {
    let mut reg = Registry::start(RegistryOptions {
        tls: true,
        auth: Some(Credentials::new("mpuser", "s3cret-pw")),
        ..Default::default()
    })?;
    assert!(reg.url().starts_with("https://127.0.0.1:"), "{}", reg.url());
    assert_eq!(reg.host_port(), reg.addr().to_string());
    assert!(reg.storage_dir().is_dir());

    assert_eq!(
        curl_v2(&reg, true, Some("mpuser:s3cret-pw"))?,
        (0, "200".into())
    );
    assert_eq!(curl_v2(&reg, true, None)?, (0, "401".into()));
    assert_eq!(
        curl_v2(&reg, true, Some("mpuser:wrong"))?,
        (0, "401".into())
    );
    // Without the generated CA the certificate is not trusted (curl exit 60).
    assert_eq!(curl_v2(&reg, false, Some("mpuser:s3cret-pw"))?.0, 60);
    // The harness's own probe agrees.
    assert_eq!(reg.v2_status(true)?, 200);
    assert_eq!(reg.v2_status(false)?, 401);

    // Stop: nothing answers; start again: same port, answers again.
    let addr = reg.addr();
    reg.stop();
    assert!(!reg.is_running());
    assert_eq!(
        curl_v2(&reg, true, Some("mpuser:s3cret-pw"))?.0,
        7,
        "connection refused expected"
    );
    reg.start_again()?;
    assert_eq!(reg.addr(), addr);
    assert_eq!(
        curl_v2(&reg, true, Some("mpuser:s3cret-pw"))?,
        (0, "200".into())
    );
    Ok(())
}

#[test]
fn docker_config_json_holds_base64_credentials_and_debug_hides_password() -> TestResult {
    let reg = Registry::start(RegistryOptions {
        tls: false,
        auth: Some(Credentials::new("u1", "p@ss:word")),
        ..Default::default()
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&reg.docker_config_json().ok_or("no config json")?)?;
    let auth = json["auths"][reg.host_port()]["auth"]
        .as_str()
        .ok_or("no auth entry")?;
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth)?;
    assert_eq!(decoded, b"u1:p@ss:word");
    let path = reg.write_docker_config()?.ok_or("no config written")?;
    assert_eq!(
        std::fs::read_to_string(path)?,
        reg.docker_config_json().ok_or("none")?
    );

    let debug = format!("{reg:?}");
    assert!(
        !debug.contains("p@ss:word"),
        "password leaked in Debug: {debug}"
    );
    assert!(debug.contains("u1"));
    Ok(())
}

#[test]
fn plain_http_registry_without_auth_answers_200() -> TestResult {
    let reg = Registry::start(RegistryOptions::default())?;
    assert!(reg.url().starts_with("http://127.0.0.1:"));
    assert!(reg.ca_cert_path().is_none());
    assert!(reg.docker_config_json().is_none());
    assert_eq!(curl_v2(&reg, false, None)?, (0, "200".into()));
    Ok(())
}

#[test]
fn dropping_the_registry_frees_the_port_and_removes_the_temp_dir() -> TestResult {
    let reg = Registry::start(RegistryOptions::default())?;
    let addr = reg.addr();
    let config = reg.config_path().to_owned();
    assert!(config.is_file());
    drop(reg);
    assert!(
        !config.exists(),
        "temp dir left behind: {}",
        config.display()
    );
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "registry still listening on {addr}"
    );
    Ok(())
}

/// `curl -s` with these arguments: (exit code, stdout).
fn curl(args: &[&str]) -> Result<(i32, String), Box<dyn Error>> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// Token auth: the registry challenges with `Bearer realm=…` naming the
/// harness's token service, which grants a token for the right
/// credentials only; the registry accepts that token (ES256, `kid` found
/// in its rootcertbundle, issuer and audience as configured).
#[test]
fn token_auth_registry_accepts_the_token_services_tokens_only() -> TestResult {
    use mirrorplan_harness::{TOKEN_ISSUER, TOKEN_SERVICE};
    let reg = Registry::start(RegistryOptions {
        auth: Some(Credentials::new("tuser", "tpass")),
        token_auth: true,
        ..Default::default()
    })?;
    let token = reg.token_service().ok_or("no token service")?;
    let config = std::fs::read_to_string(reg.config_path())?;
    assert!(
        config.contains(&format!("issuer: {TOKEN_ISSUER}")),
        "{config}"
    );
    assert!(!config.contains("htpasswd"), "{config}");

    let v2 = format!("{}/v2/", reg.url());
    let (_, head) = curl(&["-o", "/dev/null", "-D", "-", &v2])?;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let challenge = format!(
        "Bearer realm=\"{}\",service=\"{TOKEN_SERVICE}\"",
        token.realm()
    );
    assert!(head.contains(&challenge), "{head}");

    let url = format!(
        "{}?service={TOKEN_SERVICE}&scope=repository%3Ans%2Fimg%3Apull",
        token.realm()
    );
    let (_, denied) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "tuser:wrong",
        &url,
    ])?;
    assert_eq!(denied, "401");
    let (code, body) = curl(&["-u", "tuser:tpass", &url])?;
    assert_eq!(code, 0, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body)?;
    let jwt = json["token"].as_str().ok_or("no token")?;
    assert_eq!(json["access_token"].as_str(), Some(jwt));
    let bearer = format!("Authorization: Bearer {jwt}");
    let (_, ok) = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-H", &bearer, &v2])?;
    assert_eq!(ok, "200", "{}", std::fs::read_to_string(reg.log_path())?);
    // the scope granted: the repository answers (unknown), not 401
    let repo = format!("{}/v2/ns/img/tags/list", reg.url());
    let (_, scoped) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &bearer,
        &repo,
    ])?;
    assert_eq!(scoped, "404");
    // a scope not granted is refused
    let other = format!("{}/v2/ns/other/tags/list", reg.url());
    let (_, refused) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &bearer,
        &other,
    ])?;
    assert_eq!(refused, "401");
    // a tampered token is refused
    let bad = format!("Authorization: Bearer {jwt}x");
    let (_, tampered) = curl(&["-o", "/dev/null", "-w", "%{http_code}", "-H", &bad, &v2])?;
    assert_eq!(tampered, "401");

    let reqs = token.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(!reqs[0].granted);
    assert!(reqs[1].granted);
    assert_eq!(reqs[1].scopes, vec!["repository:ns/img:pull".to_string()]);
    Ok(())
}

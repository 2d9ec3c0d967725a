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

//! Snapshot and property tests of the hosts.toml renderer.

use mirrorplan_node::{
    config_auths, render_hosts, ConfigStyle, DesiredFile, EndpointScheme, MirrorSpec,
    NodeMirrorConfig, PullAuth, Secret, MODE_PUBLIC, MODE_SECRET,
};

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

fn cfg(mirrors: Vec<MirrorSpec>) -> NodeMirrorConfig {
    let mut c = NodeMirrorConfig::new(ConfigStyle::Hosts);
    c.mirrors = mirrors;
    c
}

/// All files as one text: header line per file, then its contents.
fn show(files: &[DesiredFile]) -> String {
    let mut out = String::new();
    for f in files {
        out.push_str(&format!(
            "=== {} (mode {:o}{})\n",
            f.path,
            f.mode,
            if f.sensitive { ", sensitive" } else { "" }
        ));
        out.push_str(&String::from_utf8_lossy(&f.contents));
    }
    out
}

/// Every hosts.toml must parse as TOML and have the documented shape.
fn check_toml(files: &[DesiredFile]) -> Result<(), Box<dyn std::error::Error>> {
    for f in files.iter().filter(|f| f.path.ends_with("hosts.toml")) {
        let v: toml::Table = toml::from_str(std::str::from_utf8(&f.contents)?)?;
        assert!(
            v.get("server").and_then(|s| s.as_str()).is_some(),
            "{}",
            f.path
        );
        let hosts = v
            .get("host")
            .and_then(|h| h.as_table())
            .ok_or("no [host]")?;
        for (url, h) in hosts {
            let caps = h
                .get("capabilities")
                .and_then(|c| c.as_array())
                .ok_or("caps")?;
            assert_eq!(caps.len(), 2, "{url}");
        }
        assert_eq!(f.sensitive, f.mode == MODE_SECRET);
        assert_eq!(
            f.sensitive,
            String::from_utf8_lossy(&f.contents).contains("Authorization")
        );
    }
    Ok(())
}

fn lab_mirror(host_port: &str) -> MirrorSpec {
    let mut m = MirrorSpec::new(host_port);
    m.namespace = Some("test-namespace".into());
    m.ca_cert_pem = Some(CA.as_bytes().to_vec());
    m.pull_auth = Some(PullAuth::basic("mpuser", "mppass"));
    m
}

#[test]
fn matches_what_the_lab_verified_on_node1() -> Result<(), Box<dyn std::error::Error>> {
    let c = cfg(vec![lab_mirror("10.231.0.1:5443")]);
    let files = render_hosts(&c)?;
    check_toml(&files)?;
    // lab/verify.sh node1 hosts.toml, with mirrorplan's CA file name; the
    // basic credentials go to config.toml's registry.configs (which also
    // answers a token-auth registry's Bearer challenge), not a header
    let expected = r#"server = "https://gcr.io"

[host."https://10.231.0.1:5443/v2/test-namespace"]
  capabilities = ["pull", "resolve"]
  ca = "/etc/containerd/certs.d/gcr.io/10.231.0.1_5443-ca.crt"
  override_path = true
"#;
    let auths = config_auths(&c);
    assert_eq!(auths.len(), 1);
    assert_eq!(
        (auths[0].host.as_str(), auths[0].username.as_str()),
        ("10.231.0.1:5443", "mpuser")
    );
    assert_eq!(auths[0].password.expose(), "mppass");
    assert!(!format!("{auths:?}").contains("mppass"));
    let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/containerd/certs.d/gcr.io/10.231.0.1_5443-ca.crt",
            "/etc/containerd/certs.d/gcr.io/hosts.toml"
        ]
    );
    assert_eq!(std::str::from_utf8(&files[1].contents)?, expected);
    assert_eq!((files[1].mode, files[1].sensitive), (MODE_PUBLIC, false));
    assert_eq!(files[0].contents, CA.as_bytes());
    assert_eq!((files[0].mode, files[0].sensitive), (MODE_PUBLIC, false));
    Ok(())
}

#[test]
fn one_mirror_no_namespace() -> Result<(), Box<dyn std::error::Error>> {
    let files = render_hosts(&cfg(vec![MirrorSpec::new("172.18.0.20:5000")]))?;
    check_toml(&files)?;
    insta::assert_snapshot!(show(&files));
    Ok(())
}

#[test]
fn namespace_ca_and_auth() -> Result<(), Box<dyn std::error::Error>> {
    let files = render_hosts(&cfg(vec![lab_mirror("172.18.0.20:5000")]))?;
    check_toml(&files)?;
    insta::assert_snapshot!(show(&files));
    Ok(())
}

#[test]
fn two_mirrors_in_priority_order() -> Result<(), Box<dyn std::error::Error>> {
    let mut second = MirrorSpec::new("privateregistry2.io");
    second.endpoint_scheme = EndpointScheme::Http;
    let files = render_hosts(&cfg(vec![
        MirrorSpec::new("privateregistry.io"),
        second.clone(),
    ]))?;
    check_toml(&files)?;
    insta::assert_snapshot!(show(&files));
    // reversing the list reverses the order in the file
    let reversed = render_hosts(&cfg(vec![second, MirrorSpec::new("privateregistry.io")]))?;
    let text = String::from_utf8_lossy(&reversed[0].contents).into_owned();
    let first = text.find("privateregistry2.io").ok_or("missing")?;
    let other = text
        .find("\"https://privateregistry.io\"")
        .ok_or("missing")?;
    assert!(first < other, "{text}");
    Ok(())
}

#[test]
fn gcr_key_is_a_last_resort_entry_for_gcr_io_only() -> Result<(), Box<dyn std::error::Error>> {
    let mut c = cfg(vec![MirrorSpec::new("mirror.local:5000")]);
    c.mirrors[0].hosts = vec!["quay.io".into()];
    c.gcr_key = Some(Secret::new(
        r#"{"type": "service_account", "private_key_id": "k1"}"#,
    ));
    let files = render_hosts(&c)?;
    check_toml(&files)?;
    insta::assert_snapshot!(show(&files));
    let gcr = files
        .iter()
        .find(|f| f.path.ends_with("/gcr.io/hosts.toml"))
        .ok_or("no gcr.io")?;
    let text = String::from_utf8_lossy(&gcr.contents);
    let mirror_at = text.find("mirror.local").ok_or("mirror")?;
    let gcr_at = text.find("[host.\"https://gcr.io\"]").ok_or("gcr entry")?;
    assert!(
        mirror_at < gcr_at,
        "gcr.io entry must come after the mirrors"
    );
    assert!(gcr.sensitive);
    let quay = files
        .iter()
        .find(|f| f.path.ends_with("/quay.io/hosts.toml"))
        .ok_or("no quay.io")?;
    assert!(!quay.sensitive, "the gcr key must not leak to other hosts");
    // the key alone (no mirrors) still gives gcr.io credentials
    let mut only_key = cfg(vec![]);
    only_key.gcr_key = c.gcr_key.clone();
    let files = render_hosts(&only_key)?;
    assert_eq!(files.len(), 1);
    check_toml(&files)?;
    Ok(())
}

#[test]
fn hosts_lists_are_merged_deduplicated_and_sorted() -> Result<(), Box<dyn std::error::Error>> {
    let mut a = MirrorSpec::new("a.mirror:5000");
    a.hosts = vec!["somehost.io".into(), "docker.io".into(), "GCR.io".into()];
    let mut b = MirrorSpec::new("b.mirror:5000");
    b.namespace = Some("team".into());
    b.hosts = vec!["otherhost.io".into(), "somehost.io".into()];
    let files = render_hosts(&cfg(vec![a, b]))?;
    check_toml(&files)?;
    insta::assert_snapshot!(show(&files));
    let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/containerd/certs.d/docker.io/hosts.toml",
            "/etc/containerd/certs.d/gcr.io/hosts.toml",
            "/etc/containerd/certs.d/otherhost.io/hosts.toml",
            "/etc/containerd/certs.d/somehost.io/hosts.toml",
        ]
    );
    Ok(())
}

#[test]
fn rendering_is_deterministic_and_honours_config_path() -> Result<(), Box<dyn std::error::Error>> {
    let mut c = cfg(vec![lab_mirror("m:1")]);
    c.config_path = "/var/lib/certs.d/".into();
    let a = render_hosts(&c)?;
    assert_eq!(a, render_hosts(&c)?);
    assert!(a
        .iter()
        .all(|f| f.path.starts_with("/var/lib/certs.d/gcr.io/")));
    let hosts = a
        .iter()
        .find(|f| f.path.ends_with("hosts.toml"))
        .ok_or("no hosts.toml")?;
    let text = String::from_utf8_lossy(&hosts.contents);
    assert!(
        text.contains("ca = \"/var/lib/certs.d/gcr.io/m_1-ca.crt\""),
        "{text}"
    );
    Ok(())
}

#[test]
fn bearer_tokens_become_bearer_headers() -> Result<(), Box<dyn std::error::Error>> {
    let mut m = MirrorSpec::new("m:1");
    m.pull_auth = Some(PullAuth::Token(Secret::new("tok\"en")));
    let files = render_hosts(&cfg(vec![m]))?;
    let v: toml::Table = toml::from_str(std::str::from_utf8(&files[0].contents)?)?;
    let header = v["host"]["https://m:1"]["header"]["Authorization"][0].as_str();
    assert_eq!(header, Some("Bearer tok\"en"));
    assert!(!format!("{files:?}").contains("tok"));
    Ok(())
}

#[test]
fn mirrors_sharing_a_host_with_different_credentials_keep_the_header(
) -> Result<(), Box<dyn std::error::Error>> {
    // config.toml keys credentials by HOST:PORT: two sets for one host
    // cannot both go there, so each mirror keeps its own header
    let mut a = MirrorSpec::new("m:1");
    a.namespace = Some("a".into());
    a.pull_auth = Some(PullAuth::basic("ua", "pa"));
    let mut b = a.clone();
    b.namespace = Some("b".into());
    b.pull_auth = Some(PullAuth::basic("ub", "pb"));
    let c = cfg(vec![a.clone(), b]);
    assert!(config_auths(&c).is_empty());
    let files = render_hosts(&c)?;
    check_toml(&files)?;
    let text = String::from_utf8_lossy(&files[0].contents);
    assert_eq!(
        text.matches("Authorization = [\"Basic ").count(),
        2,
        "{text}"
    );
    assert!(files[0].sensitive);
    // the same credentials twice: one config.toml entry, no header
    let mut b2 = a.clone();
    b2.namespace = Some("b".into());
    let c = cfg(vec![a, b2]);
    assert_eq!(config_auths(&c).len(), 1);
    let files = render_hosts(&c)?;
    assert!(!String::from_utf8_lossy(&files[0].contents).contains("Authorization"));
    Ok(())
}

#[test]
fn no_mirrors_and_no_key_renders_nothing() -> Result<(), Box<dyn std::error::Error>> {
    assert!(render_hosts(&cfg(vec![]))?.is_empty());
    Ok(())
}

//! Snapshot and shape tests of the renderers for the runtimes that are not
//! configured through containerd's own files: CRI-O / podman
//! (`containers-registries.conf(5)`, `registries_conf`) and k3s / RKE2
//! (`registries.yaml`). k3s cannot run here: its snapshots are checked
//! against the format docs.k3s.io/installation/private-registry documents.

use mirrorplan_node::{
    edit_config, render_node_files, ConfigStyle, ContainerdVersion, DesiredFile, EndpointScheme,
    MirrorSpec, NodeError, NodeMirrorConfig, PullAuth, Secret, MODE_PUBLIC, MODE_SECRET,
};

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

fn cfg(style: ConfigStyle, mirrors: Vec<MirrorSpec>) -> NodeMirrorConfig {
    let mut c = NodeMirrorConfig::new(style);
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

/// The seed's mirror: a namespace, a private CA and pull credentials.
fn lab_mirror(host_port: &str) -> MirrorSpec {
    let mut m = MirrorSpec::new(host_port);
    m.namespace = Some("test-namespace".into());
    m.ca_cert_pem = Some(CA.as_bytes().to_vec());
    m.pull_auth = Some(PullAuth::basic("mpuser", "mppass"));
    m.hosts = vec!["quay.io".into()];
    m
}

fn http_mirror(host_port: &str) -> MirrorSpec {
    let mut m = MirrorSpec::new(host_port);
    m.endpoint_scheme = EndpointScheme::Http;
    m
}

fn file<'a>(files: &'a [DesiredFile], path: &str) -> &'a DesiredFile {
    files.iter().find(|f| f.path == path).unwrap_or_else(|| {
        panic!(
            "no {path} in {:?}",
            files.iter().map(|f| &f.path).collect::<Vec<_>>()
        )
    })
}

/// The `[[registry]]` tables of a drop-in: prefix, location, mirrors
/// (location, insecure) in order.
type Registries = Vec<(String, String, Vec<(String, bool)>)>;

fn registries(f: &DesiredFile) -> Registries {
    let v: toml::Table = toml::from_str(std::str::from_utf8(&f.contents).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", f.path));
    let s = |t: &toml::Value, k: &str| t.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    v.get("registry")
        .and_then(|r| r.as_array())
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let mirrors = r
                        .get("mirror")
                        .and_then(|m| m.as_array())
                        .map(|ms| {
                            ms.iter()
                                .map(|m| {
                                    let insecure = m.get("insecure").and_then(|i| i.as_bool());
                                    (s(m, "location"), insecure == Some(true))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (s(r, "prefix"), s(r, "location"), mirrors)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn registries_conf_namespace_ca_credentials_and_an_http_mirror(
) -> Result<(), Box<dyn std::error::Error>> {
    let mut c = cfg(
        ConfigStyle::RegistriesConf,
        vec![
            lab_mirror("172.18.0.20:5000"),
            http_mirror("172.18.0.21:5000"),
        ],
    );
    c.gcr_key = Some(Secret::new("{\"type\": \"service_account\"}"));
    let files = render_node_files(&c)?;
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/containers/auth.json",
            "/etc/containers/certs.d/172.18.0.20:5000/ca.crt",
            "/etc/containers/registries.conf.d/50-mirrorplan.conf",
        ]
    );
    // the drop-in: gcr.io through both mirrors in priority order, the
    // namespace in the location, `insecure` only on the http mirror;
    // quay.io only through the mirror that lists it
    let drop_in = file(
        &files,
        "/etc/containers/registries.conf.d/50-mirrorplan.conf",
    );
    assert_eq!(
        registries(drop_in),
        vec![
            (
                "gcr.io".to_string(),
                "gcr.io".to_string(),
                vec![
                    ("172.18.0.20:5000/test-namespace".to_string(), false),
                    ("172.18.0.21:5000".to_string(), true),
                ]
            ),
            (
                "quay.io".to_string(),
                "quay.io".to_string(),
                vec![("172.18.0.20:5000/test-namespace".to_string(), false)]
            ),
        ]
    );
    assert_eq!((drop_in.mode, drop_in.sensitive), (MODE_PUBLIC, false));
    // the CA where containers-certs.d(5) looks for it
    let ca = file(&files, "/etc/containers/certs.d/172.18.0.20:5000/ca.crt");
    assert_eq!(ca.contents, CA.as_bytes());
    // auth.json: the mirror's pull credentials and the gcr.io key, 0600
    let auth = file(&files, "/etc/containers/auth.json");
    assert_eq!((auth.mode, auth.sensitive), (MODE_SECRET, true));
    let json: serde_json::Value = serde_json::from_slice(&auth.contents)?;
    assert_eq!(
        json["auths"]["172.18.0.20:5000"]["auth"],
        "bXB1c2VyOm1wcGFzcw=="
    );
    assert!(json["auths"]["gcr.io"]["auth"].is_string());
    assert!(json["auths"].get("172.18.0.21:5000").is_none());
    insta::assert_snapshot!(show(&files));
    Ok(())
}

#[test]
fn registries_conf_one_open_mirror_has_no_auth_json() -> Result<(), Box<dyn std::error::Error>> {
    let mut c = cfg(
        ConfigStyle::RegistriesConf,
        vec![MirrorSpec::new("mirror.example:5000")],
    );
    c.config_path = "/srv/node/etc/containers/".into();
    let files = render_node_files(&c)?;
    assert_eq!(files.len(), 1, "{}", show(&files));
    insta::assert_snapshot!(show(&files));
    Ok(())
}

#[test]
fn registries_conf_and_k3s_refuse_what_their_formats_cannot_say() {
    for style in [
        ConfigStyle::RegistriesConf,
        ConfigStyle::K3s,
        ConfigStyle::Rke2,
    ] {
        // a bearer token: only containerd's hosts.toml can send one
        let mut m = MirrorSpec::new("m:5000");
        m.pull_auth = Some(PullAuth::Token(Secret::new("tok-s3cret")));
        let err = render_node_files(&cfg(style, vec![m])).err();
        let text = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(err, Some(NodeError::InvalidCredentials { .. })),
            "{style}: {text}"
        );
        assert!(text.contains("config_style = \"hosts\""), "{text}");
        assert!(!text.contains("tok-s3cret"), "{text}");
        // two mirrors on one host with different credentials
        let mut a = MirrorSpec::new("m:5000");
        a.namespace = Some("a".into());
        a.pull_auth = Some(PullAuth::basic("u1", "p1"));
        let mut b = a.clone();
        b.namespace = Some("b".into());
        b.pull_auth = Some(PullAuth::basic("u2", "p2"));
        let text = render_node_files(&cfg(style, vec![a, b]))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains("different credentials"), "{style}: {text}");
        assert!(!text.contains("p1") && !text.contains("p2"), "{text}");
    }
}

#[test]
fn k3s_namespace_ca_credentials_and_gcr_key() -> Result<(), Box<dyn std::error::Error>> {
    let mut c = cfg(ConfigStyle::K3s, vec![lab_mirror("172.18.0.20:5000")]);
    c.gcr_key = Some(Secret::new(
        "{\"type\": \"service_account\",\n \"k\": \"v\"}",
    ));
    let files = render_node_files(&c)?;
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/rancher/k3s/mirrorplan/172.18.0.20_5000-ca.crt",
            "/etc/rancher/k3s/registries.yaml",
        ]
    );
    let yaml = file(&files, "/etc/rancher/k3s/registries.yaml");
    assert_eq!((yaml.mode, yaml.sensitive), (MODE_SECRET, true));
    let text = std::str::from_utf8(&yaml.contents)?;
    // the shapes docs.k3s.io documents
    for want in [
        "mirrors:\n  \"gcr.io\":\n    endpoint:\n      - \"https://172.18.0.20:5000\"\n    rewrite:\n      \"^(.*)$\": \"test-namespace/$1\"\n",
        "configs:\n  \"172.18.0.20:5000\":\n    auth:\n      username: \"mpuser\"\n      password: \"mppass\"\n    tls:\n      ca_file: \"/etc/rancher/k3s/mirrorplan/172.18.0.20_5000-ca.crt\"\n",
        "  \"gcr.io\":\n    auth:\n      username: \"_json_key\"\n      password: \"{\\\"type\\\": \\\"service_account\\\",\\n \\\"k\\\": \\\"v\\\"}\"\n",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    insta::assert_snapshot!(show(&files));
    Ok(())
}

#[test]
fn rke2_two_mirrors_in_priority_order_without_credentials() -> Result<(), Box<dyn std::error::Error>>
{
    let mut second = http_mirror("privateregistry2.io");
    second.hosts = vec!["docker.io".into()];
    let files = render_node_files(&cfg(
        ConfigStyle::Rke2,
        vec![MirrorSpec::new("privateregistry.io"), second],
    ))?;
    assert_eq!(files.len(), 1);
    let yaml = &files[0];
    assert_eq!(yaml.path, "/etc/rancher/rke2/registries.yaml");
    assert_eq!((yaml.mode, yaml.sensitive), (MODE_PUBLIC, false));
    let text = std::str::from_utf8(&yaml.contents)?;
    assert!(
        !text.contains("rewrite") && !text.contains("configs"),
        "{text}"
    );
    insta::assert_snapshot!(show(&files));
    Ok(())
}

#[test]
fn k3s_refuses_mirrors_of_one_host_under_different_namespaces() {
    let mut a = MirrorSpec::new("a:5000");
    a.namespace = Some("ns-a".into());
    let b = MirrorSpec::new("b:5000");
    let err = render_node_files(&cfg(ConfigStyle::K3s, vec![a, b]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("gcr.io")
            && err.contains("ns-a")
            && err.contains("one `rewrite` per upstream host"),
        "{err}"
    );
}

#[test]
fn the_other_styles_never_change_config_toml() -> Result<(), Box<dyn std::error::Error>> {
    let existing = "version = 2\n# mine\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/x\"\n";
    for style in [
        ConfigStyle::RegistriesConf,
        ConfigStyle::K3s,
        ConfigStyle::Rke2,
    ] {
        let c = cfg(style, vec![lab_mirror("m:5000")]);
        let edit = edit_config(existing, ContainerdVersion::V1, &c)?;
        assert_eq!(edit.text, existing, "{style}");
        assert!(!edit.changed && edit.notes.is_empty() && !edit.contains_credentials);
        assert!(!style.edits_containerd_config());
        assert_eq!(ConfigStyle::parse(style.as_str()), Some(style));
    }
    Ok(())
}

//! config.toml editing: version detection, hosts/legacy switching, byte-for-byte
//! preservation of everything mirrorplan does not own.

use mirrorplan_node::{
    apply_legacy, edit_config, ensure_config_path, inspect_config, parse_containerd_release,
    parse_containerd_version, ConfigStyle, ContainerdVersion, MirrorSpec, NodeError,
    NodeMirrorConfig, PullAuth, Secret, DEFAULT_CONFIG_PATH,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What lab/up.sh writes for a netns node, plus comments a human added.
const NODE_CONFIG: &str = r#"# containerd config, edited by ops on 2024-05-01
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock" # default socket
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"
  # CRI settings below
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"   # keep overlayfs
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
"#;

/// What lab/up.sh writes for the legacy-style containerd (hand-written, not
/// managed by mirrorplan).
const LEGACY_CONFIG: &str = r#"version = 2
root = "/var/lib/containerd"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "127.0.0.1:5001/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".registry]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
        [plugins."io.containerd.grpc.v1.cri".registry.mirrors."gcr.io"]
          endpoint = ["https://127.0.0.1:5443/v2/test-namespace"]
      [plugins."io.containerd.grpc.v1.cri".registry.configs]
        [plugins."io.containerd.grpc.v1.cri".registry.configs."127.0.0.1:5443".tls]
          ca_file = "/tmp/lab/pki/ca.crt"
        [plugins."io.containerd.grpc.v1.cri".registry.configs."127.0.0.1:5443".auth]
          username = "mpuser"
          password = "mppass"
# trailing comment
"#;

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

fn lab_cfg(style: ConfigStyle) -> NodeMirrorConfig {
    let mut m = MirrorSpec::new("10.231.0.1:5443");
    m.namespace = Some("test-namespace".into());
    m.ca_cert_pem = Some(CA.as_bytes().to_vec());
    m.pull_auth = Some(PullAuth::basic("mpuser", "mppass"));
    m.hosts = vec!["registry.k8s.io".into()];
    let mut cfg = NodeMirrorConfig::new(style);
    cfg.mirrors = vec![m, MirrorSpec::new("backup.mirror:5000")];
    cfg
}

const V1: ContainerdVersion = ContainerdVersion::V1;
const V2: ContainerdVersion = ContainerdVersion::V2;

#[test]
fn parses_containerd_version_output() -> TestResult {
    let debian = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n";
    assert_eq!(parse_containerd_version(debian)?, V1);
    let r = parse_containerd_release(debian)?;
    assert_eq!((r.major, r.minor, r.patch), (1, 6, 20));
    assert!(r.supports_config_path());
    assert_eq!(
        parse_containerd_version(
            "containerd containerd.io 1.7.12 71909c1814c544ac47ab91d2e8b84718e517bb99"
        )?,
        V1
    );
    assert_eq!(
        parse_containerd_version("containerd github.com/containerd/containerd/v2 v2.0.0 207ad711eabd375a01713109a8a197d197ff6542")?,
        V2
    );
    assert!(
        !parse_containerd_release("containerd github.com/containerd/containerd v1.4.13 abc")?
            .supports_config_path()
    );
    for bad in [
        "",
        "bash: containerd: command not found",
        "containerd github.com/x",
        "containerd x 9.1.0",
    ] {
        assert!(
            matches!(
                parse_containerd_version(bad),
                Err(NodeError::VersionParse { .. })
            ),
            "{bad}"
        );
    }
    Ok(())
}

#[test]
fn empty_file_gets_minimal_config() -> TestResult {
    let v1 = ensure_config_path("", V1, DEFAULT_CONFIG_PATH)?;
    assert!(v1.changed);
    insta::assert_snapshot!("empty_v1", v1.text);
    let v2 = ensure_config_path("  \n", V2, DEFAULT_CONFIG_PATH)?;
    insta::assert_snapshot!("empty_v2", v2.text);
    let facts = inspect_config(&v2.text)?;
    assert_eq!(facts.version, Some(3));
    assert_eq!(facts.config_path.as_deref(), Some(DEFAULT_CONFIG_PATH));
    let parsed: toml::Table = toml::from_str(&v2.text)?;
    assert!(parsed["plugins"]["io.containerd.cri.v1.images"]["registry"]["config_path"].is_str());
    Ok(())
}

#[test]
fn already_configured_file_is_left_alone() -> TestResult {
    let edit = ensure_config_path(NODE_CONFIG, V1, DEFAULT_CONFIG_PATH)?;
    assert!(!edit.changed);
    assert_eq!(edit.text, NODE_CONFIG);
    assert!(edit.notes.is_empty());
    Ok(())
}

#[test]
fn changing_config_path_touches_one_value() -> TestResult {
    let edit = ensure_config_path(NODE_CONFIG, V1, "/etc/mirrorplan/certs.d")?;
    assert!(edit.changed);
    assert_eq!(
        edit.text,
        NODE_CONFIG.replace("/etc/containerd/certs.d\"", "/etc/mirrorplan/certs.d\"")
    );
    Ok(())
}

#[test]
fn missing_registry_table_is_added_without_touching_the_rest() -> TestResult {
    let without: String = NODE_CONFIG
        .lines()
        .filter(|l| !l.contains("registry") && !l.contains("config_path"))
        .map(|l| format!("{l}\n"))
        .collect();
    let edit = ensure_config_path(&without, V1, DEFAULT_CONFIG_PATH)?;
    assert!(edit.text.starts_with(&without), "{}", edit.text);
    insta::assert_snapshot!(edit.text);
    assert_eq!(
        inspect_config(&edit.text)?.config_path.as_deref(),
        Some(DEFAULT_CONFIG_PATH)
    );
    Ok(())
}

#[test]
fn hosts_style_removes_every_legacy_mirror_but_keeps_foreign_configs() -> TestResult {
    let before = inspect_config(LEGACY_CONFIG)?;
    assert_eq!(
        before.legacy_mirrors["gcr.io"],
        ["https://127.0.0.1:5443/v2/test-namespace"]
    );
    assert!(!before.conflict);
    let edit = ensure_config_path(LEGACY_CONFIG, V1, DEFAULT_CONFIG_PATH)?;
    insta::assert_snapshot!(edit.text);
    let after = inspect_config(&edit.text)?;
    assert!(after.legacy_mirrors.is_empty());
    assert!(!after.conflict);
    // configs.auth works together with config_path and is not ours: kept
    assert!(after.legacy_configs["127.0.0.1:5443"].has_auth);
    assert!(edit.contains_credentials);
    assert!(!format!("{edit:?}").contains("mppass"));
    assert!(
        edit.notes
            .iter()
            .any(|n| n.contains("not managed by mirrorplan")),
        "{:?}",
        edit.notes
    );
    // the part before the registry table is byte for byte the same
    let head = &LEGACY_CONFIG[..LEGACY_CONFIG
        .find("    [plugins.\"io.containerd.grpc.v1.cri\".registry]")
        .ok_or("head")?];
    assert!(edit.text.starts_with(head));
    assert!(edit.text.ends_with("# trailing comment\n"));
    Ok(())
}

#[test]
fn legacy_style_replaces_config_path() -> TestResult {
    let cfg = lab_cfg(ConfigStyle::Legacy);
    let edit = apply_legacy(NODE_CONFIG, V1, &cfg)?;
    assert!(edit.changed && edit.contains_credentials);
    insta::assert_snapshot!(edit.text);
    let facts = inspect_config(&edit.text)?;
    assert_eq!(facts.config_path, None);
    assert!(!facts.conflict);
    assert_eq!(
        facts.legacy_mirrors["gcr.io"],
        [
            "https://10.231.0.1:5443/v2/test-namespace",
            "https://backup.mirror:5000"
        ]
    );
    assert_eq!(
        facts.legacy_mirrors["registry.k8s.io"],
        ["https://10.231.0.1:5443/v2/test-namespace"]
    );
    let lab = &facts.legacy_configs["10.231.0.1:5443"];
    assert_eq!(
        lab.ca_file.as_deref(),
        Some("/etc/containerd/certs.d/10.231.0.1_5443-ca.crt")
    );
    assert!(lab.has_auth && lab.managed);
    assert!(!facts.legacy_configs.contains_key("backup.mirror:5000"));
    let debug = format!("{edit:?}");
    assert!(!debug.contains("mppass"), "{debug}");
    assert!(edit.notes.iter().all(|n| !n.contains("mppass")));
    // valid TOML with the password where containerd expects it
    let parsed: toml::Table = toml::from_str(&edit.text)?;
    let auth = &parsed["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]
        ["10.231.0.1:5443"]["auth"];
    assert_eq!(auth["password"].as_str(), Some("mppass"));
    // everything before the registry table is untouched
    let head = &NODE_CONFIG[..NODE_CONFIG.find("      config_path").ok_or("head")?];
    assert!(edit.text.starts_with(head));
    Ok(())
}

#[test]
fn legacy_is_idempotent_and_switching_back_restores_the_file() -> TestResult {
    let cfg = lab_cfg(ConfigStyle::Legacy);
    let legacy = apply_legacy(NODE_CONFIG, V1, &cfg)?;
    let again = apply_legacy(&legacy.text, V1, &cfg)?;
    assert!(!again.changed, "{}", again.text);
    assert_eq!(again.text, legacy.text);
    // one step back to hosts style: exactly the original file
    let hosts = ensure_config_path(&legacy.text, V1, DEFAULT_CONFIG_PATH)?;
    assert_eq!(hosts.text, NODE_CONFIG);
    assert!(!hosts.contains_credentials);
    assert!(!inspect_config(&hosts.text)?.conflict);
    Ok(())
}

#[test]
fn legacy_changes_replace_only_managed_entries() -> TestResult {
    let with_foreign = format!(
        "{NODE_CONFIG}      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"quay.io\"]\n        endpoint = [\"https://quay-mirror\"]\n"
    );
    let first = apply_legacy(&with_foreign, V1, &lab_cfg(ConfigStyle::Legacy))?;
    // fewer mirrors, no credentials, no gcr key
    let mut smaller = NodeMirrorConfig::new(ConfigStyle::Legacy);
    smaller.mirrors = vec![MirrorSpec::new("backup.mirror:5000")];
    let second = apply_legacy(&first.text, V1, &smaller)?;
    let facts = inspect_config(&second.text)?;
    assert_eq!(facts.legacy_mirrors.len(), 2, "{}", second.text);
    assert_eq!(facts.legacy_mirrors["quay.io"], ["https://quay-mirror"]);
    assert_eq!(
        facts.legacy_mirrors["gcr.io"],
        ["https://backup.mirror:5000"]
    );
    assert!(
        facts.legacy_configs.is_empty(),
        "{:?}",
        facts.legacy_configs
    );
    assert!(!second.contains_credentials);
    assert!(!second.text.contains("mppass"));
    Ok(())
}

#[test]
fn gcr_key_goes_to_configs_gcr_io_auth() -> TestResult {
    let mut cfg = NodeMirrorConfig::new(ConfigStyle::Legacy);
    cfg.gcr_key = Some(Secret::new("{\"type\": \"service_account\"}"));
    let edit = apply_legacy("", V1, &cfg)?;
    let parsed: toml::Table = toml::from_str(&edit.text)?;
    let auth =
        &parsed["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]["gcr.io"]["auth"];
    assert_eq!(auth["username"].as_str(), Some("_json_key"));
    assert_eq!(
        auth["password"].as_str(),
        Some("{\"type\": \"service_account\"}")
    );
    assert_eq!(parsed["version"].as_integer(), Some(2));
    Ok(())
}

#[test]
fn legacy_refusals() -> TestResult {
    let cfg = lab_cfg(ConfigStyle::Legacy);
    assert!(matches!(
        apply_legacy(NODE_CONFIG, V2, &cfg),
        Err(NodeError::LegacyUnsupported)
    ));
    let mut token = cfg.clone();
    token.mirrors[0].pull_auth = Some(PullAuth::Token(Secret::new("t0ken")));
    let err = apply_legacy(NODE_CONFIG, V1, &token)
        .err()
        .ok_or("accepted a token")?;
    assert!(matches!(err, NodeError::InvalidCredentials { .. }));
    assert!(!err.to_string().contains("t0ken"));
    Ok(())
}

#[test]
fn config_versions() -> TestResult {
    // containerd 2.x still reads version 2 files (and migrates them): edit in place
    let edit = ensure_config_path(NODE_CONFIG, V2, DEFAULT_CONFIG_PATH)?;
    assert!(!edit.changed);
    // version 3 on containerd 1.x cannot work
    let v3 = "version = 3\n";
    assert!(matches!(
        ensure_config_path(v3, V1, DEFAULT_CONFIG_PATH),
        Err(NodeError::UnsupportedConfigVersion { .. })
    ));
    let edit = ensure_config_path(v3, V2, "/certs")?;
    assert_eq!(
        edit.text,
        "version = 3\n\n[plugins.\"io.containerd.cri.v1.images\".registry]\nconfig_path = \"/certs\"\n"
    );
    // a version-1 file (no version, short plugin names) is refused
    assert!(matches!(
        ensure_config_path(
            "[plugins.cri]\n  sandbox_image = \"x\"\n",
            V1,
            DEFAULT_CONFIG_PATH
        ),
        Err(NodeError::UnsupportedConfigVersion { .. })
    ));
    // no version but nothing version-specific: version added
    let edit = ensure_config_path("root = \"/var/lib/containerd\"\n", V1, DEFAULT_CONFIG_PATH)?;
    assert_eq!(inspect_config(&edit.text)?.version, Some(2));
    Ok(())
}

#[test]
fn shape_and_parse_errors_are_reported_without_secrets() -> TestResult {
    let bad_shape = "version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = 5\n";
    assert!(matches!(
        ensure_config_path(bad_shape, V1, DEFAULT_CONFIG_PATH),
        Err(NodeError::ConfigShape { .. })
    ));
    let broken = "version = 2\npassword = \"s3cret\" junk\n";
    let err = ensure_config_path(broken, V1, DEFAULT_CONFIG_PATH)
        .err()
        .ok_or("accepted")?;
    assert!(matches!(err, NodeError::ConfigParse { .. }));
    assert!(!err.to_string().contains("s3cret"), "{err}");
    Ok(())
}

#[test]
fn inspect_flags_conflicts() -> TestResult {
    let both = format!(
        "{NODE_CONFIG}      [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"gcr.io\"]\n        endpoint = [\"https://m\"]\n"
    );
    let facts = inspect_config(&both)?;
    assert!(facts.conflict);
    assert_eq!(facts.config_path.as_deref(), Some(DEFAULT_CONFIG_PATH));
    let fixed = ensure_config_path(&both, V1, DEFAULT_CONFIG_PATH)?;
    assert_eq!(fixed.text, NODE_CONFIG);
    Ok(())
}

#[test]
fn edit_config_dispatches_on_style() -> TestResult {
    let hosts = edit_config(LEGACY_CONFIG, V1, &lab_cfg(ConfigStyle::Hosts))?;
    assert_eq!(
        inspect_config(&hosts.text)?.config_path.as_deref(),
        Some(DEFAULT_CONFIG_PATH)
    );
    let legacy = edit_config(NODE_CONFIG, V1, &lab_cfg(ConfigStyle::Legacy))?;
    assert!(inspect_config(&legacy.text)?.config_path.is_none());
    Ok(())
}

#[test]
fn desired_files_follow_the_style() -> TestResult {
    use mirrorplan_node::{render_node_files, MODE_PUBLIC, MODE_SECRET};
    let hosts = render_node_files(&lab_cfg(ConfigStyle::Hosts))?;
    assert!(hosts.iter().any(|f| f.path.ends_with("/gcr.io/hosts.toml")));
    let legacy = render_node_files(&lab_cfg(ConfigStyle::Legacy))?;
    let paths: Vec<_> = legacy.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/etc/containerd/certs.d/10.231.0.1_5443-ca.crt"]);

    let edit = apply_legacy(NODE_CONFIG, V1, &lab_cfg(ConfigStyle::Legacy))?;
    let file = edit.to_desired_file("/etc/containerd/config.toml");
    assert_eq!((file.mode, file.sensitive), (MODE_SECRET, true));
    assert!(!format!("{file:?}").contains("mppass"));
    let edit = ensure_config_path(&edit.text, V1, DEFAULT_CONFIG_PATH)?;
    let file = edit.to_desired_file("/etc/containerd/config.toml");
    assert_eq!((file.mode, file.sensitive), (MODE_PUBLIC, false));
    Ok(())
}

/// Found by fuzzing (fuzz/corpus/containerd/legacy-table-order): a legacy
/// file whose `registry.configs` header sits among unrelated tables was
/// laid out differently by each edit, so every plan saw a change and every
/// apply restarted containerd. The edit is now a fixed point.
#[test]
fn an_edit_of_an_edit_changes_nothing_even_with_tables_in_an_unusual_order() -> TestResult {
    let odd = r#"version = 2
root = "/var/lib/containerd"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "127.0.0.1:5001/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".regystry]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors]
        [plugins."io.containerd.grpc.v1.cri".registry.mirrors."gcr.io"]
          endpoint = ["https://127.0.0.1:5443/v2/test-namespace"]
      [plugins."io.containerd.grpc.v1.cri".registry.configs]
        [plugins."io.containerd.grpc.v1.cri".registry.co1nfigs."127.0.0.1:5443".tls]
          ca_file = "/tmp/lab/pki/ca.crt"
        [plugins."io.containerd.grpc.v0.cri".registry.configs."127.0.0.1:5443".auth]
          username = "mpuser"
          password = "mppass"
# trailing comment
"#;
    let mut m = MirrorSpec::new("10.231.0.1:5443");
    m.namespace = Some("test-namespace".into());
    m.ca_cert_pem =
        Some(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec());
    m.pull_auth = Some(PullAuth::basic("mpuser", "pw"));
    m.hosts = vec!["registry.k8s.io".into()];
    for style in [ConfigStyle::Legacy, ConfigStyle::Hosts] {
        let mut cfg = NodeMirrorConfig::new(style);
        cfg.mirrors = vec![m.clone(), MirrorSpec::new("backup.mirror:5000")];
        let first = edit_config(odd, ContainerdVersion::V1, &cfg)?;
        assert!(first.changed, "{style:?}");
        let second = edit_config(&first.text, ContainerdVersion::V1, &cfg)?;
        assert!(
            !second.changed,
            "{style:?}:\n{}\n---\n{}",
            first.text, second.text
        );
        assert_eq!(second.text, first.text, "{style:?}");
        // what the user wrote outside the registry tables is still there
        assert!(first.text.contains("# trailing comment"), "{}", first.text);
        assert!(first.text.contains("sandbox_image"), "{}", first.text);
    }
    Ok(())
}

/// Hosts style with basic pull credentials: config_path plus
/// `registry.configs."HOST".auth` (what containerd's CRI resolver answers a
/// token-auth registry's Bearer challenge with), in the table of the
/// file's version; the output is sensitive, the notes are redacted, a
/// second edit changes nothing and dropping the credentials removes them.
#[test]
fn hosts_style_writes_pull_credentials_to_registry_configs_auth() -> TestResult {
    use mirrorplan_node::{MODE_SECRET, REDACTED};
    let cfg = lab_cfg(ConfigStyle::Hosts);
    for (version, input, plugin) in [
        (V1, NODE_CONFIG, "io.containerd.grpc.v1.cri"),
        (V1, "", "io.containerd.grpc.v1.cri"),
        (V2, "", "io.containerd.cri.v1.images"),
        (V2, NODE_CONFIG, "io.containerd.grpc.v1.cri"),
    ] {
        let edit = edit_config(input, version, &cfg)?;
        let table = format!("[plugins.\"{plugin}\".registry.configs.\"10.231.0.1:5443\".auth]");
        assert!(edit.text.contains(&table), "{version} {}", edit.text);
        let v: toml::Table = toml::from_str(&edit.text)?;
        let auth = &v["plugins"][plugin]["registry"]["configs"]["10.231.0.1:5443"]["auth"];
        assert_eq!(auth["username"].as_str(), Some("mpuser"));
        assert_eq!(auth["password"].as_str(), Some("mppass"));
        assert_eq!(
            v["plugins"][plugin]["registry"]["config_path"].as_str(),
            Some(DEFAULT_CONFIG_PATH)
        );
        // the mirror without credentials gets no entry
        assert!(!edit.text.contains("backup.mirror"), "{}", edit.text);
        assert!(edit.contains_credentials);
        let file = edit.to_desired_file("/etc/containerd/config.toml");
        assert_eq!((file.mode, file.sensitive), (MODE_SECRET, true));
        assert!(!format!("{edit:?}").contains("mppass"));
        assert!(edit.notes.iter().all(|n| !n.contains("mppass")));
        assert!(
            edit.notes
                .iter()
                .any(|n| n.contains("registry.configs.\"10.231.0.1:5443\".auth")
                    && n.contains(REDACTED)),
            "{:?}",
            edit.notes
        );
        assert!(!inspect_config(&edit.text)?.conflict);
        // a fixed point: nothing to do, nothing to say
        let again = edit_config(&edit.text, version, &cfg)?;
        assert!(!again.changed, "{}\n---\n{}", edit.text, again.text);
        assert!(again.notes.is_empty(), "{:?}", again.notes);
        // without credentials: the managed entry goes, the rest stays
        let mut open = cfg.clone();
        open.mirrors[0].pull_auth = None;
        let back = edit_config(&edit.text, version, &open)?;
        assert!(!back.text.contains("registry.configs"), "{}", back.text);
        assert!(!back.contains_credentials);
        if input == NODE_CONFIG {
            assert_eq!(back.text, NODE_CONFIG);
        }
    }
    // a bearer token has no config.toml form: it stays a hosts.toml header
    let mut tok = lab_cfg(ConfigStyle::Hosts);
    tok.mirrors[0].pull_auth = Some(PullAuth::Token(Secret::new("t0ken")));
    let edit = edit_config(NODE_CONFIG, V1, &tok)?;
    assert_eq!(edit.text, NODE_CONFIG);
    Ok(())
}

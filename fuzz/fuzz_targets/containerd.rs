//! containerd's `config.toml` editing and the `hosts.toml` reader. The
//! first byte picks the containerd version and the config style, the rest
//! is the file. An edit must give valid TOML that the same edit leaves
//! as containerd reads it, and may write credentials only into a file it
//! marks as holding them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorplan_node::{
    edit_config, hosts_endpoints, inspect_config, parse_containerd_release,
    parse_containerd_version, render_hosts, ConfigStyle, ContainerdVersion, MirrorSpec,
    NodeMirrorConfig, PullAuth,
};

const PASSWORD: &str = "fuzz-password-7f3a9c";

fn config(style: ConfigStyle) -> NodeMirrorConfig {
    let mut m = MirrorSpec::new("10.231.0.1:5443");
    m.namespace = Some("test-namespace".into());
    m.ca_cert_pem =
        Some(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec());
    m.pull_auth = Some(PullAuth::basic("mpuser", PASSWORD));
    m.hosts = vec!["registry.k8s.io".into()];
    let mut cfg = NodeMirrorConfig::new(style);
    cfg.mirrors = vec![m, MirrorSpec::new("backup.mirror:5000")];
    cfg
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let version = if selector & 1 == 0 {
        ContainerdVersion::V1
    } else {
        ContainerdVersion::V2
    };
    let style = if selector & 2 == 0 {
        ConfigStyle::Hosts
    } else {
        ConfigStyle::Legacy
    };
    let _ = parse_containerd_version(text);
    let _ = parse_containerd_release(text);
    let _ = inspect_config(text);
    let _ = hosts_endpoints(text);
    let cfg = config(style);
    if let Ok(edit) = edit_config(text, version, &cfg) {
        if let Err(e) = edit.text.parse::<toml_edit::DocumentMut>() {
            panic!("the edit is not valid TOML: {e}\n{}", edit.text);
        }
        // the pull credentials may go into config.toml (hosts style:
        // `registry.configs."HOST".auth`, for token-auth registries), but
        // only into a file marked as holding them (0600, never shown)
        if !text.contains(PASSWORD) && edit.text.contains(PASSWORD) {
            assert!(
                edit.contains_credentials,
                "a password written into a file not marked as holding credentials"
            );
        }
        for note in &edit.notes {
            assert!(
                !note.contains(PASSWORD),
                "a note shows the password: {note}"
            );
        }
        if let Err(e) = inspect_config(&edit.text) {
            panic!("the edited file cannot be inspected: {e}");
        }
        // A second edit changes nothing (the edit is a fixed point, so a
        // node mirrorplan configured plans no change; the layout case of
        // corpus/containerd/legacy-table-order is fixed).
        match edit_config(&edit.text, version, &cfg) {
            Ok(again) => {
                assert_eq!(
                    inspect_config(&again.text).ok(),
                    inspect_config(&edit.text).ok(),
                    "a second edit changes what containerd reads:\n{}\n---\n{}",
                    edit.text,
                    again.text
                );
                assert!(
                    !again.changed && again.text == edit.text,
                    "a second edit changes the text:\n{}\n---\n{}",
                    edit.text,
                    again.text
                );
            }
            Err(e) => panic!("the edited file cannot be edited again: {e}"),
        }
    }
    // the reader against the renderer: every rendered hosts.toml lists its
    // mirrors (fixed input, so this only runs the pair once per process)
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(files) = render_hosts(&config(ConfigStyle::Hosts)) {
            for f in files.iter().filter(|f| f.path.ends_with("/hosts.toml")) {
                assert!(!hosts_endpoints(&String::from_utf8_lossy(&f.contents)).is_empty());
            }
        }
    });
});

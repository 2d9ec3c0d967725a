//! The `cluster_config { file, update_command }` block of a cluster.

use std::path::Path;

use mirrorplan_config::{load_sources, LoadOptions, Loaded, Mode, SourceFile};

fn load(text: &str, mode: Mode) -> Loaded {
    load_sources(
        Path::new("/config"),
        vec![SourceFile::new("main.hcl", text.to_string())],
        &LoadOptions {
            mode,
            vars: vec![("cmd".into(), "bmctl update cluster -c u1".into())],
            ..LoadOptions::default()
        },
    )
}

fn messages(l: &Loaded) -> Vec<String> {
    l.diagnostics
        .iter()
        .map(|d| {
            format!(
                "{} {} {} | {}",
                d.kind.code(),
                d.location().unwrap_or_default(),
                d.message,
                d.help.clone().unwrap_or_default()
            )
        })
        .collect()
}

const REGISTRY: &str = r#"
registry "mirror" {
  endpoint = "https://127.0.0.1:5000"
}
"#;

#[test]
fn the_block_is_decoded_with_paths_relative_to_the_config_dir() {
    let l = load(
        &format!(
            r#"{REGISTRY}
cluster "admin1" {{
  nodes = ["cp1.admin1.example"]
  cluster_config {{
    file           = "bmctl-workspace/admin1/admin1.yaml"
    update_command = "bmctl update cluster -c admin1 --kubeconfig=bmctl-workspace/admin1/admin1-kubeconfig"
  }}
  registry_mirror {{
    registry = registry.mirror
  }}
}}
cluster "plain" {{
  nodes = ["n1.example"]
  registry_mirror {{
    registry = registry.mirror
  }}
}}
"#
        ),
        Mode::Plan,
    );
    assert!(l.diagnostics.is_empty(), "{:?}", messages(&l));
    let c = &l.config.clusters[0];
    let cc = c.cluster_config.as_ref().expect("cluster_config decoded");
    assert_eq!(
        cc.file,
        Path::new("/config/bmctl-workspace/admin1/admin1.yaml")
    );
    assert!(cc
        .update_command
        .starts_with("bmctl update cluster -c admin1 "));
    assert!(!cc.update_command_sensitive);
    assert!(l.config.clusters[1].cluster_config.is_none());
}

#[test]
fn missing_attributes_empty_command_and_a_containerd_block_are_diagnostics() {
    let l = load(
        &format!(
            r#"{REGISTRY}
cluster "admin1" {{
  nodes = ["cp1.admin1.example"]
  cluster_config {{
    update_command = " "
  }}
  containerd {{
    config_style = "hosts"
  }}
  registry_mirror {{
    registry = registry.mirror
  }}
}}
"#
        ),
        Mode::Validate,
    );
    let m = messages(&l);
    assert_eq!(m.len(), 3, "{m:#?}");
    assert!(
        m.iter().any(
            |s| s.starts_with("mirrorplan::config::missing_required main.hcl:8:")
                && s.contains("`file`")
        ),
        "{m:#?}"
    );
    assert!(
        m.iter()
            .any(|s| s.contains("main.hcl:9:") && s.contains("update_command must not be empty")),
        "{m:#?}"
    );
    assert!(
        m.iter().any(|s| s.contains("main.hcl:11:")
            && s.contains("takes no `containerd` block")
            && s.contains("remove the `containerd` block")),
        "{m:#?}"
    );
}

#[test]
fn a_sensitive_update_command_is_accepted_and_marked() {
    let l = load(
        &format!(
            r#"{REGISTRY}
variable "cmd" {{
  sensitive = true
}}
cluster "u1" {{
  nodes = ["cp1.u1.example"]
  cluster_config {{
    file           = "/abs/u1.yaml"
    update_command = var.cmd
  }}
  registry_mirror {{
    registry = registry.mirror
  }}
}}
"#
        ),
        Mode::Plan,
    );
    assert!(l.diagnostics.is_empty(), "{:?}", messages(&l));
    let cc = l.config.clusters[0]
        .cluster_config
        .as_ref()
        .expect("cluster_config decoded");
    assert!(cc.update_command_sensitive);
    assert_eq!(cc.file, Path::new("/abs/u1.yaml"));
}

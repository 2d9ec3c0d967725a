//! Expansion of a cluster with `cluster_config { file, update_command }`:
//! one `cluster_config.NAME` instance that writes the cluster's mirrors into
//! its cluster configuration file, instead of one `node` instance per node.

use std::path::Path;

use mirrorplan_config::{Cluster, ClusterConfigFile, Config};
use mirrorplan_engine::{Address, DesiredInstance};
use mirrorplan_node::cluster_config::ClusterConfigSpec;
use mirrorplan_node::{
    digest, normalize_host, render_gcr_key_path, render_registry_mirrors, ClusterFileMirror,
    NodeMirrorConfig, PullAuth, GCR_HOST,
};

/// A path as the cluster software needs it: absolute on this workstation
/// (mirrorplan runs in the configuration directory).
fn workstation_path(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// `cluster_config.NAME` (`NAME_KEY` for a `for_each` cluster).
pub fn address(c: &Cluster) -> Address {
    let name = match &c.key {
        Some(k) => format!("{}_{k}", c.name),
        None => c.name.clone(),
    };
    address_of(&name)
}

/// `cluster_config.OWN`, `OWN` the cluster's own instance name (`NAME` or `NAME_KEY`).
pub fn address_of(own: &str) -> Address {
    super::instance_address("cluster_config", own, None, "").without_key()
}

/// The desired `cluster_config` instance of `c`. `cfg` holds the mirrors as
/// the nodes see them (their files were read already: the CA, the pull
/// credentials and the gcr.io key exist on this machine).
pub fn desired(
    config: &Config,
    c: &Cluster,
    cc: &ClusterConfigFile,
    cfg: &NodeMirrorConfig,
) -> DesiredInstance {
    // cfg.mirrors follows c.mirrors, less the mirrors of unknown registries
    let known = c
        .mirrors
        .iter()
        .filter(|m| config.registries.contains_key(&m.registry));
    let mirrors: Vec<ClusterFileMirror> = known
        .zip(&cfg.mirrors)
        .map(|(m, spec)| ClusterFileMirror {
            endpoint: spec.endpoint_url(),
            ca_cert_path: config
                .registries
                .get(&m.registry)
                .and_then(|r| r.ca_cert.as_deref())
                .map(workstation_path),
            pull_credential_config_path: m.pull_credentials.as_deref().map(workstation_path),
            // gcr.io is mirrored by the cluster software, listed or not
            hosts: m
                .hosts
                .iter()
                .map(|h| normalize_host(h))
                .filter(|h| h != GCR_HOST)
                .collect(),
        })
        .collect();
    // the content the paths name: a CA or credentials changed in place
    // changes no byte of the YAML but must still reach the nodes
    let ca_certs = mirrors
        .iter()
        .zip(&cfg.mirrors)
        .filter_map(|(m, spec)| Some((m.ca_cert_path.clone()?, digest(spec.ca_cert_pem.as_ref()?))))
        .collect();
    let mut credentials = String::new();
    for spec in &cfg.mirrors {
        match &spec.pull_auth {
            Some(PullAuth::Basic { username, password }) => credentials.push_str(&format!(
                "{}={username}:{}\n",
                spec.host_port,
                password.expose()
            )),
            Some(PullAuth::Token(t)) => {
                credentials.push_str(&format!("{}=token:{}\n", spec.host_port, t.expose()))
            }
            None => {}
        }
    }
    if let Some(key) = &cfg.gcr_key {
        credentials.push_str(&format!("gcrKeyPath={}\n", digest(key.expose().as_bytes())));
    }
    ClusterConfigSpec {
        ca_certs,
        credentials: (!credentials.is_empty()).then_some(credentials),
        // recorded relative to the configuration directory, where
        // mirrorplan runs (nothing recorded names the checkout's path; the
        // paths written into the file are absolute, as the cluster software
        // needs them)
        file: cc.file.clone(),
        dir: config.dir.clone(),
        registry_mirrors: render_registry_mirrors(&mirrors, "\n"),
        gcr_key_path: c
            .gcr_key
            .as_deref()
            .map(|p| render_gcr_key_path(&workstation_path(p))),
        update_command: cc.update_command.clone(),
        update_command_sensitive: cc.update_command_sensitive,
    }
    .to_desired(address(c))
}

//! One owner per node: a node's containerd files (`hosts.toml` under its
//! `config_path`, the CA copies, the `config.toml` edit) are written by
//! exactly one node instance. Two cluster instances listing the same
//! physical node (the same SSH host and port, or the same `local:`
//! directory), or one cluster listing it twice under two spellings, would
//! write the same files, and each apply would undo the other's.

use std::path::{Component, Path, PathBuf};

use crate::model::{Cluster, NodeAddr};

/// The physical node a node address reaches: `ssh:HOST:PORT` (the host in
/// lower case, as DNS compares names) or `local:PATH` (the directory with
/// `.` and `..` resolved lexically). Two nodes with the same identity are the
/// same node.
pub fn node_identity(n: &NodeAddr) -> String {
    match n {
        NodeAddr::Ssh { host, port } => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            format!("ssh:{}:{port}", host.to_ascii_lowercase())
        }
        NodeAddr::Local { path, .. } => format!("local:{}", normalize(path).display()),
    }
}

/// `path` with `.` components dropped and `..` applied lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Two node entries reaching the same physical node: `(cluster index,
/// node index)` into a configuration's `clusters`, the first in
/// configuration order first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The entry that claims the node first.
    pub first: (usize, usize),
    /// The entry that claims it again.
    pub second: (usize, usize),
}

/// Every node claimed twice among `clusters` (each later claim against
/// the first one). Entries with the same key in one cluster are not
/// reported here: the loader reports them as listed twice and keeps one.
pub fn conflicts(clusters: &[Cluster]) -> Vec<Conflict> {
    conflicts_by(clusters, |n| Some(node_identity(n)))
}

/// [`conflicts`] with another notion of identity: `identity` gives a node's
/// (`None`: not compared). From `plan` on, the binary also resolves `local:`
/// directories through symbolic links this way.
pub fn conflicts_by(
    clusters: &[Cluster],
    identity: impl Fn(&NodeAddr) -> Option<String>,
) -> Vec<Conflict> {
    let mut owner: std::collections::HashMap<String, (usize, usize)> = Default::default();
    let mut out = Vec::new();
    for (ci, c) in clusters.iter().enumerate() {
        for (ni, n) in c.nodes.iter().enumerate() {
            let Some(id) = identity(n) else {
                continue;
            };
            match owner.get(&id) {
                Some(&first) => out.push(Conflict {
                    first,
                    second: (ci, ni),
                }),
                None => {
                    owner.insert(id, (ci, ni));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(host: &str, port: u16) -> NodeAddr {
        NodeAddr::Ssh {
            host: host.into(),
            port,
        }
    }

    fn local(p: &str) -> NodeAddr {
        NodeAddr::Local {
            path: PathBuf::from(p),
            written: p.into(),
        }
    }

    #[test]
    fn same_host_and_port_or_same_directory_is_the_same_node() {
        assert_eq!(node_identity(&ssh("CP1.example", 22)), "ssh:cp1.example:22");
        assert_ne!(
            node_identity(&ssh("cp1", 22)),
            node_identity(&ssh("cp1", 2222))
        );
        assert_eq!(
            node_identity(&local("./nodes/../nodes/n1")),
            node_identity(&local("nodes/n1"))
        );
        assert_ne!(
            node_identity(&local("nodes/n1")),
            node_identity(&ssh("nodes/n1", 22))
        );
    }
}

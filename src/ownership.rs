//! One owner per node, seen with I/O (from `plan` on): two `local:` entries
//! that are different paths of one directory (a symbolic link) would write
//! the same files. The lexical rule, which `validate` applies, is
//! [`mirrorplan_config::ownership`]; this is the same rule with each
//! existing `local:` directory resolved.

use mirrorplan_config::ownership::{conflicts_by, node_identity};
use mirrorplan_config::{Config, ConfigDiagnostic, DiagKind, NodeAddr, SourceFile};

/// A diagnostic for each pair of node entries that resolve to the same
/// directory, naming both cluster blocks (at their names).
pub fn linked_nodes(config: &Config, files: &[SourceFile]) -> Vec<ConfigDiagnostic> {
    let resolved = |n: &NodeAddr| match n {
        NodeAddr::Local { path, .. } => std::fs::canonicalize(path)
            .ok()
            .map(|p| format!("local:{}", p.display())),
        NodeAddr::Ssh { .. } => None,
    };
    let clusters = &config.clusters;
    let at = |d: ConfigDiagnostic, c: &mirrorplan_config::Cluster, label: String| match files
        .iter()
        .find(|f| f.name == c.origin.file)
    {
        Some(f) => d.at(f, Some(c.origin.span.clone()), label),
        None => d,
    };
    let mut out = Vec::new();
    for c in conflicts_by(clusters, resolved) {
        let (first, second) = (&clusters[c.first.0], &clusters[c.second.0]);
        let (n1, n2) = (&first.nodes[c.first.1], &second.nodes[c.second.1]);
        if node_identity(n1) == node_identity(n2) {
            continue; // the loader reported it already
        }
        let dir = resolved(n2).unwrap_or_default();
        let (a1, a2) = (first.address(), second.address());
        let d = ConfigDiagnostic::new(
            DiagKind::Duplicate,
            format!(
                "`{}` ({a1}) and `{}` ({a2}) are the same node: both are the directory {}",
                n1.key(),
                n2.key(),
                dir.trim_start_matches("local:")
            ),
        )
        .help(
            "a node's containerd files can have one owner: list the directory in one cluster only",
        );
        let related = at(
            ConfigDiagnostic::new(DiagKind::Duplicate, format!("{a1} lists `{}`", n1.key())),
            first,
            format!("{a1} configures it"),
        );
        out.push(at(d, second, format!("{a2} configures it too")).also(related));
    }
    out
}

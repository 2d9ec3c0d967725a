//! The dependency graph of a checked configuration, as DOT.
//!
//! Vertices are resource instances known before plan (registries, image set
//! and cluster instances, nodes); edges point from a dependency to its
//! dependent. `depends_on` edges are dashed. A cluster with
//! `cluster_config` has no node instances: its `cluster_config.NAME`
//! instance (the file, drawn as a note) stands where its nodes would.

use std::collections::BTreeSet;

use crate::model::Config;

/// Renders the graph in Graphviz DOT.
pub fn to_dot(config: &Config) -> String {
    // the nodes of a cluster_config cluster are its file's instance
    let files: Vec<(String, String)> = config
        .clusters
        .iter()
        .filter(|c| c.cluster_config.is_some())
        .map(|c| {
            (
                format!("node.{}[", c.instance_name()),
                format!("cluster_config.{}", c.instance_name()),
            )
        })
        .collect();
    let vertex = |v: &str| -> String {
        files
            .iter()
            .find(|(nodes, _)| v.starts_with(nodes.as_str()))
            .map_or_else(|| v.to_string(), |(_, file)| file.clone())
    };
    let mut edges: Vec<(String, String, bool)> = Vec::new();
    for e in &config.edges {
        let edge = (vertex(&e.from), vertex(&e.to), e.explicit);
        if edge.0 != edge.1 && !edges.contains(&edge) {
            edges.push(edge);
        }
    }
    let mut vertices: BTreeSet<String> = BTreeSet::new();
    for r in config.registries.keys() {
        vertices.insert(format!("registry.{r}"));
    }
    for s in &config.image_sets {
        vertices.insert(s.address());
    }
    for c in &config.clusters {
        vertices.insert(c.address());
    }
    for (from, to, _) in &edges {
        vertices.insert(from.clone());
        vertices.insert(to.clone());
    }
    let mut out =
        String::from("digraph mirrorplan {\n  rankdir = \"LR\";\n  node [shape = box];\n");
    for v in &vertices {
        let shape = if v.starts_with("node.") {
            " [shape = ellipse]"
        } else if v.starts_with("cluster_config.") {
            " [shape = note]"
        } else {
            ""
        };
        out.push_str(&format!("  {}{shape};\n", dot_id(v)));
    }
    for (from, to, explicit) in &edges {
        let style = if *explicit {
            " [style = dashed, label = \"depends_on\"]"
        } else {
            ""
        };
        out.push_str(&format!("  {} -> {}{style};\n", dot_id(from), dot_id(to)));
    }
    out.push_str("}\n");
    out
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

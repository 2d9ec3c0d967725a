//! The dependency graph of a checked configuration, as DOT.
//!
//! Vertices are resource instances known before plan (registries, image set
//! and cluster instances, nodes); edges point from a dependency to its
//! dependent. `depends_on` edges are dashed.

use std::collections::BTreeSet;

use crate::model::Config;

/// Renders the graph in Graphviz DOT.
pub fn to_dot(config: &Config) -> String {
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
    for e in &config.edges {
        vertices.insert(e.from.clone());
        vertices.insert(e.to.clone());
    }
    let mut out =
        String::from("digraph mirrorplan {\n  rankdir = \"LR\";\n  node [shape = box];\n");
    for v in &vertices {
        let shape = if v.starts_with("node.") {
            " [shape = ellipse]"
        } else {
            ""
        };
        out.push_str(&format!("  {}{shape};\n", dot_id(v)));
    }
    for e in &config.edges {
        let style = if e.explicit {
            " [style = dashed, label = \"depends_on\"]"
        } else {
            ""
        };
        out.push_str(&format!(
            "  {} -> {}{style};\n",
            dot_id(&e.from),
            dot_id(&e.to)
        ));
    }
    out.push_str("}\n");
    out
}

fn dot_id(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

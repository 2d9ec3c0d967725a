//! `moved` blocks and `state mv`: configuration addresses (`cluster.edge`,
//! `image_set.base["a"]`) → the engine's instance moves. A cluster's move
//! carries its `node.*` instances and its `cluster_config.*` instance, an
//! image set's its `image.*` instances
//! (see [`crate::expand::block_addresses`] for how names are folded).

use mirrorplan_config::moved::BlockAddr;
use mirrorplan_config::Config;
use mirrorplan_engine::{Address, Move};

/// The engine moves of one configuration move. `to_keys`: the `for_each`
/// keys of the `to` block, for a move of a whole block into a `for_each`
/// block (each instance keeps its key).
pub fn block_moves(from: &BlockAddr, to: &BlockAddr, to_keys: &[String]) -> Vec<Move> {
    let pair = |f: Option<&str>, t: Option<&str>| -> Vec<Move> {
        match (
            crate::expand::block_addresses(&from.kind, &from.name, f),
            crate::expand::block_addresses(&to.kind, &to.name, t),
        ) {
            (Some(f), Some(t)) => f.into_iter().zip(t).map(|(f, t)| Move::new(f, t)).collect(),
            _ => Vec::new(),
        }
    };
    if from.key.is_none() && to.key.is_none() && !to_keys.is_empty() {
        return to_keys
            .iter()
            .flat_map(|k| pair(Some(k), Some(k)))
            .collect();
    }
    pair(from.key.as_deref(), to.key.as_deref())
}

/// Every `moved` block of the configuration as engine moves, in order.
pub fn config_moves(config: &Config) -> Vec<Move> {
    let mut out = Vec::new();
    for m in &config.moved {
        let keys: Vec<String> = match m.to.kind.as_str() {
            "cluster" => config
                .clusters
                .iter()
                .filter(|c| c.name == m.to.name)
                .filter_map(|c| c.key.clone())
                .collect(),
            _ => config
                .image_sets
                .iter()
                .filter(|s| s.name == m.to.name)
                .filter_map(|s| s.key.clone())
                .collect(),
        };
        out.extend(block_moves(&m.from, &m.to, &keys));
    }
    out
}

/// The moves of `mirrorplan state mv FROM TO`: a cluster or image set
/// (`cluster.edge`, `cluster.edge["a"]`) moves with its nodes (or cluster
/// configuration file instance) or images;
/// any other address (`node.edge["h"]`, `image.base`) moves as written.
pub fn cli_moves(from: &str, to: &str) -> Result<Vec<Move>, String> {
    if from.trim() == to.trim() {
        return Err("FROM and TO are the same address".into());
    }
    let what = |k: &str| match k {
        "image_set" => "an image set".to_string(),
        "image" => "an image".to_string(),
        k => format!("a {k}"),
    };
    let block = |s: &str| {
        let kind = s.split('.').next().unwrap_or_default();
        mirrorplan_config::moved::MOVABLE
            .contains(&kind)
            .then(|| mirrorplan_config::moved::parse_block_addr(s))
    };
    match (block(from), block(to)) {
        (Some(f), Some(t)) => {
            let (f, t) = (
                f.map_err(|e| format!("{from}: {e}"))?,
                t.map_err(|e| format!("{to}: {e}"))?,
            );
            if f.kind != t.kind {
                return Err(format!("{} cannot become {}", what(&f.kind), what(&t.kind)));
            }
            Ok(block_moves(&f, &t, &[]))
        }
        (None, None) => {
            let f: Address = from.parse().map_err(|e| format!("{e}"))?;
            let t: Address = to.parse().map_err(|e| format!("{e}"))?;
            if f.kind() != t.kind() {
                return Err(format!(
                    "{} cannot become {}",
                    what(f.kind()),
                    what(t.kind())
                ));
            }
            Ok(vec![Move::new(f, t)])
        }
        _ => Err("they are different kinds of address".into()),
    }
}

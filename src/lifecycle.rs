//! The `lifecycle` blocks of `image_set` and `cluster`, applied to the
//! instances they produce: `ignore_changes` becomes the attribute patterns
//! of each image and node instance ([`Rules::ignore_changes`]), and
//! `prevent_destroy` stops a plan that deletes one of them
//! ([`Rules::prevent_destroy`]).
//!
//! An instance belongs to the block whose instance name it carries
//! (`image.NAME["…"]` and `image_set.NAME` to `image_set "NAME"`,
//! `node.NAME["…"]` and `cluster.NAME` to `cluster "NAME"`; a `for_each`
//! instance's name is `NAME_KEY`). An instance of a `for_each` key that the
//! configuration no longer has still belongs to its block, so removing a key
//! of a protected block is refused, as Terraform does.

use std::collections::BTreeMap;

use mirrorplan_config::{Config, ConfigDiagnostic, DiagKind, Lifecycle, SourceFile};
use mirrorplan_engine::{Action, Address, DesiredInstance, Plan};

/// One `image_set` or `cluster` block and its lifecycle.
#[derive(Debug, Clone)]
struct Block {
    /// `image_set` or `cluster`.
    kind: &'static str,
    name: String,
    /// The instance names its instances carry now (`NAME` or `NAME_KEY`).
    instance_names: Vec<String>,
    for_each: bool,
    lifecycle: Lifecycle,
}

/// The lifecycle rules of a configuration.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    blocks: Vec<Block>,
    files: Vec<SourceFile>,
}

/// The instance attribute patterns each `ignore_changes` name covers, per
/// instance kind (see [`mirrorplan_config::lifecycle::ignorable`]).
fn patterns(instance_kind: &str, name: &str) -> &'static [&'static str] {
    match (instance_kind, name) {
        ("image", "digest") => &["digest"],
        ("node", "hosts_toml") => &["file:*/hosts.toml"],
        ("node", "ca_cert") => &["file:*.crt"],
        _ => &[],
    }
}

impl Rules {
    /// The rules of `config`, whose files are `files` (for diagnostics).
    pub fn of(config: &Config, files: &[SourceFile]) -> Rules {
        let mut blocks: BTreeMap<(&'static str, String), Block> = BTreeMap::new();
        let mut add = |kind: &'static str, name: &str, key: bool, inst: String, l: &Lifecycle| {
            let b = blocks
                .entry((kind, name.to_string()))
                .or_insert_with(|| Block {
                    kind,
                    name: name.to_string(),
                    instance_names: Vec::new(),
                    for_each: key,
                    lifecycle: l.clone(),
                });
            b.instance_names.push(inst);
        };
        for s in &config.image_sets {
            let inst = crate::expand::set_instance_name(s);
            add("image_set", &s.name, s.key.is_some(), inst, &s.lifecycle);
        }
        for c in &config.clusters {
            let inst = crate::expand::cluster_address(c).name().to_string();
            add("cluster", &c.name, c.key.is_some(), inst, &c.lifecycle);
        }
        Rules {
            blocks: blocks.into_values().collect(),
            files: files.to_vec(),
        }
    }

    /// The block an instance address belongs to.
    fn owner(&self, address: &Address) -> Option<&Block> {
        let kind = match address.kind() {
            "image" | "image_set" => "image_set",
            "node" | "cluster" => "cluster",
            _ => return None,
        };
        let name = address.name();
        let of_kind = || self.blocks.iter().filter(move |b| b.kind == kind);
        of_kind()
            .find(|b| b.instance_names.iter().any(|n| n == name))
            .or_else(|| {
                of_kind().find(|b| {
                    name == b.name
                        || (b.for_each
                            && name
                                .strip_prefix(b.name.as_str())
                                .is_some_and(|rest| rest.starts_with('_')))
                })
            })
    }

    /// Sets each image and node instance's `ignore_changes` from its
    /// block's `lifecycle`.
    pub fn ignore_changes(&self, desired: &mut [DesiredInstance]) {
        for d in desired {
            let Some(b) = self.owner(&d.address) else {
                continue;
            };
            for name in &b.lifecycle.ignore_changes {
                for p in patterns(d.address.kind(), name) {
                    if !d.ignore_changes.iter().any(|x| x == p) {
                        d.ignore_changes.push((*p).to_string());
                    }
                }
            }
        }
    }

    /// One diagnostic per block with `prevent_destroy = true` of which the
    /// plan deletes an instance, at the `prevent_destroy` line, naming
    /// the instances.
    pub fn prevent_destroy(&self, plan: &Plan) -> Vec<ConfigDiagnostic> {
        let mut doomed: BTreeMap<(&str, &str), (&Block, Vec<&Address>)> = BTreeMap::new();
        for c in plan.changes.iter().filter(|c| c.action == Action::Delete) {
            let Some(b) = self.owner(&c.address) else {
                continue;
            };
            if b.lifecycle.prevent_destroy.is_none() {
                continue;
            }
            doomed
                .entry((b.kind, b.name.as_str()))
                .or_insert_with(|| (b, Vec::new()))
                .1
                .push(&c.address);
        }
        let mut out = Vec::new();
        for (b, addresses) in doomed.into_values() {
            let Some(origin) = &b.lifecycle.prevent_destroy else {
                continue;
            };
            let list = addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let mut d = ConfigDiagnostic::new(
                DiagKind::PreventDestroy,
                format!(
                    "the plan would destroy {list}, but {} \"{}\" has lifecycle.prevent_destroy = true",
                    b.kind, b.name
                ),
            )
            .help(
                "nothing was changed; keep the instance in the configuration, or set \
                 `prevent_destroy = false` and plan again to destroy it (removing the whole \
                 block, its lifecycle included, also removes the protection)",
            );
            if let Some(f) = self.files.iter().find(|f| f.name == origin.file) {
                d = d.at(f, Some(origin.span.clone()), "destroying is prevented here");
            }
            out.push(d);
        }
        out
    }
}

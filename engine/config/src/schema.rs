//! The shape of every block: which attributes and nested blocks it takes.
//!
//! Used for "unknown attribute" (with "did you mean"), "missing required" and
//! duplicate checks before anything is evaluated.

/// What an attribute holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// A string.
    String,
    /// A boolean.
    Bool,
    /// A whole number.
    Number,
    /// A list of strings.
    StringList,
    /// Any value.
    Any,
    /// A type constraint (`string`, `list(string)`, ...), not evaluated.
    TypeExpr,
    /// A reference to a block of the given kind (`registry.mirror`).
    Ref(&'static str),
    /// A list of references to blocks (`depends_on`).
    RefList,
    /// A `for_each` collection.
    ForEach,
    /// A literal list of attribute names (`lifecycle.ignore_changes`), not evaluated.
    AttrNames,
}

impl AttrType {
    /// The type's name in messages.
    pub fn describe(self) -> &'static str {
        match self {
            AttrType::String => "a string",
            AttrType::Bool => "a bool",
            AttrType::Number => "a number",
            AttrType::StringList => "a list of strings",
            AttrType::Any => "a value",
            AttrType::TypeExpr => "a type constraint",
            AttrType::Ref(_) => "a block reference",
            AttrType::RefList => "a list of block references",
            AttrType::ForEach => "a set of strings or a map",
            AttrType::AttrNames => "a list of attribute names",
        }
    }
}

/// One attribute of a block.
#[derive(Debug)]
pub struct AttrSchema {
    /// Its name.
    pub name: &'static str,
    /// Its type.
    pub ty: AttrType,
    /// Whether it must be set.
    pub required: bool,
}

/// One nested block type.
#[derive(Debug)]
pub struct BlockSchema {
    /// Its name.
    pub name: &'static str,
    /// Its body.
    pub body: &'static BodySchema,
    /// At least one must be present.
    pub required: bool,
    /// More than one may be present.
    pub repeatable: bool,
}

/// A block body.
#[derive(Debug)]
pub struct BodySchema {
    /// Attributes.
    pub attrs: &'static [AttrSchema],
    /// Nested blocks.
    pub blocks: &'static [BlockSchema],
}

impl BodySchema {
    /// The attribute named `name`.
    pub fn attr(&self, name: &str) -> Option<&AttrSchema> {
        self.attrs.iter().find(|a| a.name == name)
    }
    /// The nested block named `name`.
    pub fn block(&self, name: &str) -> Option<&BlockSchema> {
        self.blocks.iter().find(|b| b.name == name)
    }
}

const fn a(name: &'static str, ty: AttrType) -> AttrSchema {
    AttrSchema {
        name,
        ty,
        required: false,
    }
}

const fn req(name: &'static str, ty: AttrType) -> AttrSchema {
    AttrSchema {
        name,
        ty,
        required: true,
    }
}

use AttrType as T;

/// `validation { condition, error_message }` inside a variable.
pub static VALIDATION: BodySchema = BodySchema {
    attrs: &[req("condition", T::Any), req("error_message", T::String)],
    blocks: &[],
};

/// `variable "NAME" { ... }`
pub static VARIABLE: BodySchema = BodySchema {
    attrs: &[
        a("type", T::TypeExpr),
        a("default", T::Any),
        a("description", T::String),
        a("sensitive", T::Bool),
        a("nullable", T::Bool),
    ],
    blocks: &[BlockSchema {
        name: "validation",
        body: &VALIDATION,
        required: false,
        repeatable: true,
    }],
};

/// `output "NAME" { ... }`
pub static OUTPUT: BodySchema = BodySchema {
    attrs: &[
        req("value", T::Any),
        a("description", T::String),
        a("sensitive", T::Bool),
        a("depends_on", T::RefList),
    ],
    blocks: &[],
};

/// `registry "NAME" { ... }`
pub static REGISTRY: BodySchema = BodySchema {
    attrs: &[
        req("endpoint", T::String),
        a("namespace", T::String),
        a("ca_cert", T::String),
        a("username", T::String),
        a("password", T::String),
        a("docker_config", T::String),
        a("credentials_from", T::String),
        a("proxy", T::String),
        a("insecure", T::Bool),
        a("timeout", T::Number),
        a("max_concurrency", T::Number),
        a("rate_limit", T::String),
    ],
    blocks: &[BlockSchema {
        name: "retry",
        body: &RETRY,
        required: false,
        repeatable: false,
    }],
};

/// `retry { attempts, max_delay }` inside a registry.
pub static RETRY: BodySchema = BodySchema {
    attrs: &[a("attempts", T::Number), a("max_delay", T::String)],
    blocks: &[],
};

/// `lifecycle { ... }` inside an image set or a cluster (see
/// [`crate::lifecycle`]).
pub static LIFECYCLE: BodySchema = BodySchema {
    attrs: &[
        a("prevent_destroy", T::Bool),
        a("ignore_changes", T::AttrNames),
    ],
    blocks: &[],
};

const LIFECYCLE_BLOCK: BlockSchema = BlockSchema {
    name: "lifecycle",
    body: &LIFECYCLE,
    required: false,
    repeatable: false,
};

/// `repository { ... }` inside an image set: a tag selection (see
/// [`crate::tags`]).
pub static REPOSITORY: BodySchema = BodySchema {
    attrs: &[
        req("name", T::String),
        a("include", T::StringList),
        a("exclude", T::StringList),
        a("semver", T::String),
        a("newest", T::Number),
    ],
    blocks: &[],
};

const REPOSITORY_BLOCK: BlockSchema = BlockSchema {
    name: "repository",
    body: &REPOSITORY,
    required: false,
    repeatable: true,
};

/// `image_set "NAME" { ... }`
pub static IMAGE_SET: BodySchema = BodySchema {
    attrs: &[
        req("registry", T::Ref("registry")),
        a("bundle", T::String),
        a("images", T::StringList),
        a("platforms", T::StringList),
        a("prune", T::Bool),
        a("referrers", T::Bool),
        a("depends_on", T::RefList),
        a("for_each", T::ForEach),
    ],
    blocks: &[LIFECYCLE_BLOCK, REPOSITORY_BLOCK],
};

/// `ssh { ... }` inside a cluster.
pub static SSH: BodySchema = BodySchema {
    attrs: &[
        a("user", T::String),
        a("private_key", T::String),
        a("passphrase", T::String),
        a("known_hosts", T::String),
        a("host_key", T::String),
        a("use_agent", T::Bool),
        a("timeout", T::Number),
    ],
    blocks: &[],
};

/// `registry_mirror { ... }` inside a cluster.
pub static REGISTRY_MIRROR: BodySchema = BodySchema {
    attrs: &[
        req("registry", T::Ref("registry")),
        a("hosts", T::StringList),
        a("pull_credentials", T::String),
    ],
    blocks: &[],
};

/// `containerd { ... }` inside a cluster.
pub static CONTAINERD: BodySchema = BodySchema {
    attrs: &[
        a("config_style", T::String),
        a("config_path", T::String),
        a("config_file", T::String),
        a("restart_command", T::String),
    ],
    blocks: &[],
};

/// `rollout { ... }` inside a cluster.
pub static ROLLOUT: BodySchema = BodySchema {
    attrs: &[
        a("max_unavailable", T::Number),
        a("max_failures", T::Number),
    ],
    blocks: &[],
};

/// `cluster_config { ... }` inside a cluster.
pub static CLUSTER_CONFIG: BodySchema = BodySchema {
    attrs: &[req("file", T::String), req("update_command", T::String)],
    blocks: &[],
};

/// `cluster "NAME" { ... }`
pub static CLUSTER: BodySchema = BodySchema {
    attrs: &[
        req("nodes", T::StringList),
        a("gcr_key", T::String),
        a("depends_on", T::RefList),
        a("for_each", T::ForEach),
    ],
    blocks: &[
        BlockSchema {
            name: "ssh",
            body: &SSH,
            required: false,
            repeatable: false,
        },
        BlockSchema {
            name: "registry_mirror",
            body: &REGISTRY_MIRROR,
            required: true,
            repeatable: true,
        },
        BlockSchema {
            name: "containerd",
            body: &CONTAINERD,
            required: false,
            repeatable: false,
        },
        BlockSchema {
            name: "rollout",
            body: &ROLLOUT,
            required: false,
            repeatable: false,
        },
        LIFECYCLE_BLOCK,
        BlockSchema {
            name: "cluster_config",
            body: &CLUSTER_CONFIG,
            required: false,
            repeatable: false,
        },
    ],
};

/// The top-level block types and their label counts.
pub const TOP_LEVEL: &[(&str, usize)] = &[
    ("variable", 1),
    ("locals", 0),
    ("registry", 1),
    ("image_set", 1),
    ("cluster", 1),
    ("output", 1),
];

/// The body schema of a top-level block type.
pub fn top_level(kind: &str) -> Option<&'static BodySchema> {
    match kind {
        "variable" => Some(&VARIABLE),
        "registry" => Some(&REGISTRY),
        "image_set" => Some(&IMAGE_SET),
        "cluster" => Some(&CLUSTER),
        "output" => Some(&OUTPUT),
        _ => None,
    }
}

//! The one error type of this crate: every variant is a miette `Diagnostic`
//! with a stable code and a help line. Messages never contain secrets.

use std::path::PathBuf;

/// Result alias used throughout `mirrorplan-node`.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;

/// Everything that can go wrong while rendering node configuration or
/// talking to a node.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum NodeError {
    /// An upstream registry host name that cannot be used as a directory name
    /// or in a TOML key.
    #[error("invalid upstream registry host {host:?}: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::invalid_host),
        help("use a bare registry host such as `gcr.io` or `registry.example.com:5000`, without scheme or path")
    )]
    InvalidHost { host: String, reason: String },

    /// A mirror endpoint (host:port) that is malformed.
    #[error("invalid mirror endpoint {endpoint:?}: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::invalid_mirror),
        help("a mirror is `HOST[:PORT]` plus an optional namespace, for example `172.18.0.20:5000` with namespace `test-namespace`")
    )]
    InvalidMirror { endpoint: String, reason: String },

    /// The containerd hosts directory is not an absolute, normalised path.
    #[error("invalid containerd config_path {path:?}: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::invalid_config_path),
        help("use an absolute path without `..`, such as `/etc/containerd/certs.d`")
    )]
    InvalidConfigPath { path: String, reason: String },

    /// The CA certificate given for a mirror is not a PEM certificate.
    #[error("CA certificate for mirror {endpoint:?} is unusable: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::invalid_ca_cert),
        help(
            "give the PEM file with `-----BEGIN CERTIFICATE-----` blocks only; never a private key"
        )
    )]
    InvalidCaCert { endpoint: String, reason: String },

    /// Pull credentials that cannot be expressed.
    #[error("pull credentials for {endpoint:?} are unusable: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::invalid_credentials),
        help("basic-auth credentials need a non-empty user name without `:`")
    )]
    InvalidCredentials { endpoint: String, reason: String },

    /// Two mirrors conflict with each other.
    #[error("mirrors conflict: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::mirror_conflict),
        help("each mirror endpoint may appear once; mirrors on the same host:port must share CA and credentials")
    )]
    MirrorConflict { reason: String },

    /// containerd's config.toml is not valid TOML.
    #[error("containerd config.toml is not valid TOML: {message}")]
    #[diagnostic(
        code(mirrorplan::node::config_parse),
        help("fix the file on the node (containerd would refuse it too), then run again")
    )]
    ConfigParse { message: String },

    /// A key that must be a table holds something else.
    #[error("containerd config.toml: `{key}` is {found}, expected a table")]
    #[diagnostic(
        code(mirrorplan::node::config_shape),
        help("fix this key by hand; mirrorplan will not overwrite a value it does not understand")
    )]
    ConfigShape { key: String, found: String },

    /// The file's config version is not one mirrorplan can edit for this containerd.
    #[error("containerd config.toml version {found} cannot be edited for containerd {containerd}")]
    #[diagnostic(
        code(mirrorplan::node::unsupported_config_version),
        help("containerd 1.x reads `version = 2`, containerd 2.x reads `version = 2` or `version = 3`; migrate version-1 files (`[plugins.cri]`) by hand first")
    )]
    UnsupportedConfigVersion { found: String, containerd: String },

    /// Legacy `registry.mirrors` style was requested for containerd 2.x.
    #[error("config_style = \"legacy\" is not supported on containerd 2.x")]
    #[diagnostic(
        code(mirrorplan::node::legacy_unsupported),
        help("containerd 2.x dropped `registry.mirrors`; use config_style = \"hosts\" (hosts.toml files under config_path)")
    )]
    LegacyUnsupported,

    /// `containerd --version` output could not be understood.
    #[error("cannot parse containerd version from {output:?}")]
    #[diagnostic(
        code(mirrorplan::node::containerd_version),
        help("expected output like `containerd github.com/containerd/containerd 1.6.20 ...`; check that containerd is installed on the node")
    )]
    VersionParse { output: String },

    /// A node path that is relative or tries to leave the transport root.
    #[error("node path {path:?} is not allowed: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::path_escape),
        help(
            "node paths must be absolute and must not contain `..` or lead outside the node root"
        )
    )]
    PathNotAllowed { path: String, reason: String },

    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    #[diagnostic(
        code(mirrorplan::node::io),
        help("check that the path exists and that mirrorplan may write there")
    )]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A command could not be started on the node.
    #[error("cannot run `{program}` on the node: {source}")]
    #[diagnostic(
        code(mirrorplan::node::command),
        help("check that the program exists on the node and is executable")
    )]
    Command {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// The SSH transport failed (connection, host key, authentication,
    /// remote command).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ssh(Box<crate::ssh::SshError>),

    /// A CRI call failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cri(Box<crate::cri::CriError>),

    /// A checked write found files no longer as they were read: nothing
    /// was written.
    #[error("{paths} changed on the node since it was read; run plan again")]
    #[diagnostic(
        code(mirrorplan::node::changed_since_read),
        help("nothing was written on this node; `mirrorplan plan` reads the node again and shows what apply would change now")
    )]
    ChangedSinceRead { paths: String },

    /// A checked write could not compare the files on the node (no
    /// `sha256sum` there, or a file too large for one batch): nothing was
    /// written, and the caller may read the files again and write without
    /// the check.
    #[error("cannot check on the node that the files are unchanged: {reason}")]
    #[diagnostic(
        code(mirrorplan::node::cannot_check),
        help("install `sha256sum` (GNU coreutils or busybox) on the node")
    )]
    CannotCheck { reason: String },

    /// An empty argv was given to `Transport::run`.
    #[error("cannot run an empty command")]
    #[diagnostic(
        code(mirrorplan::node::empty_command),
        help("this is a bug in the caller: pass at least the program name")
    )]
    EmptyCommand,
}

impl NodeError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NodeError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

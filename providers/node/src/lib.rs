//! Node provider pieces: containerd configuration renderers and the node
//! transports (local directory, SSH) and a minimal CRI client.
//!
//! # Invariants
//! - **`config_path` and legacy `registry.mirrors` never coexist** in a
//!   config.toml mirrorplan writes: containerd 1.6 then refuses to load its
//!   CRI plugin while the daemon keeps running ([`ensure_config_path`]
//!   removes every mirrors entry; [`apply_legacy`] removes `config_path`).
//! - **Rendering is pure**: [`render_hosts`], [`ensure_config_path`],
//!   [`apply_legacy`], [`inspect_config`] and [`diff_files`] take values and
//!   return values; only a [`Transport`] touches a node.
//! - **Files holding credentials are mode 0600 and `sensitive`**; their
//!   contents never appear in `Debug`, diffs, notes or errors
//!   (`(sensitive value)` instead). [`Secret`] enforces this for values.
//! - **Push credentials never reach nodes**: the model has room only for
//!   pull credentials ([`PullAuth`]) and the gcr.io key.
//! - **mirrorplan owns only what it marks**: legacy tables it writes carry
//!   [`MANAGED_MARKER`]; everything else in config.toml is kept byte for byte.
//!
//! # How the pieces fit (one node)
//! 1. `transport.run(&["containerd", "--version"])` →
//!    [`parse_containerd_version`].
//! 2. Read `/etc/containerd/config.toml` and the files mirrorplan manages;
//!    [`edit_config`] (style dispatch) gives the new config.toml,
//!    [`render_node_files`] the hosts.toml / CA files.
//! 3. [`diff_files`] shows the plan (digests, diffs, secrets hidden).
//! 4. Apply with [`Transport::write_file_atomic`] / [`Transport::remove_file`];
//!    restart containerd only when config.toml changed (legacy style, or the
//!    first time `config_path` is set); hosts.toml is read per pull.
//! 5. Verify with [`inspect_config`] (`conflict` must be false) and a CRI call
//!    ([`CriClient::over_ssh`]: `version`, `pull`, `image_status`).
//!
//! Remote nodes use [`SshTransport`] (one SSH connection per node, host
//! keys always checked against known_hosts or a pin); `local:PATH` nodes
//! use [`LocalTransport`].
//!
//! # API boundary
//! No dependency on other mirrorplan crates; the engine maps its model into
//! [`NodeMirrorConfig`].

pub mod cluster;
pub mod cluster_config;
mod cluster_file;
mod command_log;
mod containerd;
pub mod cri;
mod diff;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod hosts;
mod k3s;
mod known_hosts;
mod model;
pub mod provider;
mod registries_conf;
mod secret;
pub mod shell;
mod ssh;
mod transport;

pub use cluster_file::{
    edit_cluster_file, edit_cluster_file_blocks, render_gcr_key_path, render_registry_mirrors,
    yaml_scalar, ClusterFileEdit, ClusterFileError, ClusterFileMirror, KeyChange, GCR_KEY_PATH_KEY,
    REGISTRY_MIRRORS_KEY,
};
pub use containerd::{
    apply_legacy, edit_config, ensure_config_path, ensure_config_path_with_auth, inspect_config,
    legacy_ca_path, parse_containerd_release, parse_containerd_version, render_legacy_files,
    render_node_files, ConfigEdit, ConfigFacts, ContainerdRelease, ContainerdVersion,
    LegacyConfigFacts, CRI_IMAGES_PLUGIN_V3, CRI_PLUGIN_V2, MANAGED_MARKER,
};
pub use cri::{CriClient, CriError, CriVersion, ImageInfo};
pub use diff::{diff_files, digest, looks_sensitive, ChangeKind, DesiredFile, FileChange};
pub use error::{NodeError, Result};
pub use hosts::{
    auth_in_config, ca_file_path, config_auths, hosts_endpoints, hosts_toml_path, render_hosts,
    upstream_server, ConfigAuth, MODE_PUBLIC, MODE_SECRET,
};
pub use k3s::{k3s_ca_path, registries_yaml_path, render_k3s_registries};
pub use known_hosts::fingerprint;
pub use model::{
    normalize_host, ConfigStyle, EndpointScheme, MirrorSpec, NodeMirrorConfig, PullAuth,
    DEFAULT_CONFIG_PATH, GCR_HOST, GCR_KEY_USERNAME,
};
pub use registries_conf::{
    auth_json_path, certs_d_ca_path, drop_in_mirrors, drop_in_path, mirror_location,
    render_registries_conf, DROP_IN,
};
pub use secret::{Secret, REDACTED};
pub use ssh::{SshError, SshOptions, SshTransport, TEMP_MARKER};
pub use transport::{LocalTransport, Output, RunMode, Transport};

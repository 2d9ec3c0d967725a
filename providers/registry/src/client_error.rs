//! Errors of the network half (registry client, pushes and copies). Each
//! names the registry and, where it applies, the repository and the blob or
//! manifest; none ever contains a password, a token, an `Authorization`
//! header or the contents of a docker config file.

use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::digest::Digest;
use crate::error::BundleError;

/// Errors talking to a registry.
#[derive(Debug, Error, Diagnostic)]
pub enum RegistryError {
    #[error("registry {registry}: invalid client configuration: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::client_config),
        help("check the registry's address, ca_cert (PEM) and proxy settings")
    )]
    Config { registry: String, reason: String },

    #[error("docker config {path} (credentials for {host}): {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::docker_config),
        help("the file must be a Docker config.json with `auths`, `credHelpers` or `credsStore`; `docker login HOST` writes one")
    )]
    DockerConfig {
        path: PathBuf,
        host: String,
        reason: String,
    },

    #[error("credential helper {helper} for {host} failed: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::credential_helper),
        help("run `echo {host} | {helper} get` to check it; install the helper or log in again")
    )]
    CredentialHelper {
        helper: String,
        host: String,
        reason: String,
    },

    #[error(
        "registry {registry}: its TLS certificate is signed by an unknown authority ({detail})"
    )]
    #[diagnostic(
        code(mirrorplan::registry::x509_unknown_authority),
        help("set `ca_cert` to the PEM file of the CA that signed the registry's certificate (or, for a throwaway lab only, `insecure = true`)")
    )]
    UnknownAuthority { registry: String, detail: String },

    #[error("registry {registry}: TLS handshake failed ({detail})")]
    #[diagnostic(
        code(mirrorplan::registry::tls),
        help("check that the registry speaks HTTPS on this port, that its certificate names this host, and `ca_cert`")
    )]
    Tls { registry: String, detail: String },

    #[error("registry {registry}: cannot connect after {attempts} attempt(s) ({detail})")]
    #[diagnostic(
        code(mirrorplan::registry::connect),
        help("check that the registry is running and reachable (address, port, scheme, HTTPS_PROXY/NO_PROXY)")
    )]
    Connect {
        registry: String,
        attempts: u32,
        detail: String,
    },

    #[error("registry {registry} did not answer within {limit} ({what}; {attempts} attempt(s))")]
    #[diagnostic(
        code(mirrorplan::registry::timeout),
        help("the registry accepted the connection but sent nothing back; check that it (and any proxy in front of it) is healthy, or raise `timeout` in its registry block")
    )]
    Timeout {
        registry: String,
        what: String,
        limit: String,
        attempts: u32,
    },

    #[error("wrong credentials for {registry} (user {user})")]
    #[diagnostic(
        code(mirrorplan::registry::wrong_credentials),
        help("the registry rejected the user name or password; check them (or the docker config entry for this host)")
    )]
    WrongCredentials { registry: String, user: String },

    #[error("registry {registry} requires authentication for {what}")]
    #[diagnostic(
        code(mirrorplan::registry::auth_required),
        help("configure credentials for this registry (user/password or a docker config file)")
    )]
    AuthRequired { registry: String, what: String },

    #[error("registry {registry}: fetching a token from {realm} failed: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::token),
        help("the registry's token service did not issue a token; check credentials and that the realm is reachable")
    )]
    Token {
        registry: String,
        realm: String,
        reason: String,
    },

    #[error("registry {registry}: refusing to send the credentials of user {user} to the token realm {realm}: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::unsafe_realm),
        help("the registry's `WWW-Authenticate` header names that token service; serve it over https (or from the registry's own address), or check that the registry is the one you mean")
    )]
    UnsafeRealm {
        registry: String,
        user: String,
        realm: String,
        reason: String,
    },

    #[error("registry {registry}: access denied to {what} (HTTP {status})")]
    #[diagnostic(
        code(mirrorplan::registry::denied),
        help("the credentials are valid but lack permission (pull/push) on this repository")
    )]
    Denied {
        registry: String,
        what: String,
        status: u16,
    },

    #[error("registry {registry}: {what} failed with HTTP {status}{detail}")]
    #[diagnostic(
        code(mirrorplan::registry::status),
        help("see the registry's error message above; 5xx and 429 were retried with backoff")
    )]
    Status {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },

    #[error("registry {registry}: {what}: unexpected response: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::protocol),
        help("the server does not behave like an OCI distribution registry")
    )]
    Protocol {
        registry: String,
        what: String,
        reason: String,
    },

    #[error("registry {registry}: {what}: the connection failed ({detail})")]
    #[diagnostic(
        code(mirrorplan::registry::transfer),
        help("the registry went away or the network failed during the transfer; run again: blobs already present are skipped")
    )]
    Transfer {
        registry: String,
        what: String,
        detail: String,
    },

    #[error("registry {registry}: {what}: the blob's source failed ({detail})")]
    #[diagnostic(
        code(mirrorplan::registry::blob_source),
        help("the bytes being uploaded could not be read (corrupt bundle, source registry failure); nothing of this blob was committed")
    )]
    Source {
        registry: String,
        what: String,
        detail: String,
    },

    #[error("registry {registry}: {repository}@{expected} came back as {actual}")]
    #[diagnostic(
        code(mirrorplan::registry::digest_mismatch),
        help("the registry served content that does not match its digest; the registry or a proxy altered it")
    )]
    DigestMismatch {
        registry: String,
        repository: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("registry {registry}: {repository}:{reference} not found")]
    #[diagnostic(
        code(mirrorplan::registry::not_found),
        help("check the image name and tag on the source registry")
    )]
    NotFound {
        registry: String,
        repository: String,
        reference: String,
    },

    #[error("image {image}: {reason}")]
    #[diagnostic(
        code(mirrorplan::registry::copy_platform),
        help("choose platforms the image provides, or drop the platform filter")
    )]
    Platform { image: String, reason: String },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Bundle(#[from] BundleError),

    #[error("internal error: {0}")]
    #[diagnostic(
        code(mirrorplan::registry::internal),
        help("this is a bug in mirrorplan; please report it")
    )]
    Internal(String),
}

impl RegistryError {
    /// Whether this error concerns the whole registry (connection, TLS,
    /// credentials) rather than one image: a push stops on such errors.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            RegistryError::Config { .. }
                | RegistryError::DockerConfig { .. }
                | RegistryError::CredentialHelper { .. }
                | RegistryError::UnknownAuthority { .. }
                | RegistryError::Tls { .. }
                | RegistryError::Connect { .. }
                | RegistryError::Timeout { .. }
                | RegistryError::WrongCredentials { .. }
                | RegistryError::AuthRequired { .. }
                | RegistryError::Token { .. }
                | RegistryError::UnsafeRealm { .. }
        )
    }
}

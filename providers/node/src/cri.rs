//! A minimal CRI (`runtime.v1`) client: `Version`, `PullImage`,
//! `ImageStatus`, over a local unix socket or through an SSH connection
//! (`direct-streamlocal` forwarding to the node's containerd socket).
//!
//! The messages are declared by hand with `prost` derives (field tags from
//! the kubernetes `cri-api` `api.proto`, package `runtime.v1`), so building
//! needs no `protoc`. Only the fields mirrorplan uses are declared; protobuf
//! skips the others when decoding.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::error::{NodeError, Result};
use crate::model::PullAuth;
use crate::ssh::SshTransport;

/// The hand-written `runtime.v1` messages.
pub mod proto {
    use std::collections::HashMap;

    /// `runtime.v1.VersionRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionRequest {
        /// Version of the kubelet runtime API.
        #[prost(string, tag = "1")]
        pub version: String,
    }

    /// `runtime.v1.VersionResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct VersionResponse {
        /// Version of the kubelet runtime API.
        #[prost(string, tag = "1")]
        pub version: String,
        /// Name of the container runtime (`containerd`).
        #[prost(string, tag = "2")]
        pub runtime_name: String,
        /// Version of the container runtime.
        #[prost(string, tag = "3")]
        pub runtime_version: String,
        /// CRI API version of the runtime (`v1`).
        #[prost(string, tag = "4")]
        pub runtime_api_version: String,
    }

    /// `runtime.v1.ImageSpec`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageSpec {
        /// Image reference.
        #[prost(string, tag = "1")]
        pub image: String,
        /// Unstructured annotations.
        #[prost(map = "string, string", tag = "2")]
        pub annotations: HashMap<String, String>,
    }

    /// `runtime.v1.AuthConfig`. `Debug` hides every credential.
    #[derive(Clone, PartialEq, prost::Message)]
    #[prost(skip_debug)]
    pub struct AuthConfig {
        /// User name.
        #[prost(string, tag = "1")]
        pub username: String,
        /// Password.
        #[prost(string, tag = "2")]
        pub password: String,
        /// base64(`user:password`).
        #[prost(string, tag = "3")]
        pub auth: String,
        /// Registry address.
        #[prost(string, tag = "4")]
        pub server_address: String,
        /// Identity token.
        #[prost(string, tag = "5")]
        pub identity_token: String,
        /// Bearer token sent to the registry.
        #[prost(string, tag = "6")]
        pub registry_token: String,
    }

    impl std::fmt::Debug for AuthConfig {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("AuthConfig")
                .field("username", &self.username)
                .field("server_address", &self.server_address)
                .finish_non_exhaustive()
        }
    }

    /// `runtime.v1.PullImageRequest` (without `sandbox_config`, tag 3).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PullImageRequest {
        /// The image to pull.
        #[prost(message, optional, tag = "1")]
        pub image: Option<ImageSpec>,
        /// Registry credentials.
        #[prost(message, optional, tag = "2")]
        pub auth: Option<AuthConfig>,
    }

    /// `runtime.v1.PullImageResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PullImageResponse {
        /// Image ID or digest of the pulled image.
        #[prost(string, tag = "1")]
        pub image_ref: String,
    }

    /// `runtime.v1.ImageStatusRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageStatusRequest {
        /// The image to look up.
        #[prost(message, optional, tag = "1")]
        pub image: Option<ImageSpec>,
        /// Ask for extra `info`.
        #[prost(bool, tag = "2")]
        pub verbose: bool,
    }

    /// `runtime.v1.Image` (fields 1–4, 6, 8).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Image {
        /// Image ID (`sha256:…` of the config).
        #[prost(string, tag = "1")]
        pub id: String,
        /// Tags naming the image.
        #[prost(string, repeated, tag = "2")]
        pub repo_tags: Vec<String>,
        /// `repo@sha256:…` digests naming the image.
        #[prost(string, repeated, tag = "3")]
        pub repo_digests: Vec<String>,
        /// Size in bytes.
        #[prost(uint64, tag = "4")]
        pub size: u64,
        /// Default user name.
        #[prost(string, tag = "6")]
        pub username: String,
        /// Exempt from garbage collection.
        #[prost(bool, tag = "8")]
        pub pinned: bool,
    }

    /// `runtime.v1.ImageStatusResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ImageStatusResponse {
        /// The image; absent when not present on the node.
        #[prost(message, optional, tag = "1")]
        pub image: Option<Image>,
        /// Extra information (verbose only).
        #[prost(map = "string, string", tag = "2")]
        pub info: HashMap<String, String>,
    }
}

/// containerd's default socket on a node.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// `Version` RPC path.
pub const PATH_VERSION: &str = "/runtime.v1.RuntimeService/Version";
/// `PullImage` RPC path.
pub const PATH_PULL_IMAGE: &str = "/runtime.v1.ImageService/PullImage";
/// `ImageStatus` RPC path.
pub const PATH_IMAGE_STATUS: &str = "/runtime.v1.ImageService/ImageStatus";

/// How long establishing the gRPC connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed CRI call.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum CriError {
    /// The socket could not be reached.
    #[error("cannot connect to the CRI socket {socket} ({via}): {message}")]
    #[diagnostic(
        code(mirrorplan::node::cri::connect),
        help("check that containerd runs with its CRI plugin enabled (not in `disabled_plugins`) and listens on this socket")
    )]
    Connect {
        socket: String,
        via: String,
        message: String,
    },

    /// The runtime answered with a gRPC error.
    #[error("CRI {method} on {via} failed: {code:?}: {message}")]
    #[diagnostic(
        code(mirrorplan::node::cri::call),
        help("`Unimplemented` means the runtime does not serve CRI runtime.v1 (containerd < 1.6 or CRI disabled); pull errors come from the registry or mirror configuration; see containerd's log on the node")
    )]
    Call {
        method: &'static str,
        via: String,
        code: tonic::Code,
        message: String,
    },
}

impl From<CriError> for NodeError {
    fn from(e: CriError) -> Self {
        NodeError::Cri(Box::new(e))
    }
}

/// What `Version` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriVersion {
    /// `containerd`.
    pub runtime_name: String,
    /// Runtime version, e.g. `1.6.20~ds1` or `v2.0.0`.
    pub runtime_version: String,
    /// CRI API version, `v1`.
    pub runtime_api_version: String,
}

/// An image present on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image ID.
    pub id: String,
    /// Tags.
    pub repo_tags: Vec<String>,
    /// Digests (`repo@sha256:…`).
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: u64,
}

/// Lists the stdio-to-socket bridges the node has (run as root, through
/// `sudo -n`): one name a line, in order of preference.
const BRIDGE_DETECT: &str = r#"has() { p=$(command -v "$1" 2>/dev/null) && [ -f "$p" ] && [ -x "$p" ]; }
for b in socat python3; do
  if has "$b"; then echo "$b"; fi
done
if has nc && nc -h 2>&1 | grep -q -e '-U'; then echo nc; fi
"#;

/// `python3 -c PY_BRIDGE SOCKET`: copies stdin to the socket and the socket
/// to stdout until either side ends.
const PY_BRIDGE: &str = r#"import os, socket, sys, threading
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
def up():
    try:
        while True:
            d = os.read(0, 65536)
            if not d:
                break
            s.sendall(d)
    finally:
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
threading.Thread(target=up, daemon=True).start()
out = sys.stdout.buffer
while True:
    d = s.recv(65536)
    if not d:
        break
    out.write(d)
    out.flush()
"#;

/// The bridge command for `socket` from the names [`BRIDGE_DETECT`]
/// printed, or `None` when none fits.
fn bridge_argv(available: &str, socket: &str) -> Option<Vec<String>> {
    // socat parses `:`, `,`, `!` and quotes in addresses: plain paths only
    let socat_safe = socket
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    available
        .lines()
        .map(str::trim)
        .find_map(|name| match name {
            "socat" if socat_safe => Some(vec![
                "socat".to_owned(),
                "-".to_owned(),
                format!("UNIX-CONNECT:{socket}"),
            ]),
            "python3" => Some(vec![
                "python3".to_owned(),
                "-c".to_owned(),
                PY_BRIDGE.to_owned(),
                socket.to_owned(),
            ]),
            "nc" => Some(vec!["nc".to_owned(), "-U".to_owned(), socket.to_owned()]),
            _ => None,
        })
}

/// Finds the bridge to use on the node behind `ssh` (see
/// [`CriClient::over_ssh`]); a clear error naming what to install when
/// there is none, and [`crate::ssh::SshError::Sudo`] when `sudo -n` wants a
/// password.
async fn socket_bridge(ssh: &SshTransport, socket: &str) -> Result<Vec<String>> {
    use crate::transport::Transport as _;
    let out = ssh.run(&["sh", "-c", BRIDGE_DETECT]).await?;
    bridge_argv(&String::from_utf8_lossy(&out.stdout), socket).ok_or_else(|| {
        crate::ssh::SshError::SocketBridge {
            target: ssh.target().to_owned(),
            socket: socket.to_owned(),
        }
        .into()
    })
}

/// Checks that a runtime socket can be reached through `ssh` as
/// [`CriClient::over_ssh`] does for a login that is not root: `sudo -n`
/// works and the node has a bridge (for a plain socket path). `Ok` at once
/// for root logins.
pub async fn check_socket_bridge(ssh: &SshTransport) -> Result<()> {
    if ssh.uses_sudo() {
        socket_bridge(ssh, DEFAULT_SOCKET).await?;
    }
    Ok(())
}

/// A CRI client bound to one runtime socket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CriClient {
    channel: Channel,
    via: String,
}

fn endpoint() -> Endpoint {
    // The URI is required by the HTTP/2 layer but never resolved: the
    // connector decides where bytes go.
    Endpoint::from_static("http://cri.invalid").connect_timeout(CONNECT_TIMEOUT)
}

fn auth_config(auth: &PullAuth) -> proto::AuthConfig {
    match auth {
        PullAuth::Basic { username, password } => proto::AuthConfig {
            username: username.clone(),
            password: password.expose().to_owned(),
            ..Default::default()
        },
        PullAuth::Token(token) => proto::AuthConfig {
            registry_token: token.expose().to_owned(),
            ..Default::default()
        },
    }
}

impl CriClient {
    /// Connect to a runtime socket on this machine.
    pub async fn connect_local(socket_path: impl AsRef<Path>) -> Result<Self> {
        let path: PathBuf = socket_path.as_ref().to_owned();
        let via = format!("unix:{}", path.display());
        let connector = tower::service_fn(move |_: http::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        });
        let channel = endpoint()
            .connect_with_connector(connector)
            .await
            .map_err(|e| CriError::Connect {
                socket: socket_path.as_ref().display().to_string(),
                via: via.clone(),
                message: error_chain(&e),
            })?;
        Ok(CriClient { channel, via })
    }

    /// Connect to the runtime socket `socket_path` on the node behind `ssh`
    /// (e.g. `/run/containerd/containerd.sock`); every HTTP/2 connection is
    /// a `direct-streamlocal` channel of the existing SSH connection.
    ///
    /// A login that is not root cannot open containerd's socket that way
    /// (sshd opens it as the login user): when the transport uses sudo,
    /// each connection is instead a command channel running a
    /// stdio-to-socket bridge under `sudo -n` (socat, python3 or `nc -U`,
    /// whichever the node has, in that order).
    pub async fn over_ssh(ssh: &SshTransport, socket_path: &str) -> Result<Self> {
        let bridge = if ssh.uses_sudo() {
            Some(socket_bridge(ssh, socket_path).await?)
        } else {
            None
        };
        let via = match &bridge {
            None => format!("ssh:{}", ssh.target()),
            Some(argv) => format!(
                "ssh:{} (sudo {})",
                ssh.target(),
                argv.first().map(String::as_str).unwrap_or_default()
            ),
        };
        let ssh = ssh.clone();
        let socket = socket_path.to_owned();
        let connector = tower::service_fn(move |_: http::Uri| {
            let ssh = ssh.clone();
            let socket = socket.clone();
            let bridge = bridge.clone();
            async move {
                let stream = match &bridge {
                    None => ssh.open_streamlocal(&socket).await?,
                    Some(argv) => {
                        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                        ssh.open_command_stream(&argv).await?
                    }
                };
                Ok::<_, crate::ssh::SshError>(TokioIo::new(stream))
            }
        });
        let channel = endpoint()
            .connect_with_connector(connector)
            .await
            .map_err(|e| CriError::Connect {
                socket: socket_path.to_owned(),
                via: via.clone(),
                message: error_chain(&e),
            })?;
        Ok(CriClient { channel, via })
    }

    async fn unary<Req, Resp>(
        &self,
        method: &'static str,
        path: &'static str,
        req: Req,
    ) -> Result<Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let call_err = |status: tonic::Status| CriError::Call {
            method,
            via: self.via.clone(),
            code: status.code(),
            message: status.message().to_owned(),
        };
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| CriError::Connect {
            socket: String::new(),
            via: self.via.clone(),
            message: error_chain(&e),
        })?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let resp = grpc
            .unary(
                tonic::Request::new(req),
                http::uri::PathAndQuery::from_static(path),
                codec,
            )
            .await
            .map_err(call_err)?;
        Ok(resp.into_inner())
    }

    /// `RuntimeService/Version`.
    pub async fn version(&self) -> Result<CriVersion> {
        let r: proto::VersionResponse = self
            .unary(
                "Version",
                PATH_VERSION,
                proto::VersionRequest {
                    version: "v1".to_owned(),
                },
            )
            .await?;
        Ok(CriVersion {
            runtime_name: r.runtime_name,
            runtime_version: r.runtime_version,
            runtime_api_version: r.runtime_api_version,
        })
    }

    /// `ImageService/PullImage`: pull `image` (through the node's mirror
    /// configuration); returns the image ref the runtime reports.
    pub async fn pull(&self, image: &str, auth: Option<&PullAuth>) -> Result<String> {
        let r: proto::PullImageResponse = self
            .unary(
                "PullImage",
                PATH_PULL_IMAGE,
                proto::PullImageRequest {
                    image: Some(proto::ImageSpec {
                        image: image.to_owned(),
                        ..Default::default()
                    }),
                    auth: auth.map(auth_config),
                },
            )
            .await?;
        Ok(r.image_ref)
    }

    /// `ImageService/ImageStatus`: `None` when the image is not on the node.
    pub async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        let r: proto::ImageStatusResponse = self
            .unary(
                "ImageStatus",
                PATH_IMAGE_STATUS,
                proto::ImageStatusRequest {
                    image: Some(proto::ImageSpec {
                        image: image.to_owned(),
                        ..Default::default()
                    }),
                    verbose: false,
                },
            )
            .await?;
        Ok(r.image.map(|i| ImageInfo {
            id: i.id,
            repo_tags: i.repo_tags,
            repo_digests: i.repo_digests,
            size: i.size,
        }))
    }
}

/// An error and its sources, `: `-joined (tonic's top-level messages are
/// terse, the cause is in the chain).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// Bytes produced by the Go CRI types for
    /// `ImageStatusResponse{Image{Id:"sha256:ab", RepoTags:["t"], RepoDigests:["d"], Size_:5}}`,
    /// written out by hand from the wire format.
    #[test]
    fn decodes_image_status_wire_bytes() -> Result<(), prost::DecodeError> {
        let image = [
            0x0a, 9, b's', b'h', b'a', b'2', b'5', b'6', b':', b'a', b'b', // id
            0x12, 1, b't', // repo_tags
            0x1a, 1, b'd', // repo_digests
            0x20, 5, // size
            0x3a, 3, 0x0a, 1, b'x', // spec (tag 7): not declared, skipped
        ];
        let mut bytes = vec![0x0a, image.len() as u8];
        bytes.extend_from_slice(&image);
        let r = proto::ImageStatusResponse::decode(bytes.as_slice())?;
        let i = r.image.unwrap_or_default();
        assert_eq!(i.id, "sha256:ab");
        assert_eq!(i.repo_tags, ["t"]);
        assert_eq!(i.repo_digests, ["d"]);
        assert_eq!(i.size, 5);
        Ok(())
    }

    #[test]
    fn pull_request_encoding_and_redaction() {
        let auth = PullAuth::basic("alice", "s3cret-pw");
        let req = proto::PullImageRequest {
            image: Some(proto::ImageSpec {
                image: "r/x:1".into(),
                ..Default::default()
            }),
            auth: Some(auth_config(&auth)),
        };
        let bytes = req.encode_to_vec();
        // field 1 (ImageSpec) first: tag 0x0a, length 7, then ImageSpec.image
        assert_eq!(&bytes[..4], &[0x0a, 7, 0x0a, 5]);
        // password is field 2 of AuthConfig (tag 0x12)
        let pw_at = bytes.windows(9).position(|w| w == b"s3cret-pw");
        let tag = pw_at
            .and_then(|i| i.checked_sub(2))
            .and_then(|i| bytes.get(i));
        assert_eq!(tag, Some(&0x12), "{bytes:?}");
        let dbg = format!("{req:?}");
        assert!(!dbg.contains("s3cret-pw"), "{dbg}");
        assert!(dbg.contains("alice"), "{dbg}");
    }

    #[test]
    fn bridge_choice_follows_what_the_node_has() {
        let sock = "/run/containerd/containerd.sock";
        let first = |available: &str, socket: &str| {
            bridge_argv(available, socket).and_then(|a| a.first().cloned())
        };
        assert_eq!(
            first("socat\npython3\nnc\n", sock).as_deref(),
            Some("socat")
        );
        assert_eq!(first("python3\nnc\n", sock).as_deref(), Some("python3"));
        assert_eq!(first("nc\n", sock).as_deref(), Some("nc"));
        assert_eq!(first("", sock), None);
        // socat would parse the `:` and `,`: python3 instead, or nothing
        assert_eq!(
            first("socat\npython3\n", "/run/a:b,c.sock").as_deref(),
            Some("python3")
        );
        assert_eq!(first("socat\n", "/run/a:b.sock"), None);
    }

    /// Each bridge, run here, carries bytes both ways between its stdio and
    /// a unix socket (an echo server), and the detection script finds them.
    #[test]
    fn bridges_carry_bytes_both_ways() -> std::io::Result<()> {
        use std::io::{Read, Write};
        let detected = std::process::Command::new("sh")
            .args(["-c", BRIDGE_DETECT])
            .output()?;
        let detected = String::from_utf8_lossy(&detected.stdout).into_owned();
        for name in ["socat", "python3"] {
            assert!(
                detected.lines().any(|l| l == name),
                "{name} not detected (the tests need it: .ci/install-deps.sh): {detected:?}"
            );
            let dir = tempfile::tempdir()?;
            let path = dir.path().join("echo.sock");
            let listener = std::os::unix::net::UnixListener::bind(&path)?;
            let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
                let (mut conn, _) = listener.accept()?;
                let mut got = Vec::new();
                conn.read_to_end(&mut got)?;
                conn.write_all(b"pong:")?;
                conn.write_all(&got)?;
                Ok(got)
            });
            let socket = path.to_string_lossy().into_owned();
            let argv = bridge_argv(&format!("{name}\n"), &socket)
                .unwrap_or_else(|| panic!("no argv for {name}"));
            let mut child = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(&payload)?;
            }
            let out = child.wait_with_output()?;
            let got = server
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("server panicked")))?;
            assert_eq!(
                got.len(),
                payload.len(),
                "{name}: the socket got {} bytes",
                got.len()
            );
            assert!(got == payload, "{name}: the socket got other bytes");
            let mut want = b"pong:".to_vec();
            want.extend_from_slice(&payload);
            assert!(
                out.stdout == want,
                "{name}: stdout has {} bytes",
                out.stdout.len()
            );
        }
        Ok(())
    }

    #[test]
    fn token_goes_to_registry_token() {
        let cfg = auth_config(&PullAuth::Token("tok-123".into()));
        assert_eq!(cfg.registry_token, "tok-123");
        assert!(cfg.password.is_empty() && cfg.username.is_empty());
        assert!(!format!("{cfg:?}").contains("tok-123"));
    }
}

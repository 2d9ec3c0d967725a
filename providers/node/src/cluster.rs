//! The `cluster` provider: `cluster.NAME`, applied after all of the
//! cluster's nodes, proves that the result works (method 1 of the source
//! document): on one node, the canary, containerd pulls an image of the
//! cluster's image sets by its public name through the CRI API, and the
//! image's `repoDigests` must hold the mirror's manifest digest.
//!
//! The CRI calls go over the node's SSH connection (stream-local forwarding
//! to containerd's socket), so nodes need no `crictl`. A cluster of `local:`
//! nodes has no containerd: its check is that every node's files exist.

use std::sync::Arc;

use async_trait::async_trait;
use mirrorplan_engine::{
    Address, ApplyContext, Attrs, DesiredInstance, NewInstanceState, Observed, PlannedChange,
    PriorInstance, Provider, ProviderError,
};
use serde_json::{json, Value};

use crate::provider::{Connections, TransportSpec};

/// The provider kind.
pub const KIND: &str = "cluster";
/// Attribute: the SSH nodes whose containerd does not answer CRI (desired: none).
pub const CRI_DOWN: &str = "cri_down";

/// What the cluster step checks.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    /// The node that pulls (the first SSH node), if any.
    pub canary: Option<TransportSpec>,
    /// Every node's transport (for the local-files check).
    pub nodes: Vec<TransportSpec>,
    /// Image to pull by its public name, e.g. `gcr.io/a/b:1`.
    pub image: Option<String>,
    /// The manifest digest the mirror serves for it.
    pub expected_digest: Option<String>,
    /// Files every node must have (the hosts.toml of the mirrored hosts).
    pub required_files: Vec<String>,
    /// A digest of the nodes' desired configuration: a change re-runs the check.
    pub config_digest: String,
    /// containerd's socket on the nodes.
    pub socket: String,
}

fn transport_json(t: &TransportSpec) -> Value {
    t.to_json()
}

fn transport_from(v: &Value, passphrase: Option<&Value>) -> Option<TransportSpec> {
    TransportSpec::from_json(v, passphrase)
}

impl ClusterSpec {
    /// The desired instance for `address`.
    pub fn to_desired(&self, address: Address) -> DesiredInstance {
        let mut attrs = Attrs::new()
            .with(
                "canary",
                self.canary
                    .as_ref()
                    .map(transport_json)
                    .unwrap_or(Value::Null),
            )
            .with(
                "nodes",
                Value::Array(self.nodes.iter().map(transport_json).collect()),
            )
            .with("image", json!(self.image))
            .with("expected_digest", json!(self.expected_digest))
            .with("required_files", json!(self.required_files))
            .with("config_digest", self.config_digest.clone())
            .with("socket", self.socket.clone())
            .with(CRI_DOWN, Value::Array(Vec::new()));
        if let Some(TransportSpec::Ssh {
            passphrase: Some(p),
            ..
        }) = &self.canary
        {
            attrs.insert_sensitive("ssh_passphrase", p.clone());
        }
        DesiredInstance::new(address, KIND, attrs)
    }

    /// Reads a spec back.
    pub fn from_attrs(attrs: &Attrs) -> Result<ClusterSpec, ProviderError> {
        let s = |k: &str| attrs.get(k).and_then(Value::as_str).map(str::to_string);
        let pass = attrs.get("ssh_passphrase");
        Ok(ClusterSpec {
            canary: attrs.get("canary").and_then(|v| transport_from(v, pass)),
            nodes: attrs
                .get("nodes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| transport_from(v, pass)).collect())
                .unwrap_or_default(),
            image: s("image"),
            expected_digest: s("expected_digest"),
            required_files: attrs
                .get("required_files")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            config_digest: s("config_digest").unwrap_or_default(),
            socket: s("socket").unwrap_or_else(|| crate::cri::DEFAULT_SOCKET.to_string()),
        })
    }
}

/// Proves that a cluster's nodes pull through the mirror.
pub struct ClusterProvider {
    connections: Arc<Connections>,
}

impl ClusterProvider {
    /// A provider sharing the node provider's connections.
    pub fn new(connections: Arc<Connections>) -> Self {
        ClusterProvider { connections }
    }

    async fn check(
        &self,
        spec: &ClusterSpec,
        ctx: &ApplyContext,
    ) -> Result<Option<String>, ProviderError> {
        for node in &spec.nodes {
            if let TransportSpec::Local { root } = node {
                let t = self.connections.open(node).await?;
                for f in &spec.required_files {
                    let found = t
                        .read_file(f)
                        .await
                        .map_err(|e| ProviderError::failed(format!("node local:{root}: {e}")))?;
                    if found.is_none() {
                        return Err(ProviderError::failed(format!(
                            "node local:{root} has no {f} after its configuration"
                        )));
                    }
                }
            }
        }
        let (Some(canary), Some(image), Some(expected)) =
            (&spec.canary, &spec.image, &spec.expected_digest)
        else {
            return Ok(None);
        };
        let ssh = self.connections.ssh(canary).await?;
        ctx.message(format!(
            "pulling {image} through the CRI API ({}) on {canary:?}",
            spec.socket
        ));
        let cri = crate::cri::CriClient::over_ssh(&ssh, &spec.socket)
            .await
            .map_err(|e| ProviderError::failed(format!("{canary:?}: {e}")))?;
        cri.pull(image, None).await.map_err(|e| {
            ProviderError::failed(format!("{canary:?}: pulling {image} through the mirror failed: {e}"))
                .with_help("check the node's mirror configuration (hosts.toml, registries.conf drop-in or registries.yaml), the mirror's CA and pull credentials, and that the image is in the mirror")
        })?;
        let info = cri
            .image_status(image)
            .await
            .map_err(|e| ProviderError::failed(format!("{canary:?}: {e}")))?
            .ok_or_else(|| {
                ProviderError::failed(format!(
                    "{canary:?}: {image} is not in containerd after the pull"
                ))
            })?;
        if !info
            .repo_digests
            .iter()
            .any(|d| d.ends_with(&format!("@{expected}")))
        {
            return Err(ProviderError::failed(format!(
                "{canary:?}: {image} was pulled, but its repoDigests {:?} do not hold the mirror's digest {expected}: the node did not get the mirror's copy",
                info.repo_digests
            )));
        }
        Ok(Some(format!("{image}@{expected}")))
    }
}

#[async_trait]
impl Provider for ClusterProvider {
    fn kind(&self) -> &str {
        KIND
    }

    async fn read(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
    ) -> Result<Option<Observed>, ProviderError> {
        // The pull proof is re-run by `apply` when the configuration changes
        // and by `mirrorplan verify`. A refresh checks that containerd still
        // serves CRI on every SSH node: a stopped containerd, or a CRI plugin
        // that failed to load, is reality differing from what was applied.
        let Some(p) = prior else {
            return Ok(None);
        };
        let attrs = match desired {
            Some(d) => d.attrs.clone(),
            None => p.attrs_view(),
        };
        let spec = ClusterSpec::from_attrs(&attrs)?;
        let mut down = Vec::new();
        for node in &spec.nodes {
            let TransportSpec::Ssh { host, port, .. } = node else {
                continue;
            };
            // an unreachable node is not drift of the cluster: its own node
            // instance's refresh reports it (and stops the plan, unless the
            // rollout tolerates failures)
            let ssh = match self.connections.ssh(node).await {
                Ok(ssh) => ssh,
                Err(e) if e.is_unreachable() => continue,
                Err(e) => return Err(e),
            };
            let serving = match tokio::time::timeout(std::time::Duration::from_secs(10), async {
                let cri = crate::cri::CriClient::over_ssh(&ssh, &spec.socket).await?;
                cri.version().await
            })
            .await
            {
                Ok(Ok(_)) => true,
                Ok(Err(_)) | Err(_) => false,
            };
            if !serving {
                down.push(Value::String(format!("{host}:{port}")));
            }
        }
        Ok(Some(Observed {
            attrs: Attrs::new().with(CRI_DOWN, Value::Array(down)),
        }))
    }

    fn plan(
        &self,
        desired: Option<&DesiredInstance>,
        prior: Option<&PriorInstance>,
        _observed: Option<&Observed>,
    ) -> Result<PlannedChange, ProviderError> {
        let mut change = mirrorplan_engine::diff(self.force_new(), desired, prior)?;
        if let Some(d) = desired {
            let spec = ClusterSpec::from_attrs(&d.attrs)?;
            match (&spec.canary, &spec.image) {
                (Some(c), Some(i)) => change.details.push(format!(
                    "after its nodes: {c:?} pulls {i} by its public name and checks the mirror's digest"
                )),
                _ => change.details.push(
                    "after its nodes: checks that every node has its files (no SSH node to pull on)".into(),
                ),
            }
        }
        Ok(change)
    }

    async fn apply(
        &self,
        change: &PlannedChange,
        ctx: &ApplyContext,
    ) -> Result<Option<NewInstanceState>, ProviderError> {
        let Some(after) = &change.after else {
            return Ok(None);
        };
        let spec = ClusterSpec::from_attrs(after)?;
        let proof = self.check(&spec, ctx).await?;
        Ok(Some(NewInstanceState {
            attrs: after.clone(),
            digests: std::collections::BTreeMap::from([(
                "verified".to_string(),
                proof.unwrap_or_else(|| "files".into()),
            )]),
        }))
    }
}

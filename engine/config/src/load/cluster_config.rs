//! The `cluster_config { file, update_command }` block of a cluster: the
//! cluster's mirrors go into its bare-metal cluster configuration file and
//! the cluster software (`update_command`, e.g. `bmctl update cluster`)
//! writes the nodes' containerd configuration. The nodes are then used only
//! for the canary verification, never written over SSH.

use hcl::eval::Context;
use hcl_edit::structure::Body;
use hcl_edit::Span;

use super::Loader;
use crate::diag::DiagKind;
use crate::model::ClusterConfigFile;

impl Loader {
    /// Decodes a cluster's `cluster_config` block, if any, with its checks.
    pub(super) fn cluster_config_block(
        &mut self,
        file: usize,
        body: &Body,
        ctx: &Context,
    ) -> Option<ClusterConfigFile> {
        let block = body.get_blocks("cluster_config").next()?;
        let cbody = &block.body;
        let path = self.path_attr(file, cbody, "file", ctx);
        let command = self.string_attr(file, cbody, "update_command", ctx);
        if let Some(c) = &command {
            if c.trim().is_empty() {
                let span = cbody
                    .get_attribute("update_command")
                    .and_then(|a| a.value.span());
                self.dh(
                    DiagKind::InvalidValue,
                    "update_command must not be empty",
                    file,
                    span,
                    "empty command",
                    "e.g. \"bmctl update cluster -c admin1 --kubeconfig=bmctl-workspace/admin1/admin1-kubeconfig\"",
                );
            }
        }
        if let Some(cb) = body.get_blocks("containerd").next() {
            let span = cb.ident.span();
            self.dh(
                DiagKind::InvalidValue,
                "a cluster with `cluster_config` takes no `containerd` block",
                file,
                span,
                "node files are written by the cluster software",
                "with `cluster_config`, `update_command` writes the nodes' containerd \
                 configuration from the file; remove the `containerd` block (or the \
                 `cluster_config` block to write the nodes over SSH)",
            );
        }
        let sensitive = cbody
            .get_attribute("update_command")
            .is_some_and(|a| self.sensitive_ref(&a.value).is_some());
        let (path, command) = (path?, command?);
        Some(ClusterConfigFile {
            file: path,
            update_command: command,
            update_command_sensitive: sensitive,
        })
    }
}

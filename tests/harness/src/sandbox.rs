//! A "sandbox": a private mount namespace plus a private PID namespace,
//! created with `unshare --mount --pid --fork --mount-proc --propagation
//! private --kill-child`, whose PID 1 is a generated `/bin/sh` init script.
//!
//! Why a PID namespace: when PID 1 of a namespace exits, the kernel kills
//! every other process in it (containerd, its shims, containers, ssh
//! sessions, a containerd restarted over ssh with `setsid`), and the exit of
//! PID 1 only completes once they are all gone. Stopping a sandbox is
//! therefore: SIGTERM to the process group (the init script traps it and
//! exits), wait for `unshare`, SIGKILL the group if that takes over 10 s.
//! The mount namespace vanishes with its last process, taking every bind
//! and overlay mount with it; nothing is mounted in the host's namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{io_err, HarnessError, Result};
use crate::process::{kill_shims_mentioning, ServiceProcess};
use crate::tools::find_binary;

/// A running sandbox (see the module docs).
#[derive(Debug)]
pub(crate) struct Sandbox {
    process: ServiceProcess,
    dir: PathBuf,
    name: String,
}

impl Sandbox {
    /// Starts `/bin/sh init_script` as PID 1 of new mount and PID
    /// namespaces; its output goes to `log`. `dir` is the sandbox's temp dir
    /// (used for the final sweep of stray containerd shims).
    pub(crate) fn spawn(name: &str, dir: &Path, init_script: &Path, log: &Path) -> Result<Self> {
        let unshare = find_binary("unshare")?;
        find_binary("mount")?;
        let mut cmd = Command::new(unshare);
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "--kill-child",
            "--",
            "/bin/sh",
        ])
        .arg(init_script);
        Ok(Self {
            process: ServiceProcess::spawn(name, cmd, log)?,
            dir: dir.to_owned(),
            name: name.to_owned(),
        })
    }

    /// See [`ServiceProcess::wait_ready`].
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        ready: impl FnMut() -> bool,
    ) -> Result<()> {
        self.process.wait_ready(timeout, ready)
    }

    /// Host PID of the sandbox's PID 1 (the child of `unshare`).
    pub(crate) fn init_pid(&mut self) -> Result<u32> {
        if self.process.exit_status().is_some() {
            return Err(HarnessError::NotRunning(self.name.clone()));
        }
        let unshare = self
            .process
            .pid()
            .ok_or_else(|| HarnessError::NotRunning(self.name.clone()))?;
        let path = format!("/proc/{unshare}/task/{unshare}/children");
        let text = std::fs::read_to_string(&path).map_err(io_err(format!("reading {path}")))?;
        text.split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HarnessError::UnexpectedOutput {
                what: format!("children of unshare ({path})"),
                output: text.trim().to_owned(),
            })
    }

    /// A command that runs `program args…` inside the sandbox's mount and
    /// PID namespaces (through `nsenter`).
    pub(crate) fn enter(&mut self, program: &str, args: &[&str]) -> Result<Command> {
        let pid = self.init_pid()?;
        let mut cmd = Command::new(find_binary("nsenter")?);
        cmd.arg("--target")
            .arg(pid.to_string())
            .args(["--mount", "--pid", "--"])
            .arg(program)
            .args(args);
        Ok(cmd)
    }

    /// True while the sandbox runs.
    pub(crate) fn is_running(&mut self) -> bool {
        self.process.pid().is_some() && self.process.exit_status().is_none()
    }

    /// Stops everything in the sandbox (see the module docs).
    pub(crate) fn stop(&mut self) {
        self.process.stop();
        kill_shims_mentioning(&self.dir);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A container a sandboxed containerd knew about, for cleaning up what
/// outlives it on the host (runc state, shim socket, ctr FIFOs, cgroups).
#[derive(Debug)]
pub(crate) struct ContainerTrace {
    namespace: String,
    id: String,
    shim_address: Option<String>,
}

/// Lists containers from containerd's task dir
/// (`<state>/io.containerd.runtime.v2.task/<namespace>/<id>`).
pub(crate) fn container_traces(state_dir: &Path) -> Vec<ContainerTrace> {
    let mut out = Vec::new();
    let task_dir = state_dir.join("io.containerd.runtime.v2.task");
    for ns in std::fs::read_dir(task_dir).into_iter().flatten().flatten() {
        for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            out.push(ContainerTrace {
                namespace: ns.file_name().to_string_lossy().into_owned(),
                id: c.file_name().to_string_lossy().into_owned(),
                shim_address: std::fs::read_to_string(c.path().join("address")).ok(),
            });
        }
    }
    out
}

/// Best-effort removal of what the containers in `traces` left behind
/// after their processes are gone. `run_root` is the `/run/containerd`
/// they used, when it is the host's (for a node it is a temp dir that goes
/// away anyway). Only entries named after these containers are touched.
pub(crate) fn remove_container_leftovers(traces: &[ContainerTrace], run_root: Option<&Path>) {
    let valid = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
    for t in traces
        .iter()
        .filter(|t| valid(&t.namespace) && valid(&t.id))
    {
        if let Some(run) = run_root {
            let _ = std::fs::remove_dir_all(run.join("runc").join(&t.namespace).join(&t.id));
            if let Some(sock) = t
                .shim_address
                .as_deref()
                .and_then(|a| a.trim().strip_prefix("unix://"))
                .map(Path::new)
                .filter(|p| p.starts_with(run.join("s")))
            {
                let _ = std::fs::remove_file(sock);
            }
            for dir in std::fs::read_dir(run.join("fifo"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for suffix in ["stdin", "stdout", "stderr"] {
                    let _ = std::fs::remove_file(dir.path().join(format!("{}-{suffix}", t.id)));
                }
                let _ = std::fs::remove_dir(dir.path()); // only if now empty
            }
        }
        let cg = Path::new("/sys/fs/cgroup");
        let _ = std::fs::remove_dir(cg.join(&t.namespace).join(&t.id));
        for ctrl in std::fs::read_dir(cg).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(ctrl.path().join(&t.namespace).join(&t.id));
        }
    }
}

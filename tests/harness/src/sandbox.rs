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
    pub(crate) fn wait_ready(&mut self, timeout: Duration, ready: impl FnMut() -> bool) -> Result<()> {
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

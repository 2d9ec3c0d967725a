//! Long-running service processes: spawned in their own process group with
//! output appended to a log file, stopped (TERM, then KILL) on drop.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::error::{io_err, HarnessError, Result};
use crate::tools::describe;

/// How long a service gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A service running as the leader of its own process group.
#[derive(Debug)]
pub(crate) struct ServiceProcess {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ServiceProcess {
    /// Spawns `cmd` with stdin from /dev/null and stdout/stderr appended to
    /// `log_path`, as the leader of a new process group.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log_path: &Path) -> Result<Self> {
        let open_log = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .map_err(io_err(format!("opening log {}", log_path.display())))
        };
        let out = open_log()?;
        let err = open_log()?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let what = describe(&cmd);
        let child = cmd
            .spawn()
            .map_err(io_err(format!("starting {name}: `{what}`")))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log_path: log_path.to_owned(),
        })
    }

    /// Host PID of the group leader while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the leader has exited (it is reaped then).
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Error describing an early exit, with the log tail.
    pub(crate) fn exited_error(&self, status: ExitStatus) -> HarnessError {
        HarnessError::ExitedEarly {
            service: self.name.clone(),
            status: status.to_string(),
            log: self.log_path.clone(),
            log_tail: log_tail(&self.log_path),
        }
    }

    /// Error describing a readiness timeout, with the log tail.
    pub(crate) fn not_ready_error(&self, waited: Duration) -> HarnessError {
        HarnessError::NotReady {
            service: self.name.clone(),
            waited,
            log: self.log_path.clone(),
            log_tail: log_tail(&self.log_path),
        }
    }

    /// Polls `ready` every 50 ms until it returns true, the process exits
    /// (error with the log tail) or `timeout` passes.
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Err(self.exited_error(status));
            }
            if ready() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(self.not_ready_error(timeout));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the whole process group: SIGTERM, up to 10 s for the leader to
    /// exit, then SIGKILL to whatever is left of the group, then reaps the
    /// leader. The leader is kept as a zombie until the final KILL so that
    /// its process-group id cannot be reused by an unrelated process.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
            return;
        };
        let _ = rustix::process::kill_process_group(pid, Signal::TERM);
        let start = Instant::now();
        while start.elapsed() < TERM_GRACE {
            let opts = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
            match rustix::process::waitid(WaitId::Pid(pid), opts) {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        let _ = child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last 30 lines of a log file (or a note that it cannot be read).
pub(crate) fn log_tail(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Sends SIGKILL to every process whose command line mentions
/// `containerd-shim` and contains `needle` (a temp dir of the harness).
/// Used as a last sweep after a containerd sandbox is gone.
pub(crate) fn kill_shims_mentioning(needle: &Path) {
    let needle = needle.to_string_lossy();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains("containerd-shim") && cmdline.contains(needle.as_ref()) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
}

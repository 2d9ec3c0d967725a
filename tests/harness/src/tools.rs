//! Locating the external programs the harness drives, and running them.
//!
//! The harness never panics on a missing program: [`find_binary`] returns
//! [`HarnessError::MissingBinary`] naming the Debian package to install.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{io_err, HarnessError, Result};

/// Debian packages that provide each program the harness (or its tests) run.
const PACKAGES: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("runc", "runc"),
    ("skopeo", "skopeo"),
    ("htpasswd", "apache2-utils"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("setsid", "util-linux"),
    ("mount", "mount"),
    ("busybox", "busybox-static"),
    ("ip", "iproute2"),
];

/// The Debian package that ships `binary` (the binary's own name when unknown).
pub fn debian_package_for(binary: &str) -> &str {
    PACKAGES
        .iter()
        .find(|(b, _)| *b == binary)
        .map_or(binary, |(_, p)| p)
}

/// Finds `binary` on `PATH`, then in `/usr/sbin`, `/sbin`, `/usr/bin`, `/bin`.
///
/// Returns an absolute path, or [`HarnessError::MissingBinary`] naming the
/// Debian package to install.
pub fn find_binary(binary: &str) -> Result<PathBuf> {
    let from_env = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let fallback = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(PathBuf::from);
    for dir in from_env.into_iter().chain(fallback) {
        let candidate = dir.join(binary);
        if is_executable(&candidate) && candidate.is_absolute() {
            return Ok(candidate);
        }
    }
    Err(HarnessError::MissingBinary {
        binary: binary.to_owned(),
        package: debian_package_for(binary).to_owned(),
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A printable form of a command line, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, optionally feeding `stdin`, and fails unless it
/// exits 0. Secrets must be passed through `stdin`, never as arguments.
pub(crate) fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<Output> {
    use std::io::Write;
    let what = describe(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(io_err(format!("spawning `{what}`")))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .map_err(io_err(format!("writing stdin of `{what}`")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err(format!("waiting for `{what}`")))?;
    if !out.status.success() {
        return Err(HarnessError::CommandFailed {
            command: what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// Writes `contents` to `path`, with error context.
pub(crate) fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(io_err(format!("writing {}", path.display())))
}

/// Writes an executable shell script.
pub(crate) fn write_script(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    write_file(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(format!("chmod {}", path.display())))
}

/// Creates a directory and its parents, with error context.
pub(crate) fn mkdir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(io_err(format!("creating {}", path.display())))
}

/// Quotes `s` for a POSIX shell.
pub(crate) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes a path for a POSIX shell.
pub(crate) fn sh_path(p: &Path) -> String {
    sh_quote(&p.to_string_lossy())
}

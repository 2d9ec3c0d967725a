//! The `Transport` abstraction (how mirrorplan reads, writes and runs things
//! on a node) and `LocalTransport` for `local:PATH` nodes, where every node
//! path is resolved under a root directory.

use std::io::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::{NodeError, Result};

/// Output of a command run on a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub status: Option<i32>,
    /// Captured standard output.
    pub stdout: Vec<u8>,
    /// Captured standard error.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// How mirrorplan reaches one node. Paths are absolute node paths
/// (`/etc/containerd/config.toml`); commands are argv vectors, never a shell
/// string assembled from user data (see [`crate::shell`] when a shell is
/// unavoidable).
#[async_trait]
pub trait Transport: Send + Sync {
    /// Short description for messages, such as `local:/tmp/node1`.
    fn describe(&self) -> String;

    /// Contents of `path`, or `None` when it does not exist.
    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>>;

    /// Replace `path` atomically: write a temporary file in the same
    /// directory with `mode`, fsync it, rename it over `path`. Parent
    /// directories are created.
    async fn write_file_atomic(&self, path: &str, bytes: &[u8], mode: u32) -> Result<()>;

    /// Contents of each of `paths` (`None` when missing), in order. The
    /// default reads them one by one; [`crate::SshTransport`] reads them
    /// with one remote command.
    async fn read_files(&self, paths: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            out.push(self.read_file(path).await?);
        }
        Ok(out)
    }

    /// [`Transport::write_file_atomic`] for each `(path, bytes, mode)`. Each
    /// file is replaced atomically (old or new contents, never a mix); the
    /// set as a whole is not: on an error some files may already be
    /// replaced. The default writes them one by one; [`crate::SshTransport`]
    /// uses one remote command that prepares (and checks) every temporary
    /// file before renaming any of them.
    async fn write_files_atomic(&self, files: &[(&str, &[u8], u32)]) -> Result<()> {
        for (path, bytes, mode) in files {
            self.write_file_atomic(path, bytes, *mode).await?;
        }
        Ok(())
    }

    /// [`Transport::read_files`], and `argv` run on the node (its outcome
    /// apart: a failed command does not fail the read). The default does
    /// one after the other; [`crate::SshTransport`] does both with one
    /// remote command.
    async fn read_files_and_run(
        &self,
        paths: &[&str],
        argv: &[&str],
    ) -> Result<(Vec<Option<Vec<u8>>>, Result<Output>)> {
        let files = self.read_files(paths).await?;
        let out = self.run(argv).await;
        Ok((files, out))
    }

    /// [`Transport::write_files_atomic`], then, only if every file was
    /// written, `argv` run on the node; its output (the command's stdout
    /// may be folded into its stderr). An `Err` means the files may not
    /// all be written. The default does one after the other;
    /// [`crate::SshTransport`] does both with one remote command.
    async fn write_files_then_run(
        &self,
        files: &[(&str, &[u8], u32)],
        argv: &[&str],
    ) -> Result<Output> {
        self.write_files_atomic(files).await?;
        self.run(argv).await
    }

    /// [`Transport::write_files_atomic`], then `argv` if given (as
    /// [`Transport::write_files_then_run`]: its output, when it ran), but
    /// only if each file of `files` is still, right before the files are
    /// renamed into place, what `expected` says (same order: the contents
    /// it was read with, or `None` when it was missing). Otherwise nothing
    /// is written, nothing runs, and the error is
    /// [`NodeError::ChangedSinceRead`] naming the files that differ.
    /// [`NodeError::CannotCheck`]: the node cannot compare; nothing was
    /// written. The default reads the files, compares, then writes (a
    /// `local:` directory has no other writer in between that matters);
    /// [`crate::SshTransport`] compares in the write command itself.
    async fn write_files_if_unchanged(
        &self,
        files: &[(&str, &[u8], u32)],
        expected: &[Option<&[u8]>],
        argv: Option<&[&str]>,
    ) -> Result<Option<Output>> {
        check_expectations(files, expected)?;
        let paths: Vec<&str> = files.iter().map(|f| f.0).collect();
        let now = self.read_files(&paths).await?;
        let changed: Vec<&str> = paths
            .iter()
            .zip(now.iter().zip(expected))
            .filter(|(_, (now, want))| now.as_deref() != **want)
            .map(|(p, _)| *p)
            .collect();
        if !changed.is_empty() {
            return Err(NodeError::ChangedSinceRead {
                paths: changed.join(", "),
            });
        }
        match argv {
            Some(argv) => Ok(Some(self.write_files_then_run(files, argv).await?)),
            None => {
                self.write_files_atomic(files).await?;
                Ok(None)
            }
        }
    }

    /// Remove `path`; `Ok(false)` when it did not exist.
    async fn remove_file(&self, path: &str) -> Result<bool>;

    /// Run `argv` (program and arguments) on the node.
    async fn run(&self, argv: &[&str]) -> Result<Output>;
}

/// One expectation per file, else [`NodeError::CannotCheck`].
pub(crate) fn check_expectations(
    files: &[(&str, &[u8], u32)],
    expected: &[Option<&[u8]>],
) -> Result<()> {
    if files.len() == expected.len() {
        return Ok(());
    }
    Err(NodeError::CannotCheck {
        reason: format!(
            "{} files to write but {} expected contents",
            files.len(),
            expected.len()
        ),
    })
}

/// What `LocalTransport::run` does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RunMode {
    /// Record the argv and report success without running anything: a local
    /// node has no containerd to restart unless one is configured.
    #[default]
    Record,
    /// Really run the argv as a local process (no shell).
    Execute,
}

/// A node that is a directory on this machine (`local:PATH`).
#[derive(Debug, Clone)]
pub struct LocalTransport {
    root: PathBuf,
    mode: RunMode,
    recorded: Arc<Mutex<Vec<Vec<String>>>>,
}

impl LocalTransport {
    /// A local node rooted at `root`; commands are recorded, not run.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalTransport {
            root: root.into(),
            mode: RunMode::Record,
            recorded: Arc::default(),
        }
    }

    /// Choose what `run` does.
    pub fn with_run_mode(mut self, mode: RunMode) -> Self {
        self.mode = mode;
        self
    }

    /// The node root on this machine.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Commands recorded by `run` in [`RunMode::Record`], in order.
    pub fn recorded_commands(&self) -> Vec<Vec<String>> {
        match self.recorded.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Map an absolute node path to a path under the root, lexically.
    /// Rejects relative paths and any `..`/`.` component.
    pub fn resolve(&self, node_path: &str) -> Result<PathBuf> {
        let bad = |reason: &str| NodeError::PathNotAllowed {
            path: node_path.to_owned(),
            reason: reason.to_owned(),
        };
        if !node_path.starts_with('/') {
            return Err(bad("it is not absolute"));
        }
        if node_path.contains('\0') {
            return Err(bad("it contains a NUL byte"));
        }
        // `Path::components` silently drops `.`: check the raw segments.
        if node_path.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(bad("it contains `..` or `.`"));
        }
        let mut out = self.root.clone();
        for comp in Path::new(node_path).components() {
            match comp {
                Component::RootDir => {}
                Component::Normal(part) => out.push(part),
                Component::ParentDir | Component::CurDir | Component::Prefix(_) => {
                    return Err(bad("it contains `..` or `.`"));
                }
            }
        }
        if out == self.root {
            return Err(bad("it names the node root itself"));
        }
        Ok(out)
    }

    /// Refuse paths whose existing part leads outside the root through a
    /// symbolic link.
    fn check_inside(&self, node_path: &str, host_path: &Path) -> Result<()> {
        let root = std::fs::canonicalize(&self.root)
            .map_err(|e| NodeError::io("cannot resolve node root", &self.root, e))?;
        let mut probe = host_path.to_path_buf();
        let existing = loop {
            if let Ok(c) = std::fs::canonicalize(&probe) {
                break c;
            }
            if !probe.pop() {
                break root.clone();
            }
        };
        if existing.starts_with(&root) {
            Ok(())
        } else {
            Err(NodeError::PathNotAllowed {
                path: node_path.to_owned(),
                reason: "a symbolic link leads outside the node root".to_owned(),
            })
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(join) => Err(NodeError::io(
            "background file task failed",
            PathBuf::new(),
            std::io::Error::other(join.to_string()),
        )),
    }
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().ok_or_else(|| {
        NodeError::io(
            "no parent directory for",
            path,
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        )
    })?;
    std::fs::create_dir_all(dir).map_err(|e| NodeError::io("cannot create directory", dir, e))?;
    // tempfile creates the file 0600, so secrets are never readable by others
    // even before the final mode is set.
    let mut tmp = tempfile::Builder::new()
        .prefix(".mirrorplan-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| NodeError::io("cannot create temporary file in", dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| NodeError::io("cannot write", tmp.path().to_path_buf(), e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| NodeError::io("cannot set mode of", tmp.path().to_path_buf(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| NodeError::io("cannot fsync", tmp.path().to_path_buf(), e))?;
    tmp.persist(path)
        .map_err(|e| NodeError::io("cannot rename temporary file to", path, e.error))?;
    // make the rename itself durable
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| NodeError::io("cannot fsync directory", dir, e))?;
    Ok(())
}

#[async_trait]
impl Transport for LocalTransport {
    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }

    async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let host = self.resolve(path)?;
        let this = self.clone();
        let node_path = path.to_owned();
        blocking(move || {
            if !this.root.exists() {
                // a node root not made yet (a plan before the first apply)
                return Ok(None);
            }
            this.check_inside(&node_path, &host)?;
            match std::fs::read(&host) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(NodeError::io("cannot read", host, e)),
            }
        })
        .await
    }

    async fn write_file_atomic(&self, path: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let host = self.resolve(path)?;
        let this = self.clone();
        let node_path = path.to_owned();
        let bytes = bytes.to_vec();
        blocking(move || {
            // a local node is a directory standing in for a node's root:
            // the first write makes it
            std::fs::create_dir_all(&this.root)
                .map_err(|e| NodeError::io("cannot create node root", &this.root, e))?;
            this.check_inside(&node_path, &host)?;
            write_atomic(&host, &bytes, mode)
        })
        .await
    }

    async fn remove_file(&self, path: &str) -> Result<bool> {
        let host = self.resolve(path)?;
        let this = self.clone();
        let node_path = path.to_owned();
        blocking(move || {
            if !this.root.exists() {
                return Ok(false);
            }
            this.check_inside(&node_path, &host)?;
            match std::fs::remove_file(&host) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(NodeError::io("cannot remove", host, e)),
            }
        })
        .await
    }

    async fn run(&self, argv: &[&str]) -> Result<Output> {
        let Some((program, args)) = argv.split_first() else {
            return Err(NodeError::EmptyCommand);
        };
        match self.mode {
            RunMode::Record => {
                let cmd = argv.iter().map(|s| (*s).to_owned()).collect();
                match self.recorded.lock() {
                    Ok(mut g) => g.push(cmd),
                    Err(poisoned) => poisoned.into_inner().push(cmd),
                }
                Ok(Output {
                    status: Some(0),
                    ..Output::default()
                })
            }
            RunMode::Execute => {
                let started = std::time::Instant::now();
                let out = tokio::process::Command::new(program)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .map(|out| Output {
                        status: out.status.code(),
                        stdout: out.stdout,
                        stderr: out.stderr,
                    });
                crate::command_log::finished(
                    &self.describe(),
                    &crate::command_log::program(program),
                    0,
                    out.as_ref(),
                    started.elapsed(),
                );
                out.map_err(|source| NodeError::Command {
                    program: (*program).to_owned(),
                    source,
                })
            }
        }
    }
}

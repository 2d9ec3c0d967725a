//! Durable filesystem helpers: private directories and atomic file replacement.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::StateError;

/// Mode of every file this crate writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of directories this crate creates.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
/// An existing directory is left as it is.
pub fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| StateError::io("create directory", dir, e))
}

/// Makes `dir` a private directory of this user: creates it (and missing
/// parents) with mode 0700, or, when it exists, is owned by this user and
/// lets the group or others in, removes their access (`chmod go-rwx`).
/// A directory of another owner is left as it is. For mirrorplan's own
/// directories (`.mirrorplan/` and its cache), not for one the user named.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    ensure_dir(dir)?;
    let meta = fs::metadata(dir).map_err(|e| StateError::io("inspect directory", dir, e))?;
    let mode = meta.mode() & 0o7777;
    if meta.uid() == rustix::process::geteuid().as_raw() && mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & !0o077))
            .map_err(|e| StateError::io("make private (chmod go-rwx)", dir, e))?;
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Prefix of temporary files beside `path`; `load` never reads them.
pub fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp.")
}

/// Replaces `path` with `bytes` atomically and durably: a readers sees either
/// the old or the new content, never a mix, even after a crash.
///
/// Steps: write a new temporary file (mode 0600) in the same directory,
/// fsync it, rename it over `path`, fsync the directory. On failure the
/// temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = parent_dir(path);
    ensure_dir(dir)?;
    let tmp = temp_name(path);
    let result = write_new_file(&tmp, bytes).and_then(|()| {
        fs::rename(&tmp, path).map_err(|e| StateError::io("rename temporary file onto", path, e))
    });
    if result.is_err() {
        // Best effort: the error being returned matters more.
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir)
}

fn temp_name(path: &Path) -> PathBuf {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let name = format!(
        "{}{}.{}",
        temp_prefix(path),
        std::process::id(),
        &unique[..12]
    );
    parent_dir(path).join(name)
}

fn write_new_file(tmp: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(tmp)
        .map_err(|e| StateError::io("create temporary file", tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| StateError::io("write temporary file", tmp, e))?;
    file.sync_all()
        .map_err(|e| StateError::io("fsync temporary file", tmp, e))
}

/// fsyncs a directory so a rename or unlink in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StateError::io("fsync directory", dir, e))
}

/// Reads a file; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::io("read", path, e)),
    }
}

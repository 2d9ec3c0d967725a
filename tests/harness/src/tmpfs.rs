//! A small tmpfs mounted on a directory, for "the disk is full" tests:
//! mounted with `mount -t tmpfs -o size=N`, grown or shrunk with a
//! remount, filled with a filler file, unmounted on drop.
//!
//! The mount is in the test's (the host's) mount namespace, so every
//! process started by the test sees it; [`Tmpfs`] unmounts it on drop
//! (lazily if something still holds it). A test killed with SIGKILL
//! leaves it mounted under its temp dir (`/tmp/...`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{io_err, Result};
use crate::tools::{find_binary, mkdir, run};

/// The name of the file [`Tmpfs::fill`] writes.
pub const FILLER: &str = ".tmpfs-filler";

/// A mounted tmpfs (see the module docs).
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (rounded up to pages) on `path`
    /// (created if missing; anything in it is hidden while mounted).
    pub fn mount(path: &Path, size: u64) -> Result<Self> {
        mkdir(path)?;
        run(
            Command::new(find_binary("mount")?)
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0755"))
                .arg("mirrorplan-harness-tmpfs")
                .arg(path),
            None,
        )?;
        Ok(Self {
            path: path.to_owned(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the size (`mount -o remount,size=N`); files are kept.
    pub fn resize(&self, size: u64) -> Result<()> {
        run(
            Command::new(find_binary("mount")?)
                .arg("-o")
                .arg(format!("remount,size={size}"))
                .arg(&self.path),
            None,
        )?;
        Ok(())
    }

    /// Bytes still free.
    pub fn available(&self) -> Result<u64> {
        let st = rustix::fs::statvfs(&self.path)
            .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))
            .map_err(io_err(format!("statvfs {}", self.path.display())))?;
        Ok(st.f_bavail * st.f_frsize)
    }

    /// Writes [`FILLER`] so that at most `leave` bytes stay free (0: the
    /// filesystem is full). Replaces an earlier filler.
    pub fn fill(&self, leave: u64) -> Result<()> {
        use std::io::Write;
        self.unfill()?;
        let free = self.available()?;
        let want = free.saturating_sub(leave);
        let path = self.path.join(FILLER);
        let mut f =
            std::fs::File::create(&path).map_err(io_err(format!("creating {}", path.display())))?;
        let block = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        while written < want {
            let n = usize::try_from((want - written).min(block.len() as u64)).unwrap_or(0);
            match f.write(&block[..n]) {
                Ok(0) => break,
                Ok(k) => written += k as u64,
                // ENOSPC: as full as it gets
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Removes the filler (does nothing without one).
    pub fn unfill(&self) -> Result<()> {
        let path = self.path.join(FILLER);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", path.display()))(e)),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let Ok(umount) = find_binary("umount") else {
            return;
        };
        let ok = Command::new(&umount)
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new(&umount).arg("-l").arg(&self.path).status();
        }
    }
}

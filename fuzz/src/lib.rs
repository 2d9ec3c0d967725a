//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Targets whose parser reads a file (state, bundles, Docker config) write
//! the input into a scratch directory of their own: a directory under
//! `$TMPDIR` (`fuzz/run.sh` points it at a directory of its own in
//! `/dev/shm` and removes it afterwards), named after the target and the process. Nothing is read or
//! written outside it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// This process's scratch directory for `target`, created on first use.
pub fn scratch(target: &str) -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("mirrorplan-fuzz-{target}-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create the scratch directory {}: {e}", dir.display());
        }
        dir
    })
}

/// Writes `bytes` to `name` in the scratch directory of `target`, replacing
/// what an earlier run left there, and returns the path.
pub fn scratch_file(target: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch(target).join(name);
    if let Err(e) = std::fs::write(&path, bytes) {
        panic!("cannot write {}: {e}", path.display());
    }
    path
}

/// Splits `data` at the first `sep`: (before, after); without one, all of
/// it is the first part.
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Renders a diagnostic the way the binary prints it (graphical, no
/// colour), so that rendering with the input's spans is fuzzed as well.
pub fn render(diagnostic: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    if let Err(e) = handler.render_report(&mut out, diagnostic) {
        panic!("a diagnostic does not render: {e}");
    }
    out
}

//! Writes a deterministic test bundle (OCI image layout in a tar), the kind
//! of file `push images --source=bmpackages_VERSION.tar.xz` takes.
//!
//! `cargo run -p mirrorplan-registry --example make-bundle -- OUT.tar.gz [IMAGES] [LAYER_BYTES] [SEED]`
//! The packing follows the extension: .tar, .tar.gz, .tar.xz or .tar.zst.
//!
//! The archive is written in the recommended order for bundles:
//! `oci-layout`, `index.json`, the blobs of at most 1 MiB smallest first
//! (manifests and configs before layers), so that readers find the
//! catalogue at its head, then the bigger blobs largest first, so that a
//! second reader streaming the biggest layers finds them right after the
//! head (see `push_remote`).
//! The fixture is first written as a plain tar next to OUT, then copied
//! member by member in that order (never held whole in memory).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use mirrorplan_registry::fixtures::{
    write_oci_bundle, FixtureSpec, LayerCompression, Out, Packing,
};

/// One member of the plain tar: where its data is and what it is.
struct Member {
    path: Vec<u8>,
    header: tar::Header,
    offset: u64,
    size: u64,
}

fn rank(m: &Member) -> (u8, u64) {
    match m.path.as_slice() {
        b"oci-layout" => (0, 0),
        b"index.json" => (1, 0),
        _ if m.header.entry_type().is_dir() => (2, 0),
        _ if m.size <= SMALL_BLOB => (3, m.size),
        _ => (4, u64::MAX - m.size),
    }
}

/// Blobs up to this size (manifests, configs, tiny layers) come first.
const SMALL_BLOB: u64 = 1024 * 1024;

/// Copies the plain tar `src` into `out` (compressed per `packing`) in the
/// recommended order.
fn repack(src: &Path, out: &Path, packing: Packing) -> io::Result<()> {
    let mut members = Vec::new();
    {
        let mut archive = tar::Archive::new(File::open(src)?);
        for entry in archive.entries()? {
            let entry = entry?;
            members.push(Member {
                path: entry.path_bytes().into_owned(),
                header: entry.header().clone(),
                offset: entry.raw_file_position(),
                size: entry.size(),
            });
        }
    }
    members.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.path.cmp(&b.path)));
    let w = Out::create(out, packing)?;
    let mut builder = tar::Builder::new(w);
    let mut input = File::open(src)?;
    for m in &members {
        input.seek(SeekFrom::Start(m.offset))?;
        let mut header = m.header.clone();
        let path = String::from_utf8_lossy(&m.path).into_owned();
        builder.append_data(&mut header, path, (&mut input).take(m.size))?;
    }
    builder.into_inner()?.finish()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: make-bundle OUT.tar[.gz|.xz|.zst] [IMAGES] [LAYER_BYTES] [SEED]");
        std::process::exit(2);
    };
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let packing = if out.ends_with(".tar.gz") || out.ends_with(".tgz") {
        Packing::TarGz
    } else if out.ends_with(".tar.xz") {
        Packing::TarXz
    } else if out.ends_with(".tar.zst") {
        Packing::TarZst
    } else {
        Packing::Tar
    };
    let spec = FixtureSpec {
        seed: num(3, 1) as u64,
        images: num(1, 3),
        layers_per_image: 1,
        shared_base_layers: 1,
        layer_size: num(2, 512),
        multi_arch: true,
        layer_compression: LayerCompression::Gzip,
    };
    let out_path = Path::new(out);
    let dir = match out_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let plain = match tempfile::Builder::new()
        .prefix(".make-bundle")
        .suffix(".tar")
        .tempfile_in(dir)
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("make-bundle: {e}");
            std::process::exit(1);
        }
    };
    let written = write_oci_bundle(plain.path(), &spec, Packing::Tar)
        .and_then(|f| repack(plain.path(), out_path, packing).map(|()| f));
    match written {
        Ok(f) => {
            for i in &f.images {
                match &i.manifest_digest {
                    Some(d) => println!("{} {d}", i.name),
                    None => println!("{}", i.name),
                }
            }
        }
        Err(e) => {
            eprintln!("make-bundle: {e}");
            std::process::exit(1);
        }
    }
}

//! Writes a deterministic test bundle (OCI image layout in a tar), the kind
//! of file `push images --source=bmpackages_VERSION.tar.xz` takes.
//!
//! `cargo run -p mirrorplan-registry --example make-bundle -- OUT.tar.gz [IMAGES] [LAYER_BYTES] [SEED]`
//! The packing follows the extension: .tar, .tar.gz, .tar.xz or .tar.zst.

use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, LayerCompression, Packing};

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
    match write_oci_bundle(out, &spec, packing) {
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

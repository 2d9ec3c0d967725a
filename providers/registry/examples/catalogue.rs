//! Print the catalogue of a bundle: `cargo run -p mirrorplan-registry --example catalogue -- BUNDLE [PLATFORM...]`.

use mirrorplan_registry::{Bundle, CatalogueOptions, Platform};

fn main() -> miette::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        return Err(miette::miette!("usage: catalogue BUNDLE [os/arch ...]"));
    };
    let platforms = args
        .map(|p| Platform::parse(&p))
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = Bundle::open(&path)?;
    let cat = bundle.catalogue_with(&CatalogueOptions { platforms })?;
    println!(
        "{:?} {:?}, {} blobs, {} bytes, read whole: {}",
        cat.format,
        cat.compression,
        cat.blobs.len(),
        cat.total_blob_bytes(),
        cat.read_whole
    );
    for i in &cat.images {
        println!(
            "{} {} {} children={} blobs={} filtered={} synthesized={}",
            i.name,
            i.manifest_digest,
            i.media_type,
            i.children.len(),
            i.blobs.len(),
            i.filtered,
            i.synthesized
        );
    }
    for f in &cat.failures {
        println!("FAILED {}: {}", f.name, f.error);
    }
    let report = bundle.stream_blobs(&cat, |_, r| {
        std::io::copy(r, &mut std::io::sink())?;
        Ok(())
    })?;
    println!(
        "streamed {} blobs, {} bytes, {} failures",
        report.blobs_streamed,
        report.bytes_streamed,
        report.failures.len()
    );
    Ok(())
}

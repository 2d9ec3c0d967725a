//! The bundle reader: the input is a bundle file (tar, gzip, xz or zstd;
//! OCI layout or `docker save`). Pass 1 (the catalogue, with the early
//! stop and without), then pass 2 (every blob streamed and verified).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorplan_fuzz::{render, scratch_file};
use mirrorplan_registry::{Bundle, CatalogueOptions, Platform};

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("bundle", "bundle.tar", data);
    let bundle = match Bundle::open(&path) {
        Ok(b) => b,
        Err(e) => {
            render(&e);
            return;
        }
    };
    let amd64 = CatalogueOptions {
        platforms: vec![Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }],
    };
    if let Err(e) = bundle.catalogue_whole_with(&amd64) {
        render(&e);
    }
    let catalogue = match bundle.catalogue() {
        Ok(c) => c,
        Err(e) => {
            render(&e);
            return;
        }
    };
    for failure in &catalogue.failures {
        render(&failure.error);
    }
    for image in &catalogue.images {
        let _ = image.mirror_ref(Some("mirror"));
        let _ = image.blob_bytes();
    }
    let _ = catalogue.total_blob_bytes();
    let streamed = bundle.stream_blobs(&catalogue, |blob, reader| {
        let mut buf = [0u8; 8192];
        let mut total = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                // a verification failure: the reader refuses to end well
                Err(_) => return Ok(()),
            }
        }
        assert_eq!(total, blob.size, "a blob ended well with the wrong size");
        Ok(())
    });
    match streamed {
        Ok(report) => {
            for e in &report.failures {
                render(e);
            }
        }
        Err(e) => {
            render(&e);
        }
    }
});

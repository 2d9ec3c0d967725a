//! Pushing blobs of every size class to a real registry: medium blobs (up
//! to `BUFFERED_BLOB`) are read whole and uploaded several at once within
//! `BUFFER_BUDGET` bytes, bigger ones stream; both arrive intact.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use mirrorplan_harness::Registry;
use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, LayerCompression, Packing};
use mirrorplan_registry::push_remote::{BUFFERED_BLOB, BUFFER_BUDGET};
use mirrorplan_registry::{
    push_bundle_to_registry, Bundle, Catalogue, Digest, PushProgress, RemotePushOptions,
};

const NS: &str = "sizes";

/// Upload concurrency seen through the progress hook.
#[derive(Default)]
struct Watch {
    /// Blobs started and not done: digest -> size.
    open: HashMap<Digest, u64>,
    /// Most bytes of buffered (whole) blobs open at once.
    max_buffered: u64,
    started: usize,
    /// Bytes reported by `Bytes` events.
    bytes: u64,
}

fn watch() -> (Arc<Mutex<Watch>>, RemotePushOptions) {
    let w = Arc::new(Mutex::new(Watch::default()));
    let w2 = w.clone();
    let opts = RemotePushOptions {
        progress: Some(Arc::new(move |p: &PushProgress| {
            let Ok(mut w) = w2.lock() else { return };
            match p {
                PushProgress::BlobStarted { digest, size } => {
                    w.started += 1;
                    w.open.insert(digest.clone(), *size);
                    let buffered: u64 = w.open.values().filter(|s| **s <= BUFFERED_BLOB).sum();
                    w.max_buffered = w.max_buffered.max(buffered);
                }
                PushProgress::BlobDone { digest, .. } => {
                    w.open.remove(digest);
                }
                PushProgress::Bytes { bytes, .. } => w.bytes += bytes,
                _ => {}
            }
        })),
        ..RemotePushOptions::default()
    };
    (w, opts)
}

async fn push_and_check(reg: &Registry, spec: &FixtureSpec, name: &str) -> Arc<Mutex<Watch>> {
    push_and_check_with(reg, spec, name, |o| o).await
}

async fn push_and_check_with(
    reg: &Registry,
    spec: &FixtureSpec,
    name: &str,
    tune: impl FnOnce(RemotePushOptions) -> RemotePushOptions,
) -> Arc<Mutex<Watch>> {
    let dir = tmp();
    let path = dir.path().join(format!("{name}.tar.zst"));
    let fx = ok(write_oci_bundle(&path, spec, Packing::TarZst), "fixture");
    let bundle = ok(Bundle::open(&path), "open");
    let cat: Catalogue = ok(bundle.catalogue(), "catalogue");
    let client = client_for(reg);
    let (w, opts) = watch();
    let opts = tune(opts);
    let r = ok(
        push_bundle_to_registry(&bundle, &cat, &client, Some(NS), &opts).await,
        "push",
    );
    assert!(r.is_ok(), "failed: {:?} fatal: {:?}", r.failed, r.fatal);
    assert_eq!(r.blobs_uploaded, fx.blobs.len());
    assert_eq!(r.bytes_uploaded, fx.blobs.values().sum::<u64>());
    if let Ok(w) = w.lock() {
        // Each blob started once; progress counted every byte once.
        assert_eq!(w.started, fx.blobs.len());
        assert_eq!(w.bytes, r.bytes_uploaded);
    }
    // Every blob is on the registry with its size, and every tag serves
    // the bundle's manifest as skopeo reads it.
    for image in &cat.images {
        let m = image.mirror_ref(Some(NS));
        for b in &image.blobs {
            let size = ok(
                client.head_blob(&m.repository, &b.digest).await,
                "HEAD blob",
            );
            assert_eq!(size, Some(b.size), "{} in {}", b.digest, m.repository);
        }
        let reference = format!("{}:{}", m.repository, m.tag.clone().unwrap_or_default());
        assert_eq!(
            skopeo_manifest_digest(reg, &reference).as_deref(),
            Some(image.manifest_digest.as_str()),
            "{reference}"
        );
    }
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_blobs_upload_concurrently_within_the_budget() {
    let reg = plain_registry();
    // 6 MiB layers (random, uncompressed): 4 images x 2 own layers + a
    // shared base + a second platform, more than the budget in total.
    let spec = FixtureSpec {
        seed: 11,
        images: 4,
        layers_per_image: 2,
        shared_base_layers: 1,
        layer_size: 6 * 1024 * 1024,
        multi_arch: true,
        layer_compression: LayerCompression::None,
    };
    let w = push_and_check(&reg, &spec, "medium").await;
    let w = ok(w.lock().map_err(|_| "poisoned"), "watch");
    let layer_bytes: u64 = 6 * 1024 * 1024 * 10;
    assert!(
        layer_bytes > BUFFER_BUDGET,
        "the test must exceed the budget"
    );
    // How many run at once depends on timing (not asserted); the bytes
    // held whole never exceed the budget.
    assert!(
        w.max_buffered <= BUFFER_BUDGET,
        "{} bytes buffered at once, budget {BUFFER_BUDGET}",
        w.max_buffered
    );
    assert!(w.open.is_empty(), "every started blob finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_above_the_buffer_limit_stream() {
    let reg = plain_registry();
    let spec = FixtureSpec {
        seed: 12,
        images: 2,
        layers_per_image: 1,
        shared_base_layers: 1,
        layer_size: (BUFFERED_BLOB + 4096) as usize,
        multi_arch: false,
        layer_compression: LayerCompression::None,
    };
    let w = push_and_check(&reg, &spec, "big").await;
    let w = ok(w.lock().map_err(|_| "poisoned"), "watch");
    // 3 layers over the limit (streamed one after another) + 2 configs.
    assert_eq!(w.started, 5);
    assert!(w.open.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_blobs_split_between_two_readers() {
    // With a 64 KiB limit every layer streams: the biggest half (by
    // bytes) from a second reader of the archive, the rest from the first.
    // Layers of several sizes (gzip of random data), a shared base layer
    // and an index: every blob arrives once, intact, and every tag is set.
    let spec = FixtureSpec {
        seed: 13,
        images: 4,
        layers_per_image: 2,
        shared_base_layers: 1,
        layer_size: 256 * 1024,
        multi_arch: true,
        layer_compression: LayerCompression::Mixed,
    };
    for (name, second_reader) in [("two", true), ("one", false)] {
        let reg = plain_registry();
        let w = push_and_check_with(&reg, &spec, name, |o| RemotePushOptions {
            buffered_blob: 64 * 1024,
            second_reader,
            ..o
        })
        .await;
        let w = ok(w.lock().map_err(|_| "poisoned"), "watch");
        assert!(w.open.is_empty(), "every started blob finished");
    }
}

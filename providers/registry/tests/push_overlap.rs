//! In a bundle push, an image is finished (mounts, manifest, tag) as soon
//! as its own blobs are present, while the rest of the archive still
//! uploads: with a last blob that only one image uses, every other image
//! is tagged before that blob's upload ends. Deterministic: the progress
//! hook holds the last blob's upload until the other images are done (a
//! push that waited for every upload would never get there; the hook then
//! gives up after a generous guard and the order assertion fails).

mod common;

use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, LayerCompression, Packing};
use mirrorplan_registry::push_remote::BUFFERED_BLOB;
use mirrorplan_registry::{
    push_bundle_to_registry, Bundle, Catalogue, Digest, PushProgress, RemotePushOptions,
};

const NS: &str = "overlap";

/// Rewrite the tar at `src` into `dst` with the member `last` moved to the end.
fn move_to_end(src: &Path, dst: &Path, last: &str) {
    let mut archive = tar::Archive::new(ok(std::fs::File::open(src), "open tar"));
    let mut members = Vec::new();
    for entry in ok(archive.entries(), "entries") {
        let mut entry = ok(entry, "entry");
        let path = ok(entry.path(), "path").to_string_lossy().to_string();
        let kind = entry.header().entry_type();
        let mut data = Vec::new();
        ok(entry.read_to_end(&mut data), "read member");
        members.push((path, kind, data));
    }
    let at = members.iter().position(|(p, _, _)| p == last);
    let Some(at) = at else {
        panic!("{last} not in the archive")
    };
    let moved = members.remove(at);
    members.push(moved);
    let mut b = tar::Builder::new(ok(std::fs::File::create(dst), "create"));
    for (path, kind, data) in &members {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_577_836_800);
        ok(b.append_data(&mut h, path, &data[..]), "append");
    }
    ok(b.finish(), "finish tar");
}

#[derive(Default)]
struct Seen {
    /// "done NAME" / "blob DIGEST", in order.
    events: Vec<String>,
    /// Other images reported done.
    others_done: usize,
    /// The last blob's upload was held.
    held: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_images_are_tagged_before_the_last_blob_finishes() {
    let reg = plain_registry();
    let dir = tmp();
    // Layers over BUFFERED_BLOB stream one after another; a shared base
    // layer is mounted into the other repositories.
    let spec = FixtureSpec {
        seed: 21,
        images: 3,
        layers_per_image: 1,
        shared_base_layers: 1,
        layer_size: (BUFFERED_BLOB + 4096) as usize,
        multi_arch: false,
        layer_compression: LayerCompression::None,
    };
    let first = dir.path().join("first.tar");
    ok(write_oci_bundle(&first, &spec, Packing::Tar), "fixture");
    let cat0: Catalogue = ok(ok(Bundle::open(&first), "open").catalogue(), "catalogue");
    // The own layer of the last image: used by that image only.
    let Some(owner) = cat0.images.last() else {
        panic!("no image")
    };
    let Some(big) = owner
        .blobs
        .iter()
        .find(|b| b.size > BUFFERED_BLOB && cat0.users_of(&b.digest).0.len() == 1)
        .map(|b| b.digest.clone())
    else {
        panic!("the last image has no own big layer")
    };
    let owner = owner.name.clone();
    let path = dir.path().join("b.tar");
    move_to_end(&first, &path, &format!("blobs/sha256/{}", big.hex()));
    let bundle = ok(Bundle::open(&path), "open");
    let cat: Catalogue = ok(bundle.catalogue(), "catalogue");
    let others = cat.images.len() - 1;

    let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
    let seen2 = seen.clone();
    let owner2 = owner.clone();
    let big2: Digest = big.clone();
    let opts = RemotePushOptions {
        progress: Some(Arc::new(move |p: &PushProgress| {
            let (lock, cv) = &*seen2;
            match p {
                PushProgress::ImageDone { name } => {
                    if let Ok(mut s) = lock.lock() {
                        s.events.push(format!("done {name}"));
                        if *name != owner2 {
                            s.others_done += 1;
                        }
                    }
                    cv.notify_all();
                }
                PushProgress::BlobDone { digest, .. } => {
                    if let Ok(mut s) = lock.lock() {
                        s.events.push(format!("blob {digest}"));
                    }
                }
                // The last blob's bytes go through the connection task:
                // hold them (without blocking the runtime) until the other
                // images are done.
                PushProgress::Bytes { digest, .. } if *digest == big2 => {
                    tokio::task::block_in_place(|| {
                        let Ok(mut s) = lock.lock() else { return };
                        if s.held {
                            return;
                        }
                        s.held = true;
                        // Only a guard against a hang: the order is asserted below.
                        let guard = Instant::now() + Duration::from_secs(120);
                        while s.others_done < others && Instant::now() < guard {
                            s = match cv.wait_timeout(s, Duration::from_secs(1)) {
                                Ok((s, _)) => s,
                                Err(_) => return,
                            };
                        }
                    });
                }
                _ => {}
            }
        })),
        ..RemotePushOptions::default()
    };
    let client = client_for(&reg);
    let r = ok(
        push_bundle_to_registry(&bundle, &cat, &client, Some(NS), &opts).await,
        "push",
    );
    assert!(r.is_ok(), "failed: {:?} fatal: {:?}", r.failed, r.fatal);
    assert_eq!(r.pushed.len(), cat.images.len());
    assert!(r.blobs_mounted >= others, "{}", r.blobs_mounted);
    let s = ok(seen.0.lock().map_err(|_| "poisoned"), "seen");
    assert!(s.held, "the last blob was never seen streaming");
    let pos = |e: &str| s.events.iter().position(|x| x == e);
    let Some(big_done) = pos(&format!("blob {big}")) else {
        panic!("no BlobDone for {big}: {:?}", s.events)
    };
    for image in &cat.images {
        let Some(done) = pos(&format!("done {}", image.name)) else {
            panic!("no ImageDone for {}: {:?}", image.name, s.events)
        };
        if image.name == owner {
            assert!(done > big_done, "{:?}", s.events);
        } else {
            assert!(done < big_done, "{} waited: {:?}", image.name, s.events);
        }
    }
    // Every tag serves the bundle's manifest.
    for image in &cat.images {
        let m = image.mirror_ref(Some(NS));
        let reference = format!("{}:{}", m.repository, m.tag.clone().unwrap_or_default());
        assert_eq!(
            skopeo_manifest_digest(&reg, &reference).as_deref(),
            Some(image.manifest_digest.as_str()),
            "{reference}"
        );
    }
}

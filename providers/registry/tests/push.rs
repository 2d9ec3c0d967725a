//! Pushing generated bundles to REAL registries (TLS + htpasswd, with a
//! namespace): digests read back independently with skopeo, warm re-runs,
//! blobs uploaded once and mounted elsewhere, wrong password, missing CA,
//! corrupt and truncated bundles, docker archives, the registry going away
//! mid-push, and the plan query.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use mirrorplan_harness::Registry;
use mirrorplan_registry::bundle::decoded_bytes;
use mirrorplan_registry::fixtures::{
    repack, truncate_copy, write_docker_archive, write_oci_bundle, write_oci_bundle_with,
    Corruption, Fixture, FixtureSpec, LayerCompression, MemberOrder, Packing,
};
use mirrorplan_registry::{
    image_status, plan_bundle_push, push_bundle_to_registry, Bundle, Catalogue, ImageStatus,
    PushProgress, RegistryClient, RegistryError, RegistryPushReport, RemotePushOptions,
};

const NS: &str = "test-ns";

fn open(path: &std::path::Path) -> (Bundle, Catalogue) {
    let b = ok(Bundle::open(path), "open bundle");
    let c = ok(b.catalogue(), "catalogue");
    (b, c)
}

async fn push(
    b: &Bundle,
    c: &Catalogue,
    client: &RegistryClient,
    opts: &RemotePushOptions,
) -> RegistryPushReport {
    ok(
        push_bundle_to_registry(b, c, client, Some(NS), opts).await,
        "push",
    )
}

/// Every image of the catalogue is on the registry with the bundle's
/// digest, as skopeo reads it; platform manifests too.
fn check_on_registry(reg: &Registry, cat: &Catalogue, only: Option<&[String]>) {
    check_on_registry_in(reg, cat, only, NS)
}

/// [`check_on_registry`] under namespace `ns`.
fn check_on_registry_in(reg: &Registry, cat: &Catalogue, only: Option<&[String]>, ns: &str) {
    for image in &cat.images {
        if only.is_some_and(|o| !o.contains(&image.name)) {
            continue;
        }
        let m = image.mirror_ref(Some(ns));
        let reference = format!("{}:{}", m.repository, m.tag.clone().unwrap_or_default());
        assert_eq!(
            skopeo_manifest_digest(reg, &reference).as_deref(),
            Some(image.manifest_digest.as_str()),
            "{reference}"
        );
        for child in &image.children {
            let r = format!("{}@{}", m.repository, child.digest);
            assert_eq!(
                skopeo_manifest_digest(reg, &r).as_deref(),
                Some(child.digest.as_str()),
                "{r}"
            );
        }
    }
}

fn fixture(dir: &std::path::Path, spec: &FixtureSpec, packing: Packing) -> Fixture {
    ok(
        write_oci_bundle(
            dir.join(format!("b.{}", packing.extension())),
            spec,
            packing,
        ),
        "fixture",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_bundle_then_warm_rerun_uploads_nothing() {
    let reg = secure_registry();
    let client = client_for(&reg);
    let dir = tmp();
    let fx = fixture(dir.path(), &FixtureSpec::default(), Packing::TarGz);
    let (b, cat) = open(&fx.path);
    assert!(
        cat.images.iter().any(|i| !i.children.is_empty()),
        "multi-arch image"
    );

    let bytes_seen = Arc::new(AtomicU64::new(0));
    let seen = bytes_seen.clone();
    let opts = RemotePushOptions {
        concurrency: 3,
        progress: Some(Arc::new(move |p: &PushProgress| {
            if let PushProgress::Bytes { bytes, .. } = p {
                seen.fetch_add(*bytes, Ordering::Relaxed);
            }
        })),
        ..RemotePushOptions::default()
    };
    let r = push(&b, &cat, &client, &opts).await;
    assert!(r.is_ok(), "failed: {:?} fatal: {:?}", r.failed, r.fatal);
    assert_eq!(r.pushed.len(), cat.images.len());
    // Each distinct blob uploaded exactly once; the shared base layer is
    // mounted into the other repositories.
    assert_eq!(r.blobs_uploaded, fx.blobs.len());
    assert_eq!(r.bytes_uploaded, fx.blobs.values().sum::<u64>());
    assert_eq!(bytes_seen.load(Ordering::Relaxed), r.bytes_uploaded);
    assert!(
        r.blobs_mounted >= cat.images.len() - 1,
        "{}",
        r.blobs_mounted
    );
    let per_image_uploads: usize = r.pushed.iter().map(|i| i.blobs_uploaded).sum();
    assert_eq!(per_image_uploads, fx.blobs.len());
    let per_image_mounts: usize = r.pushed.iter().map(|i| i.blobs_mounted).sum();
    assert_eq!(per_image_mounts, r.blobs_mounted);
    // The registry saw one completed upload per blob (PUT ...?digest=).
    let puts = log_lines(
        &reg,
        &["\"PUT /v2/test-ns/", "/blobs/uploads/", "digest=sha256"],
    );
    assert_eq!(puts, fx.blobs.len(), "blob PUTs in the registry log");
    check_on_registry(&reg, &cat, None);

    // Warm re-run: nothing uploaded or mounted, one HEAD per tag.
    let r2 = push(&b, &cat, &client, &RemotePushOptions::default()).await;
    assert!(r2.is_ok(), "{:?}", r2.failed);
    assert_eq!(r2.blobs_uploaded, 0);
    assert_eq!(r2.blobs_mounted, 0);
    assert_eq!(r2.bytes_uploaded, 0);
    assert!(r2
        .pushed
        .iter()
        .all(|i| i.up_to_date && i.manifests_pushed == 0));
    assert_eq!(r2.plan.requests, cat.images.len());
    let puts2 = log_lines(
        &reg,
        &["\"PUT /v2/test-ns/", "/blobs/uploads/", "digest=sha256"],
    );
    assert_eq!(puts2, puts);

    // Plan queries: delete one tag's manifest, move another.
    let img1 = &cat.images[1];
    let m1 = img1.mirror_ref(Some(NS));
    assert!(ok(
        client
            .delete_manifest(&m1.repository, &img1.manifest_digest)
            .await,
        "delete"
    ));
    let img2 = &cat.images[2];
    let m2 = img2.mirror_ref(Some(NS));
    let tag2 = m2.tag.clone().unwrap_or_default();
    // Image 2's tag compared with another digest reads as moved.
    let status = ok(
        image_status(&client, &m2.repository, &tag2, &img1.manifest_digest).await,
        "status",
    );
    assert_eq!(status, ImageStatus::Moved(img2.manifest_digest.clone()));
    let plan = ok(plan_bundle_push(&cat, &client, Some(NS), 2).await, "plan");
    assert_eq!(plan.images[1].status, ImageStatus::Missing);
    assert_eq!(plan.images[1].blobs_to_upload, 0);
    assert_eq!(plan.images[1].blobs_to_skip, img1.blobs.len());
    assert!(matches!(plan.images[0].status, ImageStatus::Present(_)));
    assert_eq!(plan.requests, cat.images.len() + img1.blobs.len());
    assert!(plan.uploads.is_empty() && plan.mounts.is_empty());
    let r3 = push(&b, &cat, &client, &RemotePushOptions::default()).await;
    assert!(r3.is_ok(), "{:?}", r3.failed);
    assert_eq!(r3.blobs_uploaded, 0);
    let again = r3
        .image(&img1.name)
        .map(|i| (i.up_to_date, i.manifests_pushed));
    assert_eq!(again, Some((false, 1)));
    check_on_registry(&reg, &cat, None);
}

/// Bundles whose members come in name order (`blobs/` before
/// `index.json`, as a plain `tar -cf` of a layout writes them) or the
/// reverse, in every packing (`.xz` in blocks, as `xz -T0` writes it, and
/// in one block): every image lands on a TLS + auth registry with its
/// digest, each blob uploaded once. The bytes decoded are counted: a
/// plain `.tar` or a multi-block `.xz` is catalogued from a small part of
/// it even when `index.json` is last, and pushed (two readers, each
/// skipping the other's blobs) decoding it about once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_in_name_and_reverse_order_push_exactly_decoding_them_once() {
    let reg = secure_registry();
    let client = client_for(&reg);
    let dir = tmp();
    let spec = FixtureSpec {
        images: 4,
        layer_size: 1024 * 1024,
        ..FixtureSpec::default()
    };
    let src = fixture(dir.path(), &spec, Packing::Tar);
    let tar_len = ok(std::fs::metadata(&src.path), "stat").len();
    let variants = [
        (Packing::Tar, false, true),
        (Packing::TarXz, false, true),
        (Packing::TarXz, true, false),
        (Packing::TarZst, false, false),
        (Packing::TarGz, false, false),
    ];
    let mut k = 0;
    for order in [MemberOrder::Name, MemberOrder::Reverse] {
        for (packing, one_block, random_access) in variants {
            k += 1;
            let what = format!("{order:?} {packing:?} one xz block: {one_block}");
            let path = dir.path().join(format!("r{k}.{}", packing.extension()));
            ok(
                repack(&src.path, &path, order, packing, one_block),
                "repack",
            );
            let (b, cat) = open(&path);
            assert_eq!(b.random_access(), random_access, "{what}");
            assert_eq!(cat.images.len(), spec.images, "{what}");
            assert!(cat.failures.is_empty(), "{what}: {:?}", cat.failures);
            let catalogue_bytes = decoded_bytes(&path);
            if random_access {
                // index.json last or not: headers, configs and manifests
                // (and the rest of the 64 KiB xz block each entry starts in)
                assert!(
                    catalogue_bytes * 3 < tar_len,
                    "{what}: the catalogue decoded {catalogue_bytes} of {tar_len} bytes"
                );
            }
            // Layers over 256 KiB stream, the biggest through a second reader.
            let opts = RemotePushOptions {
                buffered_blob: 256 * 1024,
                ..RemotePushOptions::default()
            };
            let ns = format!("order-{k}");
            let r = ok(
                push_bundle_to_registry(&b, &cat, &client, Some(&ns), &opts).await,
                "push",
            );
            assert!(r.is_ok(), "{what}: {:?} {:?}", r.failed, r.fatal);
            assert_eq!(r.pushed.len(), spec.images, "{what}");
            assert_eq!(r.blobs_uploaded, src.blobs.len(), "{what}");
            assert_eq!(r.bytes_uploaded, src.blobs.values().sum::<u64>(), "{what}");
            check_on_registry_in(&reg, &cat, None, &ns);
            let push_bytes = decoded_bytes(&path) - catalogue_bytes;
            if random_access {
                assert!(
                    push_bytes * 10 < tar_len * 13,
                    "{what}: the push decoded {push_bytes} bytes of a {tar_len}-byte tar"
                );
            }
            assert!(push_bytes >= r.bytes_uploaded, "{what}: {push_bytes}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_or_missing_ca_push_nothing() {
    let reg = secure_registry();
    let dir = tmp();
    let fx = fixture(dir.path(), &FixtureSpec::default(), Packing::Tar);
    let (b, cat) = open(&fx.path);

    let bad = ok(
        RegistryClient::with_options(target_for(&reg, Some("wrong")), fast_options()),
        "client",
    );
    let e = push_bundle_to_registry(&b, &cat, &bad, Some(NS), &RemotePushOptions::default()).await;
    let Err(e) = e else {
        panic!("push with a wrong password succeeded")
    };
    assert!(matches!(e, RegistryError::WrongCredentials { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(&reg.host_port()) && msg.contains(USER) && !msg.contains("wrong)"),
        "{msg}"
    );

    let mut t = target_for(&reg, Some(PASSWORD));
    t.ca_cert_pem = None;
    let noca = ok(RegistryClient::with_options(t, fast_options()), "client");
    let e = push_bundle_to_registry(&b, &cat, &noca, Some(NS), &RemotePushOptions::default()).await;
    let Err(e) = e else {
        panic!("push without CA succeeded")
    };
    assert!(matches!(e, RegistryError::UnknownAuthority { .. }), "{e:?}");

    // Nothing reached the registry.
    let good = client_for(&reg);
    for image in &cat.images {
        let m = image.mirror_ref(Some(NS));
        let tag = m.tag.clone().unwrap_or_default();
        assert_eq!(
            ok(good.head_manifest(&m.repository, &tag).await, "head"),
            None
        );
        for blob in &image.blobs {
            assert_eq!(
                ok(good.head_blob(&m.repository, &blob.digest).await, "head"),
                None
            );
        }
    }
    assert_eq!(log_lines(&reg, &["\"PUT /v2/"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_bundles_fail_only_their_images() {
    corrupt_and_truncated(&RemotePushOptions::default()).await;
}

/// The same with every layer over the buffered limit: the layers stream,
/// split between two readers of the archive (each verifying its own
/// blobs), and then with one reader only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_bundles_fail_only_their_images_when_layers_stream() {
    for second_reader in [true, false] {
        let opts = RemotePushOptions {
            buffered_blob: 1024,
            second_reader,
            ..RemotePushOptions::default()
        };
        corrupt_and_truncated(&opts).await;
    }
}

async fn corrupt_and_truncated(opts: &RemotePushOptions) {
    let reg = plain_registry();
    let client = client_for(&reg);
    let dir = tmp();
    let spec = FixtureSpec::default();

    // Wrong bytes in a layer of image 0: image 0 fails, the others land,
    // the bad blob is not on the registry.
    let fx = ok(
        write_oci_bundle_with(
            dir.path().join("bad.tar"),
            &spec,
            Packing::Tar,
            Corruption::WrongLayerContent,
        ),
        "fixture",
    );
    let (b, cat) = open(&fx.path);
    let r = push(&b, &cat, &client, opts).await;
    assert!(r.fatal.is_none(), "{:?}", r.fatal);
    let failed: Vec<&str> = r.failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(failed, vec![cat.images[0].name.as_str()]);
    assert!(
        r.failed[0].reason.contains("verification"),
        "{}",
        r.failed[0].reason
    );
    assert_eq!(r.pushed.len(), cat.images.len() - 1);
    let Some(bad) = fx.corrupted.clone() else {
        panic!("no corrupted blob")
    };
    let m0 = cat.images[0].mirror_ref(Some(NS));
    assert_eq!(
        ok(client.head_blob(&m0.repository, &bad).await, "head"),
        None
    );
    assert_eq!(
        ok(
            client
                .head_manifest(&m0.repository, m0.tag.as_deref().unwrap_or_default())
                .await,
            "head"
        ),
        None
    );
    let names: Vec<String> = cat.images[1..].iter().map(|i| i.name.clone()).collect();
    check_on_registry(&reg, &cat, Some(&names));

    // A layer missing from the archive: the last image fails.
    let reg2 = plain_registry();
    let client2 = client_for(&reg2);
    let fx = ok(
        write_oci_bundle_with(
            dir.path().join("missing.tar.zst"),
            &spec,
            Packing::TarZst,
            Corruption::MissingLayer,
        ),
        "fixture",
    );
    let (b, cat) = open(&fx.path);
    let r = push(&b, &cat, &client2, opts).await;
    let last = fx.images.last().map(|i| i.name.clone()).unwrap_or_default();
    assert!(r.failed.iter().any(|f| f.name == last), "{:?}", r.failed);
    assert!(r.pushed.iter().all(|p| p.name != last));
    assert!(!r.pushed.is_empty());

    // A truncated download: the archive ends early. Images whose blobs all
    // arrived before the cut are pushed, the others fail, nothing is
    // tagged without its blobs.
    let reg3 = plain_registry();
    let client3 = client_for(&reg3);
    let big = FixtureSpec {
        layer_size: 256 * 1024,
        layer_compression: LayerCompression::None,
        ..FixtureSpec::default()
    };
    let good = fixture(dir.path(), &big, Packing::Tar);
    let len = ok(std::fs::metadata(&good.path), "meta").len();
    let cut = dir.path().join("cut.tar");
    ok(truncate_copy(&good.path, &cut, len * 9 / 10), "truncate");
    // The catalogue comes from the intact bundle (pass 1 of a truncated
    // file fails outright): this is the "file changed between passes" case.
    let (_, cat) = open(&good.path);
    let b = ok(Bundle::open(&cut), "open cut");
    let r = push(&b, &cat, &client3, opts).await;
    assert!(!r.failed.is_empty(), "a truncated bundle pushed everything");
    // The reader that was inside a blob at the cut says so; with two
    // readers, an image's first failed blob may instead be one the other
    // reader never reached (it hit the end while skipping).
    assert!(
        r.failed
            .iter()
            .any(|f| f.reason.contains("ended while streaming")
                || f.reason.contains("is truncated or corrupt")),
        "{:?}",
        r.failed
    );
    for p in &r.pushed {
        let tag = p.mirror.tag.clone().unwrap_or_default();
        let got = ok(
            client3.head_manifest(&p.mirror.repository, &tag).await,
            "head",
        );
        assert_eq!(got.map(|i| i.digest), Some(p.digest.clone()));
    }
    for f in &r.failed {
        let Some(img) = cat.image(&f.name) else {
            continue;
        };
        let m = img.mirror_ref(Some(NS));
        let tag = m.tag.clone().unwrap_or_default();
        assert_eq!(
            ok(client3.head_manifest(&m.repository, &tag).await, "head"),
            None
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_archive_push() {
    let reg = secure_registry();
    let client = client_for(&reg);
    let dir = tmp();
    let fx = ok(
        write_docker_archive(
            dir.path().join("d.tar"),
            &FixtureSpec::default(),
            Packing::Tar,
        ),
        "fixture",
    );
    let (b, cat) = open(&fx.path);
    let r = push(&b, &cat, &client, &RemotePushOptions::default()).await;
    assert!(r.is_ok(), "{:?}", r.failed);
    assert!(r.pushed.iter().all(|p| p.synthesized));
    assert_eq!(r.blobs_uploaded, fx.blobs.len());
    check_on_registry(&reg, &cat, None);
}

#[test]
fn registry_stopped_mid_push_then_resumed() {
    let mut reg = plain_registry();
    let client = client_for(&reg);
    let dir = tmp();
    let spec = FixtureSpec {
        images: 3,
        layers_per_image: 3,
        layer_size: 1024 * 1024,
        layer_compression: LayerCompression::None,
        multi_arch: false,
        ..FixtureSpec::default()
    };
    let fx = fixture(dir.path(), &spec, Packing::Tar);
    let (b, cat) = open(&fx.path);
    let rt = ok(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "runtime",
    );
    // The progress hook pauses the push after the first blob is uploaded
    // until the test has stopped the registry: no race, no timing.
    let (reached_tx, reached_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let reached_tx = Mutex::new(Some(reached_tx));
    let go_rx = Mutex::new(go_rx);
    let opts = RemotePushOptions {
        concurrency: 2,
        progress: Some(Arc::new(move |p: &PushProgress| {
            if let PushProgress::BlobDone { ok: true, .. } = p {
                let first = reached_tx.lock().ok().and_then(|mut t| t.take());
                if let Some(tx) = first {
                    let _ = tx.send(());
                    if let Ok(rx) = go_rx.lock() {
                        let _ = rx.recv();
                    }
                }
            }
        })),
        ..RemotePushOptions::default()
    };
    let first = std::thread::scope(|s| {
        let h =
            s.spawn(|| rt.block_on(push_bundle_to_registry(&b, &cat, &client, Some(NS), &opts)));
        let reached = reached_rx.recv();
        reg.stop();
        let _ = go_tx.send(());
        assert!(reached.is_ok(), "the push never uploaded a blob");
        match h.join() {
            Ok(r) => r,
            Err(_) => panic!("push thread panicked"),
        }
    });
    let first = ok(first, "first push returns a report");
    let Some(fatal) = &first.fatal else {
        panic!("no fatal error after the registry stopped")
    };
    assert!(
        matches!(
            fatal,
            RegistryError::Connect { .. } | RegistryError::Transfer { .. }
        ),
        "{fatal:?}"
    );
    assert!(fatal.to_string().contains(&reg.host_port()), "{fatal}");
    assert!(first.pushed.is_empty());
    assert_eq!(first.failed.len(), cat.images.len());
    assert!(first.blobs_uploaded >= 1 && first.blobs_uploaded < fx.blobs.len());

    ok(reg.start_again(), "start again");
    let second = rt.block_on(push_bundle_to_registry(
        &b,
        &cat,
        &client,
        Some(NS),
        &RemotePushOptions::default(),
    ));
    let second = ok(second, "second push");
    assert!(second.is_ok(), "{:?} {:?}", second.failed, second.fatal);
    // Blobs uploaded by the first run are not uploaded again.
    assert!(second.blobs_uploaded <= fx.blobs.len() - first.blobs_uploaded);
    assert!(second.blobs_uploaded > 0);
    check_on_registry(&reg, &cat, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_from_upstream_to_mirror() {
    use mirrorplan_registry::{copy_image, CopyOptions, ImageRef, Platform};
    // Upstream: a plain HTTP registry holding the fixture images (no namespace).
    let upstream = plain_registry();
    let up = client_for(&upstream);
    let dir = tmp();
    let fx = fixture(dir.path(), &FixtureSpec::default(), Packing::TarGz);
    let (b, cat) = open(&fx.path);
    let r = ok(
        push_bundle_to_registry(&b, &cat, &up, None, &RemotePushOptions::default()).await,
        "seed upstream",
    );
    assert!(r.is_ok(), "{:?}", r.failed);

    let mirror = secure_registry();
    let dst = client_for(&mirror);
    let multi = &cat.images[0];
    assert!(!multi.children.is_empty());
    let m = multi.mirror_ref(None);
    let src_ref = ok(
        ImageRef::parse(&format!(
            "{}/{}:{}",
            upstream.host_port(),
            m.repository,
            m.tag.clone().unwrap_or_default()
        )),
        "ref",
    );
    let dst_repo = format!("{NS}/{}", m.repository);
    let rep = ok(
        copy_image(
            &up,
            &src_ref,
            &dst,
            &dst_repo,
            Some("copied"),
            &CopyOptions::default(),
        )
        .await,
        "copy",
    );
    assert!(!rep.up_to_date && !rep.filtered);
    assert_eq!(rep.digest.as_ref(), Some(&multi.manifest_digest));
    assert_eq!(rep.blobs_copied, multi.blobs.len());
    assert_eq!(rep.manifests_pushed, multi.children.len() + 1);
    assert_eq!(
        skopeo_manifest_digest(&mirror, &format!("{dst_repo}:copied")).as_deref(),
        Some(multi.manifest_digest.as_str())
    );
    for child in &multi.children {
        assert_eq!(
            skopeo_manifest_digest(&mirror, &format!("{dst_repo}@{}", child.digest)).as_deref(),
            Some(child.digest.as_str())
        );
    }
    // Warm: nothing copied.
    let again = ok(
        copy_image(
            &up,
            &src_ref,
            &dst,
            &dst_repo,
            Some("copied"),
            &CopyOptions::default(),
        )
        .await,
        "copy again",
    );
    assert!(again.up_to_date);
    assert_eq!(again.blobs_copied + again.manifests_pushed, 0);

    // Platform filter: a new index with one entry, only that platform's blobs.
    let arm = ok(Platform::parse("linux/arm64"), "platform");
    let opts = CopyOptions {
        platforms: vec![arm.clone()],
        ..CopyOptions::default()
    };
    let filtered_repo = format!("{NS}/filtered");
    let f = ok(
        copy_image(&up, &src_ref, &dst, &filtered_repo, Some("arm"), &opts).await,
        "filtered copy",
    );
    assert!(f.filtered);
    assert_ne!(f.digest.as_ref(), Some(&multi.manifest_digest));
    assert_eq!(f.source_digest.as_ref(), Some(&multi.manifest_digest));
    let (bytes, _, d) = ok(
        dst.get_manifest(&filtered_repo, "arm").await,
        "get filtered",
    );
    assert_eq!(Some(d), f.digest);
    let v: serde_json::Value = ok(serde_json::from_slice(&bytes), "json");
    let entries = v["manifests"].as_array().map(|a| a.len());
    assert_eq!(entries, Some(1));
    let Some(arm_child) = multi
        .children
        .iter()
        .find(|c| c.platform.as_ref().is_some_and(|p| arm.matches(p)))
    else {
        panic!("no arm64 child")
    };
    assert_eq!(f.blobs_copied, arm_child.blobs.len());
    for c in &multi.children {
        for blob in &c.blobs {
            let here = ok(dst.head_blob(&filtered_repo, &blob.digest).await, "head").is_some();
            assert_eq!(
                here,
                arm_child.blobs.iter().any(|a| a.digest == blob.digest),
                "{}",
                blob.digest
            );
        }
    }
    // No matching platform: a clear error.
    let none = CopyOptions {
        platforms: vec![ok(Platform::parse("linux/s390x"), "platform")],
        ..CopyOptions::default()
    };
    let e = copy_image(&up, &src_ref, &dst, &filtered_repo, Some("x"), &none).await;
    let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("linux/amd64") && msg.contains("linux/arm64"),
        "{msg}"
    );
    // A missing source tag names the image.
    let missing = ok(
        ImageRef::parse(&format!("{}/nope/nope:1", upstream.host_port())),
        "ref",
    );
    let e = copy_image(&up, &missing, &dst, "x/y", None, &CopyOptions::default()).await;
    assert!(matches!(e, Err(RegistryError::NotFound { .. })), "{e:?}");
}

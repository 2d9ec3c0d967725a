//! End-to-end tests of the offline registry provider on generated bundles:
//! every packing, docker archives, streaming verification, pushing into an
//! OCI layout store, corrupt and truncated bundles, platform filtering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use mirrorplan_registry::fixtures::{
    image_name, truncate_copy, write_docker_archive, write_oci_bundle, write_oci_bundle_with,
    Corruption, Fixture, FixtureSpec, Packing,
};
use mirrorplan_registry::{
    push_bundle_to_store, Bundle, BundleError, BundleFormat, Catalogue, CatalogueOptions,
    Compression, Digest, ImageRef, OciStore, Platform, VerifyFailure,
};

fn tmp() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    }
}

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn make(dir: &Path, name: &str, spec: &FixtureSpec, packing: Packing, c: Corruption) -> Fixture {
    let path = dir.join(format!("{name}.{}", packing.extension()));
    ok(
        write_oci_bundle_with(&path, spec, packing, c),
        "write fixture",
    )
}

fn catalogue(path: &Path) -> Catalogue {
    let bundle = ok(Bundle::open(path), "open");
    ok(bundle.catalogue(), "catalogue")
}

/// The catalogue matches the fixture exactly.
fn check_catalogue(cat: &Catalogue, fx: &Fixture) {
    assert!(cat.failures.is_empty(), "failures: {:?}", cat.failures);
    let names: Vec<&str> = cat.images.iter().map(|i| i.name.as_str()).collect();
    let want: Vec<&str> = fx.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, want);
    for (entry, img) in cat.images.iter().zip(&fx.images) {
        if let Some(d) = &img.manifest_digest {
            assert_eq!(&entry.manifest_digest, d, "{}", entry.name);
            assert!(!entry.synthesized);
        }
        assert_eq!(Digest::of(&entry.manifest_bytes), entry.manifest_digest);
        assert_eq!(entry.media_type, img.media_type);
        let blobs: BTreeSet<&Digest> = entry.blobs.iter().map(|b| &b.digest).collect();
        assert_eq!(
            blobs,
            img.blobs.iter().collect::<BTreeSet<_>>(),
            "{}",
            entry.name
        );
        assert_eq!(entry.children.len(), img.child_digests.len());
        for (c, d) in entry.children.iter().zip(&img.child_digests) {
            assert_eq!(&c.digest, d);
            assert_eq!(Digest::of(&c.bytes), c.digest);
        }
        assert!(!entry.filtered);
    }
    let all: BTreeMap<Digest, u64> = cat
        .blobs
        .iter()
        .map(|b| (b.digest.clone(), b.size))
        .collect();
    assert_eq!(all, fx.blobs);
}

/// Stream every blob through a sink that hashes it independently.
fn stream_all(
    path: &Path,
    cat: &Catalogue,
) -> (BTreeMap<Digest, u64>, mirrorplan_registry::StreamReport) {
    let bundle = ok(Bundle::open(path), "open");
    let mut seen = BTreeMap::new();
    let report = bundle.stream_blobs(cat, |blob, reader| {
        let mut buf = Vec::new();
        reader.read_to_end(&mut buf)?;
        assert!(
            seen.insert(Digest::of(&buf), buf.len() as u64).is_none(),
            "blob delivered twice"
        );
        assert_eq!(buf.len() as u64, blob.size);
        Ok(())
    });
    (seen, ok(report, "stream"))
}

#[test]
fn every_packing_reads_streams_and_is_detected_by_magic() {
    let dir = tmp();
    let spec = FixtureSpec::default();
    for packing in Packing::ALL {
        let fx = make(dir.path(), "bundle", &spec, packing, Corruption::None);
        // A misleading extension must not matter.
        let renamed = dir.path().join("misnamed.tar");
        ok(std::fs::rename(&fx.path, &renamed), "rename");
        let bundle = ok(Bundle::open(&renamed), "open");
        let want = match packing {
            Packing::Tar => Compression::None,
            Packing::TarGz => Compression::Gzip,
            Packing::TarXz => Compression::Xz,
            Packing::TarZst => Compression::Zstd,
        };
        assert_eq!(bundle.compression(), want);
        let cat = ok(bundle.catalogue(), "catalogue");
        assert_eq!(cat.format, BundleFormat::OciLayout);
        check_catalogue(&cat, &fx);
        assert_eq!(cat.images[0].children.len(), 2, "image 0 is multi-arch");
        let (seen, report) = stream_all(&renamed, &cat);
        assert!(report.is_ok(), "{:?}", report.failures);
        assert_eq!(seen, fx.blobs, "{packing:?}");
        assert_eq!(report.blobs_streamed, fx.blobs.len());
        assert_eq!(report.bytes_streamed, fx.blobs.values().sum::<u64>());
    }
}

#[test]
fn shared_base_layers_are_listed_once() {
    let dir = tmp();
    let spec = FixtureSpec {
        images: 4,
        shared_base_layers: 2,
        ..FixtureSpec::default()
    };
    let fx = make(
        dir.path(),
        "shared",
        &spec,
        Packing::TarZst,
        Corruption::None,
    );
    let cat = catalogue(&fx.path);
    check_catalogue(&cat, &fx);
    let base = &cat.images[1].blobs[1].digest;
    for img in &cat.images {
        assert!(
            img.blobs.iter().any(|b| &b.digest == base),
            "{} lacks the base layer",
            img.name
        );
    }
    assert_eq!(cat.users_of(base).0.len(), 4);
}

#[test]
fn fixtures_are_deterministic() {
    let dir = tmp();
    let spec = FixtureSpec::default();
    let a = make(dir.path(), "a", &spec, Packing::TarGz, Corruption::None);
    let b = ok(
        write_oci_bundle(dir.path().join("b.tar.gz"), &spec, Packing::TarGz),
        "write b",
    );
    assert_eq!(
        ok(std::fs::read(&a.path), "read a"),
        ok(std::fs::read(&b.path), "read b")
    );
    let c = make(
        dir.path(),
        "c",
        &FixtureSpec { seed: 7, ..spec },
        Packing::TarGz,
        Corruption::None,
    );
    assert_ne!(a.images[0].manifest_digest, c.images[0].manifest_digest);
}

#[test]
fn push_into_oci_store_keeps_manifest_digests_byte_exact() {
    let dir = tmp();
    let fx = make(
        dir.path(),
        "push",
        &FixtureSpec::default(),
        Packing::TarXz,
        Corruption::None,
    );
    let bundle = ok(Bundle::open(&fx.path), "open");
    let cat = ok(bundle.catalogue(), "catalogue");
    let store = ok(OciStore::open_or_create(dir.path().join("mirror")), "store");
    let report = ok(
        push_bundle_to_store(&bundle, &cat, &store, Some("test-namespace")),
        "push",
    );
    assert!(
        report.blob_failures.is_empty()
            && report.manifest_failures.is_empty()
            && report.skipped.is_empty()
    );
    assert_eq!(report.pushed.len(), fx.images.len());
    assert_eq!(report.blobs_written, fx.blobs.len());
    for (img, entry) in fx.images.iter().zip(&cat.images) {
        let r = ok(ImageRef::parse(&img.name), "parse");
        let repo = format!("test-namespace/{}", r.repository);
        let tag = r.tag.clone().unwrap_or_default();
        let desc = ok(store.resolve(&repo, &tag), "resolve");
        let Some(desc) = desc else {
            panic!("{repo}:{tag} not tagged")
        };
        assert_eq!(Some(&desc.digest), img.manifest_digest.as_ref());
        assert_eq!(
            ok(store.read_blob(&desc.digest), "read manifest"),
            entry.manifest_bytes
        );
        for d in img.blobs.iter().chain(&img.child_digests) {
            assert!(ok(store.has_blob(d), "has_blob"), "{d} missing in store");
        }
    }
    // Stored blobs are byte-exact: re-hash every file.
    for d in fx.blobs.keys() {
        assert_eq!(&Digest::of(&ok(store.read_blob(d), "read")), d);
    }
    let tags = ok(store.list_tags(), "tags");
    assert_eq!(tags.len(), fx.images.len());
    assert!(tags
        .iter()
        .all(|t| t.repository.starts_with("test-namespace/")));

    // A second push writes nothing new.
    let again = ok(
        push_bundle_to_store(&bundle, &cat, &store, Some("test-namespace")),
        "push again",
    );
    assert_eq!(again.blobs_written, 0);
    assert_eq!(again.blobs_present, fx.blobs.len());
    assert_eq!(ok(store.list_tags(), "tags").len(), fx.images.len());
}

#[test]
fn docker_save_archives_get_synthesised_manifests() {
    let dir = tmp();
    let spec = FixtureSpec::default();
    for packing in [Packing::Tar, Packing::TarGz] {
        let path = dir.path().join(format!("docker.{}", packing.extension()));
        let fx = ok(
            write_docker_archive(&path, &spec, packing),
            "write docker archive",
        );
        let bundle = ok(Bundle::open(&path), "open");
        let cat = ok(bundle.catalogue(), "catalogue");
        assert_eq!(cat.format, BundleFormat::DockerArchive);
        check_catalogue(&cat, &fx);
        // Short RepoTags (`base-2:latest`) are normalised.
        assert_eq!(cat.images[2].name, "docker.io/library/base-2:latest");
        assert_eq!(image_name(2), "docker.io/library/base-2:latest");
        assert!(cat.images.iter().all(|i| i.synthesized));
        let (seen, report) = stream_all(&path, &cat);
        assert!(report.is_ok(), "{:?}", report.failures);
        assert_eq!(seen, fx.blobs);

        let store = ok(
            OciStore::open_or_create(dir.path().join(format!("store-{}", packing.extension()))),
            "store",
        );
        let pushed = ok(push_bundle_to_store(&bundle, &cat, &store, None), "push");
        assert_eq!(
            pushed.pushed.len(),
            fx.images.len(),
            "{:?}",
            pushed.manifest_failures
        );
        let desc = ok(store.resolve("library/base-2", "latest"), "resolve");
        assert_eq!(
            desc.map(|d| d.digest),
            Some(cat.images[2].manifest_digest.clone())
        );
    }
}

#[test]
fn wrong_layer_content_fails_only_its_image_while_streaming() {
    let dir = tmp();
    let fx = make(
        dir.path(),
        "bad",
        &FixtureSpec::default(),
        Packing::TarGz,
        Corruption::WrongLayerContent,
    );
    let Some(bad) = fx.corrupted.clone() else {
        panic!("fixture did not corrupt")
    };
    let bundle = ok(Bundle::open(&fx.path), "open");
    let cat = ok(bundle.catalogue(), "catalogue");
    assert!(
        cat.failures.is_empty(),
        "sizes match, so pass 1 cannot see it"
    );
    let (_, report) = stream_all(&fx.path, &cat);
    assert_eq!(report.failures.len(), 1);
    let err = &report.failures[0];
    assert!(
        matches!(err, BundleError::BlobVerification { digest, failure: VerifyFailure::DigestMismatch { .. }, .. } if digest == &bad),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(bad.as_str()) && msg.contains(&fx.images[0].name),
        "{msg}"
    );
    assert_eq!(
        report.failed_images,
        BTreeSet::from([fx.images[0].name.clone()])
    );

    let store = ok(OciStore::open_or_create(dir.path().join("mirror")), "store");
    let pushed = ok(push_bundle_to_store(&bundle, &cat, &store, None), "push");
    assert_eq!(pushed.skipped, vec![fx.images[0].name.clone()]);
    assert_eq!(pushed.pushed.len(), fx.images.len() - 1);
    assert!(
        !ok(store.has_blob(&bad), "has_blob"),
        "a bad blob must never be stored"
    );
    let r = ok(ImageRef::parse(&fx.images[0].name), "parse");
    assert!(ok(
        store.resolve(&r.repository, r.tag.as_deref().unwrap_or("")),
        "resolve"
    )
    .is_none());
}

#[test]
fn missing_layer_and_bad_config_are_per_image_catalogue_failures() {
    let dir = tmp();
    let spec = FixtureSpec::default();
    let last = spec.images - 1;
    let fx = make(
        dir.path(),
        "missing",
        &spec,
        Packing::Tar,
        Corruption::MissingLayer,
    );
    let Some(gone) = fx.corrupted.clone() else {
        panic!("fixture did not drop a layer")
    };
    let cat = catalogue(&fx.path);
    assert_eq!(cat.images.len(), spec.images - 1);
    assert_eq!(cat.failures.len(), 1);
    assert_eq!(cat.failures[0].name, fx.images[last].name);
    assert!(
        matches!(&cat.failures[0].error, BundleError::MissingBlob { digest, .. } if digest == &gone),
        "{:?}",
        cat.failures[0].error
    );
    let msg = cat.failures[0].error.to_string();
    assert!(
        msg.contains(gone.as_str()) && msg.contains(&fx.images[last].name),
        "{msg}"
    );

    let fx = make(
        dir.path(),
        "badcfg",
        &spec,
        Packing::TarZst,
        Corruption::WrongConfigContent,
    );
    let cat = catalogue(&fx.path);
    assert_eq!(cat.images.len(), spec.images - 1);
    assert!(
        matches!(&cat.failures[0].error, BundleError::BlobVerification { digest, .. } if Some(digest) == fx.corrupted.as_ref()),
        "{:?}",
        cat.failures[0].error
    );
}

#[test]
fn unreadable_index_and_unnamed_images() {
    let dir = tmp();
    let spec = FixtureSpec::default();
    let fx = make(
        dir.path(),
        "noindex",
        &spec,
        Packing::TarGz,
        Corruption::UnreadableIndex,
    );
    let bundle = ok(Bundle::open(&fx.path), "open");
    let err = bundle.catalogue().err();
    assert!(
        matches!(err, Some(BundleError::UnreadableIndex { ref file, .. }) if file == "index.json"),
        "{err:?}"
    );

    let fx = make(
        dir.path(),
        "unnamed",
        &spec,
        Packing::TarGz,
        Corruption::Unnamed,
    );
    let cat = catalogue(&fx.path);
    assert_eq!(cat.images.len(), spec.images - 1);
    assert!(matches!(
        cat.failures[0].error,
        BundleError::ImageName { .. }
    ));
}

#[test]
fn truncated_bundles_fail_with_clear_errors() {
    let dir = tmp();
    let spec = FixtureSpec::default();
    for packing in Packing::ALL {
        let fx = make(dir.path(), "full", &spec, packing, Corruption::None);
        let len = ok(std::fs::metadata(&fx.path), "stat").len();
        let cut = dir.path().join(format!("cut.{}", packing.extension()));
        ok(truncate_copy(&fx.path, &cut, len / 2), "truncate");
        let bundle = ok(Bundle::open(&cut), "open");
        let err = bundle.catalogue().err();
        assert!(
            matches!(
                err,
                Some(BundleError::Read { .. }) | Some(BundleError::NoIndex { .. })
            ),
            "{packing:?}: {err:?}"
        );
        if let Some(BundleError::Read { where_, .. }) = &err {
            assert!(where_.contains("entry"), "{where_}");
        }
    }
}

/// Offset of a file's data inside an uncompressed tar.
fn data_offset(tar_path: &Path, member: &str) -> u64 {
    let file = ok(std::fs::File::open(tar_path), "open tar");
    let mut archive = tar::Archive::new(file);
    for entry in ok(archive.entries(), "entries") {
        let entry = ok(entry, "entry");
        if ok(entry.path(), "path").to_string_lossy() == member {
            return entry.raw_file_position();
        }
    }
    panic!("{member} not in {}", tar_path.display());
}

#[test]
fn truncation_while_streaming_names_the_blob_and_its_images() {
    let dir = tmp();
    let fx = make(
        dir.path(),
        "stream",
        &FixtureSpec::default(),
        Packing::Tar,
        Corruption::None,
    );
    let bundle = ok(Bundle::open(&fx.path), "open");
    let cat = ok(bundle.catalogue(), "catalogue");
    // Cut in the middle of the shared base layer, then stream with the
    // catalogue read before the damage.
    let base = cat.images[1].blobs[1].clone();
    let offset = data_offset(&fx.path, &format!("blobs/sha256/{}", base.digest.hex()));
    let whole = dir.path().join("whole.tar");
    ok(std::fs::copy(&fx.path, &whole), "copy");
    ok(
        truncate_copy(&whole, &fx.path, offset + base.size / 2),
        "truncate",
    );
    let mut delivered = Vec::new();
    let err = bundle
        .stream_blobs(&cat, |blob, reader| {
            let mut sink = Vec::new();
            reader.read_to_end(&mut sink)?;
            delivered.push(blob.digest.clone());
            Ok(())
        })
        .err();
    let Some(BundleError::Truncated { digest, images, .. }) = &err else {
        panic!("expected Truncated, got {err:?}")
    };
    assert_eq!(digest, &base.digest);
    assert_eq!(
        images.0.len(),
        fx.images.len(),
        "the base layer is used by every image"
    );
    assert!(
        !delivered.contains(&base.digest),
        "the sink saw an error, not a clean end"
    );
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains(base.digest.as_str()), "{msg}");
}

#[test]
fn platform_filter_rewrites_the_index_only_when_needed() {
    let dir = tmp();
    let fx = make(
        dir.path(),
        "multi",
        &FixtureSpec::default(),
        Packing::TarZst,
        Corruption::None,
    );
    let bundle = ok(Bundle::open(&fx.path), "open");
    let arm = ok(Platform::parse("linux/arm64"), "platform");
    let amd = ok(Platform::parse("linux/amd64"), "platform");

    let both = ok(
        bundle.catalogue_with(&CatalogueOptions {
            platforms: vec![amd.clone(), arm.clone()],
        }),
        "catalogue",
    );
    check_catalogue(&both, &fx);

    let only_arm = ok(
        bundle.catalogue_with(&CatalogueOptions {
            platforms: vec![arm.clone()],
        }),
        "catalogue",
    );
    let img = &only_arm.images[0];
    assert_eq!(img.name, fx.images[0].name);
    assert!(img.filtered);
    assert_eq!(
        img.original_digest.as_ref(),
        fx.images[0].manifest_digest.as_ref()
    );
    assert_ne!(
        Some(&img.manifest_digest),
        fx.images[0].manifest_digest.as_ref()
    );
    assert_eq!(Digest::of(&img.manifest_bytes), img.manifest_digest);
    assert_eq!(img.children.len(), 1);
    assert_eq!(img.children[0].platform.as_ref(), Some(&arm));
    let index: serde_json::Value = ok(serde_json::from_slice(&img.manifest_bytes), "index json");
    let entries = index["manifests"].as_array().map(Vec::len);
    assert_eq!(entries, Some(1));
    assert_eq!(
        index["manifests"][0]["digest"].as_str(),
        Some(fx.images[0].child_digests[1].as_str())
    );
    // The amd64-only images cannot satisfy an arm64-only filter.
    assert_eq!(only_arm.images.len(), 1);
    assert_eq!(only_arm.failures.len(), fx.images.len() - 1);
    assert!(only_arm
        .failures
        .iter()
        .all(|f| matches!(f.error, BundleError::PlatformNotAvailable { .. })));
    // Only arm64 blobs are streamed; amd64-only layers are not needed.
    let amd_child_layers: BTreeSet<&Digest> = fx.images[0].blobs.iter().collect();
    assert!(only_arm.blobs.len() < amd_child_layers.len());

    let store = ok(OciStore::open_or_create(dir.path().join("mirror")), "store");
    let report = ok(
        push_bundle_to_store(&bundle, &only_arm, &store, None),
        "push",
    );
    assert_eq!(report.pushed.len(), 1);
    assert!(report.pushed[0].filtered);
    let r = ok(ImageRef::parse(&img.name), "parse");
    let desc = ok(
        store.resolve(&r.repository, r.tag.as_deref().unwrap_or("")),
        "resolve",
    );
    assert_eq!(desc.map(|d| d.digest), Some(img.manifest_digest.clone()));
    assert!(
        !ok(store.has_blob(&fx.images[0].child_digests[0]), "has"),
        "amd64 manifest was filtered out"
    );
}

#[test]
fn docker_archive_with_blob_paths_and_an_untagged_image() {
    let dir = tmp();
    let path = dir.path().join("docker25.tar");
    let layer = b"\x1f\x8b pretend gzip layer".to_vec();
    let config =
        br#"{"os":"linux","architecture":"arm64","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let (ld, cd) = (Digest::of(&layer), Digest::of(&config));
    let manifest = serde_json::json!([
        { "Config": format!("blobs/sha256/{}", cd.hex()), "RepoTags": ["registry.example.com:5000/team/app:2"],
          "Layers": [format!("blobs/sha256/{}", ld.hex())] },
        { "Config": format!("blobs/sha256/{}", cd.hex()), "RepoTags": null, "Layers": [] }
    ]);
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        (format!("blobs/sha256/{}", ld.hex()), layer.clone()),
        (format!("blobs/sha256/{}", cd.hex()), config.clone()),
        (
            "manifest.json".to_string(),
            manifest.to_string().into_bytes(),
        ),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        ok(b.append_data(&mut h, name, &data[..]), "append");
    }
    ok(std::fs::write(&path, ok(b.into_inner(), "tar")), "write");
    let cat = catalogue(&path);
    assert_eq!(cat.format, BundleFormat::DockerArchive);
    assert_eq!(cat.images.len(), 1);
    let img = &cat.images[0];
    assert_eq!(img.name, "registry.example.com:5000/team/app:2");
    assert_eq!(img.mirror_ref(Some("ns")).to_string(), "ns/team/app:2");
    assert!(img.synthesized);
    let m: serde_json::Value = ok(serde_json::from_slice(&img.manifest_bytes), "manifest");
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(m["layers"][0]["digest"].as_str(), Some(ld.as_str()));
    assert_eq!(m["config"]["digest"].as_str(), Some(cd.as_str()));
    assert_eq!(cat.failures.len(), 1);
    assert!(matches!(
        cat.failures[0].error,
        BundleError::ImageName { .. }
    ));
    // A platform filter applies to single-platform images via their config.
    let bundle = ok(Bundle::open(&path), "open");
    let amd = ok(Platform::parse("linux/amd64"), "platform");
    let filtered = ok(
        bundle.catalogue_with(&CatalogueOptions {
            platforms: vec![amd],
        }),
        "catalogue",
    );
    assert!(filtered.images.is_empty());
    assert!(filtered
        .failures
        .iter()
        .any(|f| matches!(f.error, BundleError::PlatformNotAvailable { .. })));
    let (seen, report) = stream_all(&path, &cat);
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(seen.len(), 2);
}

/// The blob pass ignores the compression format's own checksum (xz's
/// CRC64, zstd's XXH64) since every blob is checked against its sha256: a
/// byte flipped inside the compressed layer data must still fail the pass
/// (a digest mismatch, or a read error), never stream silently.
#[test]
fn a_flipped_byte_in_compressed_data_is_still_caught_without_the_container_check() {
    let dir = tmp();
    let spec = FixtureSpec {
        layer_size: 256 * 1024,
        ..FixtureSpec::default()
    };
    for packing in [Packing::TarZst, Packing::TarXz] {
        let fx = make(dir.path(), "flip", &spec, packing, Corruption::None);
        let cat = catalogue(&fx.path);
        let mut bytes = ok(std::fs::read(&fx.path), "read bundle");
        // well inside the archive: layers are most of it
        let at = bytes.len() * 3 / 5;
        bytes[at] ^= 0x55;
        let bad = dir.path().join(format!("flipped.{}", packing.extension()));
        ok(std::fs::write(&bad, &bytes), "write flipped bundle");
        let bundle = ok(Bundle::open(&bad), "open flipped");
        let mut delivered = 0usize;
        let result = bundle.stream_blobs(&cat, |_, reader| {
            std::io::copy(reader, &mut std::io::sink())?;
            delivered += 1;
            Ok(())
        });
        match result {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("flipped"), "{packing:?}: no path in {msg}");
            }
            Ok(report) => assert!(
                !report.failures.is_empty() && !report.failed_images.is_empty(),
                "{packing:?}: the flipped byte went unnoticed ({delivered} blobs)"
            ),
        }
    }
}

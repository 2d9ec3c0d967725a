//! Pass 1 stops after the head of an OCI layout (index.json, manifests,
//! configs) when it can: the catalogue it gives must be the one a full
//! pass gives, whatever the order of the archive, and damage after the head
//! must still fail only the images concerned (in pass 2).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use mirrorplan_registry::fixtures::{
    truncate_copy, write_oci_bundle_with, Corruption, FixtureSpec, Packing, Rng,
};
use mirrorplan_registry::{
    Bundle, BundleError, Catalogue, CatalogueOptions, Digest, Platform, StreamReport,
};

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// One entry of a tar, in memory (fixtures are small).
#[derive(Clone)]
struct Member {
    path: String,
    kind: tar::EntryType,
    data: Vec<u8>,
}

fn members(tar_path: &Path) -> Vec<Member> {
    let file = ok(std::fs::File::open(tar_path), "open tar");
    let mut archive = tar::Archive::new(file);
    let mut out = Vec::new();
    for entry in ok(archive.entries(), "entries") {
        let mut entry = ok(entry, "entry");
        let path = ok(entry.path(), "path").to_string_lossy().to_string();
        let kind = entry.header().entry_type();
        let mut data = Vec::new();
        ok(entry.read_to_end(&mut data), "read member");
        out.push(Member { path, kind, data });
    }
    out
}

/// `.xz` in one block, or in blocks of 8 KiB when `xz_blocks` (readers
/// then skip what they do not need: see `Bundle::random_access`).
fn write_tar(members: &[Member], packing: Packing, out: &Path, xz_blocks: bool) {
    let file = ok(std::fs::File::create(out), "create");
    let w: Box<dyn Write> = match packing {
        Packing::Tar => Box::new(file),
        Packing::TarGz => Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        )),
        Packing::TarXz if xz_blocks => Box::new(liblzma::write::XzEncoder::new_stream(
            file,
            ok(
                liblzma::stream::MtStreamBuilder::new()
                    .threads(1)
                    .block_size(8 * 1024)
                    .preset(0)
                    .encoder(),
                "xz encoder",
            ),
        )),
        Packing::TarXz => Box::new(liblzma::write::XzEncoder::new(file, 0)),
        Packing::TarZst => Box::new(ok(zstd::Encoder::new(file, 1), "zstd").auto_finish()),
    };
    let mut b = tar::Builder::new(w);
    for m in members {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(m.kind);
        h.set_size(m.data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_577_836_800);
        ok(b.append_data(&mut h, &m.path, &m.data[..]), "append");
    }
    let w = ok(b.into_inner(), "finish tar");
    drop(w); // the encoders finish on drop
}

fn is_head(m: &Member) -> bool {
    m.path == "oci-layout" || m.path == "index.json"
}

/// The archive orders tested: name and permutation of the members.
fn orders(ms: &[Member]) -> Vec<(&'static str, Vec<Member>)> {
    let mut recommended: Vec<Member> = ms.iter().filter(|m| is_head(m)).cloned().collect();
    recommended.sort_by_key(|m| m.path != "oci-layout");
    // the blobs of at most 1 MiB smallest first, then the rest largest first
    let mut rest: Vec<Member> = ms.iter().filter(|m| !is_head(m)).cloned().collect();
    rest.sort_by_key(|m| {
        let n = m.data.len();
        if n <= 1 << 20 {
            (0, n)
        } else {
            (1, usize::MAX - n)
        }
    });
    recommended.extend(rest);

    let mut index_first_as_written: Vec<Member> =
        ms.iter().filter(|m| is_head(m)).cloned().collect();
    index_first_as_written.extend(ms.iter().filter(|m| !is_head(m)).cloned());

    let mut reversed = ms.to_vec();
    reversed.reverse();

    let mut shuffled = ms.to_vec();
    let mut rng = Rng::new(7);
    for i in (1..shuffled.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        shuffled.swap(i, j);
    }

    let mut index_in_middle: Vec<Member> = ms.iter().filter(|m| !is_head(m)).cloned().collect();
    let mid = index_in_middle.len() / 2;
    for (k, m) in ms.iter().filter(|m| is_head(m)).enumerate() {
        index_in_middle.insert(mid + k, m.clone());
    }

    let mut index_last: Vec<Member> = ms
        .iter()
        .filter(|m| m.path != "index.json")
        .cloned()
        .collect();
    index_last.extend(ms.iter().filter(|m| m.path == "index.json").cloned());

    vec![
        ("as written", ms.to_vec()),
        ("index.json last", index_last),
        ("recommended", recommended),
        ("index first, blobs as written", index_first_as_written),
        ("reversed", reversed),
        ("shuffled", shuffled),
        ("index in the middle", index_in_middle),
    ]
}

fn recommended(ms: &[Member]) -> Vec<Member> {
    match orders(ms).into_iter().find(|(n, _)| *n == "recommended") {
        Some((_, o)) => o,
        None => panic!("no recommended order"),
    }
}

/// Everything a catalogue says, comparable.
fn view(cat: &Catalogue) -> String {
    let failures: Vec<String> = cat
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.name, f.error))
        .collect();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        cat.images, cat.blobs, failures, cat.format
    )
}

/// A plain-tar fixture with `corruption`, repacked in every order and
/// packing: (order name, packing, path).
fn variants(
    dir: &Path,
    spec: &FixtureSpec,
    corruption: Corruption,
) -> Vec<(&'static str, Packing, PathBuf)> {
    let src = dir.join(format!("src-{corruption:?}.tar"));
    ok(
        write_oci_bundle_with(&src, spec, Packing::Tar, corruption),
        "fixture",
    );
    let ms = members(&src);
    let mut out = Vec::new();
    for (k, (name, order)) in orders(&ms).into_iter().enumerate() {
        for packing in Packing::ALL {
            let p = dir.join(format!("{corruption:?}-{k}.{}", packing.extension()));
            write_tar(&order, packing, &p, false);
            out.push((name, packing, p));
        }
        let p = dir.join(format!("{corruption:?}-{k}-blocks.tar.xz"));
        write_tar(&order, Packing::TarXz, &p, true);
        assert!(ok(Bundle::open(&p), "open").random_access());
        out.push((name, Packing::TarXz, p));
    }
    out
}

fn stream(path: &Path, cat: &Catalogue) -> Result<StreamReport, BundleError> {
    let bundle = ok(Bundle::open(path), "open");
    bundle.stream_blobs(cat, |_, r| {
        std::io::copy(r, &mut std::io::sink())?;
        Ok(())
    })
}

fn spec() -> FixtureSpec {
    FixtureSpec {
        images: 4,
        ..FixtureSpec::default()
    }
}

#[test]
fn early_stop_gives_the_full_pass_catalogue_in_every_order() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let arm = CatalogueOptions {
        platforms: vec![ok(Platform::parse("linux/arm64"), "platform")],
    };
    for (order, packing, path) in variants(dir.path(), &spec(), Corruption::None) {
        let bundle = ok(Bundle::open(&path), "open");
        for options in [CatalogueOptions::default(), arm.clone()] {
            let early = ok(bundle.catalogue_with(&options), "catalogue");
            let whole = ok(bundle.catalogue_whole_with(&options), "whole catalogue");
            assert!(whole.read_whole);
            assert_eq!(
                view(&early),
                view(&whole),
                "{order} {packing:?} {options:?}"
            );
            // The recommended order is catalogued from its head; index.json
            // last is read to the end.
            match order {
                "recommended" => {
                    assert!(!early.read_whole, "{order} {packing:?}")
                }
                "index.json last" => {
                    assert!(early.read_whole, "{order} {packing:?}")
                }
                _ => {}
            }
            let report = ok(stream(&path, &early), "stream");
            assert!(report.is_ok(), "{order} {packing:?}: {:?}", report.failures);
            assert_eq!(report.blobs_streamed, early.blobs.len());
        }
        let cat = ok(bundle.catalogue(), "catalogue");
        assert_eq!(cat.images.len(), 4, "{order}");
        assert!(cat.failures.is_empty(), "{order}: {:?}", cat.failures);
    }
}

#[test]
fn a_bad_config_is_found_from_the_head_too() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    for (order, packing, path) in variants(dir.path(), &spec(), Corruption::WrongConfigContent) {
        let bundle = ok(Bundle::open(&path), "open");
        let early = ok(bundle.catalogue(), "catalogue");
        let whole = ok(
            bundle.catalogue_whole_with(&CatalogueOptions::default()),
            "whole",
        );
        assert_eq!(view(&early), view(&whole), "{order} {packing:?}");
        assert_eq!(early.failures.len(), 1, "{order} {packing:?}");
        assert_eq!(early.images.len(), 3, "{order} {packing:?}");
    }
}

#[test]
fn a_layer_missing_after_the_head_fails_only_its_image_in_pass_2() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let mut stopped_early = 0;
    for (order, packing, path) in variants(dir.path(), &spec(), Corruption::MissingLayer) {
        let bundle = ok(Bundle::open(&path), "open");
        let early = ok(bundle.catalogue(), "catalogue");
        let whole = ok(
            bundle.catalogue_whole_with(&CatalogueOptions::default()),
            "whole",
        );
        assert_eq!(whole.failures.len(), 1, "{order}");
        let victim = whole.failures[0].name.clone();
        if early.read_whole {
            assert_eq!(view(&early), view(&whole), "{order} {packing:?}");
            continue;
        }
        // Stopped after the head: the layer was never seen, so the image
        // is listed; streaming then fails that image and no other.
        stopped_early += 1;
        assert!(early.failures.is_empty(), "{order}");
        assert_eq!(early.images.len(), 4, "{order}");
        let report = ok(stream(&path, &early), "stream");
        assert_eq!(
            report.failed_images,
            BTreeSet::from([victim.clone()]),
            "{order} {packing:?}"
        );
        assert!(
            report
                .failures
                .iter()
                .any(|e| matches!(e, BundleError::MissingBlob { .. })),
            "{order}: {:?}",
            report.failures
        );
        for i in &early.images {
            assert_eq!(report.image_ok(&i.name), i.name != victim, "{}", i.name);
        }
    }
    assert!(stopped_early >= Packing::ALL.len(), "{stopped_early}");
}

#[test]
fn a_layer_of_the_wrong_size_after_the_head_fails_only_its_image() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let src = dir.path().join("src.tar");
    ok(
        write_oci_bundle_with(&src, &spec(), Packing::Tar, Corruption::None),
        "fixture",
    );
    let ms = members(&src);
    let mut order = recommended(&ms);
    // Grow the last blob of the recommended order (a layer: with this
    // fixture's small layers, the biggest of them).
    let last = order.len() - 1;
    let grown = Digest::from_hex(order[last].path.trim_start_matches("blobs/sha256/"));
    let grown = ok(grown, "layer digest");
    order[last].data.push(0);
    let path = dir.path().join("grown.tar.zst");
    write_tar(&order, Packing::TarZst, &path, false);
    let bundle = ok(Bundle::open(&path), "open");
    let early = ok(bundle.catalogue(), "catalogue");
    assert!(!early.read_whole);
    let whole = ok(
        bundle.catalogue_whole_with(&CatalogueOptions::default()),
        "whole",
    );
    let report = ok(stream(&path, &early), "stream");
    let users: BTreeSet<String> = early.users_of(&grown).0.into_iter().collect();
    assert!(!users.is_empty());
    assert_eq!(report.failed_images, users);
    let whole_failed: BTreeSet<String> = whole.failures.iter().map(|f| f.name.clone()).collect();
    assert_eq!(whole_failed, users, "the full pass refuses the same images");
}

#[test]
fn truncation_after_the_head_is_a_pass_2_error_naming_the_blob() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let src = dir.path().join("src.tar");
    ok(
        write_oci_bundle_with(&src, &spec(), Packing::Tar, Corruption::None),
        "fixture",
    );
    let ms = members(&src);
    let order = recommended(&ms);
    let path = dir.path().join("recommended.tar");
    write_tar(&order, Packing::Tar, &path, false);
    let len = ok(std::fs::metadata(&path), "stat").len();
    let cut = dir.path().join("cut.tar");
    ok(truncate_copy(&path, &cut, len - len / 4), "truncate");
    let bundle = ok(Bundle::open(&cut), "open");
    // The full pass fails on the truncated stream; the early one does not
    // need the end.
    assert!(bundle
        .catalogue_whole_with(&CatalogueOptions::default())
        .is_err());
    let early = ok(bundle.catalogue(), "catalogue");
    assert!(!early.read_whole);
    assert_eq!(early.images.len(), 4);
    let mut delivered = Vec::new();
    let err = bundle
        .stream_blobs(&early, |b, r| {
            std::io::copy(r, &mut std::io::sink())?;
            delivered.push(b.digest.clone());
            Ok(())
        })
        .err();
    let Some(BundleError::Truncated { digest, images, .. }) = &err else {
        panic!("expected Truncated, got {err:?}")
    };
    assert!(!delivered.contains(digest));
    assert!(!delivered.is_empty(), "blobs before the cut were delivered");
    let users: Vec<String> = early.users_of(digest).0;
    assert_eq!(images.0, users);
}

/// With layers over 1 MiB, the recommended order puts them after the small
/// blobs, largest first: the catalogue is still read from the head only
/// (and equals the full pass), and streaming only the biggest layer (what
/// the second reader of a push does) stops right after it: garbage in place
/// of everything after that layer goes unnoticed, while streaming every
/// blob trips over it.
#[test]
fn recommended_order_puts_big_layers_largest_first_after_the_head() {
    let dir = ok(tempfile::tempdir(), "tempdir");
    let spec = FixtureSpec {
        images: 3,
        layer_size: 1536 * 1024,
        ..FixtureSpec::default()
    };
    let src = dir.path().join("src.tar");
    ok(
        write_oci_bundle_with(&src, &spec, Packing::Tar, Corruption::None),
        "fixture",
    );
    let order = recommended(&members(&src));
    let sizes: Vec<usize> = order
        .iter()
        .filter(|m| !is_head(m))
        .map(|m| m.data.len())
        .collect();
    let Some(first_big) = sizes.iter().position(|s| *s > 1 << 20) else {
        panic!("no layer over 1 MiB in the fixture: {sizes:?}");
    };
    assert!(
        sizes[..first_big].windows(2).all(|w| w[0] <= w[1])
            && sizes[first_big..].windows(2).all(|w| w[0] >= w[1])
            && sizes[first_big..].iter().all(|s| *s > 1 << 20),
        "small blobs ascending, then big ones descending: {sizes:?}"
    );
    // the biggest layer comes right after the head and the small blobs
    let at = 2 + first_big;
    let biggest = ok(
        Digest::from_hex(order[at].path.trim_start_matches("blobs/sha256/")),
        "digest",
    );
    for packing in Packing::ALL {
        let path = dir
            .path()
            .join(format!("big-first.{}", packing.extension()));
        write_tar(&order, packing, &path, true);
        let bundle = ok(Bundle::open(&path), "open");
        let early = ok(bundle.catalogue(), "catalogue");
        assert!(!early.read_whole, "{packing:?}: read to the end");
        let whole = ok(
            bundle.catalogue_whole_with(&CatalogueOptions::default()),
            "whole",
        );
        assert_eq!(view(&early), view(&whole), "{packing:?}");
    }

    // A plain tar cut after the biggest layer, garbage instead of the rest.
    let full = dir.path().join("big-first.tar");
    let tar_bytes = ok(std::fs::read(&full), "read tar");
    let end: usize = order[..=at]
        .iter()
        .map(|m| 512 + m.data.len().div_ceil(512) * 512)
        .sum();
    let mut cut = tar_bytes[..end].to_vec();
    cut.extend(std::iter::repeat_n(b'A', 4096));
    let cut_path = dir.path().join("cut.tar");
    ok(std::fs::write(&cut_path, &cut), "write cut tar");
    let cat = ok(ok(Bundle::open(&full), "open").catalogue(), "catalogue");
    let only = cat.with_blobs(|b| b.digest == biggest);
    let mut seen = 0u64;
    let report = ok(
        ok(Bundle::open(&cut_path), "open cut").stream_blobs(&only, |_, r| {
            seen += std::io::copy(r, &mut std::io::sink())?;
            Ok(())
        }),
        "stream the biggest layer",
    );
    assert!(report.is_ok(), "{:?}", report.failures);
    assert_eq!(report.blobs_streamed, 1);
    assert_eq!(seen, order[at].data.len() as u64);
    assert!(
        stream(&cut_path, &cat).is_err() || stream(&cut_path, &cat).is_ok_and(|r| !r.is_ok()),
        "streaming every blob reads into the garbage"
    );
}

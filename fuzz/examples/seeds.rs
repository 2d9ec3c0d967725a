//! Writes the generated part of the seed corpus (`fuzz/corpus/`): small
//! bundles from the registry crate's test fixtures, the manifests, indexes
//! and configs inside them, states and plan files. The text seeds (HCL,
//! known_hosts, config.toml, config.json, headers) were taken from the
//! crates' tests and are committed as they are.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds` (from the
//! repository root). The output is deterministic except for the states'
//! lineage and salt.

use std::error::Error;
use std::fs;
use std::io::Read;
use std::path::Path;

use mirrorplan_engine::{Plan, Sensitive, StateIdentity};
use mirrorplan_registry::fixtures::{
    write_docker_archive, write_oci_bundle, write_oci_bundle_with, Corruption, FixtureSpec,
    LayerCompression, Packing,
};
use mirrorplan_state::{InstanceRecord, State, StateStore};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn tiny() -> FixtureSpec {
    FixtureSpec {
        seed: 7,
        images: 2,
        layers_per_image: 1,
        shared_base_layers: 1,
        layer_size: 64,
        multi_arch: true,
        layer_compression: LayerCompression::Mixed,
    }
}

fn bundles(out: &Path, registry: &Path) -> Result<()> {
    for packing in Packing::ALL {
        let path = out.join(format!("oci.{}", packing.extension()));
        write_oci_bundle(&path, &tiny(), packing)?;
    }
    write_docker_archive(out.join("docker.tar"), &tiny(), Packing::Tar)?;
    write_docker_archive(out.join("docker.tar.gz"), &tiny(), Packing::TarGz)?;
    for (name, corruption) in [
        ("wrong-layer", Corruption::WrongLayerContent),
        ("missing-layer", Corruption::MissingLayer),
        ("wrong-config", Corruption::WrongConfigContent),
        ("unreadable-index", Corruption::UnreadableIndex),
        ("unnamed", Corruption::Unnamed),
    ] {
        let path = out.join(format!("oci-{name}.tar"));
        write_oci_bundle_with(&path, &tiny(), Packing::Tar, corruption)?;
    }
    fs::copy(
        "examples/quickstart/bundles/quickstart.tar.gz",
        out.join("quickstart.tar.gz"),
    )?;
    // the JSON inside: what a registry serves for the same images
    let mut archive = tar::Archive::new(fs::File::open(out.join("oci.tar"))?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        if !bytes.starts_with(b"{") {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let content_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "application/json".to_owned());
        let name = path.rsplit('/').next().unwrap_or("entry");
        let name: String = name.chars().take(16).collect();
        fs::write(
            registry.join(format!("bundle-{name}")),
            format!("{content_type}\n{text}"),
        )?;
    }
    Ok(())
}

fn states(out: &Path) -> Result<()> {
    let scratch = out.join("scratch");
    fs::create_dir_all(&scratch)?;
    let store = StateStore::new(scratch.join("state.json"));
    let mut state = State::new();
    store.save(&mut state)?;
    fs::copy(scratch.join("state.json"), out.join("empty.json"))?;
    let mut node = InstanceRecord::new("node");
    node.attributes
        .insert("containerd".into(), serde_json::json!("1.x"));
    node.attributes.insert(
        "files".into(),
        serde_json::json!(["/etc/containerd/certs.d/docker.io/hosts.toml"]),
    );
    node.set_sensitive(state.secret_salt(), "ssh_password", b"hunter2");
    node.set_content_digest("/etc/containerd/config.toml", b"version = 2\n");
    node.dependencies = vec!["image_set.bundle".into()];
    state.set_instance(r#"node.local["local:./nodes/node1"]"#, node);
    let mut image = InstanceRecord::new("registry");
    image
        .attributes
        .insert("digest".into(), serde_json::json!("sha256:00"));
    image
        .attributes
        .insert("size".into(), serde_json::json!(1234));
    state.set_instance(r#"image.bundle["gcr.io/a/b:t"]"#, image);
    state.set_output("store", serde_json::json!("oci:./store"));
    state.set_sensitive_output("password", b"hunter2");
    store.save(&mut state)?;
    fs::copy(scratch.join("state.json"), out.join("full.json"))?;
    fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// Plan bodies in the serialised form, and the same sealed as plan files.
const PLAN_BODIES: [&str; 2] = [
    r#"{"changes":[{"action":"update","address":"image.anthos[\"gcr.io/a/b:t\"]","after":{"digest":"sha256:aaa","source":"gcr.io/a/b:t"},"after_sensitive":{"password":"blake3:0000000000000000000000000000000000000000000000000000000000000000"},"before":{"digest":"sha256:aaa","source":"gcr.io/a/b:t"},"before_sensitive":{"password":"blake3:1111111111111111111111111111111111111111111111111111111111111111"},"config_digest":"blake3:2222222222222222222222222222222222222222222222222222222222222222","dependencies":[],"details":[],"provider":"mem","replace_because":[],"state_update":null}],"drift":[],"lineage":"00000000-0000-4000-8000-000000000001","refresh_only":false,"serial":7,"targets":[]}"#,
    r#"{"changes":[{"action":"create","address":"node.local[\"local:./nodes/node1\"]","after":{"containerd":"1.x","files":["/etc/containerd/certs.d/docker.io/hosts.toml"]},"before":null,"provider":"node","dependencies":["image_set.bundle"],"details":["writing hosts.toml"],"config_digest":"blake3:33","state_update":{"op":"set","record":{"provider":"node","attributes":{"containerd":"1.x"},"sensitive":{},"dependencies":[],"digests":{}}},"warnings":["plain http"]},{"action":"replace","address":"image.bundle[\"gcr.io/a/b:t\"]","before":{"digest":"sha256:aa"},"after":{"digest":"sha256:bb"},"replace_because":["digest"],"provider":"registry","state_update":{"op":"remove"}},{"action":"delete","address":"cluster.local","before":{"canary":"n1"},"after":null,"provider":"cluster"},{"action":"no-op","address":"image_set.bundle","before":{},"after":{},"provider":"set"}],"drift":[{"address":"node.local[\"local:./nodes/node2\"]","provider":"node","gone":false,"changes":[{"attribute":"files","before":["a"],"after":["b"],"sensitive":false}]},{"address":"image.bundle[\"quay.io/x/y:1\"]","provider":"registry","gone":true,"changes":[]}],"lineage":"00000000-0000-4000-8000-000000000002","refresh_only":false,"serial":0,"targets":["node.local[\"local:./nodes/node1\"]"]}"#,
];

fn plans(out: &Path) -> Result<()> {
    for (i, body) in PLAN_BODIES.iter().enumerate() {
        let plan: Plan = serde_json::from_str(body)?;
        fs::write(out.join(format!("body-{i}.json")), body)?;
        // sealed as the planfile target reads a body: against its own
        // lineage and the target's fixed salt
        let identity = StateIdentity {
            lineage: plan.lineage.clone(),
            serial: 1,
            secret_salt: Sensitive::new("fuzz salt".to_owned()),
        };
        fs::write(
            out.join(format!("plan-{i}.json")),
            plan.to_file_bytes(&identity)?,
        )?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let corpus = Path::new("fuzz/corpus");
    let dir = |name: &str| -> Result<std::path::PathBuf> {
        let d = corpus.join(name);
        fs::create_dir_all(&d)?;
        Ok(d)
    };
    bundles(&dir("bundle")?, &dir("registry")?)?;
    states(&dir("state")?)?;
    plans(&dir("planfile")?)?;
    Ok(())
}

//! Loading and saving state files: round trips, serials, backups, modes,
//! corrupt files and atomicity.

use std::error::Error;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use miette::Diagnostic;
use mirrorplan_state::{InstanceRecord, SaveOutcome, State, StateError, StateStore};
use serde_json::json;

type TestResult = Result<(), Box<dyn Error>>;

fn sample_state() -> State {
    let mut state = State::new();
    let salt = state.secret_salt().to_owned();
    let mut image = InstanceRecord::new("registry");
    image
        .attributes
        .insert("target".into(), json!("mirror.example/a/b:t"));
    image.dependencies.push("cluster.admin1".into());
    image.set_content_digest("manifest", b"{}");
    state.set_instance("image.anthos[\"gcr.io/a/b:t\"]", image);
    let mut node = InstanceRecord::new("node");
    node.set_sensitive(&salt, "registry_password", b"hunter2");
    node.attributes.insert("host".into(), json!("cp1.example"));
    state.set_instance("node.admin1[\"cp1.example\"]", node);
    state.set_instance("cluster.admin1", InstanceRecord::new("node"));
    state.set_output("mirror", json!("mirror.example"));
    state.set_sensitive_output("token", b"s3cr3t");
    state
}

fn code(err: &StateError) -> String {
    err.code().map(|c| c.to_string()).unwrap_or_default()
}

fn help(err: &StateError) -> String {
    err.help().map(|h| h.to_string()).unwrap_or_default()
}

fn mode(path: &Path) -> Result<u32, Box<dyn Error>> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o777)
}

#[test]
fn missing_file_is_no_state_yet() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::beside_config(dir.path());
    assert_eq!(store.path(), dir.path().join(".mirrorplan/state.json"));
    assert!(store.load()?.is_none());
    let fresh = store.load_or_new()?;
    assert_eq!(fresh.serial(), 0);
    assert_eq!(fresh.addresses().count(), 0);
    Ok(())
}

#[test]
fn round_trip_keeps_everything() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::beside_config(dir.path());
    let mut state = sample_state();
    let outcome = store.save(&mut state)?;
    assert_eq!(outcome, SaveOutcome::Created { serial: 1 });
    assert_eq!(state.serial(), 1);

    let loaded = store.load()?.ok_or("state missing after save")?;
    assert_eq!(loaded, state);
    assert_eq!(loaded.lineage(), state.lineage());
    let addrs: Vec<_> = loaded.addresses().collect();
    assert_eq!(
        addrs,
        [
            "cluster.admin1",
            "image.anthos[\"gcr.io/a/b:t\"]",
            "node.admin1[\"cp1.example\"]"
        ]
    );

    let raw: serde_json::Value = serde_json::from_slice(&fs::read(store.path())?)?;
    assert_eq!(raw["version"], json!(1));
    assert_eq!(raw["serial"], json!(1));
    assert_eq!(raw["lineage"], json!(state.lineage().to_string()));
    let node = &raw["instances"]["node.admin1[\"cp1.example\"]"];
    assert_eq!(node["provider"], json!("node"));
    assert_eq!(
        node["sensitive"]["registry_password"],
        json!(state.digest_secret(b"hunter2"))
    );
    assert_eq!(
        raw["outputs"]["token"],
        json!({"value": state.digest_secret(b"s3cr3t"), "sensitive": true})
    );
    let text = fs::read_to_string(store.path())?;
    assert!(!text.contains("hunter2"));
    assert!(!text.contains("s3cr3t\""));
    Ok(())
}

#[test]
fn serial_rises_only_when_content_changes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::beside_config(dir.path());
    let mut state = sample_state();
    store.save(&mut state)?;
    let first = fs::read(store.path())?;

    let outcome = store.save(&mut state)?;
    assert_eq!(outcome, SaveOutcome::Unchanged { serial: 1 });
    assert!(!outcome.written());
    assert_eq!(fs::read(store.path())?, first);
    assert!(
        !store.backup_path().exists(),
        "unchanged save wrote a backup"
    );

    // A reloaded copy with identical content does not bump either.
    let mut reloaded = store.load()?.ok_or("state missing")?;
    assert_eq!(store.save(&mut reloaded)?.serial(), 1);

    state.remove_instance("cluster.admin1");
    let outcome = store.save(&mut state)?;
    assert_eq!(
        outcome,
        SaveOutcome::Updated {
            previous_serial: 1,
            serial: 2
        }
    );
    assert_eq!(state.serial(), 2);
    assert_eq!(store.load()?.map(|s| s.serial()), Some(2));
    Ok(())
}

#[test]
fn backup_holds_the_previous_version() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::beside_config(dir.path());
    assert_eq!(
        store.backup_path(),
        dir.path().join(".mirrorplan/state.json.backup")
    );
    let mut state = sample_state();
    store.save(&mut state)?;
    let v1 = fs::read(store.path())?;
    state.set_output("mirror", json!("other.example"));
    store.save(&mut state)?;
    assert_eq!(fs::read(store.backup_path())?, v1);
    let v2 = fs::read(store.path())?;
    state.set_output("mirror", json!("third.example"));
    store.save(&mut state)?;
    assert_eq!(fs::read(store.backup_path())?, v2);
    let backup = StateStore::new(store.backup_path())
        .load()?
        .ok_or("no backup")?;
    assert_eq!(backup.serial(), 2);
    Ok(())
}

#[test]
fn files_are_private() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::beside_config(dir.path());
    let mut state = sample_state();
    store.save(&mut state)?;
    state.set_output("x", json!(1));
    store.save(&mut state)?;
    assert_eq!(mode(store.path())?, 0o600);
    assert_eq!(mode(&store.backup_path())?, 0o600);
    assert_eq!(mode(&dir.path().join(".mirrorplan"))?, 0o700);
    Ok(())
}

#[test]
fn save_output_is_deterministic() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut state = sample_state();
    let a = StateStore::new(dir.path().join("a.json"));
    let b = StateStore::new(dir.path().join("b.json"));
    let mut copy = state.clone();
    a.save(&mut state)?;
    b.save(&mut copy)?;
    assert_eq!(fs::read(a.path())?, fs::read(b.path())?);
    Ok(())
}

#[test]
fn corrupt_json_names_path_and_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::new(dir.path().join("state.json"));
    fs::write(
        store.path(),
        "{\n  \"version\": 1,\n  \"serial\": oops\n}\n",
    )?;
    let err = store.load().err().ok_or("corrupt file loaded")?;
    assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&store.path().display().to_string()), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
    assert_eq!(code(&err), "mirrorplan::state::corrupt");
    assert!(help(&err).contains("state.json.backup"), "{}", help(&err));

    // Never silently reset: save refuses to overwrite it as well.
    let mut state = State::new();
    assert!(matches!(
        store.save(&mut state),
        Err(StateError::Corrupt { .. })
    ));
    assert!(fs::read_to_string(store.path())?.contains("oops"));
    Ok(())
}

#[test]
fn wrong_shape_is_corrupt_with_position() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::new(dir.path().join("state.json"));
    let mut state = sample_state();
    store.save(&mut state)?;
    let text = fs::read_to_string(store.path())?;
    fs::write(
        store.path(),
        text.replace("\"provider\": \"node\"", "\"provider\": 42"),
    )?;
    let err = store.load().err().ok_or("wrong shape loaded")?;
    let msg = err.to_string();
    assert_eq!(code(&err), "mirrorplan::state::corrupt");
    assert!(msg.contains("line "), "{msg}");
    assert!(msg.contains("invalid type"), "{msg}");

    fs::write(store.path(), "[1, 2]")?;
    let err = store.load().err().ok_or("array loaded")?;
    assert!(err.to_string().contains("not a JSON object"), "{err}");

    fs::write(store.path(), "{\"serial\": 1}")?;
    let err = store.load().err().ok_or("versionless loaded")?;
    assert!(err.to_string().contains("`version`"), "{err}");
    Ok(())
}

#[test]
fn clear_text_secret_in_file_is_rejected() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::new(dir.path().join("state.json"));
    let mut state = sample_state();
    store.save(&mut state)?;
    let digest = state.digest_secret(b"hunter2");
    let text = fs::read_to_string(store.path())?;
    fs::write(store.path(), text.replace(&digest, "hunter2"))?;
    let err = store.load().err().ok_or("clear secret accepted")?;
    assert!(err.to_string().contains("registry_password"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    Ok(())
}

#[test]
fn unknown_version_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::new(dir.path().join("state.json"));
    let mut state = sample_state();
    store.save(&mut state)?;
    let text = fs::read_to_string(store.path())?;
    fs::write(
        store.path(),
        text.replace("\"version\": 1", "\"version\": 7"),
    )?;
    let err = store.load().err().ok_or("version 7 loaded")?;
    match &err {
        StateError::UnsupportedVersion {
            found, supported, ..
        } => {
            assert_eq!(*found, 7);
            assert_eq!(*supported, 1);
        }
        other => return Err(format!("unexpected error {other:?}").into()),
    }
    assert_eq!(code(&err), "mirrorplan::state::unsupported_version");
    assert!(err
        .to_string()
        .contains(&store.path().display().to_string()));
    Ok(())
}

#[test]
fn leftover_temp_file_is_ignored() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::new(dir.path().join("state.json"));
    let mut state = sample_state();
    store.save(&mut state)?;
    // What a save killed between write and rename leaves behind.
    fs::write(
        dir.path().join(".state.json.tmp.4242.0123456789ab"),
        "{\"vers",
    )?;
    assert_eq!(store.load()?, Some(state.clone()));
    state.set_output("after", json!(true));
    assert_eq!(store.save(&mut state)?.serial(), 2);
    assert_eq!(store.load()?.map(|s| s.serial()), Some(2));
    Ok(())
}

#[test]
fn failed_save_leaves_previous_state_and_no_temp_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::new(dir.path().join("state.json"));
    let mut state = sample_state();
    store.save(&mut state)?;
    let before = fs::read(store.path())?;
    // A non-empty directory where the backup goes makes the rename fail.
    fs::create_dir(store.backup_path())?;
    fs::write(store.backup_path().join("x"), "x")?;
    state.set_output("new", json!(1));
    let err = store.save(&mut state).err().ok_or("save succeeded")?;
    assert_eq!(code(&err), "mirrorplan::state::io");
    assert_eq!(fs::read(store.path())?, before);
    assert_eq!(state.serial(), 1, "serial bumped by a failed save");
    let leftovers: Vec<_> = fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}

#[test]
fn other_lineage_is_not_overwritten() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::new(dir.path().join("state.json"));
    store.save(&mut sample_state())?;
    let err = store
        .save(&mut State::new())
        .err()
        .ok_or("other lineage saved")?;
    assert_eq!(code(&err), "mirrorplan::state::lineage_mismatch");
    Ok(())
}

#[test]
fn newer_serial_on_disk_is_not_overwritten() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::new(dir.path().join("state.json"));
    store.save(&mut sample_state())?;
    let mut first = store.load()?.ok_or("missing")?;
    let mut second = store.load()?.ok_or("missing")?;
    first.set_output("a", json!(1));
    store.save(&mut first)?;
    second.set_output("b", json!(2));
    let err = store.save(&mut second).err().ok_or("stale save accepted")?;
    assert_eq!(code(&err), "mirrorplan::state::serial_conflict");
    assert!(store.load()?.ok_or("missing")?.output("a").is_some());
    Ok(())
}

#[test]
fn a_file_replaced_behind_the_store_gets_the_full_checks() -> TestResult {
    // A store skips re-parsing only the very file it last wrote or loaded.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.json");
    let store = StateStore::new(&path);
    let mut ours = sample_state();
    store.save(&mut ours)?;
    assert_eq!(store.save(&mut ours)?, SaveOutcome::Unchanged { serial: 1 });

    // Another writer (another store of the same file) moves the serial on.
    let other = StateStore::new(&path);
    let mut theirs = other.load()?.ok_or("missing")?;
    theirs.set_output("theirs", json!(1));
    other.save(&mut theirs)?;
    ours.set_output("ours", json!(2));
    let err = store.save(&mut ours).err().ok_or("stale save accepted")?;
    assert_eq!(code(&err), "mirrorplan::state::serial_conflict");

    // The same content written compactly by hand is still "unchanged".
    let mut fresh = store.load()?.ok_or("missing")?;
    let compact = serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&fs::read(
        &path,
    )?)?)?;
    fs::write(&path, &compact)?;
    assert_eq!(
        store.save(&mut fresh)?,
        SaveOutcome::Unchanged { serial: 2 }
    );
    assert_eq!(fs::read(&path)?, compact);

    // A file damaged by hand is never overwritten.
    fs::write(&path, b"{\"version\": 1, \"serial\": ")?;
    fresh.set_output("more", json!(3));
    let err = store
        .save(&mut fresh)
        .err()
        .ok_or("corrupt file overwritten")?;
    assert_eq!(code(&err), "mirrorplan::state::corrupt");
    assert_eq!(fs::read(&path)?, b"{\"version\": 1, \"serial\": ");
    Ok(())
}

#[test]
fn serial_at_u64_max_loads_but_never_wraps_on_save() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = StateStore::beside_config(dir.path());
    let mut state = sample_state();
    store.save(&mut state)?;
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(store.path())?)?;
    v["serial"] = json!(u64::MAX);
    fs::write(store.path(), serde_json::to_vec_pretty(&v)?)?;
    let before = fs::read(store.path())?;

    // it loads, for reading
    let mut loaded = StateStore::new(store.path()).load()?.ok_or("no state")?;
    assert_eq!(loaded.serial(), u64::MAX);
    let fresh = StateStore::new(store.path());
    let err = fresh
        .check_writable(&loaded)
        .err()
        .ok_or("check_writable accepted u64::MAX")?;
    assert_eq!(code(&err), "mirrorplan::state::serial_exhausted");
    // an unchanged save writes nothing and needs no new serial
    assert!(!fresh.save(&mut loaded)?.written());
    // a changed one is refused, by both save paths (known file or not)
    loaded.set_output("x", json!(1));
    for store in [fresh.clone(), StateStore::new(store.path())] {
        let err = store
            .save(&mut loaded)
            .err()
            .ok_or("a save at u64::MAX succeeded")?;
        assert_eq!(code(&err), "mirrorplan::state::serial_exhausted");
        assert!(err.to_string().contains(&u64::MAX.to_string()), "{err}");
        assert!(help(&err).contains("state.json.backup"), "{}", help(&err));
        assert_eq!(fs::read(store.path())?, before);
        assert_eq!(loaded.serial(), u64::MAX);
    }
    Ok(())
}

#[test]
fn private_dir_is_created_0700_and_tightened() -> TestResult {
    let dir = tempfile::tempdir()?;
    let new = dir.path().join("a/b");
    mirrorplan_state::ensure_private_dir(&new)?;
    assert_eq!(mode(&new)?, 0o700);
    let open = dir.path().join("open");
    fs::create_dir(&open)?;
    fs::set_permissions(&open, fs::Permissions::from_mode(0o775))?;
    mirrorplan_state::ensure_private_dir(&open)?;
    assert_eq!(mode(&open)?, 0o700);
    Ok(())
}

#[test]
fn write_atomic_replaces_a_0644_file_with_a_0600_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("plan.bin");
    fs::write(&file, b"old")?;
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644))?;
    mirrorplan_state::write_atomic(&file, b"new")?;
    assert_eq!(fs::read(&file)?, b"new");
    assert_eq!(mode(&file)?, 0o600);
    assert_eq!(fs::read_dir(dir.path())?.count(), 1);
    Ok(())
}

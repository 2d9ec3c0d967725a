//! The engine's state records and digests agree with `mirrorplan-state`'s,
//! so the binary can hand records from one to the other unchanged.

use std::collections::BTreeMap;

use mirrorplan_engine::{secret_digest, Attrs, InstanceRecord};

#[test]
fn records_deserialise_as_state_records_and_back() {
    let attrs = Attrs::new()
        .with("port", 22)
        .with_sensitive("password", "hunter2");
    let record = InstanceRecord {
        provider: "node".into(),
        attributes: attrs.public_values(),
        sensitive: attrs.sensitive_digests("salt"),
        dependencies: vec!["cluster.prod".into()],
        digests: BTreeMap::from([("hosts_toml".into(), "abc".into())]),
    };
    let json = serde_json::to_value(&record).expect("serialisable");
    let state_record: mirrorplan_state::InstanceRecord =
        serde_json::from_value(json.clone()).expect("the state crate accepts engine records");
    assert_eq!(state_record.sensitive, record.sensitive);
    let back: InstanceRecord =
        serde_json::from_value(serde_json::to_value(&state_record).expect("serialisable"))
            .expect("the engine accepts state records");
    assert_eq!(back, record);
}

#[test]
fn secret_digests_agree_with_the_state_crate() {
    let value = serde_json::json!("hunter2");
    assert_eq!(
        secret_digest("salt-1", &value),
        mirrorplan_state::secret_digest("salt-1", b"hunter2")
    );
    let mut record = mirrorplan_state::InstanceRecord::new("node");
    record.set_sensitive("salt-1", "password", b"hunter2");
    assert_eq!(
        record.sensitive["password"],
        secret_digest("salt-1", &value)
    );
}

//! Saved plan files: `{"format": "mirrorplan-plan", "version": 2,
//! "checksum": "blake3-keyed:…", "body": {…plan…}}`.
//!
//! The checksum is a keyed BLAKE3 MAC of the compact JSON text of `body`.
//! Its key is derived from the state's private `secret_salt`
//! ([`plan_file_key`]), which the file does not hold: whoever holds only the
//! plan file (a pipeline artifact, say) cannot edit it and recompute the
//! checksum. A damaged, edited or foreign file is refused before anything in
//! it is used.
//!
//! The body is the serialised [`Plan`]: sensitive values appear only as
//! salted digests, never in clear. Applying a loaded plan evaluates the
//! configuration again, which must give exactly the planned instances; every
//! attribute the configuration gives is taken from it, not from the file
//! (see [`crate::ApplyRequest::desired`]).

use serde_json::{json, Value};

use crate::engine::StateIdentity;
use crate::error::EngineError;
use crate::plan::Plan;

/// The `format` field of a plan file.
pub const PLAN_FILE_FORMAT: &str = "mirrorplan-plan";
/// The plan file version this crate reads and writes.
pub const PLAN_FILE_VERSION: u64 = 2;
/// Context string for deriving the plan file key from a state's salt
/// (BLAKE3 `derive_key`); distinct from the secret digests' context.
const PLAN_KEY_CONTEXT: &str = "mirrorplan 2026-12 saved plan file checksum key v2";
/// Prefix of the checksum field.
const CHECKSUM_PREFIX: &str = "blake3-keyed:";

/// The key of the plan file checksum for a state with this salt.
fn plan_file_key(salt: &str) -> [u8; 32] {
    blake3::derive_key(PLAN_KEY_CONTEXT, salt.as_bytes())
}

fn mac(body: &Value, salt: &str) -> blake3::Hash {
    blake3::keyed_hash(&plan_file_key(salt), body.to_string().as_bytes())
}

fn damaged(reason: impl Into<String>) -> EngineError {
    EngineError::PlanFile {
        reason: reason.into(),
    }
}

impl Plan {
    /// The plan file bytes (pretty JSON with a final newline), checksummed
    /// with the key of the state the plan was made against.
    pub fn to_file_bytes(&self, state: &StateIdentity) -> Result<Vec<u8>, EngineError> {
        if state.lineage != self.lineage {
            return Err(damaged(format!(
                "the plan was made for state {}, not {}",
                self.lineage, state.lineage
            )));
        }
        let body = serde_json::to_value(self)
            .map_err(|e| damaged(format!("the plan cannot be serialised: {e}")))?;
        let checksum = mac(&body, state.secret_salt.expose());
        let file = json!({
            "format": PLAN_FILE_FORMAT,
            "version": PLAN_FILE_VERSION,
            "checksum": format!("{CHECKSUM_PREFIX}{}", checksum.to_hex()),
            "body": body,
        });
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| damaged(format!("the plan cannot be serialised: {e}")))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Reads plan file bytes against the current state, refusing unknown
    /// formats, damaged or edited files ([`EngineError::PlanTampered`]) and
    /// plans made for another state lineage ([`EngineError::StalePlan`]).
    /// The loaded plan holds no secret values. Whether the state's serial
    /// still matches is checked by [`crate::Engine::apply`].
    pub fn from_file_bytes(bytes: &[u8], state: &StateIdentity) -> Result<Plan, EngineError> {
        let file: Value = serde_json::from_slice(bytes)
            .map_err(|e| damaged(format!("it is not valid JSON ({e})")))?;
        if file.get("format").and_then(Value::as_str) != Some(PLAN_FILE_FORMAT) {
            return Err(damaged("it is not a mirrorplan plan file"));
        }
        match file.get("version").and_then(Value::as_u64) {
            Some(PLAN_FILE_VERSION) => {}
            Some(1) => {
                return Err(damaged(
                    "it has version 1, written by an older mirrorplan without a keyed checksum; this mirrorplan reads version 2",
                ))
            }
            Some(v) => {
                return Err(damaged(format!(
                    "it has version {v}, this mirrorplan reads version {PLAN_FILE_VERSION}"
                )))
            }
            None => return Err(damaged("its version is missing")),
        }
        let body = file
            .get("body")
            .ok_or_else(|| damaged("its body is missing"))?;
        let expected = file
            .get("checksum")
            .and_then(Value::as_str)
            .ok_or_else(|| damaged("its checksum is missing"))?;
        // A plan of another lineage cannot be checked with this state's
        // key: say that it belongs to another state rather than that it was
        // edited (the lineage read here is not trusted for anything else).
        let lineage = body.get("lineage").and_then(Value::as_str);
        if let Some(lineage) = lineage {
            if lineage != state.lineage {
                return Err(EngineError::StalePlan {
                    plan_lineage: lineage
                        .chars()
                        .take(64)
                        .flat_map(char::escape_debug)
                        .collect(),
                    plan_serial: body.get("serial").and_then(Value::as_u64).unwrap_or(0),
                    state_lineage: state.lineage.clone(),
                    state_serial: state.serial,
                });
            }
        }
        let expected = expected
            .strip_prefix(CHECKSUM_PREFIX)
            .and_then(|hex| blake3::Hash::from_hex(hex).ok())
            .ok_or_else(|| damaged("its checksum is not a keyed BLAKE3 checksum"))?;
        // blake3::Hash compares in constant time
        if mac(body, state.secret_salt.expose()) != expected {
            return Err(EngineError::PlanTampered);
        }
        serde_json::from_value(body.clone())
            .map_err(|e| damaged(format!("its body is not a plan ({e})")))
    }
}

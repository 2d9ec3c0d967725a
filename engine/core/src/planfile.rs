//! Saved plan files: `{"format": "mirrorplan-plan", "version": 1,
//! "checksum": "blake3:…", "body": {…plan…}}`.
//!
//! The checksum covers the compact JSON text of `body`, so a damaged or
//! edited file is refused. The body is the serialised [`Plan`]: sensitive
//! values appear only as salted digests, never in clear, so applying a loaded
//! plan needs the configuration again for the secrets (see
//! [`crate::ApplyRequest::desired`]).

use serde_json::{json, Value};

use crate::error::EngineError;
use crate::plan::Plan;

/// The `format` field of a plan file.
pub const PLAN_FILE_FORMAT: &str = "mirrorplan-plan";
/// The plan file version this crate reads and writes.
pub const PLAN_FILE_VERSION: u64 = 1;

fn checksum(body: &Value) -> String {
    format!(
        "blake3:{}",
        blake3::hash(body.to_string().as_bytes()).to_hex()
    )
}

fn damaged(reason: impl Into<String>) -> EngineError {
    EngineError::PlanFile {
        reason: reason.into(),
    }
}

impl Plan {
    /// The plan file bytes (pretty JSON with a final newline).
    pub fn to_file_bytes(&self) -> Result<Vec<u8>, EngineError> {
        let body = serde_json::to_value(self)
            .map_err(|e| damaged(format!("the plan cannot be serialised: {e}")))?;
        let file = json!({
            "format": PLAN_FILE_FORMAT,
            "version": PLAN_FILE_VERSION,
            "checksum": checksum(&body),
            "body": body,
        });
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| damaged(format!("the plan cannot be serialised: {e}")))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Reads plan file bytes, refusing unknown formats and damaged files.
    /// The loaded plan holds no secret values.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<Plan, EngineError> {
        let file: Value = serde_json::from_slice(bytes)
            .map_err(|e| damaged(format!("it is not valid JSON ({e})")))?;
        if file.get("format").and_then(Value::as_str) != Some(PLAN_FILE_FORMAT) {
            return Err(damaged("it is not a mirrorplan plan file"));
        }
        match file.get("version").and_then(Value::as_u64) {
            Some(PLAN_FILE_VERSION) => {}
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
        if checksum(body) != expected {
            return Err(damaged("its checksum does not match its content"));
        }
        serde_json::from_value(body.clone())
            .map_err(|e| damaged(format!("its body is not a plan ({e})")))
    }
}

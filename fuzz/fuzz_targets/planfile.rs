//! The plan file reader: the input is a saved plan file, and also the body
//! of one (so that the body's parser is reached past the checksum). A plan
//! that loads is rendered in every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorplan_engine::{
    plan_json, render_plan, render_plan_markdown, EngineError, Plan, RenderOptions, Sensitive,
    StateIdentity,
};
use mirrorplan_fuzz::render;

// The plan file API in one place. A plan file is read against a state
// (its lineage and the secret salt that keys the checksum): the raw input
// against a fixed one, a sealed body against its own lineage.
fn identity(lineage: &str) -> StateIdentity {
    StateIdentity {
        lineage: lineage.to_owned(),
        serial: 1,
        secret_salt: Sensitive::new("fuzz salt".to_owned()),
    }
}
fn read(bytes: &[u8], lineage: &str) -> Result<Plan, EngineError> {
    Plan::from_file_bytes(bytes, &identity(lineage))
}
fn write(plan: &Plan) -> Vec<u8> {
    match plan.to_file_bytes(&identity(&plan.lineage)) {
        Ok(bytes) => bytes,
        Err(e) => panic!("a plan that was read cannot be written: {e}"),
    }
}

fn show(plan: &Plan) {
    let _ = render_plan(plan, RenderOptions { color: false, destroy: false });
    let _ = render_plan(plan, RenderOptions { color: true, destroy: false });
    let _ = plan_json(plan);
    let _ = render_plan_markdown(plan);
    let _ = plan.summary();
}

fuzz_target!(|data: &[u8]| {
    match read(data, "fuzz") {
        Ok(plan) => show(&plan),
        Err(e) => {
            render(&e);
        }
    }
    // the input as a body: sealed the way mirrorplan writes plan files, it
    // must read back as the same plan
    let Ok(plan) = serde_json::from_slice::<Plan>(data) else {
        return;
    };
    let file = write(&plan);
    match read(&file, &plan.lineage) {
        Ok(again) => {
            assert_eq!(
                write(&again),
                file,
                "a plan file does not read back as written"
            );
            show(&again);
        }
        Err(e) => panic!("a plan file mirrorplan wrote does not read: {e}"),
    }
});

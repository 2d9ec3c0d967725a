//! The plan file reader: the input is a saved plan file, and also the body
//! of one (so that the body's parser is reached past the checksum). A plan
//! that loads is rendered in every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorplan_engine::{
    plan_json, render_plan, render_plan_markdown, EngineError, Plan, RenderOptions,
};
use mirrorplan_fuzz::render;

// The plan file API in one place: when reading or writing a plan file
// takes a key, only these two functions change.
fn read(bytes: &[u8]) -> Result<Plan, EngineError> {
    Plan::from_file_bytes(bytes)
}
fn write(plan: &Plan) -> Vec<u8> {
    match plan.to_file_bytes() {
        Ok(bytes) => bytes,
        Err(e) => panic!("a plan that was read cannot be written: {e}"),
    }
}

fn show(plan: &Plan) {
    let _ = render_plan(plan, RenderOptions { color: false });
    let _ = render_plan(plan, RenderOptions { color: true });
    let _ = plan_json(plan);
    let _ = render_plan_markdown(plan);
    let _ = plan.summary();
}

fuzz_target!(|data: &[u8]| {
    match read(data) {
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
    match read(&file) {
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

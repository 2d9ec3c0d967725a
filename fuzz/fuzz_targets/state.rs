//! The state loader: the input is `state.json`. A state that loads is
//! saved again with one change and must load back with that change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mirrorplan_fuzz::{render, scratch, scratch_file};
use mirrorplan_state::StateStore;

fuzz_target!(|data: &[u8]| {
    let dir = scratch("state");
    for leftover in [
        "state.json.backup",
        "state.json.lock",
        "state.json.lock.info",
    ] {
        let _ = std::fs::remove_file(dir.join(leftover));
    }
    let path = scratch_file("state", "state.json", data);
    let store = StateStore::new(&path);
    let mut state = match store.load() {
        Ok(Some(state)) => state,
        Ok(None) => panic!("an existing state file loaded as no state"),
        Err(e) => {
            render(&e);
            return;
        }
    };
    let _ = format!("{state:?}");
    state.set_output("fuzz_marker", serde_json::json!("changed"));
    if let Err(e) = store.save(&mut state) {
        render(&e);
        return;
    }
    // a fresh store: nothing remembered from the save
    match StateStore::new(&path).load() {
        Ok(Some(again)) => {
            assert_eq!(
                again.serial(),
                state.serial(),
                "the serial saved is not the one loaded"
            );
            assert_eq!(
                again.instances(),
                state.instances(),
                "instances changed on the way"
            );
            assert_eq!(
                again.outputs(),
                state.outputs(),
                "outputs changed on the way"
            );
        }
        Ok(None) => panic!("the saved state is gone"),
        Err(e) => panic!("a state mirrorplan saved does not load: {e}"),
    }
});

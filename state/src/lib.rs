//! mirrorplan state.

//! mirrorplan's configuration language.

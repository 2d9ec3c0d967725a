//! mirrorplan's engine: provider contract, resource instances, plan, apply walk

//! The node transports this binary offers: `local:` directories and SSH.

use mirrorplan_node::provider::{local_only_factory, TransportFactory};

/// The factory the node provider opens transports with.
pub fn factory() -> TransportFactory {
    local_only_factory()
}

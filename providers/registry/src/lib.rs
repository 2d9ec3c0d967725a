//! Registry provider: bundles, OCI distribution client, mirror path mapping

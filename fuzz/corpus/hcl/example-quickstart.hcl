# The quickstart: the whole plan/apply cycle with no server to set up.
#
# - `store` is a local OCI image layout (a directory), standing in for the
#   registry the images are pushed into;
# - `mirror` is the registry the nodes pull from: it only appears in the
#   nodes' containerd configuration and is never contacted here;
# - the two nodes are directories standing in for the nodes' root file
#   systems: mirrorplan writes their etc/containerd files.
#
#   mirrorplan -C examples/quickstart apply --auto-approve
#   mirrorplan -C examples/quickstart plan --detailed-exitcode   # exit 0: nothing to do

registry "store" {
  endpoint  = "oci:./store"
  namespace = "mirror"
}

registry "mirror" {
  endpoint  = "http://127.0.0.1:5000"
  namespace = "mirror"
}

image_set "bundle" {
  registry = registry.store
  bundle   = "bundles/quickstart.tar.gz"
}

cluster "local" {
  nodes = ["local:./nodes/node1", "local:./nodes/node2"]
  registry_mirror {
    registry = registry.mirror
    hosts    = ["quay.io", "docker.io"]
  }
  depends_on = [image_set.bundle]
}

output "store" {
  value = registry.store.endpoint
}

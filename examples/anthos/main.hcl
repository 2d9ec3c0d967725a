# The source document's scenario: one private mirror with its own namespace,
# the Anthos bundle and extra images pushed into it, and an admin and a user
# cluster whose mirrors go into their cluster configuration files (applied by
# `bmctl update cluster`). `.example` hosts: validated, never planned/applied.

variable "mirror_password" {
  type      = string
  sensitive = true
}

locals {
  bundle_version = "1.16.0"
}

registry "mirror" {
  endpoint  = "https://mirror.example:5000"
  namespace = "test-namespace"
  ca_cert   = "certs/ca.crt"
  username  = "pusher"
  password  = var.mirror_password
}

image_set "anthos" {
  registry = registry.mirror
  bundle   = "bundles/bmpackages_${local.bundle_version}.tar.xz"
}

image_set "extras" {
  registry  = registry.mirror
  images    = ["somehost.io/team/app:2.3", "gcr.io/kubernetes-e2e-test-images/nautilus:1.0"]
  platforms = ["linux/amd64"]
}

cluster "admin1" {
  nodes = ["cp1.admin1.example", "cp2.admin1.example:2222"]
  ssh {
    user        = "root"
    private_key = "/root/ssh-key/id_rsa"
    known_hosts = "/root/.ssh/known_hosts"
  }
  registry_mirror {
    registry         = registry.mirror
    hosts            = ["somehost.io", "otherhost.io"]
    pull_credentials = "/root/.docker/config.json"
  }
  gcr_key = "keys/anthos-baremetal-gcr.json"
  cluster_config {
    file           = "bmctl-workspace/admin1/admin1.yaml"
    update_command = "bmctl update cluster -c admin1 --kubeconfig=bmctl-workspace/admin1/admin1-kubeconfig"
  }
  rollout {
    max_unavailable = 1
  }
  depends_on = [image_set.anthos]
}

# A user cluster does not inherit the admin cluster's mirror settings: it
# declares its own (source document, step 6).
cluster "user1" {
  nodes = ["cp1.user1.example", "worker1.user1.example", "worker2.user1.example"]
  ssh {
    user        = "root"
    private_key = "/root/ssh-key/id_rsa"
    known_hosts = "/root/.ssh/known_hosts"
  }
  registry_mirror {
    registry         = registry.mirror
    hosts            = ["somehost.io"]
    pull_credentials = "/root/.docker/config.json"
  }
  gcr_key = "keys/anthos-baremetal-gcr.json"
  # its own file, updated through the admin cluster's kubeconfig
  cluster_config {
    file           = "bmctl-workspace/user1/user1.yaml"
    update_command = "bmctl update cluster -c user1 --kubeconfig=bmctl-workspace/admin1/admin1-kubeconfig"
  }
  rollout {
    max_unavailable = 1
    max_failures    = 1
  }
  depends_on = [image_set.anthos, cluster.admin1]
}

output "mirror_endpoint" {
  value = registry.mirror.endpoint
}

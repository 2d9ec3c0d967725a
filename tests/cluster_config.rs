//! `cluster { cluster_config { file, update_command } }` end to end: the
//! mirrors go into the bare-metal cluster configuration file (the source
//! document's way), a stand-in for `bmctl update cluster` applies the file's
//! `registryMirrors` to a real harness node the way the cluster software
//! does (a `hosts.toml` per host under `certs.d`, with the CA and the pull
//! credentials), and the cluster check's canary pull through the real TLS +
//! htpasswd mirror proves the chain. The rest of the YAML stays byte for
//! byte; a failing update command puts the file back.

mod verify_lab;

use std::path::{Path, PathBuf};

use mirrorplan_harness::{Credentials, Node, NodeOptions, Registry, RegistryOptions};
use mirrorplan_registry::fixtures::{write_oci_bundle, FixtureSpec, LayerCompression, Packing};
use verify_lab::{bin, stderr, stdout, streams, GCR_IMAGE, NAMESPACE, PASSWORD, USER};

/// The seed's sample file, with comments, several documents and an old mirror.
const HEAD: &str = "# Sample cluster config with registry mirror:
---
# workstation settings
gcrKeyPath: /bmctl/bmctl-workspace/.sa-keys/my-gcp-project-anthos-baremetal-gcr.json
sshPrivateKeyPath: /root/ssh-key/id_rsa
";
const OLD_MIRRORS: &str = "registryMirrors:
  - endpoint: https://172.18.0.20:5000
    caCertPath: /root/ca.crt
    pullCredentialConfigPath: /root/.docker/config.json
    hosts:
      - somehost.io
      - otherhost.io
";
const TAIL: &str = "# the cluster follows
---
apiVersion: v1
kind: Namespace
metadata:
  name: cluster-admin1
---
apiVersion: baremetal.cluster.gke.io/v1
kind: Cluster
metadata:
  name: admin1
  namespace: cluster-admin1
spec:
  # a comment the edit must keep
  type: admin
  nodeConfig:
    containerRuntime: containerd
---
apiVersion: baremetal.cluster.gke.io/v1
kind: NodePool
metadata:
  name: np1
  namespace: cluster-admin1
";

/// A user cluster's file: no mirrors yet, a gcrKeyPath of its own.
const USER_FILE: &str = "gcrKeyPath: /root/user1-gcr.json
sshPrivateKeyPath: /root/ssh-key/id_rsa
---
apiVersion: baremetal.cluster.gke.io/v1
kind: Cluster
metadata:
  name: user1
  namespace: cluster-user1
spec:
  type: user
";

/// The stand-in for `bmctl update cluster -c NAME --kubeconfig=...`: records
/// its arguments, reads the cluster's file and writes, like the cluster
/// software, one `hosts.toml` per mirrored host (gcr.io always) into the
/// node's `certs.d`, with the mirror's CA and its pull credentials.
const STANDIN: &str = r#"#!/bin/sh
set -eu
echo "$*" >> "$LOG"
name=""; prev=""
for a in "$@"; do
  if [ "$prev" = "-c" ]; then name="$a"; fi
  prev="$a"
done
file="bmctl-workspace/$name/$name.yaml"
rm -rf "${CERTS:?}"/*
awk '
/^registryMirrors:/ { inm = 1; next }
inm && /^[^ -]/ { inm = 0 }
inm && /^  - endpoint: / { n++; sub(/^  - endpoint: /, ""); ep[n] = $0; next }
inm && /^    caCertPath: / { sub(/^    caCertPath: /, ""); ca[n] = $0; next }
inm && /^    pullCredentialConfigPath: / { sub(/^    pullCredentialConfigPath: /, ""); pc[n] = $0; next }
inm && /^      - / { sub(/^      - /, ""); hosts[n] = hosts[n] " " $0; next }
END { for (i = 1; i <= n; i++) print ep[i] "|" ca[i] "|" pc[i] "|" hosts[i] }
' "$file" > "mirrors.$name.txt"
while IFS='|' read -r ep ca pc hosts; do
  for h in gcr.io $hosts; do
    d="$CERTS/$h"
    mkdir -p "$d"
    if [ ! -e "$d/hosts.toml" ]; then
      printf 'server = "https://%s"\n' "$h" > "$d/hosts.toml"
    fi
    {
      printf '\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n' "$ep"
      case "$ep" in */v2/*) printf '  override_path = true\n' ;; esac
      if [ -n "$ca" ]; then
        cp "$ca" "$d/ca.crt"
        printf '  ca = "/etc/containerd/certs.d/%s/ca.crt"\n' "$h"
      fi
      if [ -n "$pc" ]; then
        auth=$(sed -n 's/.*"auth" *: *"\([^"]*\)".*/\1/p' "$pc" | head -n 1)
        printf '  [host."%s".header]\n    authorization = "Basic %s"\n' "$ep" "$auth"
      fi
    } >> "$d/hosts.toml"
  done
done < "mirrors.$name.txt"
echo "cluster $name updated"
"#;

struct Lab {
    registry: Registry,
    node: Node,
    /// The user cluster's node.
    user_node: Node,
    dir: tempfile::TempDir,
    gcr_digest: String,
}

impl Lab {
    fn start() -> Lab {
        let registry = Registry::start(RegistryOptions {
            tls: true,
            auth: Some(Credentials::new(USER, PASSWORD)),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("starting the mirror registry: {e}"));
        let node = Node::start(NodeOptions::default())
            .unwrap_or_else(|e| panic!("starting a harness node: {e}"));
        let user_node = Node::start(NodeOptions::default())
            .unwrap_or_else(|e| panic!("starting a harness node: {e}"));
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let fixture = write_oci_bundle(
            dir.path().join("bundle.tar.gz"),
            &FixtureSpec {
                seed: 15,
                images: 2,
                layers_per_image: 1,
                shared_base_layers: 1,
                layer_size: 2048,
                multi_arch: false,
                layer_compression: LayerCompression::Gzip,
            },
            Packing::TarGz,
        )
        .unwrap_or_else(|e| panic!("writing the bundle: {e}"));
        let gcr_digest = fixture
            .images
            .iter()
            .find(|i| i.name == GCR_IMAGE)
            .and_then(|i| i.manifest_digest.as_ref())
            .map(|d| d.to_string())
            .unwrap_or_else(|| panic!("the bundle has no {GCR_IMAGE}"));
        let lab = Lab {
            registry,
            node,
            user_node,
            dir,
            gcr_digest,
        };
        let p = lab.path();
        let creds = lab
            .registry
            .docker_config_json()
            .unwrap_or_else(|| panic!("the registry has no credentials"));
        write(&p.join("pull-config.json"), &creds);
        write(
            &p.join("keys/gcr.json"),
            "{\"type\": \"service_account\"}\n",
        );
        write(&lab.file(), &format!("{HEAD}{OLD_MIRRORS}\n{TAIL}"));
        write(&lab.user_file(), USER_FILE);
        let certs = lab.node.etc_containerd_dir().join("certs.d");
        write(
            &p.join("standin.sh"),
            &STANDIN.replacen(
                "set -eu\n",
                &format!(
                    "set -eu\nLOG='{}'\nCERTS=\"${{CERTS:-{}}}\"\n",
                    lab.log().display(),
                    certs.display()
                ),
                1,
            ),
        );
        lab.write_config(
            &["quay.io"],
            "sh standin.sh -c admin1 --kubeconfig=bmctl-workspace/admin1/admin1-kubeconfig",
        );
        lab
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self) -> PathBuf {
        self.path().join("bmctl-workspace/admin1/admin1.yaml")
    }

    fn user_file(&self) -> PathBuf {
        self.path().join("bmctl-workspace/user1/user1.yaml")
    }

    fn log(&self) -> PathBuf {
        self.path().join("standin.log")
    }

    fn ca(&self) -> PathBuf {
        self.registry
            .ca_cert_path()
            .unwrap_or_else(|| panic!("the mirror has no CA"))
    }

    fn write_config(&self, hosts: &[&str], update_command: &str) {
        let ep = self.node.ssh();
        let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
        let config = format!(
            r#"variable "mirror_password" {{
  type      = string
  sensitive = true
}}

registry "mirror" {{
  endpoint  = "{url}"
  namespace = "{NAMESPACE}"
  ca_cert   = "{ca}"
  username  = "{USER}"
  password  = var.mirror_password
}}

image_set "bundle" {{
  registry = registry.mirror
  bundle   = "bundle.tar.gz"
}}

cluster "admin1" {{
  nodes = ["{node}"]
  ssh {{
    user        = "root"
    private_key = "{key}"
    known_hosts = "{kh}"
    use_agent   = false
  }}
  cluster_config {{
    file           = "bmctl-workspace/admin1/admin1.yaml"
    update_command = {cmd:?}
  }}
  registry_mirror {{
    registry         = registry.mirror
    hosts            = [{hosts}]
    pull_credentials = "pull-config.json"
  }}
  gcr_key    = "keys/gcr.json"
  depends_on = [image_set.bundle]
}}

# configured on its own: its own file and command, no gcr.io key
cluster "user1" {{
  nodes = ["{user_node}"]
  ssh {{
    user        = "root"
    private_key = "{user_key}"
    known_hosts = "{user_kh}"
    use_agent   = false
  }}
  cluster_config {{
    file           = "bmctl-workspace/user1/user1.yaml"
    update_command = "CERTS={user_certs} sh standin.sh -c user1 --kubeconfig=bmctl-workspace/admin1/admin1-kubeconfig"
  }}
  registry_mirror {{
    registry         = registry.mirror
    pull_credentials = "pull-config.json"
  }}
  depends_on = [image_set.bundle]
}}
"#,
            user_node = self.user_node.ssh_addr(),
            user_key = self.user_node.ssh().client_key_path().display(),
            user_kh = self.user_node.ssh().known_hosts_path().display(),
            user_certs = self
                .user_node
                .etc_containerd_dir()
                .join("certs.d")
                .display(),
            url = self.registry.url(),
            ca = self.ca().display(),
            node = self.node.ssh_addr(),
            key = ep.client_key_path().display(),
            kh = ep.known_hosts_path().display(),
            cmd = update_command,
            hosts = hosts.join(", "),
        );
        write(&self.path().join("main.hcl"), &config);
    }

    fn run(&self, args: &[&str], code: i32) -> std::process::Output {
        let o = bin()
            .arg("-C")
            .arg(self.path())
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mirrorplan: {e}"));
        assert_eq!(
            o.status.code(),
            Some(code),
            "mirrorplan {args:?}\n{}",
            streams(&o)
        );
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(!all.contains(PASSWORD), "the password was printed:\n{all}");
        let token = Credentials::new(USER, PASSWORD).basic_token();
        assert!(!all.contains(&token), "the auth token was printed:\n{all}");
        o
    }

    fn standin_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The images containerd holds on a node.
    fn node_images(node: &Node) -> String {
        let mut ctr = node.ctr().unwrap_or_else(|e| panic!("ctr: {e}"));
        let o = ctr
            .args(["-n", "k8s.io", "images", "ls"])
            .output()
            .unwrap_or_else(|e| panic!("ctr: {e}"));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn write(p: &Path, text: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    }
    std::fs::write(p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn the_cluster_configuration_file_drives_the_nodes_through_the_update_command() {
    let lab = Lab::start();
    let original = read(&lab.file());
    let host_port = lab.registry.host_port();
    let endpoint = format!("https://{host_port}/v2/{NAMESPACE}");
    let ca = lab.ca().display().to_string();
    let pull = lab.path().join("pull-config.json").display().to_string();
    let key = lab.path().join("keys/gcr.json").display().to_string();

    // plan: the YAML diff of the two keys, nothing written, nothing run
    let o = lab.run(&["plan"], 0);
    let out = stdout(&o);
    assert!(
        out.contains("cluster_config.admin1 will be created"),
        "{out}"
    );
    assert!(out.contains(&format!("+  - endpoint: {endpoint}")), "{out}");
    assert!(
        out.contains("-  - endpoint: https://172.18.0.20:5000"),
        "{out}"
    );
    assert!(out.contains("-      - somehost.io"), "{out}");
    assert!(out.contains(&format!("+    caCertPath: {ca}")), "{out}");
    assert!(
        out.contains(&format!("+    pullCredentialConfigPath: {pull}")),
        "{out}"
    );
    assert!(out.contains(&format!("+gcrKeyPath: {key}")), "{out}");
    assert!(
        !out.contains("+      - gcr.io"),
        "gcr.io is never listed:\n{out}"
    );
    assert!(out.contains("standin.sh -c admin1"), "{out}");
    assert!(!out.contains("node.admin1"), "no node is written:\n{out}");
    // the Markdown plan puts the file under its cluster, its diff as a diff
    let o = lab.run(&["plan", "--format", "markdown"], 0);
    let md = stdout(&o);
    for cluster in ["admin1", "user1"] {
        assert!(
            md.contains(&format!("<b>Cluster <code>{cluster}</code></b>: its cluster configuration file to change (then its update command), then a pull-through check")),
            "{md}"
        );
    }
    assert!(md.contains("registryMirrors in bmctl-workspace/admin1/admin1.yaml:\n\n```diff\n--- bmctl-workspace/admin1/admin1.yaml (now)\n"), "{md}");
    assert!(
        md.contains(&format!("\n+  - endpoint: {endpoint}\n")),
        "{md}"
    );
    assert!(!md.contains("Other changes"), "{md}");
    assert_eq!(read(&lab.file()), original);
    assert!(lab.standin_calls().is_empty());

    // apply: file written (the rest byte for byte), the stand-in ran once,
    // the canary pulled the gcr.io image through the mirror
    let o = lab.run(&["apply", "--auto-approve"], 0);
    let expected_block = format!(
        "registryMirrors:
  - endpoint: {endpoint}
    caCertPath: {ca}
    pullCredentialConfigPath: {pull}
    hosts:
      - quay.io
"
    );
    let expected_head = HEAD.replace(
        "gcrKeyPath: /bmctl/bmctl-workspace/.sa-keys/my-gcp-project-anthos-baremetal-gcr.json",
        &format!("gcrKeyPath: {key}"),
    );
    assert_eq!(
        read(&lab.file()),
        format!("{expected_head}{expected_block}\n{TAIL}"),
        "{}",
        streams(&o)
    );
    assert_eq!(
        read(&PathBuf::from(format!("{}.backup", lab.file().display()))),
        original
    );
    let mut calls = lab.standin_calls();
    calls.sort();
    assert_eq!(
        calls,
        vec![
            "-c admin1 --kubeconfig=bmctl-workspace/admin1/admin1-kubeconfig".to_string(),
            "-c user1 --kubeconfig=bmctl-workspace/admin1/admin1-kubeconfig".to_string(),
        ]
    );
    // the user cluster: mirrors added after its settings, its gcrKeyPath kept
    let user_block = format!(
        "registryMirrors:\n  - endpoint: {endpoint}\n    caCertPath: {ca}\n    pullCredentialConfigPath: {pull}\n"
    );
    assert_eq!(
        read(&lab.user_file()),
        USER_FILE.replacen("---\n", &format!("{user_block}---\n"), 1)
    );
    let user_images = Lab::node_images(&lab.user_node);
    assert!(user_images.contains(GCR_IMAGE), "{user_images}");
    let hosts_toml = read(
        &lab.node
            .etc_containerd_dir()
            .join("certs.d/gcr.io/hosts.toml"),
    );
    assert!(hosts_toml.contains(&endpoint), "{hosts_toml}");
    let images = Lab::node_images(&lab.node);
    assert!(images.contains(GCR_IMAGE), "{images}");
    assert!(images.contains(&lab.gcr_digest), "{images}");

    // a second plan has nothing to do
    let o = lab.run(&["plan"], 0);
    assert!(stdout(&o).contains("No changes."), "{}", streams(&o));

    // a CA rotated into a new file: only caCertPath changes in both files,
    // the update runs again and the canary proves the node still pulls
    let rotated = lab.path().join("certs/mirror-ca-rotated.crt");
    write(&rotated, &read(&lab.ca()));
    let hcl = read(&lab.path().join("main.hcl"));
    write(
        &lab.path().join("main.hcl"),
        &hcl.replace(&ca, &rotated.display().to_string()),
    );
    let o = lab.run(&["plan"], 0);
    let out = stdout(&o);
    assert!(out.contains(&format!("-    caCertPath: {ca}")), "{out}");
    assert!(
        out.contains(&format!("+    caCertPath: {}", rotated.display())),
        "{out}"
    );
    assert!(!out.contains("-  - endpoint"), "{out}");
    lab.run(&["apply", "--auto-approve"], 0);
    let rotated_file = read(&lab.file());
    assert_eq!(
        rotated_file,
        format!("{expected_head}{expected_block}\n{TAIL}")
            .replace(&ca, &rotated.display().to_string())
    );
    assert_eq!(lab.standin_calls().len(), 4);
    let o = lab.run(&["plan"], 0);
    assert!(stdout(&o).contains("No changes."), "{}", streams(&o));

    // a failing update command: the file is put back byte for byte, exit 1
    let applied = read(&lab.file());
    lab.write_config(
        &["quay.io", "docker.io"],
        "echo 'admin1: the admin cluster does not answer' >&2; exit 3",
    );
    // (the rotated CA kept)
    let failing = read(&lab.path().join("main.hcl")).replace(&ca, &rotated.display().to_string());
    write(&lab.path().join("main.hcl"), &failing);
    let o = lab.run(&["plan"], 0);
    assert!(stdout(&o).contains("+      - docker.io"), "{}", streams(&o));
    let o = lab.run(&["apply", "--auto-approve"], 1);
    let err = stderr(&o);
    assert!(err.contains("exited with status 3"), "{}", streams(&o));
    assert!(
        err.contains("admin1: the admin cluster does not answer"),
        "{}",
        streams(&o)
    );
    assert!(err.contains("was restored as it was"), "{}", streams(&o));
    assert_eq!(read(&lab.file()), applied);
    assert_eq!(lab.standin_calls().len(), 4, "only the failed command ran");
    // the user cluster was not touched by the admin cluster's failure
    assert!(!err.contains("user1"), "{}", streams(&o));

    // a file that is not block YAML: the file and line are named
    let user = read(&lab.user_file());
    write(
        &lab.user_file(),
        &user.replace("sshPrivateKeyPath", "\tsshPrivateKeyPath"),
    );
    let o = lab.run(&["plan"], 1);
    assert!(
        stderr(&o).contains("bmctl-workspace/user1/user1.yaml:2: a tab in indentation"),
        "{}",
        streams(&o)
    );
    write(&lab.user_file(), &user);

    // a path the file would name that does not exist on this workstation
    std::fs::remove_file(lab.path().join("pull-config.json"))
        .unwrap_or_else(|e| panic!("removing the pull credentials: {e}"));
    let o = lab.run(&["plan"], 1);
    assert!(stderr(&o).contains("pull-config.json"), "{}", streams(&o));
}

/// The drift check, `verify` and a CA rotated in place, for the
/// cluster configuration file: a hand edit of `registryMirrors` and
/// `gcrKeyPath` is drift of `cluster_config.admin1` (the plan names the
/// file), `verify` reads the file back and pulls on each cluster's node;
/// a new CA at the same path changes no byte of the YAML but is planned
/// (its digest), rolled out by the update command, and the node pulls
/// from the mirror that now serves a certificate of the new CA only.
#[test]
fn drift_verify_and_a_ca_rotated_in_place_through_the_file() {
    let mut lab = Lab::start();
    let rel = "bmctl-workspace/admin1/admin1.yaml";
    lab.run(&["apply", "--auto-approve"], 0);

    // verify: both files read back, both canaries pull through the mirror
    let o = lab.run(&["verify"], 0);
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "{rel} says registryMirrors and gcrKeyPath as configured"
        )),
        "{}",
        streams(&o)
    );
    for (cluster, node) in [("admin1", &lab.node), ("user1", &lab.user_node)] {
        let row = out
            .lines()
            .find(|l| {
                l.starts_with("pull")
                    && l.contains(&format!("cluster.{cluster} {}", node.ssh_addr()))
            })
            .unwrap_or_else(|| panic!("no pull row for {cluster}:\n{out}"));
        assert!(row.contains("OK") && row.contains(&lab.gcr_digest), "{row}");
    }

    // a hand edit of both keys: drift of the instance, the file named by the plan
    let applied = read(&lab.file());
    write(
        &lab.file(),
        &applied
            .replace("      - quay.io\n", "      - docker.io\n")
            .replace("gcrKeyPath: ", "gcrKeyPath: /elsewhere"),
    );
    let o = lab.run(
        &["plan", "--refresh-only", "--detailed-exitcode", "--json"],
        2,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("plan JSON: {e}\n{}", streams(&o)));
    let entry = v["drift"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["address"] == "cluster_config.admin1"))
        .unwrap_or_else(|| panic!("cluster_config.admin1 did not drift: {v:#}"));
    let change = |attr: &str| {
        entry["changes"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["attribute"] == attr))
            .unwrap_or_else(|| panic!("{attr} did not drift: {entry:#}"))
            .clone()
    };
    let mirrors = change("registryMirrors");
    assert!(
        mirrors["before"]
            .as_str()
            .is_some_and(|s| s.contains("quay.io"))
            && mirrors["after"]
                .as_str()
                .is_some_and(|s| s.contains("docker.io")),
        "{mirrors:#}"
    );
    assert!(
        change("gcrKeyPath")["after"]
            .as_str()
            .is_some_and(|s| s.contains("/elsewhere")),
        "{entry:#}"
    );
    assert_eq!(v["drift"].as_array().map_or(0, Vec::len), 1, "{v:#}");
    let o = lab.run(&["plan", "--detailed-exitcode"], 2);
    let out = stdout(&o);
    assert!(out.contains("# cluster_config.admin1 has changed"), "{out}");
    for key in ["registryMirrors", "gcrKeyPath"] {
        assert!(out.contains(&format!("# {key} in {rel}:")), "{out}");
    }
    assert!(out.contains("-      - docker.io"), "{out}");
    assert!(out.contains("+      - quay.io"), "{out}");
    let o = lab.run(&["verify", "--no-pull"], 1);
    let out = stdout(&o);
    for key in ["registryMirrors", "gcrKeyPath"] {
        assert!(
            out.contains(&format!("{key} in {rel} differs from the configuration")),
            "{out}"
        );
    }
    let calls = lab.standin_calls().len();
    lab.run(&["apply", "--auto-approve"], 0);
    assert_eq!(read(&lab.file()), applied);
    assert_eq!(
        lab.standin_calls().len(),
        calls + 1,
        "only admin1 was updated"
    );
    let calls = calls + 1;
    lab.run(
        &["plan", "--refresh-only", "--detailed-exitcode", "--json"],
        0,
    );

    // the CA rotated in place: the mirror serves a certificate of a new CA,
    // whose certificate replaces the old one at the same path
    let old_ca = read(&lab.ca());
    let fresh = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let new_pki = mirrorplan_harness::TestPki::generate(fresh.path(), &[])
        .unwrap_or_else(|e| panic!("a new CA: {e}"));
    let pki = lab
        .registry
        .pki()
        .unwrap_or_else(|| panic!("the mirror has no TLS"));
    let copies = [
        (new_pki.ca_cert_path(), pki.ca_cert_path()),
        (new_pki.server_cert_path(), pki.server_cert_path()),
        (new_pki.server_key_path(), pki.server_key_path()),
    ];
    lab.registry.stop();
    for (from, to) in copies {
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    }
    lab.registry
        .start_again()
        .unwrap_or_else(|e| panic!("restarting the mirror: {e}"));
    let new_ca = read(&lab.ca());
    assert_ne!(new_ca, old_ca);
    let ca = lab.ca().display().to_string();
    let o = lab.run(&["plan"], 0);
    let out = stdout(&o);
    assert!(
        out.contains(&format!(
            "the CA certificate {ca} (caCertPath in {rel}) has new content"
        )),
        "{out}"
    );
    assert!(out.contains("ca_certs"), "{out}");
    assert!(
        !out.contains("-    caCertPath"),
        "the YAML does not change:\n{out}"
    );
    // until the apply, the nodes have the old CA: verify says so
    let o = lab.run(&["verify", "--no-pull"], 1);
    assert!(
        stdout(&o).contains(&format!(
            "{ca} (caCertPath in {rel}) has changed since the last apply"
        )),
        "{}",
        streams(&o)
    );
    lab.run(&["apply", "--auto-approve"], 0);
    assert_eq!(read(&lab.file()), applied, "no byte of the YAML changed");
    assert_eq!(
        lab.standin_calls().len(),
        calls + 2,
        "both clusters updated"
    );
    let node_ca = read(&lab.node.etc_containerd_dir().join("certs.d/gcr.io/ca.crt"));
    assert_eq!(node_ca, new_ca);
    let o = lab.run(&["verify"], 0);
    let out = stdout(&o);
    let row = out
        .lines()
        .find(|l| l.starts_with("pull") && l.contains("cluster.admin1"))
        .unwrap_or_else(|| panic!("no pull row:\n{out}"));
    assert!(row.contains("OK") && row.contains(&lab.gcr_digest), "{row}");
    lab.run(&["plan", "--detailed-exitcode"], 0);
}

/// A hermetic cluster_config cluster (no service is reached: no image set,
/// a `local:` node) named `name`, with a `moved` block from `from`.
fn write_moved_config(dir: &Path, name: &str, from: Option<&str>) {
    let moved = from
        .map(|f| format!("\nmoved {{\n  from = cluster.{f}\n  to   = cluster.{name}\n}}\n"))
        .unwrap_or_default();
    write(
        &dir.join("main.hcl"),
        &format!(
            r#"registry "mirror" {{
  endpoint = "https://127.0.0.1:5000"
}}

cluster "{name}" {{
  nodes = ["local:./nodes/n0"]
  cluster_config {{
    file           = "admin1.yaml"
    update_command = "echo ran >> ran.log"
  }}
  registry_mirror {{
    registry = registry.mirror
  }}
}}
{moved}"#
        ),
    );
}

/// Renaming a cluster_config cluster with a `moved` block, then with
/// `state mv`, carries its `cluster_config` instance: nothing is planned
/// for the file and the update command does not run again.
#[test]
fn moved_blocks_and_state_mv_carry_the_cluster_config_instance() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let p = dir.path();
    write(&p.join("admin1.yaml"), USER_FILE);
    write_moved_config(p, "admin1", None);
    let run = |args: &[&str], code: i32| {
        let o = bin()
            .arg("-C")
            .arg(p)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run mirrorplan: {e}"));
        assert_eq!(o.status.code(), Some(code), "{args:?}\n{}", streams(&o));
        o
    };
    run(&["apply", "--auto-approve"], 0);
    let ran = || read(&p.join("ran.log")).lines().count();
    assert_eq!(ran(), 1);
    let written = read(&p.join("admin1.yaml"));

    write_moved_config(p, "admin2", Some("admin1"));
    let o = run(&["plan"], 0);
    let out = stdout(&o);
    assert!(
        out.contains("# cluster_config.admin1 has moved to cluster_config.admin2"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 0 to add, 0 to change, 0 to destroy."),
        "{out}"
    );
    run(&["apply", "--auto-approve"], 0);
    assert_eq!(ran(), 1, "the update command ran again");
    let o = run(&["state", "list"], 0);
    let list = stdout(&o);
    assert!(
        list.contains("cluster_config.admin2") && !list.contains("cluster_config.admin1"),
        "{list}"
    );

    run(&["state", "mv", "cluster.admin2", "cluster.admin3"], 0);
    write_moved_config(p, "admin3", None);
    run(&["plan", "--detailed-exitcode"], 0);
    let o = run(&["state", "list"], 0);
    assert!(
        stdout(&o).contains("cluster_config.admin3"),
        "{}",
        streams(&o)
    );
    assert_eq!(read(&p.join("admin1.yaml")), written);
    assert_eq!(ran(), 1);
}

#!/usr/bin/env bash
# Rollout benchmark (issue 5): roll a containerd mirror configuration out to
# 20 and to 100 loopback SSH nodes with `mirrorplan apply`, and, in the same
# run, with an Ansible playbook (ansible-core from PyPI, forks 10) doing the
# same file copies and restart-if-changed (a handler). Both tools run twice:
# the first rollout (every node changes) and a no-change run.
#
#   bench/rollout/run.sh                       # SIZES="20 100" MU="1 10"
#   SIZES=20 MU=10 bench/rollout/run.sh        # a quick run
#   SIZES=100 MU= bench/rollout/run.sh         # Ansible only (needs the files of an earlier run)
#   ANSIBLE=0 SIZES=20 MU=1 bench/rollout/run.sh   # mirrorplan only
#   MAX_FAILURES=1 ANSIBLE=0 bench/rollout/run.sh  # rollout { max_failures = 1 } (default 0)
#
# Nodes: one OpenSSH sshd per node on 127.5.X.Y:2222 (X.Y from the node
# number), each in its own mount namespace where the node's own directory
# is bind-mounted over /etc/containerd (so every node has its own
# config.toml and certs.d, as on real machines). One shared containerd is
# bind-mounted at every node's /run/containerd: mirrorplan's health check
# after a restart (a CRI Version call over SSH stream-local forwarding) gets
# a real answer. The restart command is `true` for both tools.
#
# Each node starts with a containerd 1.x default config.toml (no
# config_path). The change: hosts.toml + CA for gcr.io and quay.io, pull
# credentials (0600), and config_path added to config.toml (so a restart).
# Ansible copies exactly the files mirrorplan produced (checked after both
# runs on every node).
#
# mirrorplan runs once per MU value, its `rollout { max_unavailable = MU }`
# (default 1 = one node at a time); the engine's --parallelism is set to
# max(10, MU). Ansible: forks 10, gather_facts off, pipelining on, OpenSSH
# ControlPersist (its defaults for speed, so the baseline is its best case).
#
# Every command either tool runs on a node goes through the login shell
# (bash), which sources root's ~/.bashrc for commands run by sshd: on a
# machine whose ~/.bashrc is slow (pyenv init: about 0.3 s of CPU) that is
# paid per SSH command by both tools. LEAN_SHELL=1 hides ~/.bashrc from the
# nodes (an empty file bind-mounted over it in each node's namespace), as
# on a typical server.
#
# Needs root, openssh-server, containerd, python3 (venv), util-linux
# (unshare). Results: a Markdown table on stdout and in $BENCH_DIR/results.md.
set -euo pipefail

SIZES=${SIZES:-"20 100"}
MU=${MU-"1 10"}
FORKS=${FORKS:-10}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${BENCH_DIR:-/tmp/mirrorplan-bench-rollout}
venv=${ANSIBLE_VENV:-$work/venv}
bin="$root/target/release/mirrorplan"
port=2222

log() { echo "rollout: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

for b in sshd ssh-keygen containerd ctr unshare openssl; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || {
    echo "rollout: $b is missing (bash .ci/install-deps.sh)" >&2
    exit 1
  }
done
sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)

mkdir -p "$work"
pids="$work/pids"
: >"$pids"
cleanup() {
  # stop only what this script started (recorded pids)
  while read -r pid; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done <"$pids"
  sleep 0.3
  while read -r pid; do
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  done <"$pids"
}
trap cleanup EXIT

# --- tools ---------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building mirrorplan (release)"
  (cd "$root" && cargo build --release -q)
fi
if [ ! -x "$venv/bin/ansible-playbook" ]; then
  log "installing ansible-core into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q ansible-core
fi
ansible_version=$("$venv/bin/ansible-playbook" --version 2>/dev/null | sed -n 1p || true)

# --- keys, CA, pull credentials --------------------------------------------
mkdir -p "$work/ssh"
[ -f "$work/ssh/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$work/ssh/host_ed25519"
[ -f "$work/ssh/client_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$work/ssh/client_ed25519"
cp "$work/ssh/client_ed25519.pub" "$work/ssh/authorized_keys"
[ -f "$work/ca.crt" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
  -subj "/CN=mirrorplan bench CA" -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
printf '{"auths":{"mirror.example:5000":{"auth":"%s"}}}\n' \
  "$(printf 'puller:bench-pass' | base64)" >"$work/pull-config.json"

# --- one shared containerd (answers the CRI health checks) -----------------
mkdir -p "$work/containerd/root" "$work/containerd/state" "$work/run" /run/containerd /etc/containerd /run/sshd
cat >"$work/containerd/config.toml" <<EOF
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
[grpc]
  address = "$work/run/containerd.sock"
[ttrpc]
  address = "$work/run/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "$work/containerd/certs.d"
EOF
setsid containerd --config "$work/containerd/config.toml" >"$work/containerd/log" 2>&1 </dev/null &
echo $! >>"$pids"
for _ in $(seq 100); do
  ctr --address "$work/run/containerd.sock" version >/dev/null 2>&1 && break
  sleep 0.1
done
ctr --address "$work/run/containerd.sock" version >/dev/null || {
  echo "rollout: containerd did not start; see $work/containerd/log" >&2
  exit 1
}

# --- nodes ---------------------------------------------------------------
node_ip() { echo "127.5.$(($1 / 250)).$(($1 % 250 + 2))"; }

initial_config='# containerd 1.x default (no config_path): written by bench/rollout
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
'

max_nodes=0
for n in $SIZES; do [ "$n" -gt "$max_nodes" ] && max_nodes=$n; done
log "starting $max_nodes sshd nodes"
: >"$work/known_hosts"
host_key=$(cut -d' ' -f1-2 "$work/ssh/host_ed25519.pub")
for i in $(seq 1 "$max_nodes"); do
  d="$work/nodes/$i"
  mkdir -p "$d/etc"
  ip=$(node_ip "$i")
  cat >"$d/sshd_config" <<EOF
Port $port
ListenAddress $ip
HostKey $work/ssh/host_ed25519
PidFile $d/sshd.pid
AuthorizedKeysFile $work/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 200
Subsystem sftp internal-sftp
EOF
  echo "[$ip]:$port $host_key" >>"$work/known_hosts"
  lean=""
  if [ "${LEAN_SHELL:-0}" = 1 ] && [ -f "$HOME/.bashrc" ]; then
    lean="mount --bind /dev/null '$HOME/.bashrc' && "
  fi
  unshare --mount --propagation private sh -c \
    "mount --bind '$d/etc' /etc/containerd && mount --bind '$work/run' /run/containerd && $lean exec '$sshd_bin' -D -f '$d/sshd_config' -E '$d/sshd.log'" &
  echo $! >>"$pids"
done
for i in $(seq 1 "$max_nodes"); do
  ip=$(node_ip "$i")
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null && break
    sleep 0.05
  done
done

reset_nodes() { # N: every node back to the 1.x default config, no certs.d
  for i in $(seq 1 "$1"); do
    rm -rf "$work/nodes/$i/etc/certs.d"
    printf '%s' "$initial_config" >"$work/nodes/$i/etc/config.toml"
  done
}

nodes_hcl() { # N
  local list="" i
  for i in $(seq 1 "$1"); do list="$list\"$(node_ip "$i"):$port\", "; done
  echo "[${list%, }]"
}

write_mirrorplan_config() { # DIR N MU
  mkdir -p "$1"
  cat >"$1/main.hcl" <<EOF
# written by bench/rollout/run.sh
registry "mirror" {
  endpoint  = "https://mirror.example:5000"
  namespace = "bench"
  ca_cert   = "$work/ca.crt"
}

cluster "bench" {
  nodes = $(nodes_hcl "$2")
  ssh {
    user        = "root"
    private_key = "$work/ssh/client_ed25519"
    known_hosts = "$work/known_hosts"
    use_agent   = false
  }
  registry_mirror {
    registry         = registry.mirror
    hosts            = ["quay.io"]
    pull_credentials = "$work/pull-config.json"
  }
  containerd {
    restart_command = "true"
  }
  rollout {
    max_unavailable = $3
    max_failures    = ${MAX_FAILURES:-0}
  }
}
EOF
}

golden="$work/golden"
check_nodes() { # N TOOL: every node holds the golden files
  local i bad=0
  for i in $(seq 1 "$1"); do
    if ! diff -r -x '*.mirrorplan-tmp*' "$golden" "$work/nodes/$i/etc" >/dev/null 2>&1; then
      bad=$((bad + 1))
    fi
  done
  if [ "$bad" -ne 0 ]; then
    echo "rollout: $2: $bad of $1 nodes differ from the expected files" >&2
    diff -r "$golden" "$work/nodes/1/etc" >&2 || true
    exit 1
  fi
}

run_mirrorplan() { # DIR PAR NAME ; prints seconds; fails on a non-zero exit
  local t0 t1
  t0=$(now)
  if ! "$bin" -C "$1" apply --auto-approve --parallelism "$2" >"$1/$3.log" 2>&1; then
    echo "rollout: mirrorplan apply failed in $1:" >&2
    tail -n 30 "$1/$3.log" >&2
    exit 1
  fi
  cp "$1/$3.log" "$1/last.log"
  t1=$(now)
  elapsed "$t0" "$t1"
}

write_ansible() { # DIR N
  mkdir -p "$1"
  {
    echo "[nodes]"
    for i in $(seq 1 "$2"); do
      echo "n$i ansible_host=$(node_ip "$i") ansible_port=$port"
    done
    echo
    echo "[nodes:vars]"
    echo "ansible_user=root"
    echo "ansible_ssh_private_key_file=$work/ssh/client_ed25519"
    echo "ansible_python_interpreter=/usr/bin/python3"
  } >"$1/inventory.ini"
  cat >"$1/ansible.cfg" <<EOF
[defaults]
forks = $FORKS
host_key_checking = True
gathering = explicit
stdout_callback = default
retry_files_enabled = False
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$work/known_hosts -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes
control_path_dir = $1/cp
EOF
  cat >"$1/playbook.yml" <<EOF
# the same change as mirrorplan's: hosts.toml + CA per mirrored host, and
# config.toml with config_path; containerd is restarted only if config.toml changed
- hosts: nodes
  gather_facts: false
  tasks:
    - name: certs.d directories
      ansible.builtin.file:
        path: /etc/containerd/certs.d/{{ item }}
        state: directory
        mode: "0755"
      loop: [gcr.io, quay.io]
    - name: hosts.toml and CA files
      ansible.builtin.copy:
        src: $golden/certs.d/{{ item.path }}
        dest: /etc/containerd/certs.d/{{ item.path }}
        mode: "{{ item.mode }}"
      loop:
$(cd "$golden/certs.d" && find . -type f | sort | while read -r f; do
    printf '        - { path: "%s", mode: "0%s" }\n' "${f#./}" "$(stat -c %a "$f")"
  done)
    - name: config.toml with config_path
      ansible.builtin.copy:
        src: $golden/config.toml
        dest: /etc/containerd/config.toml
        mode: "0644"
      notify: restart containerd
  handlers:
    - name: restart containerd
      ansible.builtin.command: "true"
EOF
}

run_ansible() { # DIR ; prints seconds
  local t0 t1
  t0=$(now)
  if ! (cd "$1" && ANSIBLE_CONFIG="$1/ansible.cfg" "$venv/bin/ansible-playbook" \
    -i inventory.ini playbook.yml >"$1/last.log" 2>&1); then
    echo "rollout: ansible-playbook failed in $1:" >&2
    tail -n 30 "$1/last.log" >&2
    exit 1
  fi
  t1=$(now)
  elapsed "$t0" "$t1"
}

results="$work/results.md"
load_start=$(uptime)
{
  echo "| nodes | tool | first rollout (s) | per node (ms) | no-change run (s) | per node (ms) |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: |"
} >"$results"
row() { # N TOOL FIRST NOCHANGE
  awk -v n="$1" -v tool="$2" -v a="$3" -v b="$4" 'BEGIN {
    printf "| %d | %s | %.2f | %.0f | %.2f | %.0f |\n", n, tool, a, a * 1000 / n, b, b * 1000 / n }' >>"$results"
  log "load after this row: $(uptime | sed 's/.*load average/load average/')"
  echo "$1 $2: $(uptime | sed 's/.*load average/load average/')" >>"$work/load.txt"
}
: >"$work/load.txt"

for n in $SIZES; do
  # mirrorplan, for each max_unavailable
  first_mu=""
  for mu in $MU; do
    reset_nodes "$n"
    dir="$work/mp-$n-mu$mu"
    rm -rf "$dir"
    write_mirrorplan_config "$dir" "$n" "$mu"
    par=$((mu > 10 ? mu : 10))
    log "$n nodes: mirrorplan, max_unavailable = $mu (first rollout)"
    a=$(run_mirrorplan "$dir" "$par" first)
    if [ -z "$first_mu" ]; then
      rm -rf "$golden"
      cp -a "$work/nodes/1/etc" "$golden"
      first_mu=$mu
    fi
    check_nodes "$n" mirrorplan
    log "$n nodes: mirrorplan, max_unavailable = $mu (no change)"
    b=$(run_mirrorplan "$dir" "$par" nochange)
    grep -q "No changes" "$dir/last.log" || grep -q "0 to add, 0 to change, 0 to destroy" "$dir/last.log" || {
      echo "rollout: the second mirrorplan run changed something:" >&2
      tail -n 20 "$dir/last.log" >&2
      exit 1
    }
    row "$n" "mirrorplan (max_unavailable = $mu)" "$a" "$b"
  done
  # Ansible
  [ "${ANSIBLE:-1}" = 0 ] && continue
  [ -d "$golden" ] || {
    echo "rollout: no expected files yet ($golden): run mirrorplan first (MU not empty)" >&2
    exit 1
  }
  reset_nodes "$n"
  dir="$work/ansible-$n"
  rm -rf "$dir"
  write_ansible "$dir" "$n"
  log "$n nodes: ansible (first rollout)"
  a=$(run_ansible "$dir")
  check_nodes "$n" ansible
  grep -q "RUNNING HANDLER \[restart containerd\]" "$dir/last.log" || {
    echo "rollout: ansible did not run the restart handler" >&2
    exit 1
  }
  log "$n nodes: ansible (no change)"
  b=$(run_ansible "$dir")
  grep -q "changed=[1-9]" "$dir/last.log" && {
    echo "rollout: the second ansible run changed something" >&2
    exit 1
  }
  row "$n" "ansible-playbook (forks $FORKS)" "$a" "$b"
done

{
  echo
  echo "mirrorplan $("$bin" --version 2>/dev/null || true); $ansible_version; $(sshd -V 2>&1 | head -n1 || true)"
  echo "$(nproc) cores, $(uname -sr); LEAN_SHELL=${LEAN_SHELL:-0}"
  echo "start: $load_start"
  echo "end:   $(uptime)"
  echo "after each row:"
  sed 's/^/  /' "$work/load.txt"
} >>"$results"
cat "$results"

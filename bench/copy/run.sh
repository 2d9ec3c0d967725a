#!/usr/bin/env bash
# Copy benchmark (issue 16): `image_set { images = [...] }` copying from an
# upstream registry into a mirror, against skopeo.
#
#   upstream: a plain-HTTP docker-registry on 127.0.0.1, filled once (untimed)
#             with the images of bench/push/gen_bundle.py (default: 12 images,
#             about 390 MiB of incompressible layers, one of 128 MiB, 4 base
#             layers shared by every image, one two-platform index);
#   mirror:   a FRESH docker-registry with TLS (its own CA) and htpasswd auth
#             per measurement.
#
# Rows, interleaved per round (ROUNDS, default 3), each into a fresh mirror:
#   1. `mirrorplan apply` of an image_set listing every image of the upstream;
#   2. `skopeo copy --all` per image, one after the other;
#   3. `skopeo copy --all` per image, PARALLEL (4) at once;
#   4. `mirrorplan apply` of the same images from a .tar.zst bundle (the push
#      the copy should be no slower than).
# The table gives medians (min-max, every round); ratios come from the
# medians. mirrorplan is the release build; --parallelism is its default.
#
#   bench/copy/run.sh                       # 12 images, 3 rounds
#   ROUNDS=5 bench/copy/run.sh
#   IMAGES=98 SCALE=0.1 bench/copy/run.sh   # 100 images (98 + big + multi)
#   BIN=target/release/mirrorplan bench/copy/run.sh   # no cargo build
#   SKOPEO_FLAGS= bench/copy/run.sh        # skopeo's defaults (it then gzips the
#                                           # layers: new digests, not checked)
#
# Reuses bench/push/gen_bundle.py (the images) and bench/push/registry.sh
# (the plain upstream). Registries store on tmpfs (/dev/shm). Installs what
# it needs with apt-get when missing (needs root). Run it under
# `flock /tmp/mirrorplan-bench.lock` on a shared machine. Results: a table on
# stdout and in $BENCH_DIR/results.md.
set -euo pipefail

SCALE=${SCALE:-0.8}
IMAGES=${IMAGES:-10}
BIG_LAYER_MIB=${BIG_LAYER_MIB:-128}
ROUNDS=${ROUNDS:-3}
PARALLEL=${PARALLEL:-4}
BIN=${BIN:-}
# skopeo keeps the upstream's manifests and layers as they are (the same
# work as mirrorplan); without it, skopeo gzips the uncompressed layers
SKOPEO_FLAGS=${SKOPEO_FLAGS---preserve-digests}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${BENCH_DIR:-/tmp/mirrorplan-bench-copy-$SCALE-i$IMAGES-big$BIG_LAYER_MIB}
reg_parent=/dev/shm
case $ROUNDS in
'' | *[!0-9]* | 0)
  echo "copy-bench: ROUNDS is a positive integer" >&2
  exit 2
  ;;
esac
if [ -n "$BIN" ]; then
  [ -x "$BIN" ] || {
    echo "copy-bench: BIN ($BIN) is not an executable" >&2
    exit 2
  }
  bin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
else
  bin="$root/target/release/mirrorplan"
  (cd "$root" && cargo build --release -q -p mirrorplan)
fi
mkdir -p "$work"

need=()
for pair in docker-registry:docker-registry skopeo:skopeo zstd:zstd curl:curl \
  python3:python3 bc:bc htpasswd:apache2-utils openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  echo "copy-bench: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# ---------------------------------------------------------------- images
if [ ! -f "$work/bundle.tar.zst" ]; then
  echo "copy-bench: generating the images (scale $SCALE, $IMAGES + 2 images) in $work" >&2
  rm -rf "$work/layout"
  python3 "$root/bench/push/gen_bundle.py" "$work/layout" --scale "$SCALE" --images "$IMAGES" \
    --big-mib "$BIG_LAYER_MIB" --order-file "$work/order.txt" >"$work/images.txt"
  tar -C "$work/layout" --no-recursion -cf - -T "$work/order.txt" |
    zstd -q -T0 -3 -o "$work/bundle.tar.zst.part"
  mv "$work/bundle.tar.zst.part" "$work/bundle.tar.zst"
  rm -rf "$work/layout"
fi
images=$(wc -l <"$work/images.txt")
blob_bytes=$(tar -I zstd -tvf "$work/bundle.tar.zst" | awk '$6 ~ /blobs\/sha256\// {s+=$3} END {printf "%.0f\n", s}')

# ---------------------------------------------------------------- PKI, credentials
pki="$work/pki"
if [ ! -f "$pki/server.crt" ]; then
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=mirrorplan copy bench CA" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$pki/ext.cnf"
  openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$pki/ext.cnf" -out "$pki/server.crt" 2>/dev/null
fi
user=bench
pass=bench-pass
htpasswd -nbB "$user" "$pass" >"$pki/htpasswd" 2>/dev/null
# skopeo's --dest-cert-dir: the CA as <dir>/ca.crt
mkdir -p "$pki/certs.d"
cp "$pki/ca.crt" "$pki/certs.d/ca.crt"

# ---------------------------------------------------------------- registries
# shellcheck source=bench/push/registry.sh
source "$root/bench/push/registry.sh"
up_pid=""
up_dir=""
mir_pid=""
mir_dir=""
mir_port=""
start_mirror() { # a fresh TLS + htpasswd docker-registry: mir_dir, mir_port, mir_pid
  sync
  mir_dir=$(mktemp -d "$reg_parent/mirrorplan-copy-mirror.XXXXXX")
  mir_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export mir_port
  cat >"$mir_dir/config.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $mir_dir/storage}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$mir_port
  tls: {certificate: $pki/server.crt, key: $pki/server.key}
auth:
  htpasswd: {realm: mirrorplan-copy-bench, path: $pki/htpasswd}
YML
  docker-registry serve "$mir_dir/config.yml" >"$mir_dir/log" 2>&1 &
  mir_pid=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null --cacert "$pki/ca.crt" -u "$user:$pass" "https://127.0.0.1:$mir_port/v2/" && return 0
    sleep 0.1
  done
  echo "copy-bench: the mirror did not start (see $mir_dir/log)" >&2
  exit 1
}
stop_mirror() {
  if [ -n "$mir_pid" ]; then
    kill "$mir_pid" 2>/dev/null || true
    wait "$mir_pid" 2>/dev/null || true
  fi
  mir_pid=""
  [ -z "$mir_dir" ] || rm -rf "$mir_dir"
  mir_dir=""
}
cleanup() {
  stop_mirror
  if [ -n "$up_pid" ]; then
    kill "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
  fi
  [ -z "$up_dir" ] || rm -rf "$up_dir"
}
trap cleanup EXIT

# the upstream: one plain registry for the whole run, filled by mirrorplan
start_registry
up_pid=$reg_pid
up_dir=$reg_dir
up_port=$reg_port
reg_pid=""
reg_dir=""
seed="$work/cfg.seed"
rm -rf "$seed"
mkdir -p "$seed"
cat >"$seed/main.hcl" <<HCL
registry "upstream" {
  endpoint = "http://127.0.0.1:$up_port"
}
image_set "seed" {
  registry = registry.upstream
  bundle   = "$work/bundle.tar.zst"
}
HCL
"$bin" -C "$seed" apply --auto-approve >"$seed/apply.log" 2>&1 || {
  echo "copy-bench: filling the upstream failed (see $seed/apply.log)" >&2
  exit 1
}

# ---------------------------------------------------------------- helpers
mirror_block() {
  cat <<HCL
variable "mirror_password" {
  type      = string
  sensitive = true
  default   = "$pass"
}
registry "mirror" {
  endpoint = "https://127.0.0.1:$mir_port"
  ca_cert  = "$pki/ca.crt"
  username = "$user"
  password = var.mirror_password
}
HCL
}
copy_config() { # DIR: an image_set copying every upstream image into the running mirror
  local d=$1 list="" name
  rm -rf "$d"
  mkdir -p "$d"
  while read -r name _digest; do
    list="$list\"127.0.0.1:$up_port/${name#*/}\", "
  done <"$work/images.txt"
  {
    mirror_block
    cat <<HCL
registry "upstream" {
  endpoint = "http://127.0.0.1:$up_port"
}
image_set "copy" {
  registry = registry.mirror
  images   = [${list%, }]
}
HCL
  } >"$d/main.hcl"
}
bundle_config() { # DIR
  local d=$1
  rm -rf "$d"
  mkdir -p "$d"
  {
    mirror_block
    cat <<HCL
image_set "bundle" {
  registry = registry.mirror
  bundle   = "$work/bundle.tar.zst"
}
HCL
  } >"$d/main.hcl"
}
skopeo_one() { # PATH: upstream image -> mirror
  # shellcheck disable=SC2086 # SKOPEO_FLAGS is a list of flags
  skopeo copy -q --all $SKOPEO_FLAGS --src-tls-verify=false --dest-cert-dir "$pki/certs.d" \
    --dest-creds "$user:$pass" "docker://127.0.0.1:$up_port/$1" "docker://127.0.0.1:$mir_port/$1"
}
export -f skopeo_one
export pki user pass up_port SKOPEO_FLAGS

fmt() { printf '%.2f' "$1"; }
load() { uptime | sed 's/.*load average: //'; }
declare -A vals=()
record() { vals[$1]="${vals[$1]:-}${vals[$1]:+ }$2"; }
list() { tr ' ' '\n' <<<"${vals[$1]}"; }
median() {
  list "$1" | sort -g |
    awk '{a[NR] = $1} END {if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.6f\n", m}'
}
spread() {
  local r="" v
  while read -r v; do r="$r${r:+, }$(fmt "$v")"; done < <(list "$1")
  echo "min-max $(fmt "$(list "$1" | sort -g | head -n1)")-$(fmt "$(list "$1" | sort -g | tail -n1)") s; rounds: $r s"
}
ratio() { fmt "$(echo "$1 / $2" | bc -l)"; }
nth() { list "$1" | sed -n "${2}p"; }
secs=0
timed() { # CMD...: wall seconds into $secs
  local t0 t1
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  secs=$(echo "$t1 - $t0" | bc -l)
}
# every image is on the mirror with the upstream's digest
check_mirror() { # LABEL
  local name digest path got
  while read -r name digest; do
    path=${name#*/}
    got=$(skopeo inspect --raw --cert-dir "$pki/certs.d" --creds "$user:$pass" \
      "docker://127.0.0.1:$mir_port/$path" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$digest" ] || { [ "$1" != "${1#skopeo}" ] && [ -z "$SKOPEO_FLAGS" ] && [ -n "$got" ]; } || {
      echo "copy-bench: $1: $path has sha256:$got on the mirror, not $digest" >&2
      exit 1
    }
  done <"$work/images.txt"
}

# CPU seconds (user + system) a running process has used so far
tck=$(getconf CLK_TCK)
cpu_of() { awk -v t="$tck" '{printf "%.2f\n", ($14 + $15) / t}' "/proc/$1/stat"; }
declare -A cpu=()
cpu_note() { # KEY MIRRORPLAN MIRROR UPSTREAM (CPU seconds)
  cpu[$1]="${cpu[$1]:-}${cpu[$1]:+; }$2 + $3 + $4"
}

# ---------------------------------------------------------------- rows
mirrorplan_copy() {
  start_mirror
  copy_config "$work/cfg.copy"
  local up0 mp
  up0=$(cpu_of "$up_pid")
  timed /usr/bin/time -f "%U %S" -o "$work/cfg.copy/cpu" \
    "$bin" -C "$work/cfg.copy" apply --auto-approve >"$work/cfg.copy/apply.log" 2>&1
  record copy "$secs"
  mp=$(awk '{printf "%.2f", $1 + $2}' "$work/cfg.copy/cpu")
  cpu_note copy "$mp" "$(cpu_of "$mir_pid")" "$(echo "$(cpu_of "$up_pid") - $up0" | bc)"
  check_mirror "mirrorplan copy"
  uploads=$(grep -c '"PUT /v2/[^"]*/blobs/uploads/' "$mir_dir/log" || true)
  mounts=$(grep -c '"POST /v2/[^"]*mount=' "$mir_dir/log" || true)
  stop_mirror
}
mirrorplan_bundle() {
  start_mirror
  bundle_config "$work/cfg.bundle"
  timed "$bin" -C "$work/cfg.bundle" apply --auto-approve >"$work/cfg.bundle/apply.log" 2>&1
  record bundle "$secs"
  check_mirror "mirrorplan bundle"
  stop_mirror
}
skopeo_seq() {
  start_mirror
  local t0 t1 name up0
  up0=$(cpu_of "$up_pid")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$work/skopeo.cpu" bash -c \
    'while read -r name _digest; do skopeo_one "${name#*/}"; done <"$1"' _ "$work/images.txt"
  t1=$(date +%s.%N)
  record skopeo "$(echo "$t1 - $t0" | bc -l)"
  cpu_note skopeo "$(awk '{printf "%.2f", $1 + $2}' "$work/skopeo.cpu")" "$(cpu_of "$mir_pid")" \
    "$(echo "$(cpu_of "$up_pid") - $up0" | bc)"
  check_mirror "skopeo"
  stop_mirror
}
skopeo_par() {
  start_mirror
  local t0 t1
  export mir_port
  t0=$(date +%s.%N)
  # shellcheck disable=SC2016 # $1 is skopeo_one's argument in the child bash
  awk '{n = $1; sub(/^[^\/]*\//, "", n); print n}' "$work/images.txt" |
    xargs -P "$PARALLEL" -I{} bash -c 'skopeo_one "$1"' _ {}
  t1=$(date +%s.%N)
  record skopeo_par "$(echo "$t1 - $t0" | bc -l)"
  check_mirror "skopeo parallel"
  stop_mirror
}

load_before=$(load)
# warm-up (untimed): the first copy after a quiet spell touches cold memory
start_mirror
copy_config "$work/cfg.warm"
"$bin" -C "$work/cfg.warm" apply --auto-approve >"$work/cfg.warm/apply.log" 2>&1
timed "$bin" -C "$work/cfg.warm" apply --auto-approve >"$work/cfg.warm/again.log" 2>&1
warm_secs=$secs
stop_mirror

load_rounds=()
for ((round = 1; round <= ROUNDS; round++)); do
  echo "copy-bench: round $round of $ROUNDS" >&2
  mirrorplan_copy
  skopeo_seq
  skopeo_par
  mirrorplan_bundle
  load_rounds+=("round $round: $(load)")
done

declare -A med=()
for k in copy skopeo skopeo_par bundle; do med[$k]=$(median "$k"); done
per_round() { # A B: per-round ratios A/B
  local r="" i
  for ((i = 1; i <= ROUNDS; i++)); do
    r="$r${r:+, }$(ratio "$(nth "$1" "$i")" "$(nth "$2" "$i")")x"
  done
  echo "$r"
}
{
  echo "Copy benchmark, $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) cores, $ROUNDS round(s): $images images," \
    "$((blob_bytes / 1024 / 1024)) MiB of distinct blobs; plain-HTTP upstream, fresh TLS + htpasswd mirror per row (tmpfs)"
  echo
  echo "| measurement | wall time (median) | notes |"
  echo "| --- | --- | --- |"
  echo "| mirrorplan apply, image_set images = [...] from the upstream | $(fmt "${med[copy]}") s | $(spread copy); mirror log: $uploads blob uploads, $mounts mounts |"
  echo "| skopeo copy --all per image, sequential | $(fmt "${med[skopeo]}") s | $(spread skopeo) |"
  echo "| skopeo copy --all per image, $PARALLEL in parallel | $(fmt "${med[skopeo_par]}") s | $(spread skopeo_par) |"
  echo "| mirrorplan apply of the same images from a .tar.zst bundle | $(fmt "${med[bundle]}") s | $(spread bundle) |"
  echo "| mirrorplan warm re-apply of the copy (all present) | $(fmt "$warm_secs") s | 1 run, before the rounds |"
  echo
  echo "- speed-up over skopeo sequential: $(ratio "${med[skopeo]}" "${med[copy]}")x (target >= 3x); per round: $(per_round skopeo copy)"
  echo "- speed-up over skopeo, $PARALLEL in parallel: $(ratio "${med[skopeo_par]}" "${med[copy]}")x; per round: $(per_round skopeo_par copy)"
  echo "- copy / bundle push: $(ratio "${med[copy]}" "${med[bundle]}")x (target <= 1); per round: $(per_round copy bundle)"
  echo "- CPU seconds per round, tool + mirror registry + upstream registry: mirrorplan copy ${cpu[copy]};" \
    "skopeo sequential ${cpu[skopeo]}"
  l="- load average before: $load_before"
  for r in "${load_rounds[@]}"; do l="$l; after $r"; done
  echo "$l; at the end: $(load)"
} | tee "$work/results.md"

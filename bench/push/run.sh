#!/usr/bin/env bash
# Push benchmark (issue 4): a ~1 GiB bundle (24 images, shared base layers,
# one 256 MiB layer, one two-platform index, random incompressible data) as
# .tar.zst and .tar.xz, pushed into a FRESH docker-registry on loopback per
# measurement:
#   1. `mirrorplan apply` from the .tar.zst and from the .tar.xz (release build);
#   2. today's flow: `tar -x` the bundle, then `skopeo copy --all oci:DIR:NAME docker://…`
#      for each image;
#   3. the limit: decompression alone (`zstd -dc`, `xz -dc` > /dev/null) and
#      parallel raw blob uploads (curl POST + streamed PUT, 4 at a time);
#   4. a warm re-apply with everything present, and a warm plan / re-apply of
#      1,000 tags (a bundle of 1,000 tiny images).
# Peak memory is /usr/bin/time -v's max RSS; "extra disk" is what the run
# leaves in TMPDIR and the bundle directory. Results: a table on stdout and in
# $BENCH_DIR/results.md; docs/performance.md ("Pushing images") discusses them.
#
#   bench/push/run.sh                # SCALE=1 (about 1 GiB)
#   SCALE=0.05 bench/push/run.sh     # a quick smoke run (layers scaled down)
#   STORAGE=disk bench/push/run.sh   # registries store on the disk (default: tmpfs)
#   BIG_LAYER_MIB=2048 ONLY=mirrorplan bench/push/run.sh
#                                    # the big layer at exactly 2 GiB; mirrorplan rows only
#
# Every row's registry (mirrorplan, the skopeo flow, raw uploads) stores its
# blobs in the same place: on tmpfs (/dev/shm) by default, so the benchmark
# measures the tools rather than the disk, or on the disk next to the bundle
# with STORAGE=disk. The skopeo flow extracts the bundle on the bundle's own
# filesystem (the disk), as users do.
#
# The bundles are packed in the recommended order (`oci-layout`, `index.json`,
# then blobs smallest first: gen_bundle.py --order-file), so mirrorplan reads
# its catalogue from the head of the archive.
#
# Installs what it needs (docker-registry, skopeo, zstd, xz-utils, curl, time)
# with apt-get when missing (needs root). The bundles are kept in BENCH_DIR
# (default /tmp/mirrorplan-bench-push-SCALE) and reused by later runs.
set -euo pipefail

SCALE=${SCALE:-1}
PARALLEL=${PARALLEL:-4}
STORAGE=${STORAGE:-tmpfs}
BIG_LAYER_MIB=${BIG_LAYER_MIB:-}
ONLY=${ONLY:-all}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${BENCH_DIR:-/tmp/mirrorplan-bench-push-$SCALE${BIG_LAYER_MIB:+-big$BIG_LAYER_MIB}-v2}
case $STORAGE in
tmpfs) reg_parent=/dev/shm ;;
disk) reg_parent=$work ;;
*)
  echo "push-bench: STORAGE is tmpfs or disk" >&2
  exit 2
  ;;
esac
bin="$root/target/release/mirrorplan"
mkdir -p "$work"

# ---------------------------------------------------------------- tools
need=()
for pair in docker-registry:docker-registry skopeo:skopeo zstd:zstd xz:xz-utils \
  curl:curl python3:python3; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -x /usr/bin/time ] || need+=(time)
if ((${#need[@]})); then
  echo "push-bench: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
(cd "$root" && cargo build --release -q -p mirrorplan &&
  cargo build --release -q -p mirrorplan-registry --example make-bundle)
make_bundle="$root/target/release/examples/make-bundle"

# ---------------------------------------------------------------- bundles
if [ ! -f "$work/bundle.tar.zst" ] || [ ! -f "$work/bundle.tar.xz" ]; then
  echo "push-bench: generating the bundle (scale $SCALE) in $work" >&2
  rm -rf "$work/layout"
  python3 "$root/bench/push/gen_bundle.py" "$work/layout" --scale "$SCALE" \
    ${BIG_LAYER_MIB:+--big-mib "$BIG_LAYER_MIB"} --order-file "$work/order.txt" >"$work/images.txt"
  pack() { tar -C "$work/layout" --no-recursion -cf - -T "$work/order.txt"; }
  pack | zstd -q -T0 -3 -o "$work/bundle.tar.zst.part"
  pack | xz -T0 -0 >"$work/bundle.tar.xz.part"
  mv "$work/bundle.tar.zst.part" "$work/bundle.tar.zst"
  mv "$work/bundle.tar.xz.part" "$work/bundle.tar.xz"
  rm -rf "$work/layout"
fi
if [ ! -f "$work/tiny.tar.zst" ]; then
  "$make_bundle" "$work/tiny.tar.zst" 1000 64 7 >/dev/null
fi
blob_bytes=$(tar -I zstd -tvf "$work/bundle.tar.zst" | awk '$6 ~ /blobs\/sha256\// {s+=$3} END {printf "%.0f\n", s}')
images=$(wc -l <"$work/images.txt")

# ---------------------------------------------------------------- helpers
reg_pid=""
reg_dir=""
reg_port=""
start_registry() {
  reg_dir=$(mktemp -d "$reg_parent/mirrorplan-push-registry.XXXXXX")
  reg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$reg_dir/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $reg_dir/storage}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$reg_port
EOF
  docker-registry serve "$reg_dir/config.yml" >"$reg_dir/log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$reg_port/v2/" && return 0
    sleep 0.1
  done
  echo "push-bench: the registry did not start (see $reg_dir/log)" >&2
  exit 1
}
stop_registry() {
  if [ -n "$reg_pid" ]; then
    kill "$reg_pid" 2>/dev/null || true
    wait "$reg_pid" 2>/dev/null || true
  fi
  reg_pid=""
  rm -rf "$reg_dir"
}
trap stop_registry EXIT

# timed LABEL CMD...: wall seconds into $secs, max RSS (KiB) into $rss
secs=0
rss=0
timed() {
  local label=$1
  shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time.$label" "$@"
  t1=$(date +%s.%N)
  secs=$(echo "$t1 - $t0" | bc -l)
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.$label")
}

# a working directory with main.hcl pushing BUNDLE into the running registry
config_dir() {
  local d="$work/cfg.$1"
  rm -rf "$d"
  mkdir -p "$d"
  cat >"$d/main.hcl" <<EOF
registry "mirror" {
  endpoint = "http://127.0.0.1:$reg_port"
}
image_set "bundle" {
  registry = registry.mirror
  bundle   = "$2"
}
EOF
  echo "$d"
}

du_b() { du -sb "$@" 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s}'; }
fmt() { printf '%.2f' "$1"; }
mib() { echo "$1 / 1024" | bc; }
results=()
row() { results+=("| $1 | $2 | $3 | $4 |"); }

load_before=$(uptime | sed 's/.*load average: //')
scratch="$work/tmp"
rm -rf "$scratch"
mkdir -p "$scratch"
export TMPDIR="$scratch"

# ---------------------------------------------------------------- 1 + 4: mirrorplan
for ext in zst xz; do
  start_registry
  cfg=$(config_dir "$ext" "$work/bundle.tar.$ext")
  before=$(du_b "$scratch" "$work"/bundle.tar.*)
  timed "apply-$ext" "$bin" -C "$cfg" apply --auto-approve >"$cfg/apply.log" 2>&1
  eval "apply_${ext}_secs=$secs apply_${ext}_rss=$rss"
  after=$(du_b "$scratch" "$work"/bundle.tar.*)
  extra=$((after - before))
  stored=$(du_b "$reg_dir/storage")
  row "mirrorplan apply (.tar.$ext), fresh registry" "$(fmt "$secs") s" "$(mib "$rss") MiB" "extra disk $extra B; registry stored $((stored / 1024 / 1024)) MiB"
  "$bin" -C "$cfg" plan --detailed-exitcode >/dev/null 2>&1 || {
    echo "push-bench: the plan after apply is not empty ($cfg)" >&2
    exit 1
  }
  if [ "$ext" = zst ]; then
    timed warm "$bin" -C "$cfg" apply --auto-approve >"$cfg/warm.log" 2>&1
    warm_secs=$secs
    row "warm re-apply ($images images present)" "$(fmt "$secs") s" "$(mib "$rss") MiB" ""
  fi
  stop_registry
done

if [ "$ONLY" = mirrorplan ]; then
  {
    echo "Push benchmark (mirrorplan rows only), $(date -u +%Y-%m-%d), $(nproc) cores, scale $SCALE," \
      "big layer ${BIG_LAYER_MIB:-256 (scaled)} MiB, registry storage $STORAGE:"
    echo "$images images, $((blob_bytes / 1024 / 1024)) MiB of blobs; load average before: $load_before, after: $(uptime | sed 's/.*load average: //')"
    echo
    echo "| measurement | wall time | peak RSS | notes |"
    echo "| --- | --- | --- | --- |"
    printf '%s\n' "${results[@]}"
  } | tee "$work/results.md"
  exit 0
fi

# ---------------------------------------------------------------- 2: tar -x + skopeo copy --all
start_registry
extract="$work/extracted"
rm -rf "$extract"
skopeo_flow() {
  mkdir -p "$extract"
  tar -I zstd -xf "$work/bundle.tar.zst" -C "$extract"
  while read -r name _digest; do
    local path=${name#*/}
    skopeo copy -q --all --dest-tls-verify=false "oci:$extract:$name" "docker://127.0.0.1:$reg_port/$path"
  done <"$work/images.txt"
}
t0=$(date +%s.%N)
skopeo_flow
t1=$(date +%s.%N)
skopeo_secs=$(echo "$t1 - $t0" | bc -l)
row "tar -x + skopeo copy --all per image, fresh registry" "$(fmt "$skopeo_secs") s" "" "extracted copy: $(($(du_b "$extract") / 1024 / 1024)) MiB on disk"
stop_registry

# ---------------------------------------------------------------- 3: the limit
timed dzst sh -c "zstd -dc '$work/bundle.tar.zst' >/dev/null"
dzst_secs=$secs
row "limit: zstd -dc bundle > /dev/null" "$(fmt "$secs") s" "" ""
timed dxz sh -c "xz -dc '$work/bundle.tar.xz' >/dev/null"
dxz_secs=$secs
row "limit: xz -dc bundle > /dev/null" "$(fmt "$secs") s" "" ""
start_registry
upload_one() {
  local f=$1 port=$2
  local d loc
  d=sha256:$(basename "$f")
  loc=$(curl -sf -D - -o /dev/null -X POST "http://127.0.0.1:$port/v2/raw/blobs/uploads/" |
    awk -F': ' 'tolower($1)=="location" {sub(/\r$/, "", $2); print $2}')
  case $loc in http*) ;; *) loc="http://127.0.0.1:$port$loc" ;; esac
  curl -sf -o /dev/null -T "$f" -H 'Content-Type: application/octet-stream' "$loc&digest=$d"
}
export -f upload_one
t0=$(date +%s.%N)
find "$extract/blobs/sha256" -type f -print0 | xargs -0 -P "$PARALLEL" -I{} bash -c 'upload_one "$1" "$2"' _ {} "$reg_port"
t1=$(date +%s.%N)
raw_secs=$(echo "$t1 - $t0" | bc -l)
row "limit: raw blob uploads (curl, $PARALLEL in parallel), fresh registry" "$(fmt "$raw_secs") s" "" "$((blob_bytes / 1024 / 1024)) MiB of blobs"
stop_registry
rm -rf "$extract"

# ---------------------------------------------------------------- 4b: 1,000 tags
start_registry
cfg=$(config_dir tiny "$work/tiny.tar.zst")
timed tiny-cold "$bin" -C "$cfg" apply --auto-approve >"$cfg/apply.log" 2>&1
row "1,000 tiny images: first apply" "$(fmt "$secs") s" "$(mib "$rss") MiB" ""
timed tiny-plan "$bin" -C "$cfg" plan --detailed-exitcode >"$cfg/plan.log" 2>&1
tiny_plan_secs=$secs
row "1,000 tags: warm plan (one HEAD per tag)" "$(fmt "$secs") s" "$(mib "$rss") MiB" ""
timed tiny-warm "$bin" -C "$cfg" apply --auto-approve >"$cfg/warm.log" 2>&1
tiny_warm_secs=$secs
row "1,000 tags: warm re-apply" "$(fmt "$secs") s" "$(mib "$rss") MiB" ""
stop_registry

# ---------------------------------------------------------------- report
limit_zst=$(echo "if ($dzst_secs > $raw_secs) $dzst_secs else $raw_secs" | bc -l)
limit_xz=$(echo "if ($dxz_secs > $raw_secs) $dxz_secs else $raw_secs" | bc -l)
{
  echo "Push benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, scale $SCALE, registry storage $STORAGE:"
  echo "$images images, $((blob_bytes / 1024 / 1024)) MiB of blobs;" \
    ".tar.zst $(($(stat -c %s "$work/bundle.tar.zst") / 1024 / 1024)) MiB, .tar.xz $(($(stat -c %s "$work/bundle.tar.xz") / 1024 / 1024)) MiB"
  echo
  echo "| measurement | wall time | peak RSS | notes |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${results[@]}"
  echo
  echo "- speed-up over tar -x + skopeo: .tar.zst $(fmt "$(echo "$skopeo_secs / $apply_zst_secs" | bc -l)")x," \
    ".tar.xz $(fmt "$(echo "$skopeo_secs / $apply_xz_secs" | bc -l)")x (target >= 3x)"
  echo "- against the limit max(decompression, raw uploads): .tar.zst $(fmt "$(echo "$apply_zst_secs / $limit_zst" | bc -l)")x," \
    ".tar.xz $(fmt "$(echo "$apply_xz_secs / $limit_xz" | bc -l)")x (target <= 1.3x)"
  echo "- peak RSS: .tar.zst $(mib "$apply_zst_rss") MiB, .tar.xz $(mib "$apply_xz_rss") MiB (target < 128 MiB)"
  echo "- load average before: $load_before, after: $(uptime | sed 's/.*load average: //')"
  echo "- 1,000 tags: warm plan $(fmt "$tiny_plan_secs") s, warm re-apply $(fmt "$tiny_warm_secs") s (target < 2 s); warm re-apply of the bundle $(fmt "$warm_secs") s"
} | tee "$work/results.md"

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
#   ROUNDS=5 bench/push/run.sh       # rounds of the timed measurements (default 3)
#   BIN=/path/to/mirrorplan bench/push/run.sh
#                                    # a prebuilt mirrorplan; no `cargo build` of it
#                                    # (make-bundle is built only when missing)
#   ORDER=name|reverse|recommended   # tar member order of the bundles (default name:
#                                    # what a plain `tar -cf` of an OCI layout gives,
#                                    # blobs/ before index.json; see below)
#   IMAGES=10 SCALE=0.8 BIG_LAYER_MIB=128 bench/push/run.sh
#                                    # issue 16's size: 12 images, about 390 MiB
#                                    # (IMAGES is the number of "app" images; 22 by default)
#   TLS=0 bench/push/run.sh          # plain-HTTP registries without auth (default TLS=1:
#                                    # TLS with a CA made for the run, htpasswd basic auth)
#   XZ_OPTS="-0" bench/push/run.sh   # xz flags of the .tar.xz (default "-T0 -0": blocks
#                                    # of 1 MiB; without -T xz 5.4 writes one block)
#
# The timed measurements (1-3) run ROUNDS times, interleaved per round
# (mirrorplan .tar.zst, mirrorplan .tar.xz, skopeo flow .tar.zst, skopeo flow
# .tar.xz, raw uploads, decompression .tar.zst / .tar.xz), each against a fresh
# registry. A row's wall time is the median over the rounds, its notes give
# min-max and each round's value; peak RSS is the max over the rounds. Every
# ratio is computed from the medians; the per-round ratios (each round's
# mirrorplan time against the same round's skopeo / limit time) show the
# spread. The warm re-apply and the 1,000-tag rows are measured once, after
# the rounds. The machine's load average is recorded before, after each round
# and at the end.
#
# Every row's registry (mirrorplan, the skopeo flow, raw uploads) stores its
# blobs in the same place: on tmpfs (/dev/shm) by default, so the benchmark
# measures the tools rather than the disk, or on the disk next to the bundle
# with STORAGE=disk. The skopeo flow extracts the bundle on the bundle's own
# filesystem (the disk), as users do: the same file (.tar.zst or .tar.xz) that
# the mirrorplan row it is compared with reads.
#
# ORDER=recommended packs the bundles in the recommended order (`oci-layout`,
# `index.json`, the blobs of at most 1 MiB smallest first, then the bigger ones
# largest first: gen_bundle.py --order-file), so mirrorplan reads its
# catalogue from the head of the archive. ORDER=name (the default) packs them
# as `tar --sort=name -cf - blobs index.json oci-layout` does: the blobs by
# digest, then index.json (the catalogue is at the end); ORDER=reverse the
# same list backwards. Every mirrorplan row is cold: a new configuration
# directory, so no `.mirrorplan/` (no bundle summary cache).
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
ROUNDS=${ROUNDS:-3}
BIN=${BIN:-}
ORDER=${ORDER:-name}
IMAGES=${IMAGES:-22}
TLS=${TLS:-1}
XZ_OPTS=${XZ_OPTS:--T0 -0}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${BENCH_DIR:-/tmp/mirrorplan-bench-push-$SCALE${BIG_LAYER_MIB:+-big$BIG_LAYER_MIB}$([ "$IMAGES" = 22 ] || echo "-i$IMAGES")-v3}
case $ORDER in
name | reverse | recommended) ;;
*)
  echo "push-bench: ORDER is name, reverse or recommended" >&2
  exit 2
  ;;
esac
case $TLS in
0 | 1) ;;
*)
  echo "push-bench: TLS is 0 or 1" >&2
  exit 2
  ;;
esac
xz_tag=$(tr -cd 'A-Za-z0-9' <<<"$XZ_OPTS")
zst="$work/bundle-$ORDER.tar.zst"
xzb="$work/bundle-$ORDER-$xz_tag.tar.xz"
case $STORAGE in
tmpfs) reg_parent=/dev/shm ;;
disk) reg_parent=$work ;;
*)
  echo "push-bench: STORAGE is tmpfs or disk" >&2
  exit 2
  ;;
esac
case $ROUNDS in
'' | *[!0-9]* | 0)
  echo "push-bench: ROUNDS is a positive integer" >&2
  exit 2
  ;;
esac
case $ONLY in
all | mirrorplan) ;;
*)
  echo "push-bench: ONLY is all or mirrorplan" >&2
  exit 2
  ;;
esac
if [ -n "$BIN" ]; then
  [ -x "$BIN" ] || {
    echo "push-bench: BIN ($BIN) is not an executable" >&2
    exit 2
  }
  bin=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
else
  bin="$root/target/release/mirrorplan"
fi
mkdir -p "$work"

# ---------------------------------------------------------------- tools
need=()
for pair in docker-registry:docker-registry skopeo:skopeo zstd:zstd xz:xz-utils \
  curl:curl python3:python3 bc:bc openssl:openssl htpasswd:apache2-utils; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -x /usr/bin/time ] || need+=(time)
if ((${#need[@]})); then
  echo "push-bench: installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
make_bundle="$root/target/release/examples/make-bundle"
if [ -z "$BIN" ]; then
  (cd "$root" && cargo build --release -q -p mirrorplan &&
    cargo build --release -q -p mirrorplan-registry --example make-bundle)
elif [ ! -x "$make_bundle" ]; then
  (cd "$root" && cargo build --release -q -p mirrorplan-registry --example make-bundle)
fi

# ---------------------------------------------------------------- bundles
if [ ! -f "$zst" ] || [ ! -f "$xzb" ]; then
  echo "push-bench: generating the bundle (scale $SCALE, order $ORDER) in $work" >&2
  rm -rf "$work/layout"
  python3 "$root/bench/push/gen_bundle.py" "$work/layout" --scale "$SCALE" --images "$IMAGES" \
    ${BIG_LAYER_MIB:+--big-mib "$BIG_LAYER_MIB"} --order "$ORDER" \
    --order-file "$work/order-$ORDER.txt" >"$work/images.txt"
  pack() { tar -C "$work/layout" --no-recursion -cf - -T "$work/order-$ORDER.txt"; }
  # shellcheck disable=SC2086 # XZ_OPTS is a list of flags
  [ -f "$zst" ] || { pack | zstd -q -T0 -3 -o "$zst.part" && mv "$zst.part" "$zst"; }
  # shellcheck disable=SC2086
  [ -f "$xzb" ] || { pack | xz $XZ_OPTS >"$xzb.part" && mv "$xzb.part" "$xzb"; }
  rm -rf "$work/layout"
fi
xz_blocks=$(xz --robot --list "$xzb" | awk -F'\t' '$1 == "totals" {print $3}')
if [ ! -f "$work/tiny.tar.zst" ]; then
  "$make_bundle" "$work/tiny.tar.zst" 1000 64 7 >/dev/null
fi
blob_bytes=$(tar -I zstd -tvf "$zst" | awk '$6 ~ /blobs\/sha256\// {s+=$3} END {printf "%.0f\n", s}')
images=$(wc -l <"$work/images.txt")

# ---------------------------------------------------------------- helpers
REG_TLS=$TLS
reg_pki="$work/pki"
export REG_TLS reg_pki
# shellcheck source=bench/push/registry.sh
source "$root/bench/push/registry.sh"
extract_dirs=()
cleanup() {
  stop_registry
  if ((${#extract_dirs[@]})); then rm -rf "${extract_dirs[@]}"; fi
}
trap cleanup EXIT

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
  if [ "$TLS" = 1 ]; then
    cat >"$d/main.hcl" <<HCL
variable "password" {
  type      = string
  sensitive = true
  default   = "bench"
}
registry "mirror" {
  endpoint = "$reg_url"
  ca_cert  = "$reg_pki/ca.crt"
  username = "bench"
  password = var.password
}
HCL
  else
    cat >"$d/main.hcl" <<HCL
registry "mirror" {
  endpoint = "$reg_url"
}
HCL
  fi
  cat >>"$d/main.hcl" <<HCL
image_set "bundle" {
  registry = registry.mirror
  bundle   = "$2"
}
HCL
  echo "$d"
}

du_b() { du -sb "$@" 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s}'; }
fmt() { printf '%.2f' "$1"; }
mib() { echo "$1 / 1024" | bc; }
load() { uptime | sed 's/.*load average: //'; }
results=()
row() { results+=("| $1 | $2 | $3 | $4 |"); }

# Per-round values: vals[KEY] is a space-separated list of wall seconds (one per
# round), peak[KEY] the max RSS (KiB) over the rounds, note[KEY] a note.
declare -A vals=() peak=() note=()
record() { # KEY SECS [RSS_KIB]
  vals[$1]="${vals[$1]:-}${vals[$1]:+ }$2"
  if [ -n "${3:-}" ] && { [ -z "${peak[$1]:-}" ] || [ "$3" -gt "${peak[$1]}" ]; }; then
    peak[$1]=$3
  fi
}
# the rounds of KEY, one a line; their median / min / max (full precision)
list() { tr ' ' '\n' <<<"${vals[$1]}"; }
median() {
  list "$1" | sort -g |
    awk '{a[NR] = $1} END {if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.6f\n", m}'
}
vmin() { list "$1" | sort -g | head -n1; }
vmax() { list "$1" | sort -g | tail -n1; }
# value of KEY in round N (1-based)
nth() { list "$1" | sed -n "${2}p"; }
# "min-max A-B s; rounds: x, y, z" (or "1 round" with ROUNDS=1)
spread() {
  if [ "$ROUNDS" -eq 1 ]; then
    echo "1 round"
    return
  fi
  local r="" v
  while read -r v; do r="$r${r:+, }$(fmt "$v")"; done < <(list "$1")
  echo "min-max $(fmt "$(vmin "$1")")-$(fmt "$(vmax "$1")") s; rounds: $r s"
}
# timed_row LABEL KEY: a table row from the rounds of KEY
timed_row() {
  local rss_col="" n
  [ -n "${peak[$2]:-}" ] && rss_col="$(mib "${peak[$2]}") MiB"
  n="$(spread "$2")"
  row "$1" "$(fmt "$(median "$2")") s" "$rss_col" "$n${note[$2]:+; ${note[$2]}}"
}
ratio() { fmt "$(echo "$1 / $2" | bc -l)"; }
maxof() { echo "if ($1 > $2) $1 else $2" | bc -l; }

load_before=$(load)
scratch="$work/tmp"
rm -rf "$scratch"
mkdir -p "$scratch"
export TMPDIR="$scratch"

# the bundle file of a format (zst or xz)
bundle_of() { if [ "$1" = zst ]; then echo "$zst"; else echo "$xzb"; fi; }
setup_line="tar member order $ORDER, registry $([ "$TLS" = 1 ] && echo "TLS + basic auth" || echo "plain HTTP"), .tar.xz by \`xz $XZ_OPTS\` ($xz_blocks blocks)"

# ---------------------------------------------------------------- measurements
# 1: mirrorplan apply of the bundle FORMAT (zst or xz) into a fresh registry
mirrorplan_round() {
  local ext=$1 cfg before after stored
  start_registry
  cfg=$(config_dir "$ext" "$(bundle_of "$ext")")
  before=$(du_b "$scratch" "$work"/bundle-*.tar.*)
  timed "apply-$ext" "$bin" -C "$cfg" apply --auto-approve >"$cfg/apply.log" 2>&1
  record "apply_$ext" "$secs" "$rss"
  after=$(du_b "$scratch" "$work"/bundle-*.tar.*)
  stored=$(du_b "$reg_dir/storage")
  extra_max[$ext]=$(maxof "${extra_max[$ext]:-0}" "$((after - before))")
  note[apply_$ext]="extra disk (max) ${extra_max[$ext]} B; registry stored $((stored / 1024 / 1024)) MiB"
  "$bin" -C "$cfg" plan --detailed-exitcode >/dev/null 2>&1 || {
    echo "push-bench: the plan after apply is not empty ($cfg)" >&2
    exit 1
  }
  stop_registry
}
declare -A extra_max=()

# 2: today's flow: extract FILE into DIR (a fresh directory on the bundle's
# filesystem), then `skopeo copy --all` each image into the running registry
skopeo_flow() {
  local file=$1 dir=$2 unz name path
  case $file in
  *.zst) unz=zstd ;;
  *.xz) unz=xz ;;
  *)
    echo "push-bench: skopeo_flow: unknown format $file" >&2
    exit 1
    ;;
  esac
  mkdir -p "$dir"
  tar -I "$unz" -xf "$file" -C "$dir"
  local dest=(--dest-tls-verify=false)
  [ "$TLS" = 1 ] && dest=(--dest-cert-dir "$reg_pki/certs-dir" --dest-creds bench:bench)
  while read -r name _digest; do
    path=${name#*/}
    skopeo copy -q --all "${dest[@]}" "oci:$dir:$name" "docker://127.0.0.1:$reg_port/$path"
  done <"$work/images.txt"
}
skopeo_round() { # EXT; leaves the extracted copy in $work/extracted.EXT
  local ext=$1 dir="$work/extracted.$1" t0 t1
  rm -rf "$dir"
  extract_dirs+=("$dir")
  start_registry
  t0=$(date +%s.%N)
  skopeo_flow "$(bundle_of "$ext")" "$dir"
  t1=$(date +%s.%N)
  record "skopeo_$ext" "$(echo "$t1 - $t0" | bc -l)"
  note[skopeo_$ext]="extracted copy: $(($(du_b "$dir") / 1024 / 1024)) MiB on disk"
  stop_registry
}

# 3: the limit: parallel raw blob uploads of the extracted blobs in DIR
upload_one() {
  local f=$1 url=$2
  local d loc opts=()
  [ "$REG_TLS" = 1 ] && opts=(--cacert "$reg_pki/ca.crt" -u bench:bench)
  d=sha256:$(basename "$f")
  loc=$(curl "${opts[@]}" -sf -D - -o /dev/null -X POST "$url/v2/raw/blobs/uploads/" |
    awk -F': ' 'tolower($1)=="location" {sub(/\r$/, "", $2); print $2}')
  case $loc in http*) ;; *) loc="$url$loc" ;; esac
  curl "${opts[@]}" -sf -o /dev/null -T "$f" -H 'Content-Type: application/octet-stream' "$loc&digest=$d"
}
export -f upload_one
raw_round() {
  local dir=$1 t0 t1
  start_registry
  t0=$(date +%s.%N)
  # shellcheck disable=SC2016 # $1 and $2 are upload_one's arguments in the child bash
  find "$dir/blobs/sha256" -type f -print0 | xargs -0 -P "$PARALLEL" -I{} bash -c 'upload_one "$1" "$2"' _ {} "$reg_url"
  t1=$(date +%s.%N)
  record raw "$(echo "$t1 - $t0" | bc -l)"
  note[raw]="$((blob_bytes / 1024 / 1024)) MiB of blobs"
  stop_registry
}

# ---------------------------------------------------------------- 4: warm re-apply (once)
# Before the rounds: its untimed first apply also warms the machine up (on
# this VM, memory touched for the first time after a quiet spell is slow,
# which made round 1 of the mirrorplan rows the slowest in most runs)
start_registry
cfg=$(config_dir warm "$zst")
"$bin" -C "$cfg" apply --auto-approve >"$cfg/apply.log" 2>&1
timed warm "$bin" -C "$cfg" apply --auto-approve >"$cfg/warm.log" 2>&1
warm_secs=$secs
warm_rss=$rss
stop_registry

load_rounds=()
for ((round = 1; round <= ROUNDS; round++)); do
  echo "push-bench: round $round of $ROUNDS" >&2
  mirrorplan_round zst
  mirrorplan_round xz
  if [ "$ONLY" != mirrorplan ]; then
    skopeo_round zst
    rm -rf "$work/extracted.zst"
    skopeo_round xz
    # the raw uploads reuse the copy the .tar.xz flow extracted (outside its timing)
    raw_round "$work/extracted.xz"
    rm -rf "$work/extracted.xz"
    sync
    timed dzst sh -c "zstd -dc '$zst' >/dev/null"
    record dzst "$secs"
    timed dxz sh -c "xz -dc '$xzb' >/dev/null"
    record dxz "$secs"
  fi
  load_rounds+=("round $round: $(load)")
done

# ---------------------------------------------------------------- table
timed_row "mirrorplan apply (.tar.zst), fresh registry" apply_zst
timed_row "mirrorplan apply (.tar.xz), fresh registry" apply_xz
if [ "$ONLY" != mirrorplan ]; then
  timed_row "tar -x (.tar.zst) + skopeo copy --all per image, fresh registry" skopeo_zst
  timed_row "tar -x (.tar.xz) + skopeo copy --all per image, fresh registry" skopeo_xz
  timed_row "limit: zstd -dc bundle > /dev/null" dzst
  timed_row "limit: xz -dc bundle > /dev/null" dxz
  timed_row "limit: raw blob uploads (curl, $PARALLEL in parallel), fresh registry" raw
fi
row "warm re-apply ($images images present)" "$(fmt "$warm_secs") s" "$(mib "$warm_rss") MiB" "1 run, before the rounds"

wall_header="wall time"
[ "$ROUNDS" -gt 1 ] && wall_header="wall time (median of $ROUNDS)"
load_line() {
  local l="- load average before: $load_before" r
  for r in "${load_rounds[@]}"; do l="$l; after $r"; done
  echo "$l; at the end: $(load)"
}

if [ "$ONLY" = mirrorplan ]; then
  {
    echo "Push benchmark (mirrorplan rows only), $(date -u +%Y-%m-%d), $(nproc) cores, scale $SCALE," \
      "big layer ${BIG_LAYER_MIB:-256 (scaled)} MiB, registry storage $STORAGE, $ROUNDS round(s):"
    echo "$images images, $((blob_bytes / 1024 / 1024)) MiB of blobs; $setup_line"
    echo
    echo "| measurement | $wall_header | peak RSS | notes |"
    echo "| --- | --- | --- | --- |"
    printf '%s\n' "${results[@]}"
    echo
    echo "- peak RSS (max over the rounds): .tar.zst $(mib "${peak[apply_zst]}") MiB, .tar.xz $(mib "${peak[apply_xz]}") MiB (target < 128 MiB)"
    load_line
  } | tee "$work/results.md"
  exit 0
fi

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
declare -A med=()
for k in apply_zst apply_xz skopeo_zst skopeo_xz dzst dxz raw; do med[$k]=$(median "$k"); done
limit_zst=$(maxof "${med[dzst]}" "${med[raw]}")
limit_xz=$(maxof "${med[dxz]}" "${med[raw]}")
# per-round ratios: "x, y, z" (each round against the same round)
speedup_rounds() { # EXT
  local r="" i
  for ((i = 1; i <= ROUNDS; i++)); do
    r="$r${r:+, }$(ratio "$(nth "skopeo_$1" "$i")" "$(nth "apply_$1" "$i")")x"
  done
  echo "$r"
}
limit_rounds() { # EXT DECOMPRESSION-KEY
  local r="" i
  for ((i = 1; i <= ROUNDS; i++)); do
    r="$r${r:+, }$(ratio "$(nth "apply_$1" "$i")" "$(maxof "$(nth "$2" "$i")" "$(nth raw "$i")")")x"
  done
  echo "$r"
}
{
  echo "Push benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, scale $SCALE, registry storage $STORAGE, $ROUNDS round(s):"
  echo "$images images, $((blob_bytes / 1024 / 1024)) MiB of blobs;" \
    ".tar.zst $(($(stat -c %s "$zst") / 1024 / 1024)) MiB, .tar.xz $(($(stat -c %s "$xzb") / 1024 / 1024)) MiB;" \
    "$setup_line"
  echo
  echo "| measurement | $wall_header | peak RSS | notes |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${results[@]}"
  echo
  echo "- speed-up over tar -x + skopeo (same format; medians): .tar.zst $(ratio "${med[skopeo_zst]}" "${med[apply_zst]}")x," \
    ".tar.xz $(ratio "${med[skopeo_xz]}" "${med[apply_xz]}")x (target >= 3x)"
  if [ "$ROUNDS" -gt 1 ]; then
    echo "  - per round: .tar.zst $(speedup_rounds zst); .tar.xz $(speedup_rounds xz)"
  fi
  echo "- against the limit max(decompression, raw uploads) (medians): .tar.zst $(ratio "${med[apply_zst]}" "$limit_zst")x," \
    ".tar.xz $(ratio "${med[apply_xz]}" "$limit_xz")x (target <= 1.3x)"
  if [ "$ROUNDS" -gt 1 ]; then
    echo "  - per round: .tar.zst $(limit_rounds zst dzst); .tar.xz $(limit_rounds xz dxz)"
  fi
  echo "- peak RSS (max over the rounds): .tar.zst $(mib "${peak[apply_zst]}") MiB, .tar.xz $(mib "${peak[apply_xz]}") MiB (target < 128 MiB)"
  load_line
  echo "- 1,000 tags: warm plan $(fmt "$tiny_plan_secs") s, warm re-apply $(fmt "$tiny_warm_secs") s (target < 2 s); warm re-apply of the bundle $(fmt "$warm_secs") s"
} | tee "$work/results.md"

#!/usr/bin/env bash
# Plan at scale: 10,000 image instances and 1,000 node instances whose state is
# already up to date; measures `mirrorplan plan --refresh=false` (wall time and
# peak RSS via /usr/bin/time -v) over several runs. Target (issue 3): under 1 s
# and under 200 MiB. Results are discussed in docs/performance.md.
#
#   bench/plan-scale.sh            # IMAGES=10000 NODES=1000 CLUSTERS=10 RUNS=5
#   IMAGES=1000 NODES=100 bench/plan-scale.sh
#   DEPENDS_ON=1 bench/plan-scale.sh   # clusters depend on the image set
#
# The work directory (BENCH_DIR, default /tmp/mirrorplan-bench-IMAGESxNODES)
# is kept: the one-time setup (bundle + first apply, about 2 minutes at full
# scale) is reused when the script runs again with the same parameters.
# Delete it to start over. The first timed run also fills the bundle summary
# cache (.mirrorplan/cache/bundles/) when the setup did not.
set -euo pipefail

IMAGES=${IMAGES:-10000}
NODES=${NODES:-1000}
CLUSTERS=${CLUSTERS:-10}
RUNS=${RUNS:-5}
DEPENDS_ON=${DEPENDS_ON:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
suffix=""
[ "$DEPENDS_ON" = 1 ] && suffix="-deps"
work=${BENCH_DIR:-/tmp/mirrorplan-bench-${IMAGES}x${NODES}${suffix}}
bin="$root/target/release/mirrorplan"
timebin=/usr/bin/time

if [ ! -x "$timebin" ]; then
  echo "plan-scale: $timebin is missing (apt-get install time)" >&2
  exit 1
fi

echo "== building (release)" >&2
(cd "$root" && cargo build --release -q -p mirrorplan --bin mirrorplan \
  && cargo build --release -q -p mirrorplan-registry --example make-bundle)

mkdir -p "$work"
bundle="$work/bundle-$IMAGES.tar.zst"
if [ ! -s "$bundle" ]; then
  echo "== generating a bundle of $IMAGES images" >&2
  start=$(date +%s.%N)
  # make-bundle picks the packing from the extension: keep .tar.zst last
  "$root/target/release/examples/make-bundle" "$work/partial.tar.zst" "$IMAGES" 64 1 >/dev/null
  mv "$work/partial.tar.zst" "$bundle"
  echo "   $(du -h "$bundle" | cut -f1), $(echo "$(date +%s.%N) - $start" | bc) s" >&2
fi

cfg="$work/config"
extra=()
[ "$DEPENDS_ON" = 1 ] && extra+=(--depends-on)
python3 "$root/bench/gen-config.py" "$cfg" "$bundle" "$NODES" "$CLUSTERS" "${extra[@]}"

if ! "$bin" -C "$cfg" plan --refresh=false --detailed-exitcode >/dev/null 2>&1; then
  echo "== first apply (one-time setup)" >&2
  start=$(date +%s.%N)
  "$bin" -C "$cfg" apply --auto-approve --parallelism 10 >"$work/apply.log" 2>&1 \
    || { echo "apply failed, see $work/apply.log" >&2; exit 1; }
  echo "   apply: $(echo "$(date +%s.%N) - $start" | bc) s" >&2
fi
# the state must be up to date: nothing to do, refresh included
"$bin" -C "$cfg" plan --detailed-exitcode >/dev/null 2>&1 \
  || { echo "plan-scale: the state is not up to date after apply" >&2; exit 1; }

instances=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["instances"]))' \
  "$cfg/.mirrorplan/state.json")
state_size=$(du -h "$cfg/.mirrorplan/state.json" | cut -f1)
echo "== $instances instances in state ($state_size); plan --refresh=false x $RUNS" >&2

printf '%-4s %10s %12s\n' run wall_s peak_rss_MiB
walls=()
rsss=()
for i in $(seq 1 "$RUNS"); do
  out="$work/time-$i.txt"
  "$timebin" -v "$bin" -C "$cfg" plan --refresh=false --detailed-exitcode \
    >"$work/plan-$i.txt" 2>"$out" || { echo "plan failed or found changes:" >&2; tail "$out" >&2; exit 1; }
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$out")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$out")
  walls+=("$wall")
  rsss+=("$rss")
  printf '%-4s %10s %12s\n' "$i" "$wall" "$rss"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }
mw=$(median "${walls[@]}")
mr=$(max "${rsss[@]}")
echo "median wall: ${mw} s; max peak RSS: ${mr} MiB"
verdict=$(awk -v w="$mw" -v r="$mr" 'BEGIN { print (w < 1.0 && r < 200) ? "MET" : "MISSED" }')
echo "target (< 1 s, < 200 MiB): $verdict"

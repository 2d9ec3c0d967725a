#!/usr/bin/env bash
# The "1,000 tags" part of bench/push/run.sh alone (issue 4): a bundle of
# 1,000 tiny images (make-bundle, 64-byte layers, every 7th image a
# two-platform index) pushed into a fresh docker-registry (plain HTTP,
# filesystem storage on 127.0.0.1): first apply, warm plan (one manifest
# HEAD per tag), warm re-apply. Wall time and peak RSS per step; RUNS
# repetitions (fresh registry each). Needs docker-registry, curl, bc,
# /usr/bin/time (bench/push/run.sh installs them).
#
#   bench/push/tiny.sh          # RUNS=3
set -euo pipefail
RUNS=${RUNS:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${BENCH_DIR:-/tmp/mirrorplan-bench-push-tiny}
bin="$root/target/release/mirrorplan"
mkdir -p "$work"
(cd "$root" && cargo build --release -q -p mirrorplan &&
  cargo build --release -q -p mirrorplan-registry --example make-bundle)
[ -f "$work/tiny.tar.zst" ] ||
  "$root/target/release/examples/make-bundle" "$work/tiny.tar.zst" 1000 64 7 >/dev/null

reg_parent=$work
# shellcheck source=bench/push/registry.sh
source "$root/bench/push/registry.sh"
trap stop_registry EXIT

exec 3>&1
timed() { # LABEL CMD...: prints "LABEL wall_s rss_MiB" (on fd 3: the command's output is redirected)
  local label=$1 t0 t1
  shift
  t0=$(date +%s.%N)
  /usr/bin/time -v -o "$work/time.$label" "$@"
  t1=$(date +%s.%N)
  printf '%-12s %8.2f %8d\n' "$label" "$(echo "$t1 - $t0" | bc -l)" \
    "$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/time.$label")" >&3
}

printf '%-12s %8s %8s\n' step wall_s rss_MiB
for run in $(seq 1 "$RUNS"); do
  start_registry
  cfg="$work/cfg"
  rm -rf "$cfg"
  mkdir -p "$cfg"
  cat >"$cfg/main.hcl" <<HCL
registry "mirror" {
  endpoint = "http://127.0.0.1:$reg_port"
}
image_set "bundle" {
  registry = registry.mirror
  bundle   = "$work/tiny.tar.zst"
}
HCL
  echo "# run $run"
  timed cold "$bin" -C "$cfg" apply --auto-approve >"$cfg/apply.log" 2>&1
  timed warm-plan "$bin" -C "$cfg" plan --detailed-exitcode >"$cfg/plan.log" 2>&1
  timed warm-apply "$bin" -C "$cfg" apply --auto-approve >"$cfg/warm.log" 2>&1
  stop_registry
done

#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of runs (not a time limit) with
# a fixed seed, so that a run is repeatable: `.ci/run` calls it after the
# tests. A crash, a timeout (10 s for one input) or an input that takes
# more than 2 GiB fails the script; the input is left in fuzz/artifacts/.
#
#   fuzz/run.sh                 every target, the CI counts below
#   fuzz/run.sh bundle hcl      only these targets
#   FUZZ_RUNS=1000000 fuzz/run.sh   every target, this many runs each
#
# The counts keep the runs under 4 minutes in all on 2 cores: 99 s for the
# last full run here, 09:55 UTC 2026-12-03 (rates
# measured on the development machine under load: hcl ~340 runs/s, state
# and bundle ~1,100/s, docker_config ~1,800/s, planfile ~2,700/s,
# containerd ~5,000/s, registry and known_hosts ~10,000/s). Building the
# targets the first time takes 15-30 minutes more on a busy machine.
# Needs cargo-fuzz (installed if missing) and a nightly toolchain; without
# one, stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# target:runs:max_len
TARGETS=(
  hcl:15000:8192
  state:50000:16384
  planfile:60000:16384
  bundle:25000:65536
  docker_config:60000:4096
  known_hosts:100000:4096
  containerd:60000:8192
  registry:100000:8192
)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  echo "== no nightly toolchain: building with stable and RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
fi
# Sanitizer-free builds: the code under test is safe Rust (the workspace
# denies `unsafe`), so ASan would mostly slow the runs down; panics,
# overflows (debug assertions are on), hangs and memory blow-ups are what
# the runs look for.
fuzz=(cargo "${toolchain[@]}" fuzz)
opts=(--fuzz-dir fuzz --sanitizer none)

# the targets' scratch files (see fuzz/src/lib.rs): in memory where there
# is /dev/shm (the state target fsyncs every save)
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR="/dev/shm/mirrorplan-fuzz-$$"
else
  export TMPDIR="$root/fuzz/target/tmp"
fi
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT

wanted=("$@")
selected=()
for spec in "${TARGETS[@]}"; do
  name="${spec%%:*}"
  if [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $name "* ]]; then
    selected+=("$spec")
  fi
done
if [ ${#selected[@]} -eq 0 ]; then
  echo "no such target: $*" >&2
  exit 2
fi

echo "== building the fuzz targets"
"${fuzz[@]}" build "${opts[@]}"

start=$(date +%s)
for spec in "${selected[@]}"; do
  IFS=: read -r name runs max_len <<<"$spec"
  runs="${FUZZ_RUNS:-$runs}"
  # new inputs go to a scratch corpus; the committed seeds stay as they are
  work="fuzz/target/corpus/$name"
  mkdir -p "$work" "fuzz/artifacts/$name"
  echo "== fuzz $name: $runs runs"
  t0=$(date +%s)
  log="fuzz/target/$name.log"
  status=0
  "${fuzz[@]}" run "${opts[@]}" "$name" "$work" "fuzz/corpus/$name" -- \
    -runs="$runs" -seed=1 -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz target $name failed (exit $status); the input is in fuzz/artifacts/$name/" >&2
    exit 1
  fi
  echo "   $name: $(($(date +%s) - t0)) s"
done
echo "== every fuzz target ran without a finding ($(($(date +%s) - start)) s)"

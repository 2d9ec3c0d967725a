#!/usr/bin/env bash
# Plan at scale: 10,000 image instances and 1,000 node instances whose state is
# already up to date; measures `mirrorplan plan --refresh=false` (wall time and
# peak RSS via /usr/bin/time -v) over several runs. Target (issue 3): under 1 s
# and under 200 MiB. Results are discussed in docs/performance.md.
#
#   bench/plan-scale.sh            # IMAGES=10000 NODES=1000 CLUSTERS=10 RUNS=5
#   IMAGES=1000 NODES=100 bench/plan-scale.sh
#   DEPENDS_ON=1 bench/plan-scale.sh   # clusters depend on the image set
#   PG=1 bench/plan-scale.sh           # also the pg backend (see below)
#
# With PG=1 the script then starts a throw-away PostgreSQL (Debian's
# postgresql, initdb in the work directory, 127.0.0.1, a free port, as the
# postgres user when run as root), migrates the state into it
# (`init --migrate-state`), and times, for the local and the pg backend in
# turn, `plan --refresh=false` and an `apply` with nothing to do
# (`--refresh=false --auto-approve`). Target (issue 13): pg within 1.5x of
# local for both. The backend block is removed again at the end.
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

[ "${PG:-0}" = 1 ] || exit 0

# ---------------------------------------------------------------- pg backend
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$pgbin" ]; then
  echo "plan-scale: PostgreSQL is missing (apt-get install postgresql)" >&2
  exit 1
fi
pgdir="$work/pg"
rm -rf "$pgdir"
mkdir -p "$pgdir/sock"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown -R postgres:postgres "$pgdir"
  as_pg=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pw=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
"${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -U postgres --auth-local=trust \
  --auth-host=scram-sha-256 --no-instructions >"$pgdir/initdb.log" 2>&1
"${as_pg[@]}" "$pgbin/postgres" -D "$pgdir/data" -p "$port" -c listen_addresses=127.0.0.1 \
  -c "unix_socket_directories=$pgdir/sock" >"$pgdir/postgres.log" 2>&1 &
pgpid=$!
backend_file="$cfg/zz-backend.hcl"
cleanup() {
  rm -f "$backend_file"
  kill -INT "$pgpid" 2>/dev/null || true
  wait "$pgpid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  [ -S "$pgdir/sock/.s.PGSQL.$port" ] && break
  sleep 0.1
done
psql -h "$pgdir/sock" -p "$port" -U postgres -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE ROLE mirrorplan LOGIN PASSWORD '$pw';
CREATE DATABASE mirrorplan OWNER mirrorplan;
SQL
export PG_CONN_STR="postgres://mirrorplan@127.0.0.1:$port/mirrorplan?sslmode=disable"
export PGPASSWORD="$pw"

timed() { # LABEL ARGS...: prints the wall time of one run
  local label=$1; shift
  local out="$work/time-$label.txt"
  "$timebin" -v "$bin" -C "$cfg" "$@" >"$work/out-$label.txt" 2>"$out" \
    || { echo "$label failed:" >&2; tail "$out" >&2; exit 1; }
  awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$out"
}
use_pg() { printf 'mirrorplan {\n  backend "pg" {}\n}\n' >"$backend_file"; }
use_local() { rm -f "$backend_file"; }

use_pg
"$bin" -C "$cfg" init --migrate-state >"$work/migrate.log" 2>&1 \
  || { echo "migration failed, see $work/migrate.log" >&2; exit 1; }
echo "== local vs pg backend, $RUNS runs each (interleaved)" >&2
printf '%-4s %12s %12s %13s %13s\n' run plan_local plan_pg apply_local apply_pg
pl=(); pp=(); al=(); ap=()
for i in $(seq 1 "$RUNS"); do
  use_local; a=$(timed "plan-local-$i" plan --refresh=false --detailed-exitcode)
  use_pg;    b=$(timed "plan-pg-$i" plan --refresh=false --detailed-exitcode)
  use_local; c=$(timed "apply-local-$i" apply --refresh=false --auto-approve)
  use_pg;    d=$(timed "apply-pg-$i" apply --refresh=false --auto-approve)
  pl+=("$a"); pp+=("$b"); al+=("$c"); ap+=("$d")
  printf '%-4s %12s %12s %13s %13s\n' "$i" "$a" "$b" "$c" "$d"
done
m_pl=$(median "${pl[@]}"); m_pp=$(median "${pp[@]}")
m_al=$(median "${al[@]}"); m_ap=$(median "${ap[@]}")
echo "median plan --refresh=false: local ${m_pl} s, pg ${m_pp} s"
echo "median no-op apply:          local ${m_al} s, pg ${m_ap} s"
verdict=$(awk -v a="$m_pl" -v b="$m_pp" -v c="$m_al" -v d="$m_ap" \
  'BEGIN { print (b <= 1.5 * a && d <= 1.5 * c) ? "MET" : "MISSED" }')
echo "target (pg within 1.5x of local, plan and no-op apply): $verdict"

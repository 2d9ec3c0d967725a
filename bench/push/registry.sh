# Sourced by the push benchmarks (run.sh, tiny.sh): a fresh docker-registry
# (plain HTTP, filesystem storage) on 127.0.0.1 and a random free port.
#   start_registry   sets reg_dir (a new directory under $reg_parent), reg_port
#                    and reg_pid; waits until /v2/ answers
#   stop_registry    stops it and removes reg_dir
# shellcheck shell=bash
reg_pid=""
reg_dir=""
reg_port=""
start_registry() {
  # flush what earlier rows wrote (new bundles, extracted copies) so that
  # its writeback does not land in this row's measurement
  sync
  reg_dir=$(mktemp -d "${reg_parent:?set reg_parent before start_registry}/mirrorplan-push-registry.XXXXXX")
  reg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$reg_dir/config.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $reg_dir/storage}
  delete: {enabled: true}
http:
  addr: 127.0.0.1:$reg_port
YML
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
  [ -z "$reg_dir" ] || rm -rf "$reg_dir"
  reg_dir=""
}

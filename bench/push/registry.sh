# Sourced by the push benchmarks (run.sh, tiny.sh): a fresh docker-registry
# (filesystem storage) on 127.0.0.1 and a random free port; plain HTTP, or
# with REG_TLS=1 TLS (a CA and a server certificate for 127.0.0.1 made once
# in $reg_pki) and htpasswd basic auth (user `bench`, password `bench`).
#   start_registry   sets reg_dir (a new directory under $reg_parent), reg_port,
#                    reg_pid and reg_url; waits until /v2/ answers
#   stop_registry    stops it and removes reg_dir
#   reg_curl ARGS    curl with the CA and the credentials when REG_TLS=1
# shellcheck shell=bash
reg_pid=""
reg_dir=""
reg_port=""
reg_url=""
REG_TLS=${REG_TLS:-0}
reg_pki=${reg_pki:-}
# the CA, server certificate and htpasswd file (once per $reg_pki)
reg_make_pki() {
  [ -n "$reg_pki" ] || {
    echo "push-bench: set reg_pki before start_registry with REG_TLS=1" >&2
    exit 1
  }
  [ -f "$reg_pki/server.crt" ] && return 0
  mkdir -p "$reg_pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=bench-ca \
    -keyout "$reg_pki/ca.key" -out "$reg_pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$reg_pki/server.key" -out "$reg_pki/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$reg_pki/san.ext"
  openssl x509 -req -in "$reg_pki/server.csr" -CA "$reg_pki/ca.crt" -CAkey "$reg_pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$reg_pki/san.ext" -out "$reg_pki/server.crt" 2>/dev/null
  htpasswd -Bbn bench bench >"$reg_pki/htpasswd"
  # skopeo's --dest-cert-dir takes a directory of *.crt
  mkdir -p "$reg_pki/certs-dir"
  cp "$reg_pki/ca.crt" "$reg_pki/certs-dir/ca.crt"
}
reg_curl() {
  if [ "$REG_TLS" = 1 ]; then
    curl --cacert "$reg_pki/ca.crt" -u bench:bench "$@"
  else
    curl "$@"
  fi
}
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
  reg_url="http://127.0.0.1:$reg_port"
  if [ "$REG_TLS" = 1 ]; then
    reg_make_pki
    cat >>"$reg_dir/config.yml" <<YML
  tls: {certificate: $reg_pki/server.crt, key: $reg_pki/server.key}
auth:
  htpasswd: {realm: bench, path: $reg_pki/htpasswd}
YML
    reg_url="https://127.0.0.1:$reg_port"
  fi
  docker-registry serve "$reg_dir/config.yml" >"$reg_dir/log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do
    reg_curl -sf -o /dev/null "$reg_url/v2/" && return 0
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

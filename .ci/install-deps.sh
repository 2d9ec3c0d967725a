#!/usr/bin/env bash
# Installs the Debian packages mirrorplan's tests need (real registry, sshd,
# containerd, skopeo, ...) when they are missing, and creates /run/sshd.
# Idempotent: a second run with everything present does nothing but check.
# Needs root (apt-get). Exits non-zero on any failure.
set -euo pipefail

PKGS=(
  docker-registry  # CNCF distribution: the registries under test
  openssh-server   # sshd for nodes
  openssh-client   # ssh, ssh-keygen
  containerd       # containerd, ctr, containerd-shim-runc-v2
  runc
  skopeo           # copying images between test registries
  apache2-utils    # htpasswd (bcrypt) for registry basic auth
  openssl          # test CA and server certificates
  iproute2
  busybox-static   # a static binary to build runnable test images from
  curl             # registry readiness probes and /v2/ checks
  util-linux       # unshare, nsenter, setsid (node sandboxes)
  bsdutils         # script: a pseudo-terminal for the progress-bar tests
  mount
  sudo             # nodes whose SSH login is not root (sudo -n)
  socat            # the stdio-to-socket bridge to containerd for those logins
  postgresql       # initdb, postgres, psql: the pg state backend's tests
)

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == *"ok installed"* ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "install-deps: all ${#PKGS[@]} packages present"
fi

# sshd's privilege-separation directory (no systemd here to create it).
mkdir -p /run/sshd

# Fail loudly if a program the tests call is still missing.
for b in docker-registry sshd ssh ssh-keygen containerd ctr containerd-shim-runc-v2 runc \
         skopeo htpasswd openssl curl unshare nsenter setsid busybox sudo socat psql setpriv; do
  if ! command -v "$b" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$b && ! -x /sbin/$b ]]; then
    echo "install-deps: $b still missing after install" >&2
    exit 1
  fi
done
# PostgreSQL's server programs are not on PATH (the harness looks there).
for b in initdb postgres; do
  if ! compgen -G "/usr/lib/postgresql/*/bin/$b" >/dev/null; then
    echo "install-deps: /usr/lib/postgresql/*/bin/$b still missing after install" >&2
    exit 1
  fi
done
if ! id postgres >/dev/null 2>&1; then
  echo "install-deps: the postgres OS user is missing (the postgresql package creates it)" >&2
  exit 1
fi
echo "install-deps: ok"

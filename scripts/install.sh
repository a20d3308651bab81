#!/usr/bin/env bash
# Installs infra.operator on Debian 12, as root, and starts the API on port 8080.
#
#   scripts/install.sh                 install, build the images, start the API
#   scripts/install.sh --no-start      the same without starting the API (CI)
#
# Everything comes from Debian's packages and PyPI, pinned (requirements.lock).
# Safe to run again: it rebuilds only images that are missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

START=1
for argument in "$@"; do
  case "$argument" in
    --no-start) START=0 ;;
    *) echo "unknown option: $argument" >&2; exit 2 ;;
  esac
done

PREFIX=${INFRA_OPERATOR_PREFIX:-/opt/infra-operator}
DATA_DIR=${INFRA_OPERATOR_DATA_DIR:-/var/lib/infra-operator}
PORT=${INFRA_OPERATOR_PORT:-8080}
# python-data (numpy, pandas, scipy, matplotlib) so an agent's first chart works without setup.
# Measured 2026-11-30 on 2 cores shared with other builds (load ~15): 101 s with the package
# cache warm, 323 s cold (234 packages, 206 MB downloaded); a 1.47 GiB image.
LANGUAGES=${INFRA_OPERATOR_LANGUAGES:-python python-data nodejs go rust}
export INFRA_OPERATOR_DATA_DIR=$DATA_DIR

step() { printf '\n==> %s\n' "$*"; }
keys_hint() {
  echo "API keys: without any, the API listens on 127.0.0.1 only. To require keys (and so serve other hosts, --host 0.0.0.0),"
  echo "  start it with INFRA_OPERATOR_API_KEYS_FILE=/path/to/keys (one key a line, # comments) or INFRA_OPERATOR_API_KEYS='[\"KEY\"]'."
}

if [ "$(id -u)" != 0 ]; then
  echo "run as root: sandboxes need mounts, cgroups and namespaces" >&2
  exit 1
fi

step "Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
  python3 python3-venv ca-certificates \
  bubblewrap mmdebstrap e2fsprogs squashfs-tools util-linux seccomp \
  qemu-system-x86 busybox-static cpio zstd xz-utils dpkg-dev redis-server
command -v npm >/dev/null || apt-get install -y -q --no-install-recommends nodejs npm  # for clients/js and its tests

step "Python environment in $PREFIX/venv"
mkdir -p "$PREFIX"
# Debian's own interpreter: the service must not depend on a user's pyenv or shims.
[ -x "$PREFIX/venv/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX/venv"
# The service alone: scripts/test.sh adds the test tools, and the benchmark's chart is an extra.
"$PREFIX/venv/bin/pip" install -q --disable-pip-version-check -c requirements.lock -e .
ln -sf "$PREFIX/venv/bin/infra.operator" /usr/local/bin/infra.operator

step "Rootfs images: $LANGUAGES"
for language in $LANGUAGES; do
  infra.operator rootfs create --lang "$language" --if-stale
done

step "Guest kernel and initramfs for the microVM backends"
infra.operator kernel build --if-stale
# A snapshot of every image built, for the first microVM backend that works here (QEMU
# under TCG at least), so executions on it restore rather than boot; each is made again
# when its image, kernel, agent or QEMU version changed.
infra.operator snapshot create --all --if-stale || echo "not every microVM snapshot was made: see infra.operator setup"

infra.operator setup

if [ "$START" = 1 ]; then
  step "Starting the API on port $PORT"
  if [ -f /run/infra-operator.pid ] && kill -0 "$(cat /run/infra-operator.pid)" 2>/dev/null; then
    kill "$(cat /run/infra-operator.pid)" && sleep 2
  fi
  nohup infra.operator api --port "$PORT" >>/var/log/infra-operator.log 2>&1 &
  echo $! >/run/infra-operator.pid
  for _ in $(seq 60); do
    if "$PREFIX/venv/bin/python" -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$PORT/health').status_code != 200)" 2>/dev/null; then
      "$PREFIX/venv/bin/python" -c "import httpx; print(httpx.get('http://127.0.0.1:$PORT/health').text)"
      echo "infra.operator is serving on port $PORT (log: /var/log/infra-operator.log)"
      keys_hint
      exit 0
    fi
    sleep 1
  done
  echo "the API did not answer /health; see /var/log/infra-operator.log" >&2
  exit 1
fi
keys_hint

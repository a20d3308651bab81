#!/usr/bin/env bash
# Runs the whole test suite, as root, after scripts/install.sh.
# Extra arguments go to pytest (e.g. scripts/test.sh -k execute).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${INFRA_OPERATOR_PREFIX:-/opt/infra-operator}
export INFRA_OPERATOR_DATA_DIR=${INFRA_OPERATOR_DATA_DIR:-/var/lib/infra-operator}

if [ ! -x "$PREFIX/venv/bin/python" ]; then
  echo "no environment in $PREFIX/venv: run scripts/install.sh first" >&2
  exit 1
fi
# Always test this checkout, whichever one the environment was installed from.
"$PREFIX/venv/bin/pip" install -q --disable-pip-version-check --no-deps -e .

exec "$PREFIX/venv/bin/python" -m pytest "$@"

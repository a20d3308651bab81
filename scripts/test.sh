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

# The images the tests need beyond the install's: the catalog's CI subset, one language
# per family (built once, kept in the data dir; a rebuild only when the catalog changed).
for language in $("$PREFIX/venv/bin/python" -c \
    "from infra_operator.languages import Catalog; print(*(l.name for l in Catalog.load() if l.ci))"); do
  "$PREFIX/venv/bin/infra.operator" rootfs create --lang "$language" --if-stale
done

exec "$PREFIX/venv/bin/python" -m pytest "$@"

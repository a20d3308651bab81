#!/usr/bin/env bash
# Runs lint (ruff), types (mypy) and the whole test suite, as root, after scripts/install.sh.
# Extra arguments go to pytest (e.g. scripts/test.sh -k execute).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${INFRA_OPERATOR_PREFIX:-/opt/infra-operator}
export INFRA_OPERATOR_DATA_DIR=${INFRA_OPERATOR_DATA_DIR:-/var/lib/infra-operator}

if [ ! -x "$PREFIX/venv/bin/python" ]; then
  echo "no environment in $PREFIX/venv: run scripts/install.sh first" >&2
  exit 1
fi
# Always test this checkout, whichever one the environment was installed from, with the
# test tools (pinned like the rest; the service's install leaves them out). Quick when present.
"$PREFIX/venv/bin/pip" install -q --disable-pip-version-check -c requirements.lock -e ".[test]"

# Lint and types before anything slow: a finding fails the run in seconds.
"$PREFIX/venv/bin/ruff" check
"$PREFIX/venv/bin/mypy"  # strict, over src and tests (pyproject.toml)

# The images the tests need beyond the install's: the catalog's CI subset, one language
# per family (built once, kept in the data dir; a rebuild only when the catalog changed).
for language in $("$PREFIX/venv/bin/python" -c \
    "from infra_operator.languages import Catalog; print(*(l.name for l in Catalog.load() if l.ci))"); do
  "$PREFIX/venv/bin/infra.operator" rootfs create --lang "$language" --if-stale
done

exec "$PREFIX/venv/bin/python" -m pytest "$@"

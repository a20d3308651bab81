#!/usr/bin/env bash
# Runs lint (ruff), types (mypy), the unit tier as an unprivileged user, then the whole test
# suite (the unit tier included), as root, after scripts/install.sh.
# Extra arguments go to the whole suite's pytest (e.g. scripts/test.sh -k execute).
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${INFRA_OPERATOR_PREFIX:-/opt/infra-operator}
export INFRA_OPERATOR_DATA_DIR=${INFRA_OPERATOR_DATA_DIR:-/var/lib/infra-operator}

if [ ! -x "$PREFIX/venv/bin/python" ]; then
  echo "no environment in $PREFIX/venv: run scripts/install.sh first" >&2
  exit 1
fi
# Always test this checkout, whichever one the environment was installed from, with the
# test tools and the benchmark's chart, whose test draws one (pinned like the rest; the
# service's install leaves both out). Quick when they are there already.
"$PREFIX/venv/bin/pip" install -q --disable-pip-version-check -c requirements.lock -e ".[test,bench]"

# Debian's Chromium for the playground's browser tests: Playwright cannot download its own here.
command -v chromium >/dev/null || apt-get install -y -q --no-install-recommends chromium

# Lint and types before anything slow: a finding fails the run in seconds.
"$PREFIX/venv/bin/ruff" check
"$PREFIX/venv/bin/mypy"  # strict, over src and tests (pyproject.toml)

# The unit tier next, as an unprivileged user: it fails in seconds rather than after the long
# part, and shows that the quick loop still needs no root. It runs from a copy of this checkout
# that the user owns, since the checkout itself may sit where nobody can read.
unit=$(mktemp -d)
trap 'rm -rf "$unit"' EXIT
tar -cf - --exclude=.git --exclude=.mypy_cache --exclude=.ruff_cache --exclude=.pytest_cache \
    --exclude=.hypothesis --exclude=results . | tar -xf - -C "$unit"
chown -R nobody: "$unit"
# PYTHONPATH too, for the commands the tests start: the environment's own path to the package
# is this checkout's.
(cd "$unit" && runuser -u nobody -- env HOME="$unit" PYTHONPATH="$unit/src" "$PREFIX/venv/bin/python" -m pytest -m unit -q)
rm -rf "$unit"
trap - EXIT

# The images the tests need beyond the install's: the catalog's CI subset, one language
# per family, on its default release (Debian 13's; built once, kept in the data dir; a
# rebuild only when the catalog changed), and python's Debian 12 release for the tests that
# choose a release by version. Other releases' tests skip, saying which image to build.
for language in $("$PREFIX/venv/bin/python" -c \
    "from infra_operator.languages import Catalog; print(*(l.name for l in Catalog.load() if l.ci))"); do
  "$PREFIX/venv/bin/infra.operator" rootfs create --lang "$language" --if-stale
done
"$PREFIX/venv/bin/infra.operator" rootfs create --lang python --version bookworm --if-stale

exec "$PREFIX/venv/bin/python" -m pytest "$@"

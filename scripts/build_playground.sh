#!/bin/sh
# Rebuilds the playground's bundle (src/infra_operator/api/playground/bundle/, committed) from
# playground/src with the packages pinned in playground/package-lock.json. Needs node and npm
# (Debian's: apt-get install nodejs npm) and the npm registry; the server itself needs neither.
# tests/api/test_playground_bundle.py fails when the committed bundle is not what this builds.
set -eu
cd "$(dirname "$0")/../playground"
npm ci --no-audit --no-fund
rm -rf ../src/infra_operator/api/playground/bundle
npm run build

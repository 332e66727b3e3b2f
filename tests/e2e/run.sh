#!/usr/bin/env bash
# run.sh BUILD_DIR [TEST_FILE...]: runs the end-to-end tests against the binaries in BUILD_DIR
# (`make e2e`). Installs the pinned npm packages first, only when node_modules is missing or
# package.json changed since the last install. With no TEST_FILE, runs every tests/e2e/*.test.mjs, one
# file at a time (each file starts its own cluster). Exits with node's exit code.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${1:-build}
shift || true
[[ "$BUILD" == /* ]] || BUILD="$ROOT/$BUILD"

stamp="$HERE/node_modules/.tollgate-package.json"
if [[ ! -d "$HERE/node_modules" ]] || ! cmp -s "$HERE/package.json" "$stamp"; then
	(cd "$HERE" && npm install --no-audit --no-fund --loglevel=error)
	cp "$HERE/package.json" "$stamp"
fi

if (($# == 0)); then
	set -- "$HERE"/*.test.mjs
fi

cd "$ROOT"
export TOLLGATE_BUILD="$BUILD"
status=0
node --test --test-concurrency=1 "$@" || status=$?
exit "$status"

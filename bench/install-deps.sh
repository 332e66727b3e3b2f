#!/usr/bin/env bash
# install-deps.sh: installs what the benchmarks need beyond the build and test dependencies
# (`make bench`, `make bench-peers`, `make bench-soak` call it). Never part of `make test`.
#
# Debian packages: wrk (closed-loop load), nghttp2-client (h2load), nginx (a canned-answer upstream
# nobody here wrote), linux-perf and valgrind (profiling). Idempotent and quiet when nothing is missing:
# asks dpkg which are absent and only then runs `apt-get update` once and installs exactly those.
# With --peers, also installs the pinned peer gateway(s) under bench/peers/ with npm, only when
# node_modules is missing or package.json changed since the last install.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
bash "$HERE/../deploy/local/install-deps.sh"

PACKAGES=(wrk nghttp2-client nginx linux-perf valgrind procps util-linux)
missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	[[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
	SUDO=()
	if [[ "$(id -u)" != 0 ]]; then
		command -v sudo >/dev/null 2>&1 || { echo "bench/install-deps: need root or sudo for ${missing[*]}" >&2; exit 1; }
		SUDO=(sudo)
	fi
	echo "bench/install-deps: installing ${missing[*]}" >&2
	"${SUDO[@]}" apt-get update -qq
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# the nginx package starts a system-wide server on port 80; the benchmarks run their own
	if command -v systemctl >/dev/null 2>&1; then
		"${SUDO[@]}" systemctl disable --now nginx >/dev/null 2>&1 || true
	fi
	if [[ -f /run/nginx.pid ]]; then
		"${SUDO[@]}" nginx -s stop >/dev/null 2>&1 || true
	fi
fi

# The end-to-end harness (reused by the benchmarks to start clusters) needs its npm packages.
E2E="$HERE/../tests/e2e"
if [[ ! -d "$E2E/node_modules" ]] || ! cmp -s "$E2E/package.json" "$E2E/node_modules/.tollgate-package.json"; then
	(cd "$E2E" && npm install --no-audit --no-fund --loglevel=error)
	cp "$E2E/package.json" "$E2E/node_modules/.tollgate-package.json"
fi

if [[ "${1:-}" == --peers ]]; then
	P="$HERE/peers"
	if [[ ! -d "$P/node_modules" ]] || ! cmp -s "$P/package.json" "$P/node_modules/.tollgate-package.json"; then
		(cd "$P" && npm install --no-audit --no-fund --loglevel=error)
		cp "$P/package.json" "$P/node_modules/.tollgate-package.json"
	fi
fi

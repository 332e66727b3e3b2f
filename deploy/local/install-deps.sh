#!/usr/bin/env bash
# install-deps.sh: installs the Debian packages Tollgate needs to build, test and run locally.
#
# Idempotent and quiet when nothing is missing: it asks dpkg which packages are not installed and only
# then runs `apt-get update` once and installs exactly those. Node.js and npm are skipped when `node`
# and `npm` are already on PATH (e.g. a Node installed outside Debian). Uses sudo only when not root.
# Called by `make deps` (and so by `make build`, `make test`, CI).
#
#   install-deps.sh --k8s     also what the chart tests need (tests/k8s/): Go, etcd, rsync, jq, unzip and
#                             the Go sources that replace kube-apiserver's broken vendored ones
#   install-deps.sh --images  also what `make images` needs: debootstrap and docker.io
set -euo pipefail

PACKAGES=(
	build-essential meson ninja-build pkg-config cmake
	libuv1-dev libh2o-dev libssl-dev libcurl4-openssl-dev
	libprotobuf-c-dev protobuf-c-compiler libnng-dev libcmocka-dev
	libpq-dev postgresql-15 libjansson-dev zlib1g-dev
	curl ca-certificates clang
)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	PACKAGES+=(nodejs npm)
fi
case "${1:-}" in
--k8s)
	PACKAGES+=(golang-go etcd-server rsync jq unzip openssl dpkg-dev
		golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev)
	;;
--images) PACKAGES+=(debootstrap docker.io) ;;
"") ;;
*)
	echo "usage: install-deps.sh [--k8s|--images]" >&2
	exit 2
	;;
esac

missing=()
for pkg in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
	if [[ "$status" != "install ok installed" ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "install-deps: missing packages (${missing[*]}) and not root, no sudo available" >&2
		exit 1
	fi
	SUDO=(sudo)
fi

echo "install-deps: installing ${missing[*]}" >&2
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# build.sh: builds Tollgate's container images from a local Debian base (`make images`).
#
#   build.sh [TAG]     images tollgate/controlplane:TAG, tollgate/dataplane:TAG, tollgate/mock:TAG and
#                      tollgate/postgres:15 (TAG defaults to the project version in meson.build)
#
# No registry is involved. Three root filesystems are made with debootstrap (--variant=minbase) from the
# Debian mirror the machine's apt already uses, and imported as base images: build-base (compilers and
# -dev packages), runtime-base (only the shared libraries the binaries need) and postgres-base
# (postgresql-15). They are cached under $TOLLGATE_IMAGES_CACHE (default ~/.cache/tollgate/images) and
# remade only when missing. The build runs without network (everything is in the bases).
#
# Docker: the running daemon when `docker info` works; otherwise a private dockerd is started for the
# build, with every path under the cache folder, no bridge and no iptables rules, and stopped by PID at
# the end. Uses the classic builder (DOCKER_BUILDKIT=0). Needs root for debootstrap and dockerd.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${TOLLGATE_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/images}
TAG=${1:-$(sed -n "s/^  version: '\(.*\)',$/\1/p" "$ROOT/meson.build" | head -n 1)}
SUITE=bookworm
# The bases' tag: bump RECIPE when what goes into them changes, so cached images are not reused.
RECIPE=2
BASE_TAG="$SUITE-r$RECIPE"
export DOCKER_BUILDKIT=0

die() {
	echo "images: $*" >&2
	exit 1
}
[[ -n "$TAG" ]] || die "no version found in meson.build; pass a TAG"
[[ "$(id -u)" == 0 ]] || die "debootstrap and dockerd need root"
for tool in debootstrap docker dockerd; do
	command -v "$tool" >/dev/null || die "$tool not found (deploy/local/install-deps.sh --images)"
done
mkdir -p "$CACHE"

BUILD_PACKAGES=build-essential,meson,ninja-build,pkg-config,libuv1-dev,libh2o-dev,libssl-dev,libcurl4-openssl-dev,libprotobuf-c-dev,protobuf-c-compiler,libnng-dev,libpq-dev,libjansson-dev,zlib1g-dev
RUNTIME_PACKAGES=ca-certificates,libuv1,libh2o0.13,libssl3,libcurl4,libprotobuf-c1,libnng1,libpq5,libjansson4
POSTGRES_PACKAGES=postgresql-15,ca-certificates

# The Debian mirror apt already uses (deb822 or one-line sources).
mirror() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f "$f" ]] || continue
		uri=$(grep -Eo 'https?://[^ ]+/debian/?( |$)' "$f" | head -n 1 | tr -d ' ')
		[[ -n "$uri" ]] && { echo "$uri"; return 0; }
	done
	return 1
}

# ---- docker daemon ----------------------------------------------------------------------------------
DOCKERD_PID=""
stop_dockerd() {
	[[ -n "$DOCKERD_PID" ]] || return 0
	kill -TERM "$DOCKERD_PID" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$DOCKERD_PID" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$DOCKERD_PID" 2>/dev/null || true
}
trap stop_dockerd EXIT
if ! docker info >/dev/null 2>&1; then
	d="$CACHE/dockerd"
	mkdir -p "$d/data" "$d/exec"
	export DOCKER_HOST="unix://$d/docker.sock"
	if ! docker info >/dev/null 2>&1; then
		echo "images: starting a private dockerd (log: $d/dockerd.log)" >&2
		dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" -H "$DOCKER_HOST" \
			--bridge=none --iptables=false --ip-masq=false >"$d/dockerd.log" 2>&1 &
		DOCKERD_PID=$!
		for _ in $(seq 300); do
			docker info >/dev/null 2>&1 && break
			kill -0 "$DOCKERD_PID" 2>/dev/null || die "dockerd exited; see $d/dockerd.log"
			sleep 0.1
		done
		docker info >/dev/null 2>&1 || die "dockerd not ready after 30 s; see $d/dockerd.log"
	fi
fi

# ---- base images ------------------------------------------------------------------------------------
# base NAME PACKAGES [trim]: debootstraps a minbase root with PACKAGES (cached as a tarball) and imports
# it as tollgate/NAME:$BASE_TAG; with "trim", without documentation, manual pages and translations.
base() {
	local name=$1 packages=$2 trim=${3:-} image="tollgate/$1:$BASE_TAG"
	if docker image inspect "$image" >/dev/null 2>&1; then
		return 0
	fi
	local tarball="$CACHE/$name-$SUITE.tar"
	if [[ ! -f "$tarball" ]]; then
		local uri root="$CACHE/$name-root"
		uri=$(mirror) || die "no Debian mirror found in /etc/apt/sources.list*"
		echo "images: debootstrap $name ($packages)" >&2
		rm -rf "$root"
		debootstrap --variant=minbase --include="$packages" "$SUITE" "$root" "$uri" >"$CACHE/$name.log" 2>&1 ||
			die "debootstrap $name failed; see $CACHE/$name.log"
		# No apt lists or caches in an image; the user every Tollgate image runs as.
		rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*
		chroot "$root" groupadd -g 10001 tollgate
		chroot "$root" useradd -u 10001 -g 10001 -M -d /nonexistent -s /usr/sbin/nologin tollgate
		tar -C "$root" -cf "$tarball.tmp" .
		mv "$tarball.tmp" "$tarball"
		rm -rf "$root"
	fi
	if [[ "$trim" == trim ]]; then
		local tmp
		tmp=$(mktemp -d "$CACHE/.trim.XXXXXX")
		tar -C "$tmp" -xf "$tarball"
		rm -rf "$tmp"/usr/share/doc/* "$tmp"/usr/share/man/* "$tmp"/usr/share/info/* "$tmp"/usr/share/locale/*
		tar -C "$tmp" -cf - . | docker import - "$image" >/dev/null
		rm -rf "$tmp"
	else
		docker import "$tarball" "$image" >/dev/null
	fi
}
base build-base "$BUILD_PACKAGES"
base runtime-base "$RUNTIME_PACKAGES" trim
base postgres-base "$POSTGRES_PACKAGES" trim

# ---- the build context: the project's files, no build output, no node_modules -----------------------
ctx=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-images.XXXXXX")
trap 'rm -rf "$ctx"; stop_dockerd' EXIT
paths=(meson.build meson_options.txt proto common controlplane dataplane tests/meson.build tests/mock bench
	migrations deploy/docker)
tar -C "$ROOT" --exclude=node_modules --exclude=bench/out --exclude='*.o' -cf - "${paths[@]}" | tar -C "$ctx" -xf -

t0=$SECONDS
# build TAG DOCKERFILE [--target T]: quiet unless it fails (the classic builder's deprecation notice is noise).
build() {
	local tag=$1 file=$2 log="$ctx/build.log"
	shift 2
	echo "images: building $tag" >&2
	if ! docker build --network none "$@" -t "$tag" -f "$ctx/$file" "$ctx" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		die "building $tag failed"
	fi
}
for target in controlplane dataplane mock; do
	build "tollgate/$target:$TAG" deploy/docker/Dockerfile --target "$target" --build-arg BASE_TAG="$BASE_TAG"
done
build tollgate/postgres:15 deploy/docker/postgres.Dockerfile --build-arg BASE_TAG="$BASE_TAG"
echo "images: built in $((SECONDS - t0)) s:" >&2
for image in "tollgate/controlplane:$TAG" "tollgate/dataplane:$TAG" "tollgate/mock:$TAG" tollgate/postgres:15; do
	echo "  $image $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')" >&2
done

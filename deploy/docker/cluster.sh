#!/usr/bin/env bash
# cluster.sh up|down|status: a whole Tollgate cluster in containers, for people who prefer containers
# to `make up`. Needs the images of `make images` (deploy/docker/build.sh).
#
#   up      PostgreSQL, two control planes (a leader and a standby), the mock provider and
#           TOLLGATE_DATAPLANES (2) dataplanes, seeded like `make up` (tenant "demo", route "mock-gpt",
#           a demo key); prints the curl line to try and writes var/containers/up.env
#   down    stops and removes the containers (data stays in var/containers/pg; `down --purge` deletes it)
#   status  which containers run and which control plane leads
#
# Every container shares the host's network namespace and listens on 127.0.0.1 only (nothing is
# published elsewhere), runs as a non-root user with a read-only root filesystem, and is named
# tollgate-local-*. Ports: dataplanes 8090.., admin 8091/8092, NNG 7411-7414, mock 9110, PostgreSQL
# 5434 (override with TOLLGATE_C_*_PORT, see below). Docker: the running daemon, or the private one
# build.sh leaves configured (DOCKER_HOST is set to it when no other answers).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VAR="$ROOT/var/containers"
CACHE=${TOLLGATE_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tollgate/images}
TAG=${TOLLGATE_IMAGE_TAG:-$(sed -n "s/^  version: '\(.*\)',$/\1/p" "$ROOT/meson.build" | head -n 1)}
NDP=${TOLLGATE_DATAPLANES:-2}
PG_PORT=${TOLLGATE_C_PG_PORT:-5434}
DP_PORT=${TOLLGATE_C_DP_PORT:-8090}
ADMIN_PORTS=(${TOLLGATE_C_ADMIN_PORTS:-8091 8092})
PUB_PORTS=(${TOLLGATE_C_PUB_PORTS:-7411 7413})
REP_PORTS=(${TOLLGATE_C_REP_PORTS:-7412 7414})
MOCK_PORT=${TOLLGATE_C_MOCK_PORT:-9110}
PREFIX=tollgate-local

die() {
	echo "cluster: $*" >&2
	exit 1
}

if ! docker info >/dev/null 2>&1; then
	export DOCKER_HOST="unix://$CACHE/dockerd/docker.sock"
	if ! docker info >/dev/null 2>&1; then
		# The same private daemon build.sh uses; it keeps running after `up` (its pid in dockerd.pid,
		# stopped by `down`).
		d="$CACHE/dockerd"
		[[ -d "$d/data" ]] || die "no docker daemon and no images; run 'make images' first"
		dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" -H "$DOCKER_HOST" \
			--bridge=none --iptables=false --ip-masq=false >>"$d/dockerd.log" 2>&1 &
		for _ in $(seq 300); do
			docker info >/dev/null 2>&1 && break
			sleep 0.1
		done
		docker info >/dev/null 2>&1 || die "dockerd not ready; see $d/dockerd.log"
	fi
fi

# run NAME IMAGE [docker args...] -- [command args...]
run() {
	local name="$PREFIX-$1" image=$2
	shift 2
	local opts=()
	while (($#)) && [[ "$1" != -- ]]; do
		opts+=("$1")
		shift
	done
	(($#)) && shift
	docker rm -f "$name" >/dev/null 2>&1 || true
	docker run -d --name "$name" --network host --read-only --tmpfs /tmp:size=64m \
		--security-opt no-new-privileges --cap-drop ALL "${opts[@]}" "$image" "$@" >/dev/null
}

wait_http() {
	local url=$1 want=$2 name=$3 code
	for _ in $(seq 300); do
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
		[[ "$code" == "$want" ]] && return 0
		sleep 0.1
	done
	docker logs --tail 30 "$PREFIX-$name" >&2 || true
	die "$name: $url did not answer $want"
}

cmd_up() {
	for img in controlplane dataplane mock; do
		docker image inspect "tollgate/$img:$TAG" >/dev/null 2>&1 || die "image tollgate/$img:$TAG missing: run 'make images'"
	done
	docker image inspect tollgate/postgres:15 >/dev/null 2>&1 || die "image tollgate/postgres:15 missing: run 'make images'"
	mkdir -p "$VAR/pg"
	if [[ ! -f "$VAR/secrets.env" ]]; then
		randhex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
		(
			umask 077
			{
				echo "TOLLGATE_ADMIN_TOKEN=tga-$(randhex 24)"
				echo "TOLLGATE_CLUSTER_SECRET=$(randhex 32)"
				echo "TOLLGATE_MASTER_KEY=$(randhex 32)"
				echo "PG_PASSWORD=$(randhex 16)"
			} >"$VAR/secrets.env"
		)
	fi
	# shellcheck disable=SC1091
	source "$VAR/secrets.env"
	local pg_uid
	pg_uid=$(docker run --rm --entrypoint id tollgate/postgres:15 -u)
	chown "$pg_uid" "$VAR/pg"

	run postgres tollgate/postgres:15 -e POSTGRES_USER=tollgate -e POSTGRES_DB=tollgate \
		-e POSTGRES_PASSWORD="$PG_PASSWORD" -e POSTGRES_LISTEN=127.0.0.1 -v "$VAR/pg:/var/lib/postgresql/data" \
		-- -c port="$PG_PORT"
	local db="postgresql://tollgate:$PG_PASSWORD@127.0.0.1:$PG_PORT/tollgate?sslmode=disable"
	for _ in $(seq 300); do
		docker exec "$PREFIX-postgres" pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
		sleep 0.1
	done

	local cp_env=(-e DATABASE_URL="$db" -e TOLLGATE_ADMIN_TOKEN="$TOLLGATE_ADMIN_TOKEN"
		-e TOLLGATE_CLUSTER_SECRET="$TOLLGATE_CLUSTER_SECRET" -e TOLLGATE_MASTER_KEY="$TOLLGATE_MASTER_KEY")
	docker run --rm --network host --read-only "${cp_env[@]}" "tollgate/controlplane:$TAG" migrate \
		>"$VAR/migrate.log" 2>&1 || die "migrations failed; see $VAR/migrate.log"
	local pubs="" reps="" i
	for i in 0 1; do
		run "controlplane-$((i + 1))" "tollgate/controlplane:$TAG" "${cp_env[@]}" \
			-e TOLLGATE_ADMIN_LISTEN="127.0.0.1:${ADMIN_PORTS[i]}" \
			-e TOLLGATE_CP_PUB_URL="tcp://127.0.0.1:${PUB_PORTS[i]}" \
			-e TOLLGATE_CP_REP_URL="tcp://127.0.0.1:${REP_PORTS[i]}" -- serve
		pubs+="${pubs:+,}tcp://127.0.0.1:${PUB_PORTS[i]}"
		reps+="${reps:+,}tcp://127.0.0.1:${REP_PORTS[i]}"
	done
	run mock "tollgate/mock:$TAG" -- --listen "127.0.0.1:$MOCK_PORT" --api-key mock-secret
	wait_http "http://127.0.0.1:${ADMIN_PORTS[0]}/healthz" 200 controlplane-1
	local admin=""
	for _ in $(seq 100); do
		for i in 0 1; do
			[[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${ADMIN_PORTS[i]}/readyz")" == 200 ]] &&
				admin="http://127.0.0.1:${ADMIN_PORTS[i]}"
		done
		[[ -n "$admin" ]] && break
		sleep 0.1
	done
	[[ -n "$admin" ]] || die "no control plane became leader"

	# Seed through the admin API (idempotent, like deploy/local/up.sh).
	api() {
		curl -sf -X "$1" "$admin$2" -H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" \
			-H 'Content-Type: application/json' ${3:+--data "$3"}
	}
	json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const v=('"$1"');process.stdout.write(v==null?"":String(v))})'; }
	local tenant provider key
	tenant=$(api GET /admin/v1/tenants | json '(j.data.find(e=>e.name==="demo")||{}).id')
	[[ -n "$tenant" ]] || tenant=$(api POST /admin/v1/tenants '{"name":"demo"}' | json j.id)
	provider=$(api GET /admin/v1/providers | json '(j.data.find(e=>e.name==="mock")||{}).id')
	[[ -n "$provider" ]] || provider=$(api POST /admin/v1/providers \
		"{\"name\":\"mock\",\"kind\":\"openai\",\"base_url\":\"http://127.0.0.1:$MOCK_PORT/v1\",\"api_keys\":[{\"secret\":\"mock-secret\"}]}" | json j.id)
	[[ -n "$(api GET /admin/v1/routes | json '(j.data.find(e=>e.name==="mock-gpt")||{}).id')" ]] ||
		api POST /admin/v1/routes "{\"name\":\"mock-gpt\",\"targets\":[{\"provider_id\":\"$provider\",\"model\":\"mock-gpt\"}]}" >/dev/null
	api PUT /admin/v1/prices "{\"model\":\"mock-gpt\",\"provider_id\":\"$provider\",\"input_per_mtok\":2.5,\"output_per_mtok\":10}" >/dev/null
	key=$(api POST /admin/v1/keys "{\"tenant_id\":\"$tenant\",\"name\":\"demo-containers\"}" | json j.key)

	for ((i = 0; i < NDP; i++)); do
		mkdir -p "$VAR/spool-$i"
		chown 10001:10001 "$VAR/spool-$i"
		run "dataplane-$((i + 1))" "tollgate/dataplane:$TAG" -e TOLLGATE_LISTEN="127.0.0.1:$((DP_PORT + i * 10))" \
			-e TOLLGATE_CLUSTER_SECRET="$TOLLGATE_CLUSTER_SECRET" -e TOLLGATE_CP_PUB_URL="$pubs" \
			-e TOLLGATE_CP_REP_URL="$reps" -e TOLLGATE_INSTANCE_ID="containers-dp-$((i + 1))" \
			-e TOLLGATE_USAGE_SPOOL_DIR=/var/spool/tollgate -v "$VAR/spool-$i:/var/spool/tollgate" \
			--stop-timeout 45 --
	done
	for ((i = 0; i < NDP; i++)); do
		wait_http "http://127.0.0.1:$((DP_PORT + i * 10))/readyz" 200 "dataplane-$((i + 1))"
	done
	(
		umask 077
		cat >"$VAR/up.env" <<ENV
export TOLLGATE_URL=http://127.0.0.1:$DP_PORT
export TOLLGATE_ADMIN_URL=$admin
export TOLLGATE_ADMIN_TOKEN=$TOLLGATE_ADMIN_TOKEN
export TOLLGATE_DEMO_KEY=$key
ENV
	)
	echo "Tollgate runs in containers (docker ps --filter name=$PREFIX; stop with: bash deploy/docker/cluster.sh down)."
	echo "Try: curl -N http://127.0.0.1:$DP_PORT/v1/chat/completions -H \"Authorization: Bearer $key\"" \
		"-H 'Content-Type: application/json' -d '{\"model\":\"mock-gpt\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}'"
}

cmd_down() {
	local names
	names=$(docker ps -a --filter "name=^$PREFIX-" --format '{{.Names}}')
	# Dataplanes first (they drain and flush usage), the databases last.
	for n in $(grep dataplane <<<"$names") $(grep -v -e dataplane -e postgres <<<"$names") $(grep postgres <<<"$names"); do
		docker stop -t 45 "$n" >/dev/null 2>&1 || true
		docker rm "$n" >/dev/null 2>&1 || true
		echo "cluster: removed $n"
	done
	if [[ "${1:-}" == --purge ]]; then
		rm -rf "$VAR"
		echo "cluster: removed var/containers"
	fi
	local pidf="$CACHE/dockerd/dockerd.pid"
	if [[ "${DOCKER_HOST:-}" == "unix://$CACHE/dockerd/docker.sock" && -f "$pidf" ]]; then
		kill -TERM "$(cat "$pidf")" 2>/dev/null && echo "cluster: stopped the private dockerd"
	fi
}

cmd_status() {
	docker ps --filter "name=^$PREFIX-" --format '{{.Names}}\t{{.Status}}'
	local i
	for i in 0 1; do
		echo "controlplane-$((i + 1)): $(curl -s -m 2 "http://127.0.0.1:${ADMIN_PORTS[i]}/readyz" || echo down)"
	done
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down "${2:-}" ;;
status) cmd_status ;;
*)
	echo "usage: cluster.sh up|down [--purge]|status" >&2
	exit 2
	;;
esac

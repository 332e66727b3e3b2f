#!/usr/bin/env bash
# up.sh BUILD_DIR: starts a complete local Tollgate in the background and seeds it (`make up`).
#
# Under ./var/ (at the repository root): a throwaway PostgreSQL cluster (var/pg), the control plane
# (migrate, then serve), the mock provider and one dataplane. Each process's pid is in var/pids/NAME.pid
# and its output in var/log/NAME.log; down.sh stops them. Secrets are generated once into
# var/secrets.env and reused, so data and keys survive a down/up cycle. Seeding goes through the admin
# REST API only and is idempotent (looked up by name first): tenant "demo", provider "mock" (the mock
# provider), route "mock-gpt", its price and a demo key; with OPENAI_API_KEY set, also provider
# "openai" with routes gpt-4o-mini and gpt-4o. var/up.env gets the export lines to talk to it.
#
# Ports (override by env): dataplane TOLLGATE_PORT 8080, admin TOLLGATE_ADMIN_PORT 8081, NNG
# TOLLGATE_PUB_PORT 7401 / TOLLGATE_REP_PORT 7402, mock TOLLGATE_MOCK_PORT 9100, PostgreSQL
# TOLLGATE_PG_PORT 5433. Everything listens on 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-build}
[[ "$BUILD" == /* ]] || BUILD="$ROOT/$BUILD"
VAR="$ROOT/var"
PIDS="$VAR/pids"
LOGS="$VAR/log"
PGDIR="$VAR/pg"

PG_PORT=${TOLLGATE_PG_PORT:-5433}
DP_PORT=${TOLLGATE_PORT:-8080}
ADMIN_PORT=${TOLLGATE_ADMIN_PORT:-8081}
PUB_PORT=${TOLLGATE_PUB_PORT:-7401}
REP_PORT=${TOLLGATE_REP_PORT:-7402}
MOCK_PORT=${TOLLGATE_MOCK_PORT:-9100}
MOCK_SECRET=mock-secret

CP_BIN="$BUILD/controlplane/tollgate-controlplane"
DP_BIN="$BUILD/dataplane/tollgate-dataplane"
MOCK_BIN="$BUILD/tests/mock/tollgate-mock-provider"

die() {
	echo "up: $*" >&2
	exit 1
}

# fail NAME MESSAGE: says what failed with the end of that process's log, then exits.
fail() {
	echo "up: $2" >&2
	if [[ -f "$LOGS/$1.log" ]]; then
		echo "---- last lines of $LOGS/$1.log ----" >&2
		tail -n 30 "$LOGS/$1.log" >&2
		echo "----" >&2
	fi
	echo "up: processes already started keep running; 'make down' stops them" >&2
	exit 1
}

for bin in "$CP_BIN" "$DP_BIN" "$MOCK_BIN"; do
	[[ -x "$bin" ]] || die "missing $bin (run 'make build' first)"
done
command -v curl >/dev/null || die "curl not found (run deploy/local/install-deps.sh)"
command -v node >/dev/null || die "node not found (run deploy/local/install-deps.sh)"

mkdir -p "$PIDS" "$LOGS"
chmod 755 "$VAR"

# ---- secrets, generated once ------------------------------------------------------------------------
randhex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
if [[ ! -f "$VAR/secrets.env" ]]; then
	umask 077
	{
		echo "export TOLLGATE_ADMIN_TOKEN=tga-$(randhex 24)"
		echo "export TOLLGATE_CLUSTER_SECRET=$(randhex 32)"
		echo "export TOLLGATE_MASTER_KEY=$(randhex 32)"
	} >"$VAR/secrets.env"
	umask 022
fi
# shellcheck disable=SC1091
source "$VAR/secrets.env"

export DATABASE_URL="host=$PGDIR port=$PG_PORT user=postgres dbname=postgres"
export TOLLGATE_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT"
export TOLLGATE_CP_PUB_URL="tcp://127.0.0.1:$PUB_PORT"
export TOLLGATE_CP_REP_URL="tcp://127.0.0.1:$REP_PORT"
export TOLLGATE_MIGRATIONS_DIR="$ROOT/migrations"
ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"
DP_URL="http://127.0.0.1:$DP_PORT"
MOCK_URL="http://127.0.0.1:$MOCK_PORT"

# ---- process helpers --------------------------------------------------------------------------------
# alive NAME: the pid file names a live process that is one of ours.
alive() {
	local f="$PIDS/$1.pid" pid
	if [[ "$1" == postgres ]]; then
		bash "$ROOT/deploy/local/pg.sh" status "$PGDIR"
		return
	fi
	[[ -f "$f" ]] || return 1
	pid=$(<"$f")
	[[ "$pid" =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	grep -q tollgate "/proc/$pid/cmdline" 2>/dev/null
}

# port_busy PORT: something already listens on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# launch NAME PORT CMD...: starts CMD detached from this terminal, output to var/log/NAME.log.
launch() {
	local name=$1 port=$2
	shift 2
	if port_busy "$port"; then
		die "port $port (for $name) is already in use by another program; set its TOLLGATE_*_PORT"
	fi
	echo "--- $(date -u +%FT%TZ) starting: $*" >>"$LOGS/$name.log"
	setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	echo $! >"$PIDS/$name.pid"
}

# wait_http NAME URL WANT: polls URL until it answers with status WANT ("any" = any HTTP answer),
# at most 30 s, failing early when the process exits.
wait_http() {
	local name=$1 url=$2 want=$3 code i
	for ((i = 0; i < 300; i++)); do
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
		if [[ "$want" == any && "$code" != 000 ]] || [[ "$code" == "$want" ]]; then
			return 0
		fi
		alive "$name" || fail "$name" "$name exited before it was ready"
		sleep 0.1
	done
	fail "$name" "$name not ready after 30 s ($url answered ${code:-nothing})"
}

# ---- already up? ------------------------------------------------------------------------------------
print_summary() {
	# shellcheck disable=SC1091
	source "$VAR/up.env"
	cat <<MSG
Tollgate is up (logs in var/log/, stop with 'make down').
  gateway  $TOLLGATE_URL
  admin    $TOLLGATE_ADMIN_URL
  env      source var/up.env

Try a streaming request:
curl -N $TOLLGATE_URL/v1/chat/completions -H "Authorization: Bearer $TOLLGATE_DEMO_KEY" -H 'Content-Type: application/json' -d '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"Hello, Tollgate!"}]}'
MSG
}

if alive postgres && alive controlplane && alive mock && alive dataplane && [[ -f "$VAR/up.env" ]]; then
	echo "up: already running."
	print_summary
	exit 0
fi

# ---- PostgreSQL -------------------------------------------------------------------------------------
if ! bash "$ROOT/deploy/local/pg.sh" status "$PGDIR" 2>/dev/null; then
	port_busy "$PG_PORT" && die "port $PG_PORT (PostgreSQL) is in use; set TOLLGATE_PG_PORT"
	bash "$ROOT/deploy/local/pg.sh" start "$PGDIR" "$PG_PORT" >/dev/null ||
		die "PostgreSQL did not start (see $PGDIR/log)"
fi
head -n 1 "$PGDIR/data/postmaster.pid" >"$PIDS/postgres.pid"

# ---- control plane ----------------------------------------------------------------------------------
if ! alive controlplane; then
	if ! "$CP_BIN" migrate >>"$LOGS/controlplane.log" 2>&1 </dev/null; then
		fail controlplane "'tollgate-controlplane migrate' failed"
	fi
	launch controlplane "$ADMIN_PORT" "$CP_BIN" serve
fi
wait_http controlplane "$ADMIN_URL/readyz" 200

# ---- mock provider ----------------------------------------------------------------------------------
if ! alive mock; then
	launch mock "$MOCK_PORT" "$MOCK_BIN" --listen "127.0.0.1:$MOCK_PORT" --api-key "$MOCK_SECRET"
fi
wait_http mock "$MOCK_URL/__mock/last" any

# ---- seed through the admin API ---------------------------------------------------------------------
# api METHOD PATH [BODY]: prints the response body; fails on a status >= 400.
api() {
	local out code
	out=$(mktemp)
	code=$(curl -s -o "$out" -w '%{http_code}' -X "$1" "$ADMIN_URL$2" \
		-H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
		${3:+--data "$3"} || true)
	if [[ "$code" == 000 || "$code" -ge 400 ]]; then
		echo "up: admin API $1 $2 answered $code: $(cat "$out")" >&2
		rm -f "$out"
		fail controlplane "seeding failed"
	fi
	cat "$out"
	rm -f "$out"
}

# json EXPR: evaluates a JavaScript expression over the JSON on stdin (bound to `j`), prints it.
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const v=('"$1"');process.stdout.write(v===undefined||v===null?"":String(v))})'; }

# find_id PATH NAME: the id of the entity named NAME in the list at PATH, or nothing.
find_id() { api GET "$1" | json "(j.data.find(e => e.name === '$2') || {}).id"; }

tenant_id=$(find_id /admin/v1/tenants demo)
[[ -n "$tenant_id" ]] || tenant_id=$(api POST /admin/v1/tenants '{"name":"demo"}' | json j.id)

mock_id=$(find_id /admin/v1/providers mock)
[[ -n "$mock_id" ]] || mock_id=$(api POST /admin/v1/providers \
	"{\"name\":\"mock\",\"kind\":\"openai\",\"base_url\":\"$MOCK_URL/v1\",\"api_keys\":[{\"secret\":\"$MOCK_SECRET\"}]}" |
	json j.id)

[[ -n "$(find_id /admin/v1/routes mock-gpt)" ]] ||
	api POST /admin/v1/routes "{\"name\":\"mock-gpt\",\"targets\":[{\"provider_id\":\"$mock_id\",\"model\":\"mock-gpt\"}]}" >/dev/null
api PUT /admin/v1/prices \
	"{\"model\":\"mock-gpt\",\"provider_id\":\"$mock_id\",\"input_per_mtok\":2.5,\"output_per_mtok\":10}" >/dev/null

if [[ -n "${OPENAI_API_KEY:-}" ]]; then
	openai_id=$(find_id /admin/v1/providers openai)
	[[ -n "$openai_id" ]] || openai_id=$(api POST /admin/v1/providers \
		"{\"name\":\"openai\",\"kind\":\"openai\",\"base_url\":\"https://api.openai.com/v1\",\"api_keys\":[{\"secret\":\"$OPENAI_API_KEY\"}]}" |
		json j.id)
	# model input output (USD per million tokens)
	for spec in "gpt-4o-mini 0.15 0.6 0.075" "gpt-4o 2.5 10 1.25"; do
		read -r model in out cached <<<"$spec"
		[[ -n "$(find_id /admin/v1/routes "$model")" ]] ||
			api POST /admin/v1/routes "{\"name\":\"$model\",\"targets\":[{\"provider_id\":\"$openai_id\",\"model\":\"$model\"}]}" >/dev/null
		api PUT /admin/v1/prices "{\"model\":\"$model\",\"provider_id\":\"$openai_id\",\"input_per_mtok\":$in,\"output_per_mtok\":$out,\"cached_input_per_mtok\":$cached}" >/dev/null
	done
fi

# The demo key: reuse the one from a previous run while it is still active, else make a new one.
demo_key="" demo_key_id=""
if [[ -f "$VAR/demo-key.env" ]]; then
	# shellcheck disable=SC1091
	source "$VAR/demo-key.env"
	status=$(curl -s -m 5 "$ADMIN_URL/admin/v1/keys/$demo_key_id" -H "Authorization: Bearer $TOLLGATE_ADMIN_TOKEN" |
		json 'j.status' 2>/dev/null || true)
	[[ "$status" == active ]] || demo_key="" demo_key_id=""
fi
if [[ -z "$demo_key" ]]; then
	created=$(api POST /admin/v1/keys "{\"tenant_id\":\"$tenant_id\",\"name\":\"demo\"}")
	demo_key=$(json j.key <<<"$created")
	demo_key_id=$(json j.id <<<"$created")
	(umask 077 && printf 'demo_key=%s\ndemo_key_id=%s\n' "$demo_key" "$demo_key_id" >"$VAR/demo-key.env")
fi

# ---- dataplane --------------------------------------------------------------------------------------
if ! alive dataplane; then
	launch dataplane "$DP_PORT" env TOLLGATE_LISTEN="127.0.0.1:$DP_PORT" TOLLGATE_INSTANCE_ID=local-dp-1 "$DP_BIN"
fi
wait_http dataplane "$DP_URL/readyz" 200

(
	umask 077
	cat >"$VAR/up.env" <<ENV
export TOLLGATE_URL=$DP_URL
export TOLLGATE_ADMIN_URL=$ADMIN_URL
export TOLLGATE_ADMIN_TOKEN=$TOLLGATE_ADMIN_TOKEN
export TOLLGATE_DEMO_KEY=$demo_key
export TOLLGATE_DEMO_TENANT=$tenant_id
export DATABASE_URL='$DATABASE_URL'
ENV
)
print_summary

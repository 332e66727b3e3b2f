#!/usr/bin/env bash
# down.sh [--purge]: stops what up.sh started (`make down`).
#
# Stops the processes named in var/pids/ by pid, dataplane first (so it can flush its usage to the
# control plane), then the mock provider and the control plane: SIGTERM, then SIGKILL if one is still
# running after its grace period (the dataplane gets longer: it drains requests in flight). Then stops
# PostgreSQL with pg.sh. The data in var/ stays for the next `make up`; --purge removes var/ entirely.
# A pid is only signalled while /proc says it is still a tollgate process, so a stale pid file never
# hits an unrelated process.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VAR="$ROOT/var"
PIDS="$VAR/pids"

purge=0
case "${1:-}" in
--purge) purge=1 ;;
"") ;;
*)
	echo "usage: down.sh [--purge]" >&2
	exit 2
	;;
esac

ours() { kill -0 "$1" 2>/dev/null && grep -q tollgate "/proc/$1/cmdline" 2>/dev/null; }

# stop NAME GRACE_SECONDS
stop() {
	local name=$1 grace=$2 f="$PIDS/$1.pid" pid i
	[[ -f "$f" ]] || return 0
	pid=$(<"$f")
	if [[ "$pid" =~ ^[0-9]+$ ]] && ours "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < grace * 10; i++)); do
			ours "$pid" || break
			sleep 0.1
		done
		if ours "$pid"; then
			echo "down: $name (pid $pid) still running after ${grace}s, sending SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				ours "$pid" || break
				sleep 0.1
			done
		fi
		echo "down: stopped $name"
	fi
	rm -f "$f"
}

stop dataplane 35
stop mock 5
stop controlplane 10
if [[ -d "$VAR/pg/data" ]]; then
	bash "$ROOT/deploy/local/pg.sh" stop "$VAR/pg" fast && echo "down: stopped postgres"
fi
rm -f "$PIDS/postgres.pid"

if ((purge)); then
	rm -rf "$VAR"
	echo "down: removed var/"
fi

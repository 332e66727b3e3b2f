#!/usr/bin/env bash
# pg.sh: a throwaway PostgreSQL 15 cluster in a folder, for `make up` and the end-to-end tests.
#
#   pg.sh start DIR PORT          initdb DIR/data on first use, start the server, print the libpq
#                                 connection string on stdout (the only line printed there)
#   pg.sh stop DIR [fast|immediate]  stop it (default fast; tests use immediate)
#   pg.sh status DIR              exit 0 when running
#
# The server listens on 127.0.0.1:PORT and on a Unix socket in DIR; authentication is `trust`, fsync is
# off: never use this for data you care about. initdb and postgres refuse to run as root, so when run
# as root both run as the `postgres` user (runuser) and DIR is handed to that user; DIR and every
# parent folder must then be traversable by it (a folder under /tmp always is). Binaries come from
# `pg_config --bindir`, since Debian keeps them off PATH.
set -euo pipefail

usage() {
	echo "usage: pg.sh start DIR PORT | pg.sh stop DIR [fast|immediate] | pg.sh status DIR" >&2
	exit 2
}

(($# >= 2)) || usage
cmd=$1
dir=$2

if ! command -v pg_config >/dev/null 2>&1; then
	echo "pg.sh: pg_config not found; run deploy/local/install-deps.sh" >&2
	exit 1
fi
bindir=$(pg_config --bindir)
if [[ ! -x "$bindir/pg_ctl" ]]; then
	# libpq-dev's pg_config may point at a bindir without the server: fall back to Debian's layout.
	bindir=/usr/lib/postgresql/15/bin
fi
[[ -x "$bindir/pg_ctl" ]] || { echo "pg.sh: no pg_ctl in $bindir (is postgresql-15 installed?)" >&2; exit 1; }

as_pg() {
	if [[ "$(id -u)" == 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

case "$cmd" in
start)
	(($# == 3)) || usage
	port=$3
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if (( ${#dir} > 90 )); then
		# A Unix socket path is limited to 107 bytes and DIR/.s.PGSQL.PORT must fit.
		echo "pg.sh: DIR path too long for a Unix socket: $dir" >&2
		exit 1
	fi
	if [[ "$(id -u)" == 0 ]]; then
		chown postgres:postgres "$dir"
		chmod 755 "$dir"
		if ! runuser -u postgres -- test -x "$dir"; then
			echo "pg.sh: user postgres cannot reach $dir (a parent folder is not traversable);" \
				"use a folder under /tmp or chmod o+x the parents" >&2
			exit 1
		fi
	fi
	conn="host=$dir port=$port user=postgres dbname=postgres"
	if as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		echo "$conn"
		exit 0
	fi
	if [[ ! -f "$dir/data/PG_VERSION" ]]; then
		if ! as_pg "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 -N \
			>"$dir/initdb.log" 2>&1; then
			echo "pg.sh: initdb failed:" >&2
			tail -n 20 "$dir/initdb.log" >&2
			exit 1
		fi
	fi
	if ! as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
		-o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c fsync=off -c client_min_messages=warning" \
		start >/dev/null 2>&1; then
		echo "pg.sh: PostgreSQL did not start on port $port; tail of $dir/log:" >&2
		tail -n 20 "$dir/log" >&2 || true
		exit 1
	fi
	echo "$conn"
	;;
stop)
	mode=${3:-fast}
	[[ -d "$dir/data" ]] || exit 0
	if as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		as_pg "$bindir/pg_ctl" -D "$dir/data" -m "$mode" -w -t 30 stop >/dev/null
	fi
	;;
status)
	as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
	;;
*)
	usage
	;;
esac

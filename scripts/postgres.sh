#!/usr/bin/env bash
# Starts a private PostgreSQL server for Furrow's tests and benchmarks and
# prints its DSN on stdout (everything else goes to stderr):
#
#   export FURROW_TEST_POSTGRES_DSN="$(scripts/postgres.sh)"
#
# It installs PostgreSQL with apt-get when no server binaries are found,
# then runs its own cluster (initdb on first use) in $FURROW_PG_DIR
# (default /tmp/furrow-postgres) on 127.0.0.1:$FURROW_PG_PORT (default
# 55432), apart from any system cluster. The cluster trades durability for
# speed (fsync off): it holds test data only. Re-running is cheap: a running
# cluster is reused. `scripts/postgres.sh stop` stops it.
set -euo pipefail

PORT=${FURROW_PG_PORT:-55432}
DIR=${FURROW_PG_DIR:-/tmp/furrow-postgres}
DB=furrow_test

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then
		echo "$d"
		return
	fi
	d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")
	if [ -x "$d/initdb" ]; then echo "$d"; fi
}

BIN=$(find_bin)
if [ -z "$BIN" ]; then
	log "PostgreSQL server binaries not found; installing with apt-get"
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then
		if command -v sudo >/dev/null; then SUDO="sudo"; else
			log "not root and no sudo: install PostgreSQL (apt-get install postgresql) or set FURROW_TEST_POSTGRES_DSN"
			exit 1
		fi
	fi
	$SUDO apt-get update >&2
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends postgresql >&2
	BIN=$(find_bin)
	if [ -z "$BIN" ]; then log "apt-get installed no initdb"; exit 1; fi
fi

# PostgreSQL refuses to run as root: as root, run the cluster as postgres.
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
	useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

if [ "${1:-}" = "stop" ]; then
	if [ -f "$DIR/postmaster.pid" ]; then as_owner "$BIN/pg_ctl" -D "$DIR" -m fast -w stop >&2; fi
	exit 0
fi

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
	if [ ! -f "$DIR/PG_VERSION" ]; then
		log "creating a cluster in $DIR"
		mkdir -p "$DIR"
		if [ "$(id -u)" -eq 0 ]; then chown postgres: "$DIR"; fi
		chmod 700 "$DIR"
		as_owner "$BIN/initdb" -D "$DIR" -U postgres -A trust -E UTF8 --no-sync >/dev/null
	fi
	log "starting PostgreSQL ($("$BIN/postgres" --version)) on 127.0.0.1:$PORT"
	as_owner "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 start \
		-o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >&2 || {
		log "start failed; server log:"; tail -n 30 "$DIR/server.log" >&2 || true; exit 1; }
fi

psql_q() { "$BIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -tAc "$1"; }
if [ "$(psql_q "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != "1" ]; then
	psql_q "CREATE DATABASE $DB" >&2
fi
echo "postgres://postgres@127.0.0.1:$PORT/$DB?sslmode=disable"

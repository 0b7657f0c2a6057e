#!/usr/bin/env bash
# postgres.sh — a throwaway PostgreSQL 15 (Debian's postgresql-15) on 127.0.0.1 for the
# tests and `make test-postgres`: initdb into a folder of its own, trust authentication
# for the superuser `postgres`, fsync off, stopped by pid.
#
#   usage: postgres.sh up|down|status|url
#
# Environment:
#   OPSWATCH_PG_PORT   port on 127.0.0.1 (default 25432)
#   OPSWATCH_PG_DIR    its folder: data, socket, log, pid (default <repo>/.cache/postgres-PORT)
#
# The package is installed with apt-get when /usr/lib/postgresql/15/bin/initdb is
# missing, with its service kept from starting. Run as root, the server runs as the
# `postgres` user (the package creates it). `url` prints the SQLAlchemy URL.
# Exit codes: 0 ok / running, 1 error, 3 stopped (status).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
PORT="${OPSWATCH_PG_PORT:-25432}"
DIR="${OPSWATCH_PG_DIR:-$REPO/.cache/postgres-$PORT}"
BIN=/usr/lib/postgresql/15/bin
PID_FILE="$DIR/postgres.pid"
URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
NAME=postgres
# shellcheck source=deploy/local/daemon.sh
source "$SCRIPT_DIR/daemon.sh"
# shellcheck source=deploy/local/apt.sh
source "$SCRIPT_DIR/apt.sh"

# install: the package, once (parallel test processes each start a server of their own)
installed() { [[ -x "$BIN/initdb" ]]; }
install() { apt_locked installed apt_install postgresql-15 "$DIR/apt.log"; }

# as_owner COMMAND...: as the `postgres` user when run as root (PostgreSQL refuses
# root); setpriv execs, so a background as_owner's pid is the command's own
AS_OWNER=()
[[ "$(id -u)" == 0 ]] && AS_OWNER=(setpriv --reuid=postgres --regid=postgres --init-groups --)
as_owner() { "${AS_OWNER[@]}" "$@"; }

ready() { as_owner "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres; }

up() {
  if running; then echo "postgres already running on $URL"; return; fi
  install
  rm -rf "$DIR/data" && mkdir -p "$DIR"
  [[ "$(id -u)" == 0 ]] && chown postgres:postgres "$DIR"
  as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-sync \
    >"$DIR/initdb.log" 2>&1 || die "initdb failed; see $DIR/initdb.log"
  "${AS_OWNER[@]}" "$BIN/postgres" -D "$DIR/data" -h 127.0.0.1 -p "$PORT" -k "$DIR" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 \
    >"$DIR/$NAME.log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 60); do
    if ready; then echo "postgres $("$BIN/postgres" --version | awk '{print $3}') up on $URL"; return; fi
    running || die "exited during start-up; see $DIR/$NAME.log"
    sleep 0.5
  done
  die "not ready after 30 s; see $DIR/$NAME.log"
}

down() {
  if running; then
    local pid
    pid="$(cat "$PID_FILE")"
    kill -INT "$pid"  # fast shutdown: sessions ended, no checkpoint wait
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    echo "$NAME on $URL stopped"
  fi
  rm -f "$PID_FILE"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then echo "running on $URL"; else echo stopped; exit 3; fi ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 up|down|status|url" >&2; exit 1 ;;
esac

#!/usr/bin/env bash
# prometheus.sh — Prometheus and promtool from Debian's `prometheus` package (2.42 on
# bookworm), unpacked into the cache (no system install, no service), for the tests
# and `make check-deploy`.
#
#   usage: prometheus.sh up|down|status
#          prometheus.sh promtool ARGS...
#
# Environment:
#   OPSWATCH_CACHE        cache dir (default: <repo>/.cache)
#   PROMETHEUS_PORT       web/API port on 127.0.0.1 (default 9096)
#   PROMETHEUS_TARGETS    host:port,... scraped every second as job "opswatch" (/metrics)
#
# Exit codes: 0 ok / running, 1 error, 3 stopped (status).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE="${OPSWATCH_CACHE:-$REPO/.cache}"
PKG_DIR="$CACHE/prometheus-pkg"
ROOT="$PKG_DIR/root"
PORT="${PROMETHEUS_PORT:-9096}"
DIR="$CACHE/prometheus-$PORT"
PID_FILE="$DIR/prometheus.pid"
URL="http://127.0.0.1:$PORT"
NAME=prometheus
# shellcheck source=deploy/local/daemon.sh
source "$SCRIPT_DIR/daemon.sh"
# shellcheck source=deploy/local/apt.sh
source "$SCRIPT_DIR/apt.sh"

fetched() { [[ -x "$ROOT/usr/bin/prometheus" && -x "$ROOT/usr/bin/promtool" ]]; }
fetch() { apt_locked fetched fetch_package; }

fetch_package() {
  mkdir -p "$PKG_DIR"
  echo "prometheus.sh: fetching Debian's prometheus package into $PKG_DIR" >&2
  (cd "$PKG_DIR" && rm -f prometheus_*.deb \
    && { apt-get download -q prometheus || { apt-get update -q && apt-get download -q prometheus; }; }) \
    >"$PKG_DIR/apt.log" 2>&1 || die "apt-get download prometheus failed; see $PKG_DIR/apt.log"
  rm -rf "$ROOT" && dpkg -x "$PKG_DIR"/prometheus_*.deb "$ROOT"
}

up() {
  if running; then echo "prometheus already running on $URL"; return; fi
  fetch
  rm -rf "$DIR" && mkdir -p "$DIR/data"
  local targets=""
  IFS=',' read -ra list <<<"${PROMETHEUS_TARGETS:-}"
  for t in "${list[@]}"; do targets+="'$t', "; done
  cat >"$DIR/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: opswatch
    static_configs:
      - targets: [${targets%, }]
YAML
  start_daemon "prometheus $("$ROOT/usr/bin/prometheus" --version 2>&1 | awk 'NR==1{print $3}')" \
    "$ROOT/usr/bin/prometheus" --config.file="$DIR/prometheus.yml" \
    --storage.tsdb.path="$DIR/data" --web.listen-address="127.0.0.1:$PORT"
}

if [[ "${1:-}" == promtool ]]; then
  shift
  fetch
  exec "$ROOT/usr/bin/promtool" "$@"
fi
daemon_command "${1:-}" || { echo "usage: $0 up|down|status|promtool ARGS..." >&2; exit 1; }

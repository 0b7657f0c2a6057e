#!/usr/bin/env bash
# alertmanager.sh — run a real Prometheus Alertmanager (Debian's prometheus-alertmanager,
# 0.25 on bookworm) on 127.0.0.1 for the tests, its cluster listener off.
#
#   usage: alertmanager.sh up|down|status
#
# Environment:
#   OPSWATCH_CACHE               cache dir (default: <repo>/.cache)
#   ALERTMANAGER_PORT            API port (default 9095; Kafka's controller has 9093)
#   ALERTMANAGER_WEBHOOK_URL     where it routes every alert (default http://127.0.0.1:9099/hook)
#
# The package is installed with apt-get when missing, with its service kept from
# starting. `up` writes a config routing everything to the webhook (group_wait 1s,
# send_resolved), starts on a fresh storage dir and waits for /-/ready.
# Exit codes: 0 ok / running, 1 error, 3 stopped (status).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
PORT="${ALERTMANAGER_PORT:-9095}"
WEBHOOK="${ALERTMANAGER_WEBHOOK_URL:-http://127.0.0.1:9099/hook}"
DIR="${OPSWATCH_CACHE:-$REPO/.cache}/alertmanager-$PORT"
BIN=/usr/bin/prometheus-alertmanager
PID_FILE="$DIR/alertmanager.pid"
URL="http://127.0.0.1:$PORT"
NAME=alertmanager
# shellcheck source=deploy/local/daemon.sh
source "$SCRIPT_DIR/daemon.sh"
# shellcheck source=deploy/local/apt.sh
source "$SCRIPT_DIR/apt.sh"

installed() { [[ -x "$BIN" ]]; }
install() { apt_locked installed apt_install prometheus-alertmanager "$DIR/apt.log"; }

up() {
  if running; then echo "alertmanager already running on $URL"; return; fi
  install
  rm -rf "$DIR/data" && mkdir -p "$DIR/data"
  cat >"$DIR/alertmanager.yml" <<YAML
route:
  receiver: opswatch-test
  group_by: ['...']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: opswatch-test
    webhook_configs:
      - url: '$WEBHOOK'
        send_resolved: true
YAML
  start_daemon "alertmanager $("$BIN" --version 2>&1 | awk 'NR==1{print $3}')" \
    "$BIN" --config.file="$DIR/alertmanager.yml" --storage.path="$DIR/data" \
    --web.listen-address="127.0.0.1:$PORT" --web.external-url="$URL" --cluster.listen-address=
}

daemon_command "${1:-}" || { echo "usage: $0 up|down|status" >&2; exit 1; }

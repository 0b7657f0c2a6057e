# daemon.sh — sourced by alertmanager.sh and prometheus.sh: run one server on
# 127.0.0.1 from a pid file. The caller sets NAME, DIR, PID_FILE and URL
# (the server answers GET $URL/-/ready once it is up).

die() { echo "$NAME: $*" >&2; exit 1; }

running() { [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

ready() { python3 -c "import urllib.request; urllib.request.urlopen('$URL/-/ready', timeout=2)" 2>/dev/null; }

# start_daemon VERSION_LINE COMMAND... : start it in the background, wait up to 30 s
start_daemon() {
  local version="$1"; shift
  "$@" >"$DIR/$NAME.log" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 60); do
    if ready; then echo "$version up on $URL"; return; fi
    running || die "exited during start-up; see $DIR/$NAME.log"
    sleep 0.5
  done
  die "not ready after 30 s; see $DIR/$NAME.log"
}

stop_daemon() {
  if running; then kill "$(cat "$PID_FILE")"; echo "$NAME on $URL stopped"; fi
  rm -f "$PID_FILE"
}

# daemon_command ARG: the up/down/status every script has; 1 when ARG is none of them
daemon_command() {
  case "$1" in
    up) up ;;
    down) stop_daemon ;;
    status) if running; then echo "running on $URL"; else echo stopped; exit 3; fi ;;
    *) return 1 ;;
  esac
}

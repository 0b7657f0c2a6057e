#!/usr/bin/env bash
# chromium.sh — Debian's chromium for the tests that open opswatch's pages in a
# headless browser.
#
#   usage: chromium.sh install|path
#          chromium.sh dom URL [WIDTHxHEIGHT]
#          chromium.sh screenshot URL FILE [WIDTHxHEIGHT]
#
# `install` installs the package with apt-get when it is missing (as root) and
# prints the browser's path; `path` prints it, or fails when it is not installed.
# `dom` prints the page's DOM once rendered, `screenshot` writes a PNG of it:
# headless, on a fresh profile (removed afterwards), at a phone's 412x1100 by
# default, with five seconds of the page's time to load its images.
# Exit codes: 0 ok, 1 error.
set -euo pipefail

BIN=/usr/bin/chromium
LOG="${TMPDIR:-/tmp}/opswatch-chromium-apt.log"

die() { echo "chromium.sh: $*" >&2; exit 1; }
# shellcheck source=deploy/local/apt.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/apt.sh"

installed() { [[ -x "$BIN" ]]; }

install() {
  apt_locked installed apt_install chromium "$LOG"
  echo "$BIN"
}

browse() {
  local url=$1 size=$2 profile
  shift 2
  install >/dev/null
  profile=$(mktemp -d)
  "$BIN" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
    --window-size="${size/x/,}" --virtual-time-budget=5000 "$@" "$url" 2>/dev/null \
    || { rm -rf "$profile"; die "chromium failed on $url"; }
  rm -rf "$profile"
}

case "${1:-}" in
  install) install ;;
  dom) [[ $# -ge 2 ]] || die "usage: chromium.sh dom URL [WIDTHxHEIGHT]"; browse "$2" "${3:-412x1100}" --dump-dom ;;
  screenshot)
    [[ $# -ge 3 ]] || die "usage: chromium.sh screenshot URL FILE [WIDTHxHEIGHT]"
    browse "$2" "${4:-412x1100}" --screenshot="$3" >/dev/null ;;
  path) [[ -x "$BIN" ]] || die "chromium is not installed: deploy/local/chromium.sh install"; echo "$BIN" ;;
  *) die "usage: chromium.sh install|path|dom|screenshot" ;;
esac

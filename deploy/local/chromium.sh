#!/usr/bin/env bash
# chromium.sh — Debian's chromium for the tests that open opswatch's pages in a
# headless browser.
#
#   usage: chromium.sh install|path
#
# `install` installs the package with apt-get when it is missing (as root) and
# prints the browser's path; `path` prints it, or fails when it is not installed.
# Exit codes: 0 ok, 1 error.
set -euo pipefail

BIN=/usr/bin/chromium
LOG="${TMPDIR:-/tmp}/opswatch-chromium-apt.log"

die() { echo "chromium.sh: $*" >&2; exit 1; }

install() {
  if [[ ! -x "$BIN" ]]; then
    [[ "$(id -u)" == 0 ]] || die "chromium is not installed and this is not root: apt-get install chromium"
    echo "installing chromium from Debian's packages" >&2
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }
    } >"$LOG" 2>&1 || die "apt-get install failed; see $LOG"
  fi
  echo "$BIN"
}

case "${1:-}" in
  install) install ;;
  path) [[ -x "$BIN" ]] || die "chromium is not installed: deploy/local/chromium.sh install"; echo "$BIN" ;;
  *) die "usage: chromium.sh install|path" ;;
esac

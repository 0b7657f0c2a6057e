#!/usr/bin/env bash
# with-kafka.sh CMD... — run CMD with OPSWATCH_KAFKA_BOOTSTRAP set: the broker named
# there, or the local one (started here if it is not running, and stopped again after).
set -uo pipefail
KAFKA="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kafka.sh"
started=0
if [[ -z "${OPSWATCH_KAFKA_BOOTSTRAP:-}" ]]; then
  bash "$KAFKA" status >/dev/null 2>&1 || started=1
  bash "$KAFKA" up || exit 1
  export OPSWATCH_KAFKA_BOOTSTRAP=127.0.0.1:${OPSWATCH_KAFKA_PORT:-9092}
fi
"$@"
rc=$?
if ((started)); then bash "$KAFKA" down; fi
exit $rc

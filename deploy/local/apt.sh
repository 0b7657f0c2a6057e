# apt.sh: sourced by the local tools' scripts that take a Debian package when it is
# missing (PostgreSQL, Alertmanager, Prometheus, Chromium).
#
# apt_locked CHECK COMMAND...: COMMAND unless CHECK succeeds, by one process of this
# machine at a time: the tests run side by side, and apt-get fails at once while
# another process holds dpkg's lock. CHECK runs again once the lock is held (another
# process may have installed the package meanwhile). The lock is let go before this
# returns, so a server started afterwards does not inherit it.
apt_locked() {
  local check=$1
  shift
  "$check" && return 0
  (
    flock 9
    "$check" || "$@"
  ) 9>"${TMPDIR:-/tmp}/opswatch-apt.lock"
}

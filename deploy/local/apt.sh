# apt.sh: sourced by the local tools' scripts that take a Debian package when it is
# missing (PostgreSQL, Alertmanager, Prometheus, Chromium); they define `die`.
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

# apt_install PACKAGE LOG: apt-get install PACKAGE (again after an update when the first
# try fails), as root, its output in LOG, with policy-rc.d keeping a service it brings
# from starting (the scripts start the servers they need themselves).
apt_install() {
  local package=$1 log=$2 policy=/usr/sbin/policy-rc.d created=0 rc=0
  [[ "$(id -u)" == 0 ]] || die "$package is not installed and this is not root: apt-get install $package"
  echo "installing $package from Debian's packages" >&2
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  mkdir -p "$(dirname "$log")"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package" \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package"; }
  } >"$log" 2>&1 || rc=$?
  ((created)) && rm -f "$policy"
  ((rc == 0)) || die "apt-get install $package failed; see $log"
}

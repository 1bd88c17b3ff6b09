#!/usr/bin/env bash
# Everything `make test` needs beyond the venv, then the command it is given (the test run).
#
#   scripts/test-env.sh CMD [ARG...]
#
# 1. The system packages the suite uses: installed with apt-get when one is missing and we are root;
#    otherwise one line naming the exact command to run, and exit 1. A prepared machine pays only
#    the `command -v` checks (nothing is re-installed, apt is not even asked).
# 2. A Docker engine: when none answers, dockerd is started (scripts/start-dockerd.sh) and stopped
#    again by its PID when the command ends, whatever its outcome.
# 3. CMD runs; its exit code is this script's.
#
# QILBEE_SKIP_DOCKER / QILBEE_SKIP_BIND / QILBEE_SKIP_POSTGRES=1 drop that part here too (its tests
# are skipped, and the run says so in its last lines).
set -euo pipefail
cd "$(dirname "$0")/.."

# package -> a file it installs that the suite runs (checked on PATH and in the sbin/lib dirs).
needed=()
want() {  # want PACKAGE PROBE [SKIP_VAR]
  local pkg=$1 probe=$2 skip=${3:-}
  if [ -n "$skip" ] && [ "${!skip:-}" = 1 ]; then return; fi
  case $probe in
    /*) compgen -G "$probe" >/dev/null && return ;;
    *) PATH="$PATH:/usr/sbin:/sbin" command -v "$probe" >/dev/null && return ;;
  esac
  needed+=("$pkg")
}
want docker.io dockerd QILBEE_SKIP_DOCKER
want debootstrap debootstrap QILBEE_SKIP_DOCKER   # builds the emulator's test image
want bind9 named QILBEE_SKIP_BIND
want bind9-utils named-checkconf QILBEE_SKIP_BIND
want postgresql '/usr/lib/postgresql/*/bin/postgres' QILBEE_SKIP_POSTGRES
want zstd zstd                                    # the hand-restore tests run the real binaries
want restic restic                                # the benchmarks' peer
want prometheus promtool                          # the alert rules' tests and a real scrape of the metrics
want chromium chromium                            # the Prefect UI looked at in a real browser (tests/e2e/test_ui_screenshots.py)

if [ ${#needed[@]} -gt 0 ]; then
  install="apt-get update && apt-get install -y --no-install-recommends ${needed[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "make test needs system packages: run as root: $install (or set QILBEE_SKIP_DOCKER/BIND/POSTGRES=1)" >&2
    exit 1
  fi
  echo "== installing what the tests need: ${needed[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian starts the services it installs (named on :53, a PostgreSQL cluster on :5432); the tests
  # run their own on loopback ports, so keep the packages from starting anything.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e $policy ] && had_policy=1
  [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' >$policy; chmod +x $policy; }
  apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null || { [ $had_policy = 1 ] || rm -f $policy; exit 1; }
  [ $had_policy = 1 ] || rm -f $policy
fi

dockerd_pidfile=/tmp/qilbee-test-dockerd.$$.pid
stop_dockerd() {
  if [ -f "$dockerd_pidfile" ]; then
    pid=$(cat "$dockerd_pidfile")
    kill "$pid" 2>/dev/null || true
    # dockerd stops its containers first; wait so the next run does not find a half-stopped engine.
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    rm -f "$dockerd_pidfile"
  fi
}
if [ "${QILBEE_SKIP_DOCKER:-}" != 1 ] && ! docker info >/dev/null 2>&1; then
  echo "== starting a Docker engine for the tests (stopped again when they end)" >&2
  trap stop_dockerd EXIT
  DOCKERD_PIDFILE=$dockerd_pidfile scripts/start-dockerd.sh
fi

status=0
"$@" || status=$?
exit $status

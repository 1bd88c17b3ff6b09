#!/usr/bin/env bash
# Start the Docker engine (Debian's docker.io) in the background if none answers, and wait for it.
# Writes its PID to ${DOCKERD_PIDFILE:-/tmp/qilbee-dockerd.pid} so it can be stopped by PID alone.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
pidfile=${DOCKERD_PIDFILE:-/tmp/qilbee-dockerd.pid}
log=${DOCKERD_LOG:-/tmp/qilbee-dockerd.log}
nohup dockerd --pidfile "$pidfile.engine" >"$log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then exit 0; fi
  sleep 1
done
echo "dockerd did not answer within 60 s; its log is $log" >&2
tail -20 "$log" >&2
exit 1

#!/bin/bash
# Container health check for distillguard: GET /healthz on the address the service listens on.
# The slim runtime image has no curl or wget; bash's /dev/tcp is enough for one HTTP/1.0 request.
# Exit 0 on "200", 1 otherwise (Docker's HEALTHCHECK contract).
set -euo pipefail

listen="${DISTILLGUARD_LISTEN:-127.0.0.1:8080}"
port="${listen##*:}"
host="${listen%:*}"
host="${host#[}"
host="${host%]}"
# A wildcard bind is reachable on loopback.
case "$host" in
  "" | 0.0.0.0) host=127.0.0.1 ;;
  ::) host=::1 ;;
esac

if ! exec 3<>"/dev/tcp/${host}/${port}"; then
  echo "unhealthy: cannot connect to ${host}:${port}" >&2
  exit 1
fi
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
status=""
IFS= read -r -t "${HEALTHCHECK_TIMEOUT_SECONDS:-3}" status <&3 || true
exec 3<&-
case "$status" in
  "HTTP/1."?" 200"*) exit 0 ;;
  *)
    echo "unhealthy: ${status:-no response} from ${host}:${port}/healthz" >&2
    exit 1
    ;;
esac

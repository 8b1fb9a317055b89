#!/bin/bash
# Demo traffic for `docker compose --profile demo up`: simulates a day of model-API traffic with
# distillation campaigns (`distillguard simulate`) and streams it to distillguard in chunks, so
# the dashboard and the alerts show a campaign being caught.
set -euo pipefail

url="${DISTILLGUARD_URL:-http://distillguard:8080}"
token="${DISTILLGUARD_INGEST_TOKEN:?set DISTILLGUARD_INGEST_TOKEN to an ingest-role token}"
days="${DEMO_DAYS:-1}"
accounts="${DEMO_ACCOUNTS:-2000}"
seed="${DEMO_SEED:-1}"
chunk_lines="${DEMO_CHUNK_LINES:-2000}"
pause_seconds="${DEMO_PAUSE_SECONDS:-1}"
max_attempts="${DEMO_MAX_ATTEMPTS:-30}"

# Kept after the run: labels.json is the simulator's ground truth to compare findings against.
work="${DEMO_WORK_DIR:-$(mktemp -d)}"

distillguard simulate --days "$days" --accounts "$accounts" --seed "$seed" \
  --out "$work/traffic.ndjson" --labels "$work/labels.json"
# Lines stay in the simulator's (event-time) order across chunks.
split --lines="$chunk_lines" --numeric-suffixes --suffix-length=6 \
  "$work/traffic.ndjson" "$work/chunk-"

# Posts one chunk; 429/503 (backpressure) and connection failures are retried with the same
# chunk, anything else stops the demo.
post_chunk() {
  local chunk="$1" attempt code
  for ((attempt = 1; attempt <= max_attempts; attempt++)); do
    code="$(curl --silent --show-error --output /dev/null --write-out '%{http_code}' \
      --data-binary "@${chunk}" \
      --header 'Content-Type: application/x-ndjson' \
      --header "Authorization: Bearer ${token}" \
      "${url}/v1/events" || true)"
    case "$code" in
      2??) return 0 ;;
      429 | 503 | 000) sleep 2 ;;
      *)
        echo "demo-traffic: ${url}/v1/events answered HTTP ${code} for ${chunk##*/}" >&2
        return 1
        ;;
    esac
  done
  echo "demo-traffic: gave up on ${chunk##*/} after ${max_attempts} attempts" >&2
  return 1
}

chunks=("$work"/chunk-*)
posted=0
for chunk in "${chunks[@]}"; do
  post_chunk "$chunk"
  posted=$((posted + 1))
  echo "demo-traffic: posted chunk ${posted}/${#chunks[@]}"
  sleep "$pause_seconds"
done
echo "demo-traffic: done; ground-truth campaign labels: ${work}/labels.json"

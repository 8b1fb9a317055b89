#!/bin/bash
# Demo traffic: simulates a day of model-API traffic with distillation campaigns
# (`distillguard simulate`) and streams it to distillguard in chunks, so the review API, the
# dashboard and the alerts show a campaign being caught. Used by `docker compose --profile demo
# up`, and by the README's quick start against a local `distillguard serve`:
#
#   DISTILLGUARD_URL=http://127.0.0.1:8080 DISTILLGUARD_BIN=target/release/distillguard \
#     DEMO_WORK_DIR=out/demo DEMO_ACCOUNTS=500 DEMO_PAUSE_SECONDS=0 deploy/docker/demo-traffic.sh
#
# The simulated day starts at DEMO_START (default 2026-11-02T00:00:00Z, the simulator's default).
# A service that has already seen later events counts every event of the day as late and finds
# nothing; the script says so at the end. Start over with `distillguard serve --reset`, or give a
# later DEMO_START.
set -euo pipefail

url="${DISTILLGUARD_URL:-http://distillguard:8080}"
# Optional: with no tokens configured the service takes loopback clients without one.
token="${DISTILLGUARD_INGEST_TOKEN:-}"
bin="${DISTILLGUARD_BIN:-distillguard}"
days="${DEMO_DAYS:-1}"
accounts="${DEMO_ACCOUNTS:-2000}"
seed="${DEMO_SEED:-1}"
start="${DEMO_START:-2026-11-02T00:00:00Z}"
chunk_lines="${DEMO_CHUNK_LINES:-2000}"
pause_seconds="${DEMO_PAUSE_SECONDS:-1}"
max_attempts="${DEMO_MAX_ATTEMPTS:-30}"

# Kept after the run: labels.json is the simulator's ground truth to compare findings against.
work="${DEMO_WORK_DIR:-$(mktemp -d)}"
mkdir -p "$work"
rm -f "$work"/chunk-*

auth=()
if [ -n "$token" ]; then
  auth=(--header "Authorization: Bearer ${token}")
fi

late_total() {
  curl --silent "${url}/metrics" | awk '$1 == "distillguard_late_events_total" {print $2; exit}'
}

"$bin" simulate --days "$days" --accounts "$accounts" --seed "$seed" --start "$start" \
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
      "${auth[@]}" \
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

late_before="$(late_total || true)"
late_before="${late_before:-0}"
chunks=("$work"/chunk-*)
posted=0
for chunk in "${chunks[@]}"; do
  post_chunk "$chunk"
  posted=$((posted + 1))
  echo "demo-traffic: posted chunk ${posted}/${#chunks[@]}"
  sleep "$pause_seconds"
done
late_after="$(late_total || true)"
late_after="${late_after:-0}"
late=$(( ${late_after%.*} - ${late_before%.*} ))
events=$(wc -l < "$work/traffic.ndjson")
if [ "$late" -gt $((events / 2)) ]; then
  echo "demo-traffic: WARNING: ${late} of ${events} events were counted late and not scored: the" >&2
  echo "  service has already seen events after ${start}. Start over with" >&2
  echo "  \`distillguard serve --reset\` (or a fresh --data-dir), or rerun with a later DEMO_START." >&2
fi
echo "demo-traffic: done (${late} late); ground-truth campaign labels: ${work}/labels.json"

#!/usr/bin/env bash
# `make demo`: Kafka (already started by make), one worker, the simulator with an incident every
# minute. Prints the URLs and this run's admin token; Ctrl-C stops the worker and the simulator,
# then the broker (the one on KAFKA_PORT, which `make demo` started).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${MEVRISK_WEB_PORT:-6066}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
DEMO_DIR="${MEVRISK_DEMO_DIR:-.cache/demo}"
export MEVRISK_BAR_MS="${MEVRISK_BAR_MS:-1000}"  # 1 s bars so the demo moves quickly
# a fresh admin token per run (32 URL-safe characters from 24 random bytes), printed once below
DEMO_TOKEN="${MEVRISK_DEMO_TOKEN:-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')}"
if [ -n "${MEVRISK_API_TOKENS:-}" ]; then
  TOKEN_NOTE="tokens from MEVRISK_API_TOKENS"
else
  TOKEN_NOTE="admin token for acknowledge/halt, this run only: $DEMO_TOKEN"
fi
# checkpoints are signed with a worker secret; the demo starts from a fresh broker, so a new one per run
export MEVRISK_CHECKPOINT_SECRET="${MEVRISK_CHECKPOINT_SECRET:-$(head -c 24 /dev/urandom | base64)}"
export MEVRISK_API_ANONYMOUS_READS="${MEVRISK_API_ANONYMOUS_READS:-true}"  # seed clients read without auth
export MEVRISK_API_TOKENS="${MEVRISK_API_TOKENS:-{\"$DEMO_TOKEN\": {\"role\": \"admin\", \"name\": \"demo\"}}}"
mkdir -p "$DEMO_DIR"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping demo..."
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$BIN/mevrisk" broker stop --port "$KAFKA_PORT" || true
}
trap cleanup INT TERM EXIT

MEVRISK_WEB_PORT="$PORT" "$BIN/mevrisk" worker -l warn --web-port "$PORT" > "$DEMO_DIR/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  curl -fs "http://127.0.0.1:$PORT/metrics" > /dev/null 2>&1 && break
  sleep 0.5
done
"$BIN/mevrisk" simulate --rate 200 --incident-every 60 --pace realtime > "$DEMO_DIR/simulator.log" 2>&1 &
pids+=($!)
cat <<TXT

MEV Risk Stream demo is running.
  metrics:    http://127.0.0.1:$PORT/metrics
  dashboard:  http://127.0.0.1:$PORT/   ($TOKEN_NOTE)
  API:        http://127.0.0.1:$PORT/api/v1/risk/overview
  logs:       $DEMO_DIR/worker.log, $DEMO_DIR/simulator.log
Press Ctrl-C to stop.
TXT
while true; do
  sleep 10
  events=$(curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^mevrisk_events_in_total/ {s+=$2} END {print s+0}')
  dlq=$(curl -fs "http://127.0.0.1:$PORT/metrics" | awk '/^mevrisk_dlq_messages_total/ {s+=$2} END {print s+0}')
  echo "$(date -u +%H:%M:%S) events_in=$events dlq=$dlq"
done

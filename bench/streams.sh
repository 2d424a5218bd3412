#!/usr/bin/env bash
# Many streams held open at once through llmgw (issue 6's streaming target), against a slow
# OpenAI-style SSE upstream (bench/streams.js, node): STREAMS_HELD streams (default 8000), each
# ~10 s long, all open together; every one must complete. Prints the gateway's peak RSS (bar
# <= 256 MB) and threads. (Time to first byte is measured by bench/compare.sh, against an
# upstream that answers at once: node's own latency here is milliseconds.)
# llmgw runs the release build on SQLite with a real key, usage recording and cost on.
# Usage: bench/streams.sh   (STREAMS_HELD=N to hold another number)
set -euo pipefail
cd "$(dirname "$0")/.."
held=${STREAMS_HELD:-8000}
command -v node >/dev/null || { echo "streams: node is needed"; exit 1; }
make -s all
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((held * 2 + 200)) ] ||
    { echo "streams: $held streams need $((held * 2 + 200)) open files; the limit is $(ulimit -n)"; exit 1; }

tmp=$(mktemp -d /tmp/llmgw-streams-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
base=$(( 20000 + RANDOM % 10000 )) # below the ephemeral ports (32768 on)
SLOW=$base; GW=$((base + 1))
SLOW_CHUNKS=20 # 10 s each: all of them are open at once between the ramp's end (5 s) and then
node bench/streams.js upstream "$SLOW" 500 "$SLOW_CHUNKS" >"$tmp/slow.out" 2>&1 &
pids+=($!)

db="sqlite:$tmp/gw.db"
build/llmgw migrate --db "$db" >/dev/null
build/llmgw orgs create bench --db "$db" >/dev/null
key=$(build/llmgw keys create --org bench --db "$db" | tail -n 1)
cat >"$tmp/gw.yaml" <<YAML
limits:
  max_connections_per_worker: $((held + 1000))
YAML
# grok-3 streams from the slow upstream
XAI_API_KEY=xai-bench LLMGW_XAI_BASE_URL="http://127.0.0.1:$SLOW" \
LLMGW_LOG_LEVEL=warn build/llmgw serve --config "$tmp/gw.yaml" --listen "127.0.0.1:$GW" \
    --db "$db" --workers 2 >"$tmp/llmgw.out" 2>&1 &
pids+=($!); gw_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/healthz" >/dev/null && break; sleep 0.1; done
kill -0 "$gw_pid" 2>/dev/null || { echo "streams: llmgw did not start:"; cat "$tmp/llmgw.out"; exit 1; }
for _ in $(seq 50); do grep -q listening "$tmp/slow.out" && break; sleep 0.1; done
rest_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status")

field() { node -e 'const v = JSON.parse(process.argv[1])[process.argv[2]];
    console.log(typeof v === "object" ? JSON.stringify(v) : v)' "$1" "$2"; }
echo "streams: $held streams held open at once (each ~$(( SLOW_CHUNKS / 2 )) s)"
( while kill -0 "$gw_pid" 2>/dev/null; do
      awk '/^Threads/ {print $2}' "/proc/$gw_pid/status"; sleep 0.5; done >"$tmp/threads" ) &
pids+=($!)
hold=$(node bench/streams.js client "http://127.0.0.1:$GW/v1/chat/completions" "$key" grok-3 \
    "$held" "$held" "$SLOW_CHUNKS" 5000)
peak_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$gw_pid/status")
peak_threads=$(sort -n "$tmp/threads" | tail -n 1)
rows=$(build/llmgw usage --format totals --db "$db" 2>/dev/null | sed -n 's/.*totals //p')

echo
echo "held: $(field "$hold" completed) of $held streams completed, peak $(field "$hold" peak_open) open," \
     "first errors: $(field "$hold" errors)"
awk -v r="$rest_kb" -v p="$peak_kb" -v t="$peak_threads" 'BEGIN {
    printf "llmgw RSS %.1f MB at rest, %.1f MB peak with the streams (bar <= 256 MB), %d threads\n",
        r / 1024, p / 1024, t }'
echo "llmgw usage rows: $rows"
if [ "$(field "$hold" completed)" != "$held" ]; then
    echo "llmgw's log about the failed streams (most frequent first):"
    grep -v ' info ' "$tmp/llmgw.out" | sed -e 's/^[^ ]* //' -e 's/req=[^ ]* //' | sort | uniq -c |
        sort -rn | head -n 5
fi

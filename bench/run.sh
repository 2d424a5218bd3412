#!/usr/bin/env bash
# First benchmark: the gateway's throughput and added latency against the fake upstream.
# Runs wrk straight at the fake (the baseline hop) and through the gateway (same body, model
# gpt-4o → the fake's OpenAI route), non-streamed, and prints both and the difference; plus
# one auto-routed run (heuristic rules pick gpt-4o-mini for the short prompt) to show what
# routing adds; then idempotency: 10,000 keyed requests stored (BENCH_IDEM_N), replays of
# random ones (no provider call) against a plain request's overhead, and a record's size.
# Usage: bench/run.sh [DURATION_S=5] [CONNECTIONS=32]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
dur=${1:-5}; conns=${2:-32}
command -v wrk >/dev/null || { echo "bench: installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
tmp=$(mktemp -d)
cleanup() { kill "${gw_pid:-}" "${fake_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

FAKE_NO_RECORD=1 node tests/fake/server.js --port 0 >"$tmp/fake.out" 2>&1 &
fake_pid=$!
for _ in $(seq 50); do grep -q '^listening' "$tmp/fake.out" 2>/dev/null && break; sleep 0.1; done
fport=$(sed -n 's/^listening \([0-9]*\).*/\1/p' "$tmp/fake.out" | head -n 1)

db="sqlite:$tmp/gw.db"
build/llmgw migrate --db "$db" >/dev/null
build/llmgw orgs create bench --db "$db" >/dev/null
key=$(build/llmgw keys create --org bench --db "$db" | tail -n 1)
gport=$((20000 + RANDOM % 12000)) # below the ephemeral ports (32768 on)
OPENAI_API_KEY=fake-openai-key LLMGW_OPENAI_BASE_URL="http://127.0.0.1:$fport/openai" \
LLMGW_LOG_LEVEL=warn build/llmgw serve --listen "127.0.0.1:$gport" --db "$db" --workers 2 \
    >"$tmp/gw.out" 2>"$tmp/gw.err" &
gw_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$gport/healthz" >/dev/null && break; sleep 0.1; done

msg='{"role":"user","content":"Say hello in five words."}'
run() { # name url auth body conns [wrk script]
    BENCH_AUTH=$3 BENCH_BODY=$4 wrk -t"$(( $5 < 2 ? 1 : 2 ))" -c"$5" -d"${dur}s" --latency \
        -s "${6:-bench/post.lua}" "$2" >"$tmp/$1.txt"
    local rps avg p50 p99
    rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/$1.txt")
    avg=$(awk '/^    Latency/ {print $2}' "$tmp/$1.txt")
    p50=$(awk '/^     50%/ {print $2}' "$tmp/$1.txt")
    p99=$(awk '/^     99%/ {print $2}' "$tmp/$1.txt")
    printf '%-28s %10s req/s   avg %-9s p50 %-9s p99 %s\n' "$1" "$rps" "$avg" "$p50" "$p99"
}
echo "wrk ${dur}s per run; fake upstream on :$fport, gateway (2 workers) on :$gport"
run "direct c=1"   "http://127.0.0.1:$fport/openai/v1/chat/completions" fake-openai-key \
    "{\"model\":\"gpt-4o\",\"messages\":[$msg]}" 1
run "gateway c=1"  "http://127.0.0.1:$gport/v1/chat/completions" "$key" \
    "{\"model\":\"gpt-4o\",\"messages\":[$msg]}" 1
run "gateway auto c=1" "http://127.0.0.1:$gport/v1/chat/completions" "$key" \
    "{\"auto_route\":true,\"messages\":[$msg]}" 1
run "direct c=$conns"  "http://127.0.0.1:$fport/openai/v1/chat/completions" fake-openai-key \
    "{\"model\":\"gpt-4o\",\"messages\":[$msg]}" "$conns"
run "gateway c=$conns" "http://127.0.0.1:$gport/v1/chat/completions" "$key" \
    "{\"model\":\"gpt-4o\",\"messages\":[$msg]}" "$conns"
errs=$( (grep -c 'Non-2xx' "$tmp"/*.txt || true) | awk -F: '{s+=$2} END {print s}')
[ "$errs" = 0 ] || { echo "bench: some runs had non-2xx answers:"; grep -H 'Non-2xx' "$tmp"/*.txt; }

seed=${BENCH_IDEM_N:-10000}
body="{\"model\":\"gpt-4o\",\"messages\":[$msg]}"
# wrk's threads stop after BENCH_N answers, but wrk itself sleeps out -d: it is interrupted
# (SIGINT, which it takes as "finish now") once the answers are stored
BENCH_AUTH=$key BENCH_BODY=$body BENCH_N=$seed wrk -t1 -c16 -d300s \
    -s bench/idem_seed.lua "http://127.0.0.1:$gport/v1/chat/completions" >"$tmp/seed.txt" &
seed_pid=$!
stored=0
for _ in $(seq 3000); do
    stored=$(sqlite3 "$tmp/gw.db" "SELECT COUNT(*) FROM idempotency WHERE state = 'done'")
    [ "$stored" -ge "$seed" ] && break
    kill -0 "$seed_pid" 2>/dev/null || break
    sleep 0.1
done
kill -INT "$seed_pid" 2>/dev/null || true
wait "$seed_pid" 2>/dev/null || true
stored=$(sqlite3 "$tmp/gw.db" "SELECT COUNT(*) FROM idempotency WHERE state = 'done'")
echo "idempotency: $stored keyed answers stored"
export BENCH_KEYS=$(( stored * 9 / 10 ))
run "replay c=1" "http://127.0.0.1:$gport/v1/chat/completions" "$key" "$body" 1 bench/idem_replay.lua
run "replay c=$conns" "http://127.0.0.1:$gport/v1/chat/completions" "$key" "$body" "$conns" \
    bench/idem_replay.lua
over=$(( $(wrk_p50_us "$tmp/gateway c=1.txt") - $(wrk_p50_us "$tmp/direct c=1.txt") ))
rep=$(wrk_p50_us "$tmp/replay c=1.txt")
echo "p50 at c=1: a plain request's gateway overhead ${over} us (gateway - direct); a replay ${rep} us" \
     "($(awk -v r="$rep" -v o="$over" 'BEGIN { printf "%.2f", (o > 0 ? r / o : 0) }')x)"
sqlite3 "$tmp/gw.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
sqlite3 "$tmp/gw.db" "SELECT 'storage per record: ' || ((SELECT SUM(pgsize) FROM dbstat WHERE name
    IN ('idempotency', 'idempotency_expires', 'idempotency_in_flight') OR name LIKE
    'sqlite_autoindex_idempotency%') / COUNT(*)) || ' bytes on disk (table and indexes), ' ||
    (CAST(AVG(LENGTH(body) + LENGTH(headers)) AS INTEGER)) || ' of them the stored answer' FROM
    idempotency"
errs=$( (grep -c 'Non-2xx' "$tmp"/replay*.txt || true) | awk -F: '{s+=$2} END {print s}')
[ "$errs" = 0 ] || { echo "bench: some replays had non-2xx answers:"; grep -H 'Non-2xx' "$tmp"/replay*.txt; }

#!/usr/bin/env bash
# Do the admin plane's usage reads load the request path? The gateway (release build, SQLite,
# 2 workers) over 100,000 seeded usage rows (BENCH_USAGE_ROWS) serves chat requests through the
# fake provider with wrk, first alone, then while an org admin queries usage grouped four ways
# and exports the whole range as CSV in a loop; prints both runs (req/s, p50, p99) and what the
# admin reads did meanwhile.
# Usage: bench/admin_load.sh [DURATION_S=5] [CONNECTIONS=32]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
dur=${1:-5}; conns=${2:-32}; rows=${BENCH_USAGE_ROWS:-100000}
command -v wrk >/dev/null || { echo "bench: installing wrk" >&2; apt-get install -y -qq wrk >/dev/null; }
tmp=$(mktemp -d)
cleanup() { kill "${gw_pid:-}" "${fake_pid:-}" "${admin_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

FAKE_NO_RECORD=1 node tests/fake/server.js --port 0 >"$tmp/fake.out" 2>&1 &
fake_pid=$!
for _ in $(seq 50); do grep -q '^listening' "$tmp/fake.out" 2>/dev/null && break; sleep 0.1; done
fport=$(sed -n 's/^listening \([0-9]*\).*/\1/p' "$tmp/fake.out" | head -n 1)

db="sqlite:$tmp/gw.db"
build/llmgw migrate --db "$db" >/dev/null
build/llmgw orgs create bench --db "$db" >/dev/null 2>&1
key=$(build/llmgw keys create --org bench --db "$db" 2>/dev/null | tail -n 1)
admin=$(build/llmgw keys create --org bench --role org_admin --db "$db" 2>/dev/null | tail -n 1)
t0=$(( ($(date +%s) - 7 * 86400) * 1000 ))
sqlite3 "$tmp/gw.db" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $rows)
  INSERT INTO usage(request_id, org_id, key_row_id, provider, model, endpoint, state, tokens_in,
    tokens_out, cost_micros, status, created_ms, kind, route_method, node)
  SELECT printf('req_seed%08d', i), 1, 1, CASE i % 3 WHEN 0 THEN 'openai' WHEN 1 THEN 'anthropic'
    ELSE 'gemini' END, CASE i % 3 WHEN 0 THEN 'gpt-4o' WHEN 1 THEN 'claude-sonnet-4-6' ELSE
    'gemini-2.5-flash' END, 'chat.completions', 'settled', 10, 5, 50 + i % 97, 200,
    $t0 + i * 6000, 'chat', 'explicit', 'seed' FROM n"
gport=$((20000 + RANDOM % 12000)) # below the ephemeral ports (32768 on)
OPENAI_API_KEY=fake-openai-key LLMGW_OPENAI_BASE_URL="http://127.0.0.1:$fport/openai" \
LLMGW_LOG_LEVEL=warn build/llmgw serve --listen "127.0.0.1:$gport" --db "$db" --workers 2 \
    >"$tmp/gw.out" 2>"$tmp/gw.err" &
gw_pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$gport/healthz" >/dev/null && break; sleep 0.1; done

base="http://127.0.0.1:$gport"
body='{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello in five words."}]}'
run() { # name
    BENCH_AUTH=$key BENCH_BODY=$body wrk -t2 -c"$conns" -d"${dur}s" --latency -s bench/post.lua \
        "$base/v1/chat/completions" >"$tmp/$1.txt"
    printf '%-34s %10s req/s   p50 %-9s p99 %s\n' "$1" \
        "$(awk '/Requests\/sec/ {print $2}' "$tmp/$1.txt")" \
        "$(awk '/^     50%/ {print $2}' "$tmp/$1.txt")" "$(awk '/^     99%/ {print $2}' "$tmp/$1.txt")"
}
admin_loop() { # usage queries and whole-range CSV exports, back to back, counted
    local q=0 e=0 ms
    while :; do
        [ "${ADMIN_ONLY:-}" = export ] || for by in day key model provider; do
            curl -sf -o /dev/null -H "Authorization: Bearer $admin" \
                "$base/admin/v1/usage?from=$((t0 / 1000))&group_by=$by" && q=$((q + 1))
        done
        [ "${ADMIN_ONLY:-}" = query ] && { echo "$q 0 0 0" >"$tmp/admin.count"; continue; }
        ms=$( { /usr/bin/time -f '%e' curl -sf -o "$tmp/export.csv" -H "Authorization: Bearer $admin" \
            "$base/admin/v1/usage/export?format=csv&from=$((t0 / 1000))"; } 2>&1 )
        e=$((e + 1))
        echo "$q $e $ms $(wc -l <"$tmp/export.csv")" >"$tmp/admin.count"
    done
}
echo "wrk ${dur}s, $conns connections; $rows usage rows in the store; gateway on :$gport"
run "chat alone"
admin_loop & admin_pid=$!
sleep 0.5
run "chat while admins read usage"
kill "$admin_pid" 2>/dev/null || true; wait "$admin_pid" 2>/dev/null || true; admin_pid=
read -r q e secs lines <"$tmp/admin.count" || true
echo "meanwhile: ${q:-0} grouped usage queries and ${e:-0} CSV exports (the last: ${lines:-0} lines in ${secs:-?} s)"
# the same CPU taken by something else entirely: what share of the change is the 2 cores'
( while :; do sha256sum "$tmp/gw.db" >/dev/null; done ) & admin_pid=$!
sleep 0.5
run "chat while a CPU hog runs"
kill "$admin_pid" 2>/dev/null || true; wait "$admin_pid" 2>/dev/null || true; admin_pid=

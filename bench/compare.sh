#!/usr/bin/env bash
# llmgw side by side with a plain proxy hop and a peer gateway, in one run (issue 6's table).
#
#   upstream  nginx answering a fixed ~680-byte chat.completion at once (JSON, and the same as
#             an SSE stream on a second port)
#   hop       nginx as a plain keepalive reverse proxy in front of it
#   portkey   Portkey's open-source gateway (@portkey-ai/gateway from npm, node), pointed at the
#             upstream with x-portkey-custom-host
#   llmgw     the release build on SQLite with a real key: auth, policy, reservation, the
#             provider adapter, cost and the usage row on every request (2 workers)
#   llmgw-pg  the same on a local PostgreSQL with its durable defaults (fsync, synchronous
#             commit), non-streamed (BENCH_SKIP_PG=1 leaves it out)
#   llmgw-pgl the same gateway with a key that has limits (requests and tokens per hour,
#             requests in flight, a daily budget, none of them reached): every admission locks
#             its scope and checks it in the database
#
# wrk at 1, 64 and 256 connections, non-streamed and streamed, against each in turn; one table
# with req/s, p50, p99, errors and peak RSS, then llmgw's ratios to the hop and to Portkey. The
# streamed upstream sends its whole stream at once, so a streamed answer's latency is its time
# to first byte plus a few hundred bytes.
# Usage: bench/compare.sh [SECONDS=4]   (BENCH_SKIP_PORTKEY=1 leaves Portkey out)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
dur=${1:-4}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing ${need[*]}" >&2
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
make -s all
ulimit -n 40000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

tmp=$(mktemp -d /tmp/llmgw-compare-XXXXXX); chmod 755 "$tmp" # the PostgreSQL server runs as postgres
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    scripts/pg.sh stop "$tmp/pg" >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

base=$(( 20000 + RANDOM % 10000 )) # below the ephemeral ports (32768 on)
UP_JSON=$base; UP_SSE=$((base + 1)); HOP_JSON=$((base + 2)); HOP_SSE=$((base + 3))
PK=$((base + 4)); GW=$((base + 5)); GW_PG=$((base + 6)); PG_PORT=$((base + 7))

CHAT='{"id":"chatcmpl-bench0000000000000000000000000","object":"chat.completion","created":1764547200,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a fixed answer from the benchmark upstream, about six hundred bytes in all.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":19,"total_tokens":33,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_bench00000"}'
chunk() { # delta finish_reason
    printf 'data: {"id":"chatcmpl-bench0","object":"chat.completion.chunk","created":1764547200,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}\\n\\n' "$1" "$2"
}
SSE="$(chunk '{"role":"assistant","content":""}' null)$(chunk '{"content":"Hello! This is a fixed answer "}' null)$(chunk '{"content":"from the benchmark upstream."}' null)$(chunk '{}' '"stop"')"
SSE+='data: {"id":"chatcmpl-bench0","object":"chat.completion.chunk","created":1764547200,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":14,"completion_tokens":19,"total_tokens":33}}\n\ndata: [DONE]\n\n'

nginx_conf() { # role servers
    sed -e "s|@ROLE@|$1|g" -e "s|@DIR@|$tmp|g" -e "s|@JSON_PORT@|$UP_JSON|g" \
        -e "s|@SSE_PORT@|$UP_SSE|g" bench/upstream.conf.in |
        awk -v s="$2" '{ if ($0 == "@SERVERS@") print s; else print }' >"$tmp/$1.conf"
}
nginx_conf upstream "    server { listen 127.0.0.1:$UP_JSON; location / { default_type application/json; return 200 '$CHAT'; } }
    server { listen 127.0.0.1:$UP_SSE; location / { default_type text/event-stream; return 200 '$SSE'; } }"
nginx_conf hop "    upstream json { server 127.0.0.1:$UP_JSON; keepalive 512; }
    upstream sse { server 127.0.0.1:$UP_SSE; keepalive 512; }
    server { listen 127.0.0.1:$HOP_JSON; location / { proxy_pass http://json; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }
    server { listen 127.0.0.1:$HOP_SSE; location / { proxy_pass http://sse; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; } }"
for role in upstream hop; do
    mkdir -p "$tmp/$role-body" "$tmp/$role-proxy" "$tmp/$role-fcgi" "$tmp/$role-uwsgi" "$tmp/$role-scgi"
    "$NGINX" -c "$tmp/$role.conf" -p "$tmp" >"$tmp/$role.out" 2>&1 &
    pids+=($!)
done

wait_http() { # url
    for _ in $(seq 100); do curl -s -o /dev/null -X POST "$1" -d '{}' && return 0; sleep 0.1; done
    echo "bench: $1 did not answer" >&2; return 1
}
wait_http "http://127.0.0.1:$UP_JSON/"; wait_http "http://127.0.0.1:$HOP_JSON/"

# Portkey from npm, cached under build/
have_pk=0
if [ "${BENCH_SKIP_PORTKEY:-0}" != 1 ]; then
    pkdir=build/bench-portkey
    if [ ! -f "$pkdir/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
        mkdir -p "$pkdir"
        npm install --prefix "$pkdir" --no-audit --no-fund --loglevel=error \
            @portkey-ai/gateway@1.15.2 >/dev/null 2>&1 || echo "bench: Portkey could not be installed" >&2
    fi
    if [ -f "$pkdir/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
        NODE_ENV=production node "$pkdir/node_modules/@portkey-ai/gateway/build/start-server.js" \
            --port="$PK" --headless >"$tmp/portkey.out" 2>&1 &
        pids+=($!); pk_pid=$!
        for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PK/" && { have_pk=1; break; }; sleep 0.1; done
    fi
fi

# llmgw on SQLite with a real key
db="sqlite:$tmp/gw.db"
build/llmgw migrate --db "$db" >/dev/null
build/llmgw orgs create bench --db "$db" >/dev/null
key=$(build/llmgw keys create --org bench --db "$db" | tail -n 1)
OPENAI_API_KEY=sk-bench LLMGW_OPENAI_BASE_URL="http://127.0.0.1:$UP_JSON" \
XAI_API_KEY=xai-bench LLMGW_XAI_BASE_URL="http://127.0.0.1:$UP_SSE" \
LLMGW_LOG_LEVEL=warn build/llmgw serve --listen "127.0.0.1:$GW" --db "$db" --workers 2 \
    >"$tmp/llmgw.out" 2>&1 &
pids+=($!); gw_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/healthz" >/dev/null && break; sleep 0.1; done
gw_rest_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$gw_pid/status")

msg='{"role":"user","content":"Say hello in five words."}'
json_body="{\"model\":\"gpt-4o\",\"messages\":[$msg]}"
# llmgw streams from the SSE port through its xAI adapter (OpenAI-compatible), model grok-3
sse_body="{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[$msg]}"
gw_sse_body="{\"model\":\"grok-3\",\"stream\":true,\"messages\":[$msg]}"
pk_headers=$'x-portkey-provider: openai\nAuthorization: Bearer sk-bench'

results=$tmp/results
: >"$results"
cpu_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9; exit}' /proc/stat; }
run() { # name mode conns url body [auth] [headers]
    local out=$tmp/$1-$2-$3.txt t0 s0 t1 s1
    read -r t0 s0 < <(cpu_ticks)
    BENCH_BODY=$5 BENCH_AUTH=${6:-} BENCH_HEADERS=${7:-} \
        wrk -t"$(( $3 < 2 ? 1 : 2 ))" -c"$3" -d"${dur}s" --timeout 10s --latency \
        -s bench/post.lua "$4" >"$out" 2>&1 || true
    read -r t1 s1 < <(cpu_ticks)
    local rps p50 p99 errs
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$out")
    p50=$(wrk_p50_us "$out")
    p99=$(wrk_p99_us "$out")
    errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$out")
    # the share of the CPU the hypervisor gave to other guests meanwhile (steal)
    local steal=$(( t1 > t0 ? (s1 - s0) * 100 / (t1 - t0) : 0 ))
    echo "$1 $2 $3 ${rps:-0} ${p50:-0} ${p99:-0} $errs $steal" >>"$results"
}
rss_kb() { # peak RSS of pid and its children, kB
    local total=0 p
    for p in "$1" $(pgrep -P "$1" || true); do
        total=$(( total + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) ))
    done
    echo "$total"
}
# llmgw on PostgreSQL beside it (the database on the same two cores), non-streamed
have_pg=0
if [ "${BENCH_SKIP_PG:-0}" != 1 ] &&
   pg_url=$(PG_DURABLE=1 scripts/pg.sh start "$tmp/pg" "$PG_PORT" 2>"$tmp/pg.err"); then
    build/llmgw migrate --db "$pg_url" >/dev/null
    build/llmgw orgs create bench --db "$pg_url" >/dev/null
    pg_key=$(build/llmgw keys create --org bench --db "$pg_url" | tail -n 1)
    pgl_key=$(build/llmgw keys create --org bench --name limited --rph 1000000000 \
        --tph 1000000000000 --max-concurrent 100000 --daily-usd 1000000 --db "$pg_url" | tail -n 1)
    OPENAI_API_KEY=sk-bench LLMGW_OPENAI_BASE_URL="http://127.0.0.1:$UP_JSON" \
    LLMGW_LOG_LEVEL=warn build/llmgw serve --listen "127.0.0.1:$GW_PG" --db "$pg_url" \
        --workers 2 >"$tmp/llmgw-pg.out" 2>&1 &
    pids+=($!); gw_pg_pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW_PG/healthz" >/dev/null && { have_pg=1; break; }; sleep 0.1; done
elif [ "${BENCH_SKIP_PG:-0}" != 1 ]; then
    echo "bench: no PostgreSQL for the llmgw-pg row: $(head -c 200 "$tmp/pg.err")"
fi

declare -A rss
# The targets take turns at each connection count rather than each running all its counts in a
# row: this machine's speed varies over minutes (other guests of its host, seen as steal), and
# a slow spell should fall on every row of a ratio, not on one.
echo "bench: wrk ${dur}s per run, 1 / 64 / 256 connections, non-streamed and streamed, the targets in turn"
up=http://127.0.0.1
for c in 1 64 256; do
    run upstream json "$c" "$up:$UP_JSON/v1/chat/completions" "$json_body"
    run hop json "$c" "$up:$HOP_JSON/v1/chat/completions" "$json_body"
    [ "$have_pk" = 1 ] && run portkey json "$c" "$up:$PK/v1/chat/completions" "$json_body" "" \
        "$pk_headers"$'\n'"x-portkey-custom-host: $up:$UP_JSON/v1"
    run llmgw json "$c" "$up:$GW/v1/chat/completions" "$json_body" "$key"
    [ "$have_pg" = 1 ] && run llmgw-pg json "$c" "$up:$GW_PG/v1/chat/completions" "$json_body" "$pg_key"
    [ "$have_pg" = 1 ] && run llmgw-pgl json "$c" "$up:$GW_PG/v1/chat/completions" "$json_body" "$pgl_key"
    run upstream sse "$c" "$up:$UP_SSE/v1/chat/completions" "$sse_body"
    run hop sse "$c" "$up:$HOP_SSE/v1/chat/completions" "$sse_body"
    [ "$have_pk" = 1 ] && run portkey sse "$c" "$up:$PK/v1/chat/completions" "$sse_body" "" \
        "$pk_headers"$'\n'"x-portkey-custom-host: $up:$UP_SSE/v1"
    run llmgw sse "$c" "$up:$GW/v1/chat/completions" "$gw_sse_body" "$key"
done
rss[upstream]=$(rss_kb "${pids[0]}")
rss[hop]=$(rss_kb "${pids[1]}")
if [ "$have_pk" = 1 ]; then
    rss[portkey]=$(rss_kb "$pk_pid")
    grep -q "TypeError" "$tmp/portkey.out" &&
        echo "bench: Portkey logged errors: $(grep -m1 -o 'TypeError[^\n]\{0,80\}' "$tmp/portkey.out")"
fi
rss[llmgw]=$(rss_kb "$gw_pid")
[ "$have_pg" = 1 ] && rss[llmgw-pg]=$(rss_kb "$gw_pg_pid") && rss[llmgw-pgl]=${rss[llmgw-pg]}
rows=$(build/llmgw usage --format totals --db "$db" 2>/dev/null | sed -n 's/.*totals //p')
kill "$gw_pid" 2>/dev/null || true

echo
printf '%-9s %-6s %10s %10s %11s %11s %11s %11s %8s %9s %6s\n' target mode "p50 c=1" "p99 c=1" \
    "req/s c=64" "p99 c=64" "req/s c=256" "p99 c=256" errors "peak RSS" steal
for t in upstream hop portkey llmgw llmgw-pg llmgw-pgl; do
    for m in json sse; do
        awk -v t="$t" -v m="$m" -v rss="${rss[$t]:-0}" '
            $1 == t && $2 == m { rps[$3] = $4; p50[$3] = $5; p99[$3] = $6; e += $7; seen = 1
                                 if ($8 > st) st = $8 }
            function us(v) { return v >= 10000 ? sprintf("%.1f ms", v / 1000) : sprintf("%d us", v) }
            END { if (!seen) exit
                printf "%-9s %-6s %10s %10s %11d %11s %11d %11s %8d %6.1f MB %5d%%\n", t, m, us(p50[1]),
                    us(p99[1]), rps[64], us(p99[64]), rps[256], us(p99[256]), e, rss / 1024, st }' \
            "$results"
    done
done
[ "$have_pk" = 1 ] || echo "(Portkey not measured)"
awk '{ s += $8; n++; if ($8 > m) m = $8 } END { printf "steal: the largest share of the CPU the hypervisor gave other guests during one of the row'"'"'s runs (over all runs %d%% on average, at most %d%%); a run under steal is slower than this machine\n", n ? s / n : 0, m }' "$results"
echo
awk -v rest="$gw_rest_kb" -v peak="${rss[llmgw]}" '
    { k = $1 " " $2 " " $3; rps[k] = $4; p50[k] = $5; p99[k] = $6 }
    function r(a, b) { return b > 0 ? sprintf("%.2fx", a / b) : "-" }
    END {
        printf "llmgw / hop, throughput at 64 connections:  %s json (bar >= 0.6x), %s sse\n",
            r(rps["llmgw json 64"], rps["hop json 64"]), r(rps["llmgw sse 64"], rps["hop sse 64"])
        ga = p50["llmgw json 1"] - p50["upstream json 1"]; ha = p50["hop json 1"] - p50["upstream json 1"]
        printf "added p50 at 1 connection:                  llmgw %d us, hop %d us: %s (bar <= 2x)\n",
            ga, ha, r(ga, ha)
        printf "p99 at 256 connections, llmgw / hop:        %s json (bar <= 2x), %s sse\n",
            r(p99["llmgw json 256"], p99["hop json 256"]), r(p99["llmgw sse 256"], p99["hop sse 256"])
        tt = p99["llmgw sse 1"] - p99["upstream sse 1"]
        if (tt >= 0)
            printf "added time to first byte, p99 at 1 conn.:   %d us (bar <= 1000 us)\n", tt
        else
            printf "added time to first byte, p99 at 1 conn.:   none measured: the upstream alone had a p99 of %d us, llmgw %d us (a slow spell; bar <= 1000 us)\n",
                p99["upstream sse 1"], p99["llmgw sse 1"]
        if (rps["llmgw-pg json 64"] > 0)
            printf "llmgw on PostgreSQL / hop, at 64:           %s json (bar >= 0.15x)\n",
                r(rps["llmgw-pg json 64"], rps["hop json 64"])
        if (rps["llmgw-pgl json 64"] > 0)
            printf "the same with limits checked in the store:  %s json (%d req/s)\n",
                r(rps["llmgw-pgl json 64"], rps["hop json 64"]), rps["llmgw-pgl json 64"]
        if (rps["portkey json 64"] > 0)
            printf "llmgw / Portkey, throughput at 64:          %s json, %s sse\n",
                r(rps["llmgw json 64"], rps["portkey json 64"]), r(rps["llmgw sse 64"], rps["portkey sse 64"])
        printf "llmgw RSS: %.1f MB at rest, %.1f MB peak (bar at rest <= 20 MB)\n", rest / 1024, peak / 1024
    }' "$results"
echo "llmgw usage rows written: $rows"

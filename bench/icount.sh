#!/usr/bin/env bash
# Instructions per request (callgrind: counts, not seconds, so a busy machine does not move
# them) for a fixed mix (bench/icount-mix.js) through the release build against the fake
# providers, compared with the figure recorded in bench/icount.txt: more than 10% above it
# fails. The figure is the difference between a long and a short run over their difference in
# requests, so start-up and shutdown cancel out.
# Usage: bench/icount.sh [--record]   (--record writes the measured figure as the new one)
set -u
cd "$(dirname "$0")/.."
record=0; [ "${1:-}" = --record ] && record=1
command -v valgrind >/dev/null || { echo "icount: valgrind is not installed"; exit 1; }
tmp=$(mktemp -d /tmp/llmgw-icount-XXXXXX)
cleanup() { kill "${fake_pid:-}" 2>/dev/null; wait 2>/dev/null; [ -n "${ICOUNT_KEEP:-}" ] && cp "$tmp/run24/cg.out" "$ICOUNT_KEEP"; [ -n "${ICOUNT_DEBUG:-}" ] || rm -rf "$tmp"; }
trap cleanup EXIT
FAKE_NO_RECORD=1 node tests/fake/server.js --port 0 >"$tmp/fake.out" 2>&1 &
fake_pid=$!
for _ in $(seq 50); do grep -q '^listening' "$tmp/fake.out" 2>/dev/null && break; sleep 0.1; done
fport=$(sed -n 's/^listening \([0-9]*\).*/\1/p' "$tmp/fake.out" | head -n 1)

measure() { # rounds -> total instructions of a gateway serving that many rounds of the mix
    local n=$1 dir=$tmp/run$1 port=$(( 20000 + RANDOM % 12000 )) # below the ephemeral ports (32768 on)
    rm -rf "$dir"
    mkdir -p "$dir"
    local db="sqlite:$dir/gw.db"
    build/llmgw migrate --db "$db" >/dev/null && build/llmgw orgs create ic --db "$db" >/dev/null
    local key; key=$(build/llmgw keys create --org ic --db "$db" | tail -n 1)
    env -i PATH="$PATH" HOME="$HOME" LLMGW_LOG_LEVEL=warn \
        OPENAI_API_KEY=fake-openai-key LLMGW_OPENAI_BASE_URL="http://127.0.0.1:$fport/openai" \
        ANTHROPIC_API_KEY=fake-anthropic-key LLMGW_ANTHROPIC_BASE_URL="http://127.0.0.1:$fport/anthropic" \
        GEMINI_API_KEY=fake-gemini-key LLMGW_GEMINI_BASE_URL="http://127.0.0.1:$fport/gemini" \
        valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
        build/llmgw serve --listen "127.0.0.1:$port" --db "$db" --workers 1 >"$dir/gw.log" 2>&1 &
    local pid=$! up=0
    for _ in $(seq 300); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && { up=1; break; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$up" = 0 ]; then
        echo "icount: the gateway did not come up on :$port: $(tail -n 5 "$dir/gw.log" | tr '\n' ' ')" >&2
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1
    fi
    node bench/icount-mix.js "http://127.0.0.1:$port" "$key" "$n" >"$dir/mix.out" 2>&1 || {
        echo "icount: the mix failed: $(cat "$dir/mix.out"); the gateway said: $(tail -n 5 "$dir/gw.log" | tr '\n' ' ')" >&2
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1
    }
    kill -TERM "$pid"; wait "$pid" 2>/dev/null
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$dir/cg.out" | head -n 1
}
# once more on a failure: on a loaded machine (the end of make test) a start may fail, or a
# random port be taken; the reason is printed either way
short=$(measure 4 || measure 4) || exit 1
long=$(measure 24 || measure 24) || exit 1
[ -n "$short" ] && [ -n "$long" ] || { echo "icount: no callgrind totals"; exit 1; }
per=$(( (long - short) / (20 * 5) ))
echo "icount: $per instructions per request (mix of 5, 100 requests)"
if [ "$record" = 1 ]; then
    echo "$per" >bench/icount.txt
    echo "icount: recorded in bench/icount.txt"
    exit 0
fi
want=$(tr -dc 0-9 <bench/icount.txt 2>/dev/null)
[ -n "$want" ] || { echo "icount: no figure recorded (bench/icount.sh --record)"; exit 1; }
limit=$(( want + want / 10 ))
if [ "$per" -gt "$limit" ]; then
    echo "icount: $per is more than 10% above the recorded $want; find why, or record the new figure deliberately (bench/icount.sh --record)"
    exit 1
fi
echo "icount: within 10% of the recorded $want ($(( (per - want) * 100 / want ))%)"

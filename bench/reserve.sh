#!/usr/bin/env bash
# The governed write path's cost per request on SQLite and, with a throwaway server started
# here, on PostgreSQL (build/bench_reserve [N] [URL]).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
dir=$(mktemp -d /tmp/llmgw-bench-pg-XXXXXX); chmod 755 "$dir"
trap 'scripts/pg.sh stop "$dir/pg" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
url=""
if url=$(scripts/pg.sh start "$dir/pg" $(( 20000 + RANDOM % 12000 )) 2>"$dir/err"); then
    build/bench_reserve "$n" "$url"
else
    echo "bench: PostgreSQL did not start ($(head -c 200 "$dir/err")); SQLite only"
    build/bench_reserve "$n"
fi

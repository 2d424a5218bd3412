#!/usr/bin/env bash
# make test: install what the tests need, build (gcc, plus a clang warnings pass), run the C unit
# tests under ASan+UBSan and the black-box suite (node --test against build/llmgw and the fake
# providers), then print one line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
scripts/deps.sh test || { echo "deps: installation failed"; echo "0 passed, 1 failed"; exit 1; }

pass=0; fail=0

# A throwaway PostgreSQL for the store suite and the multi-node tests, stopped at the end.
pgdir=$(mktemp -d /tmp/llmgw-pg-XXXXXX); chmod 755 "$pgdir"
cleanup_pg() { scripts/pg.sh stop "$pgdir"; rm -rf "$pgdir"; }
trap cleanup_pg EXIT
export LLMGW_TEST_PG_URL=""
for try in 1 2 3 4 5; do
    port=$(( 20000 + (RANDOM % 12000) )) # below the ephemeral ports (32768 on)
    if url=$(scripts/pg.sh start "$pgdir/$try" "$port" 2>"$pgdir/start.log"); then
        LLMGW_TEST_PG_URL=$url; pgdir_used="$pgdir/$try"; break
    fi
done
if [ -n "$LLMGW_TEST_PG_URL" ]; then
    cleanup_pg() { scripts/pg.sh stop "$pgdir_used"; rm -rf "$pgdir"; }
    echo "== PostgreSQL for the tests: $LLMGW_TEST_PG_URL"
else
    echo "PostgreSQL could not start:"; cat "$pgdir/start.log"; fail=$((fail + 1))
fi
add_counts() { # $1 = line "..: N passed, M failed"
    local p f
    p=$(sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' <<<"$1")
    f=$(sed -n 's/.*: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' <<<"$1")
    pass=$((pass + ${p:-0})); fail=$((fail + ${f:-1}))
}

echo "== build (gcc)"
if ! make -j"$(nproc)" all; then
    echo "build failed"; echo "$pass passed, $((fail + 1)) failed"; exit 1
fi
echo "== warnings (clang)"
if ! make --no-print-directory check-clang; then
    echo "clang reported warnings"; fail=$((fail + 1))
fi

echo "== unit tests (ASan+UBSan)"
if ! make -j"$(nproc)" unit-build build/san/llmgw build/tsan/llmgw build/san/embed_prog; then
    echo "unit test build failed"; fail=$((fail + 1))
else
    out=$(make --no-print-directory unit 2>&1); echo "$out"
    add_counts "$(tail -n 1 <<<"$out")"
fi

# The secret sweep's directory: the e2e suites leave each env's files there (harness.js)
sweepdir=$(mktemp -d /tmp/llmgw-sweep-XXXXXX)

echo "== end-to-end tests (node --test, fake providers)"
out=$(LLMGW_E2E_SWEEP=$sweepdir scripts/run-e2e.sh 2>&1); echo "$out"
add_counts "$(grep -E '^e2e: ' <<<"$out" | tail -n 1)"

echo "== the governance, idempotency, app client, session, conversation and admin suites again, on PostgreSQL"
out=$(LLMGW_E2E_SWEEP=$sweepdir LLMGW_E2E_PG=1 scripts/run-e2e.sh e2e-pg build/san/llmgw tests/e2e/governance.test.js \
      tests/e2e/idempotency.test.js tests/e2e/app_clients.test.js tests/e2e/sessions.test.js \
      tests/e2e/signed.test.js tests/e2e/conversations.test.js tests/e2e/admin.test.js \
      tests/e2e/crash.test.js tests/e2e/messages.test.js 2>&1)
echo "$out"
add_counts "$(grep -E '^e2e-pg: ' <<<"$out" | tail -n 1)"

echo "== secret sweep: every key, token and HMAC key the suites used, in their databases, logs and exports"
out=$(node tests/e2e/sweep.js "$sweepdir" 2>&1); echo "$out"
add_counts "$(grep -E '^sweep: [0-9]+ passed' <<<"$out" | tail -n 1)"
rm -rf "$sweepdir"

echo "== threaded end-to-end tests under ThreadSanitizer (2 workers)"
out=$(scripts/run-e2e.sh tsan build/tsan/llmgw tests/e2e/chat.test.js tests/e2e/streams.test.js \
      tests/e2e/shutdown.test.js tests/e2e/backpressure.test.js tests/e2e/breaker.test.js \
      tests/e2e/fallback.test.js tests/e2e/governance.test.js tests/e2e/postgres.test.js \
      tests/e2e/idempotency.test.js tests/e2e/conversations.test.js tests/e2e/admin.test.js \
      tests/e2e/slowclients.test.js tests/e2e/messages.test.js 2>&1)
echo "$out"
add_counts "$(grep -E '^tsan: ' <<<"$out" | tail -n 1)"

echo "== fuzzing: every parser of outside input, its corpus and regressions replayed, then 15 s each"
out=$(scripts/fuzz.sh 15 2>&1); echo "$out" | tail -n 25
add_counts "$(grep -E '^fuzz: [0-9]+ passed' <<<"$out" | tail -n 1)"

echo "== instructions per request (callgrind, release build) against bench/icount.txt"
if bench/icount.sh; then pass=$((pass + 1)); else fail=$((fail + 1)); fi

echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Black-box tests: node --test over tests/e2e against the sanitized gateway and tests/fake.
# Usage: run-e2e.sh [LABEL BINARY FILE...]   (default: every suite against build/san/llmgw)
# Prints "LABEL: N passed, N failed" last.
set -u
cd "$(dirname "$0")/.."
if [ ! -d tests/e2e ] || ! ls tests/e2e/*.test.js >/dev/null 2>&1; then
    echo "e2e: no tests"; echo "e2e: 0 passed, 0 failed"; exit 0
fi
lock=tests/e2e/package-lock.json
stamp=tests/e2e/node_modules/.llmgw-lock
if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
    (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error) || {
        echo "e2e: npm ci failed"; echo "e2e: 0 passed, 1 failed"; exit 1; }
    cp "$lock" "$stamp"
fi
mkdir -p build/logs
label=e2e
files=(tests/e2e/)
# The gateway under test is the ASan+UBSan build (the harness fails on any sanitizer report).
export LLMGW_E2E_BIN=${LLMGW_E2E_BIN:-build/san/llmgw}
if [ $# -ge 3 ]; then
    label=$1; export LLMGW_E2E_BIN=$2; shift 2; files=("$@")
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
# Bounded: a hung suite must fail, not stall CI.
tap=build/logs/$label.tap
timeout -k 10 900 node --test --test-reporter=tap --test-timeout=60000 "${files[@]}" >"$tap" 2>&1
rc=$?
grep -E '^(not ok|# (tests|pass|fail|cancelled|skipped))' "$tap"
if [ "$rc" -ne 0 ]; then
    grep -B2 -A30 '^not ok' "$tap" | head -n 150
fi
p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$tap" | tail -n 1)
f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$tap" | tail -n 1)
c=$(sed -n 's/^# cancelled \([0-9]*\)/\1/p' "$tap" | tail -n 1)
f=$(( ${f:-0} + ${c:-0} ))
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
echo "$label: ${p:-0} passed, $f failed"
[ "$f" -eq 0 ]

#!/usr/bin/env bash
# Run cmocka unit-test binaries (built with ASan+UBSan), each under a timeout, and print the
# totals as "unit: N passed, N failed". Exit non-zero if anything failed.
set -u
pass=0; fail=0
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p build/logs
for t in "$@"; do
    name=$(basename "$t")
    log=build/logs/$name.log
    (cd tests/unit && timeout 120 "../../$t") >"$log" 2>&1
    rc=$?
    p=$(grep -c '^\[       OK \]' "$log")
    f=$(grep -E '^\[  FAILED  \] ' "$log" | grep -v 'test(s)' | sort -u | wc -l)
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f))
    if [ "$f" -gt 0 ]; then
        echo "FAIL $name (exit $rc):"; tail -n 40 "$log"
    else
        echo "ok   $name ($p tests)"
    fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

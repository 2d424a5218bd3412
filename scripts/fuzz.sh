#!/usr/bin/env bash
# fuzz.sh SECONDS: build the libFuzzer harnesses (make fuzz-build, with clang), then for each
# harness tests/fuzz/fuzz_<name>.c replay its seeds (tests/fuzz/corpus/<name>/) and crash
# reproducers (tests/fuzz/regress/<name>/) once, and fuzz it for SECONDS (0: replay only), two
# harnesses at a time. New inputs go to build/fuzz/corpus/<name>/ (never into the repository),
# crashes to build/fuzz/artifacts/<name>/, each harness's log to build/logs/fuzz_<name>.log.
# One pass or fail per harness; the last line is "fuzz: N passed, M failed". docs/fuzzing.md.
set -u
cd "$(dirname "$0")/.."
secs=${1:-300}
case $secs in '' | *[!0-9]*) echo "usage: scripts/fuzz.sh SECONDS" >&2; exit 2 ;; esac
jobs=${FUZZ_JOBS:-2}
cc=${FUZZ_CC:-clang}
max_len=65536
mkdir -p build/logs build/fuzz

give_up() { # why
    echo "$*"
    echo "fuzz: 0 passed, 1 failed"
    exit 1
}

# clang only recommends the package with libFuzzer's runtime (Debian: libclang-rt-14-dev)
command -v "$cc" >/dev/null ||
    give_up "fuzz: $cc not found (Debian: apt-get install clang libclang-rt-14-dev)"
probe=build/fuzz/probe
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\n%s\n' \
    'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n; }' |
    "$cc" -fsanitize=fuzzer,address,undefined -x c - -o "$probe" >build/logs/fuzz_probe.log 2>&1 ||
    give_up "fuzz: $cc cannot link a libFuzzer harness (Debian: apt-get install" \
        "libclang-rt-14-dev); see build/logs/fuzz_probe.log"
rm -f "$probe"

echo "== fuzz: build (build/logs/fuzz_build.log)"
if ! make --no-print-directory -j"${FUZZ_BUILD_JOBS:-2}" fuzz-build FUZZ_CC="$cc" \
    >build/logs/fuzz_build.log 2>&1; then
    tail -n 30 build/logs/fuzz_build.log
    give_up "fuzz: the build failed"
fi

results=build/fuzz/results
rm -rf "$results"
mkdir -p "$results"

# Every file under the given directories that exist, NUL-separated, in a stable order.
inputs() {
    for d in "$@"; do
        [ -d "$d" ] && find "$d" -type f -print0
    done | sort -z
}

run_one() { # $1: the harness's name
    local name=$1 bin=build/fuzz/fuzz_$1 log=build/logs/fuzz_$1.log
    local seeds=tests/fuzz/corpus/$1 regress=tests/fuzz/regress/$1
    local scratch=build/fuzz/corpus/$1 art=build/fuzz/artifacts/$1/
    local opts=(-timeout=10 -rss_limit_mb=2048 -artifact_prefix="$art")
    local files=() dirs=("$scratch") f
    mkdir -p "$scratch" "$art"
    : >"$log"
    while IFS= read -r -d '' f; do files+=("$f"); done < <(inputs "$seeds" "$regress")
    echo "${#files[@]}" >"$results/$name.inputs"
    if [ ${#files[@]} -gt 0 ]; then
        echo "== replay: ${#files[@]} inputs" >>"$log"
        if ! timeout $((120 + ${#files[@]})) "$bin" "${opts[@]}" "${files[@]}" >>"$log" 2>&1; then
            echo "replay failed" >"$results/$name.fail"
            return
        fi
    fi
    if [ "$secs" -gt 0 ]; then
        [ -f "tests/fuzz/$name.dict" ] && opts+=(-dict="tests/fuzz/$name.dict")
        [ -d "$seeds" ] && dirs+=("$seeds")
        [ -d "$regress" ] && dirs+=("$regress")
        echo "== fuzz: $secs s" >>"$log"
        if ! timeout $((secs + 300)) "$bin" "${opts[@]}" -max_total_time="$secs" \
            -max_len=$max_len -print_final_stats=1 "${dirs[@]}" >>"$log" 2>&1; then
            echo "fuzzing failed" >"$results/$name.fail"
            return
        fi
    fi
    : >"$results/$name.pass"
}

names=()
for src in tests/fuzz/fuzz_*.c; do
    n=${src##*/fuzz_}
    names+=("${n%.c}")
done
echo "== fuzz: ${#names[@]} harnesses, $secs s each, $jobs at a time"
for n in "${names[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    run_one "$n" &
done
wait

pass=0
fail=0
for n in "${names[@]}"; do
    log=build/logs/fuzz_$n.log
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    inputs=$(cat "$results/$n.inputs" 2>/dev/null)
    if [ -f "$results/$n.pass" ]; then
        pass=$((pass + 1))
        echo "ok   fuzz_$n (${inputs:-0} inputs replayed, ${runs:-0} runs fuzzed)"
    else
        fail=$((fail + 1))
        echo "FAIL fuzz_$n: $(cat "$results/$n.fail" 2>/dev/null || echo "no result") ($log):"
        grep -E 'ERROR|SUMMARY|oracle failed|runtime error|Test unit written' "$log" | head -n 20
    fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

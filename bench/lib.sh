# Shared by the bench scripts (sourced).

# A wrk latency ("690.00us", "3.17ms", "1.44s", "1.02m") in whole microseconds.
to_us() {
    awk -v v="$1" 'BEGIN { n = v + 0; u = v; gsub(/[0-9.]/, "", u);
        printf "%.0f", u == "ms" ? n * 1000 : u == "s" ? n * 1000000 : u == "m" ? n * 60000000 : n }'
}

# The p50 / p99 of a wrk --latency report file, in microseconds.
wrk_p50_us() { to_us "$(awk '/^     50%/ {print $2}' "$1")"; }
wrk_p99_us() { to_us "$(awk '/^     99%/ {print $2}' "$1")"; }

-- wrk script: POST the chat completion BENCH_BODY with a new Idempotency-Key each time
-- ("seed-1", "seed-2", ...), stopping after BENCH_N answers (one thread: keys are unique).
local n, answered = 0, 0
local limit = tonumber(os.getenv("BENCH_N") or "10000")
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_AUTH")

function request()
    n = n + 1
    wrk.headers["Idempotency-Key"] = "seed-" .. n
    return wrk.format()
end

function response(status, headers, body)
    answered = answered + 1
    if answered >= limit then wrk.thread:stop() end
end

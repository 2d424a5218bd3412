-- wrk script: POST BENCH_BODY again with one of the first BENCH_KEYS seeded Idempotency-Keys,
-- picked at random: every answer is a replay of a stored response.
local keys = tonumber(os.getenv("BENCH_KEYS") or "9000")
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_AUTH")

function init(args)
    math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
    wrk.headers["Idempotency-Key"] = "seed-" .. math.random(1, keys)
    return wrk.format()
end

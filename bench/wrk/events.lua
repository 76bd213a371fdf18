-- Realistic CloudMailin batches that never repeat.
-- Arguments (after --): events per request, lag in requests, requests/s target (0: as fast as possible).
-- The stream alternates registrations of new messages with the outcome of the
-- message registered `lag` requests earlier (so its registration has been handled:
-- lag is several times the number of connections): mostly deliveries, some bounces,
-- suppressions, soft bounces and opens, over 100 recipient domains.

local batch, lag, rate, connections = 100, 400, 0, 1
local position = 0
local outcomes = {"bounce", "suppressed", "soft_bounce", "open"}

function init(args)
  batch = tonumber(args[1]) or batch
  lag = tonumber(args[2]) or lag
  rate = tonumber(args[3]) or 0
  connections = tonumber(args[4]) or 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function delay()
  if rate > 0 then
    -- Each connection waits so that together they offer `rate` requests/s.
    return math.floor(1000 * connections / rate)
  end
  return 0
end

local function event(p)
  local m = math.floor(p / 2)
  local kind
  if p % 2 == 0 then
    kind = "registration"
  else
    m = m - lag * batch / 2
    if m < 0 then
      return string.format('{"kind":"open","recipient":"u%d@d%d.example"}', p, p % 100)
    end
    local r = m % 20
    kind = outcomes[r + 1] or "delivery"
  end
  return string.format(
    '{"kind":"%s","recipient":"u%d@d%d.example","message_id":"m-%d","details":{}}',
    kind, m, m % 100, m)
end

function request()
  local parts = {}
  for i = 1, batch do
    parts[i] = event(position)
    position = position + 1
  end
  local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format(nil, "/events", nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end

-- GCRA (the generic cell rate algorithm) for one key, on the store's clock.
--
-- KEYS[1]  the bucket: the theoretical arrival time (TAT) of the next request, in
--          microseconds on Redis's clock, or absent (a full bucket).
-- ARGV[1]  emission interval: microseconds between two requests at the steady rate.
-- ARGV[2]  burst: requests allowed at once (at least 1).
--
-- Returns {allowed (1|0), remaining, retry_after_us}.
--
-- A request is allowed when TAT + interval - burst * interval <= now: the bucket then
-- moves TAT forward by one interval. A refused request changes nothing, so clients that
-- keep retrying do not push their own window further out. There are no windows, hence
-- no edge at which twice the limit gets through. The key expires when its bucket is
-- full again (TAT in the past), so idle clients cost no memory.
--
-- The clock is Redis's (TIME), so the instances' clocks never matter. Redis 7 always
-- replicates a script's effects, not the script; older servers need to be told before
-- the script calls a non-deterministic command such as TIME.
if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])

local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end

local tolerance = interval * burst
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, 0, allow_at - now}
end

local ttl_ms = math.ceil((new_tat - now) / 1000)
if ttl_ms < 1 then
  ttl_ms = 1
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl_ms)
return {1, math.floor((now - allow_at) / interval), 0}

-- 100,000 distinct x-user keys, cycling; every other request to the proxy route.
local n = 0
local thread_id = 0
local threads = 0

function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end

request = function()
  n = n + 1
  local user = (thread_id * 50000 + n) % 100000
  local path = (n % 2 == 0) and "/agg" or ("/p/item/" .. user)
  return wrk.format("GET", path, { ["x-user"] = "user-" .. user })
end

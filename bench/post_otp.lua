-- wrk script: POST /v1/otp to distinct valid UK mobiles; records each new id.
local counter, out = 0, nil
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  -- A run-unique prefix keeps numbers distinct across the 1/16/64 runs.
  math.randomseed(os.time() + tid)
  -- +44 74t rr nnnnn: t = thread, rr = random per run; all valid UK mobiles.
  prefix = string.format("+4474%d%02d", tid, math.random(0, 99))
  out = io.open(string.format("%s/ids-%d-%d", os.getenv("WORK"), tid, math.random(1, 1e9)), "a")
end
function request()
  counter = counter + 1
  local body = string.format('{"to":"%s%05d","max_attempts":10}', prefix, counter % 100000)
  return wrk.format("POST", "/v1/otp", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("KEY"),
  }, body)
end
function response(status, headers, body)
  if status == 201 then
    local id = body:match('"id":"(otp_[0-9a-z]+)"')
    if id then out:write(id, "\n"); out:flush() end
  end
end

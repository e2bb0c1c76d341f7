-- wrk script: POST /v1/otp/{id}/verify with a wrong code, spread over all ids.
local ids, n, i = {}, 0, 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  for line in io.lines(os.getenv("WORK") .. "/ids") do
    n = n + 1
    ids[n] = line
  end
  i = (tid or 0) * math.floor(n / 2)
end
function request()
  i = i % n + 1
  return wrk.format("POST", "/v1/otp/" .. ids[i] .. "/verify", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("KEY"),
  }, '{"code":"000000"}')
end

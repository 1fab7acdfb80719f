-- wrk script of benchmarks/throughput.py --distinct: every request carries a header of its own
-- (X-Request-Id, a counter), as a proxy that tags requests (Envoy) sends them, so no two requests
-- have the same bytes and chaos-upstream parses every one (no head is known by its bytes).
local counter = 0

request = function()
  counter = counter + 1
  return wrk.format(nil, nil, {["X-Request-Id"] = tostring(counter)})
end

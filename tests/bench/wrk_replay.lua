-- wrk script of benchmarks 1 and 2: replay pre-built raw HTTP requests and count the answers.
--
-- wrk's Lua has no HMAC, so Python signs every request beforehand (tests/bench/load.py) and
-- writes thread N's share to $BENCH_WRK_DIR/requests-N.bin, each request followed by a NUL byte.
-- Each wrk thread sends its own requests in order, wrapping around (counted in `wraps`) if the
-- run outlasts them. done() writes result.json (counts: requests sent, 2xx, 2xx whose body says
-- "duplicate", other statuses; latency percentiles) and acked.txt (the X-Request-ID of every 2xx
-- answer, useful when the server echoes the caller's id) into the same directory.

local threads = {}
local dir = os.getenv("BENCH_WRK_DIR")

function setup(thread)
   thread:set("tid", #threads)
   table.insert(threads, thread)
end

function init(args)
   local f = assert(io.open(dir .. "/requests-" .. tid .. ".bin", "rb"))
   local data = f:read("*a")
   f:close()
   reqs = {}
   local pos = 1
   while true do
      local stop = string.find(data, "\0", pos, true)
      if not stop then break end
      reqs[#reqs + 1] = string.sub(data, pos, stop - 1)
      pos = stop + 1
   end
   data = nil
   n = #reqs
   i = 0
   wraps = 0
   sent = 0
   dups = 0
   ok = 0
   bad = 0
   acked = {}
   statuses = {}
end

function request()
   sent = sent + 1
   i = i + 1
   if i > n then
      i = 1
      wraps = wraps + 1
   end
   return reqs[i]
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
      if body and string.find(body, '"duplicate"', 1, true) then dups = dups + 1 end
      local id = headers["x-request-id"]
      if id then acked[#acked + 1] = id end
   else
      bad = bad + 1
   end
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
   local total_ok, total_bad, total_wraps, total_sent, total_dups = 0, 0, 0, 0, 0
   local merged = {}
   local ackf = assert(io.open(dir .. "/acked.txt", "w"))
   for _, t in ipairs(threads) do
      total_ok = total_ok + t:get("ok")
      total_bad = total_bad + t:get("bad")
      total_wraps = total_wraps + t:get("wraps")
      total_sent = total_sent + t:get("sent")
      total_dups = total_dups + t:get("dups")
      for k, v in pairs(t:get("statuses")) do merged[k] = (merged[k] or 0) + v end
      for _, id in ipairs(t:get("acked")) do ackf:write(id, "\n") end
   end
   ackf:close()
   local parts = {}
   for k, v in pairs(merged) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
   local e = summary.errors
   local out = assert(io.open(dir .. "/result.json", "w"))
   out:write(string.format(
      '{"requests": %d, "duration_us": %d, "bytes": %d, "ok": %d, "bad": %d, "wraps": %d, "sent": %d, ' ..
      '"duplicates": %d, ' ..
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
      '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}, ' ..
      '"statuses": {%s}}\n',
      summary.requests, summary.duration, summary.bytes, total_ok, total_bad, total_wraps, total_sent, total_dups,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), table.concat(parts, ", ")))
   out:close()
end

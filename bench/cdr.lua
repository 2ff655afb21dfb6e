-- wrk script: POSTs realistic Onoff CDR bodies, each with its own call id, and prints a JSON summary.
local counter = 0
local thread_id = 0
local threads = {}
local api_key = os.getenv("WRK_API_KEY") or ""

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["x-api-key"] = api_key
end

local template = [[{"id":"bench-%d-%d","eventName":"CDR","onoffUserName":"Ada Moreau",]] ..
  [["onoffUserEmail":"ada.moreau@example.com","onoffUserNumber":"+15550100001",]] ..
  [["externalNumber":"+15550199001","externalName":"Bram Keller","externalEmail":"bram.keller@example.org",]] ..
  [["callStarted":"2026-03-02T09:15:04Z","callEnded":"2026-03-02T09:21:40Z","callDuration":396,]] ..
  [["callDirection":"INBOUND","callStatus":"ANSWERED","callNotes":"Asked for the March invoice. Sent it by email after the call.",]] ..
  [["tags":[{"tagId":"t-0001","tagName":"Billing","tagColor":"#32A8FF"},{"tagId":"t-0007","tagName":"Follow-up","tagColor":"#F5A623"}]}]]

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, string.format(template, thread_id, counter))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p95": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end

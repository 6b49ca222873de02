-- wrk script for durable appends over HTTP: every request appends a new
-- artefact entry (a unique name per thread and request) for one stored
-- blob. Environment: DIGEST and SIZE of the blob (ledger put), TOKEN an
-- appender token. See BENCHMARKS.md.
local counter = 0
local run = os.time() -- names stay unique across runs on the same log
local digest = os.getenv("DIGEST")
local size = os.getenv("SIZE")
local token = os.getenv("TOKEN")
threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
request = function()
  counter = counter + 1
  local body = string.format('{"kind":"artefact","subject":{"digest":"%s","size":%s,"name":"f-%d-%d-%d.txt","media_type":"text/plain"}}', digest, size, run, tid, counter)
  return wrk.format("POST", "/v1/entries", {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end

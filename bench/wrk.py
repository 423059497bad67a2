"""HTTP load with wrk (C, from Debian): the load generator must not eat the CPU it measures."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tempfile
from typing import Any

# Each thread counts the answers' statuses; done() adds them up and prints
# one line that parse() reads (wrk's own summary only counts "non-2xx or 3xx").
SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end
function init(args)
  statuses = {}
  wrk.method = %(method)s
  %(headers)s
end
function request()
  counter = counter + 1
  local body = nil
  if %(body)s ~= nil then
    body = string.gsub(%(body)s, "{n}", tostring(thread_id) .. "x" .. tostring(counter))
  end
  return wrk.format(nil, nil, nil, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses") or {}) do
      total[code] = (total[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(total) do
    table.insert(parts, string.format('"%%d": %%d', code, n))
  end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\\n")
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def run(spec: dict[str, Any]) -> dict[str, Any]:
    headers = dict(spec.get("headers") or {})
    body = None
    if spec.get("json") is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(spec["json"])
    script = SCRIPT % {
        "method": lua_string(spec.get("method", "GET")),
        "headers": "\n  ".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}"
                               for k, v in headers.items()),
        "body": lua_string(body) if body is not None else "nil",
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        threads = min(2, spec["concurrency"])
        # --timeout: wrk's default (2 s) drops slower answers from every
        # figure; on a busy day every create at 100k users took longer.
        result = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{spec['concurrency']}", f"-d{math.ceil(spec['duration'])}s",
             "--timeout", "30s", "--latency", "-s", lua.name, spec["base_url"] + spec["path"]],
            capture_output=True, text=True, check=False)
    if result.returncode != 0 and "requests in" not in result.stdout:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr[-500:]}")
    return parse(result.stdout, spec["duration"], spec.get("expect", [200]))


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    number, unit = found.groups()
    return round(float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit], 2)


def _number(pattern: str, output: str) -> str | None:
    found = re.search(pattern, output, re.MULTILINE)
    return found.group(1) if found else None


def parse(output: str, duration: float, expect: list[int]) -> dict[str, Any]:
    """wrk's figures; a run that completed no request has no latency lines,
    and says so (requests 0, latencies None) rather than failing."""
    requests = int(_number(r"(\d+) requests in", output) or 0)
    rate = float(_number(r"Requests/sec:\s+([\d.]+)", output) or 0.0)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        output)
    failed = sum(map(int, sockets.groups())) if sockets else 0
    statuses_line = _number(r"^STATUSES (.*)$", output)
    statuses: dict[str, int] = json.loads(statuses_line) if statuses_line else {}
    unexpected = sum(n for code, n in statuses.items() if int(code) not in expect)
    # The latency distribution's own lines, not a "74.50%" in the stats above
    # it. wrk pads a one-letter unit with a space ("  50%    1.42s "): that
    # space made a slow day's p50 unreadable (AttributeError, no RESULTS.md).
    p50 = _number(r"^\s+50%\s+(\S+)\s*$", output)
    p99 = _number(r"^\s+99%\s+(\S+)\s*$", output)
    return {"requests": requests, "errors": unexpected + failed, "no_answer": failed,
            "statuses": statuses, "seconds": duration, "per_second": rate,
            "p50_ms": _ms(p50) if p50 and requests else None,
            "p99_ms": _ms(p99) if p99 and requests else None, "load": "wrk"}

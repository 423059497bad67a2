"""HTTP load with wrk (C, from Debian): the load generator must not eat the CPU it measures."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tempfile
from typing import Any

SCRIPT = """
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end
function init(args)
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
        output = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{spec['concurrency']}", f"-d{math.ceil(spec['duration'])}s",
             "--latency", "-s", lua.name, spec["base_url"] + spec["path"]],
            capture_output=True, text=True, check=True).stdout
    return parse(output, spec["duration"])


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return round(float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)


def parse(output: str, duration: float) -> dict[str, Any]:
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        output)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    # The latency distribution's own lines, not a "74.50%" in the stats above it.
    p50 = re.search(r"^\s+50%\s+(\S+)$", output, re.MULTILINE).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)$", output, re.MULTILINE).group(1)  # type: ignore[union-attr]
    return {"requests": requests, "errors": errors, "seconds": duration, "per_second": rate,
            "p50_ms": _ms(p50), "p99_ms": _ms(p99), "load": "wrk"}

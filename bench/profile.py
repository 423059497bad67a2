"""Where GET one user's CPU goes in the API process: py-spy samples it while the load runs.

py-spy (`record --gil --nonblocking`, raw stacks) keeps the samples in which
a thread of the API held the GIL: Python's own work, not waits on sockets or
locks. Each sample goes to the first component found walking its stack
from the innermost frame outwards (CATEGORIES); the API's CPU per request
(/proc, user + system) is shared out in those proportions. The leftover
CPU outside the GIL (the kernel's socket work, C code that drops the GIL)
shows as its own line. Approximate, as sampling is: a guide to what is
not LDAP work.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.processes import Api, cpu_seconds, measure


def _files(*paths: str) -> re.Pattern[str]:
    """Frames ("function (path:line)") in these files or folders, whether
    py-spy shortened the path (site-packages left out) or not."""
    return re.compile(r"[(/](?:" + "|".join(paths) + ")")


# (label, frames), tried from the innermost frame outwards: the first match names the sample.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("building the search request (BER)", re.compile(
        _files(r"app/directory/ber\.py", r"pyasn1/codec/ber/encoder", r"ldap3/operation/",
               r"ldap3/protocol/convert", r"ldap3/core/connection\.py").pattern
        + r"|BaseStrategy\.send")),
    ("receiving and reading slapd's answer (ldap3, BER)", _files(
        r"pyasn1/codec/ber/decoder", r"ldap3/", r"app/directory/speedup\.py")),
    ("socket calls", _files(r"socket\.py", r"selectors\.py", r"ssl\.py")),
    ("JWT verification", _files(r"jwt/", r"cryptography/")),
    ("JSON (msgspec)", _files(r"msgspec/")),
    ("Litestar: routing, middleware, parameters", _files(r"litestar/")),
    ("HTTP server and event loop", _files(r"uvicorn/", r"httptools/", r"h11/", r"asyncio/",
                                          r"anyio/")),
    ("thread pools: hand-off and wake-ups", _files(
        r"threading\.py", r"concurrent/futures/", r"queue\.py", r"app/bulkhead\.py")),
    ("userdir: edge, auth, service, directory", _files(r"app/")),
]
OTHER = "other Python"
OUTSIDE = "outside the GIL (kernel socket work, C code)"


def categorise(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for label, pattern in CATEGORIES:
            if pattern.search(frame):
                return label
    return OTHER


def shares(raw: str) -> tuple[Counter[str], int]:
    """Samples per category from py-spy's raw format (`stack;stack count`)."""
    counted: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        counted[categorise(stack)] += int(count)
        total += int(count)
    return counted, total


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def get_one_user(api: Api, path: str, headers: dict[str, str], duration: float
                 ) -> dict[str, Any]:
    """The load of the GET throughput rows (8 clients), profiled."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory(prefix="userdir-profile-") as tmp:
        out = Path(tmp) / "stacks.txt"
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(api.pid), "--gil", "--nonblocking", "--format", "raw",
             "--rate", "250", "--duration", str(int(duration) + 2), "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1)  # py-spy attached before the load starts
        before = cpu_seconds(api.pid)
        served = measure("bench.load", {"base_url": api.url, "path": path, "headers": headers,
                                        "concurrency": 8, "duration": duration})
        after = cpu_seconds(api.pid)
        _, errors = recorder.communicate(timeout=duration + 60)
        if recorder.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed: {errors.strip()[-300:]}")
        counted, total = shares(out.read_text())
    if not total or not served["requests"] or before is None or after is None:
        raise RuntimeError("nothing was sampled or served")
    per_request_us = (after - before) * 1e6 / served["requests"]
    # Samples are of GIL-holding time; the rest of the CPU had no Python frame.
    gil_seconds = total / 250
    inside = min(1.0, gil_seconds / (after - before)) if after > before else 1.0
    rows = {label: round(per_request_us * inside * n / total)
            for label, n in counted.most_common()}
    rows[OUTSIDE] = round(per_request_us * (1 - inside))
    return {"requests": served["requests"], "per_second": served["per_second"],
            "cpu_us_per_request": round(per_request_us), "samples": total,
            "us_per_request": rows}


def section(profile: dict[str, Any] | None) -> list[str]:
    if not profile:
        return []
    if "failed" in profile:
        return ["", "## Where GET one user's time goes", "", f"Not measured: {profile['failed']}"]
    lines = [
        "", "## Where GET one user's time goes", "",
        f"py-spy sampled the API process (one worker) through {profile['requests']} GETs of "
        f"one user ({profile['per_second']}/s, 8 clients): {profile['cpu_us_per_request']} µs "
        "of its CPU per request, shared out by where the samples were (bench/profile.py; "
        f"{profile['samples']} samples, approximate).", "",
        "| where | µs per request | share |", "|---|---|---|"]
    whole = max(1, profile["cpu_us_per_request"])
    for label, us in sorted(profile["us_per_request"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {label} | {us} | {100 * us / whole:.0f}% |")
    return lines


def append(out: Path, profile: dict[str, Any] | None) -> None:
    """Add the section to the RESULTS.md bench/report.py has just written."""
    lines = section(profile)
    if lines and (out / "RESULTS.md").exists():
        with (out / "RESULTS.md").open("a") as f:
            f.write("\n".join(lines) + "\n")

"""HTTP load from its own process: fixed concurrency, bounded in time (stdin: JSON spec)."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any

import httpx

from bench import wrk
from bench.stats import summary


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    counter = itertools.count()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = no_answer = 0
    deadline = time.perf_counter() + spec["duration"]
    limit = spec.get("requests")

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors, no_answer
        while time.perf_counter() < deadline:
            n = next(counter)
            if limit is not None and n >= limit:
                return
            body = spec.get("json")
            if isinstance(body, dict):
                body = {k: v.replace("{n}", str(n)) if isinstance(v, str) else v
                        for k, v in body.items()}
            started = time.perf_counter()
            try:
                response = await client.request(spec.get("method", "GET"),
                                                spec["path"].replace("{n}", str(n)),
                                                json=body, content=spec.get("content"),
                                                headers=spec.get("headers"))
            except httpx.HTTPError:
                errors += 1
                no_answer += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            code = str(response.status_code)
            statuses[code] = statuses.get(code, 0) + 1
            if response.status_code not in spec.get("expect", [200]):
                errors += 1

    limits = httpx.Limits(max_connections=spec["concurrency"])
    async with httpx.AsyncClient(base_url=spec["base_url"], limits=limits,
                                 timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(spec["concurrency"])))
        elapsed = time.perf_counter() - started
    return {**summary(latencies, elapsed, errors), "statuses": statuses, "no_answer": no_answer}


def main() -> None:
    spec = json.load(sys.stdin)
    # Throughput runs use wrk when installed (Debian's `wrk`): an async
    # Python client would spend as much CPU as the server it measures.
    if spec.get("requests") is None and spec["concurrency"] > 1 and wrk.available():
        print(json.dumps(wrk.run(spec)))
    else:
        print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()

"""`python -m bench.attack`: one abusive load, or the victim's probe, in a process of its own.

The spec is one JSON line on stdin. A load prints "ready" once it is in full
swing, goes on until its stdin closes and then prints its summary (JSON); the
probe and the guessing attack end by themselves. Every client sends from the
loopback address it is given, so the service sees as many clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import held
from bench.stats import summary
from bench.wire import Answer, Client, NoAnswer

JSON = {"Content-Type": "application/json"}
WRONG = "Not-The-Password-1"  # what the guessers send


class Tally:
    """What a load's requests got back."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.no_answer = 0
        self.latencies: list[float] = []
        self.started = time.perf_counter()

    def summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        requests = sum(self.statuses.values())
        return {"requests": requests, "statuses": dict(self.statuses),
                "no_answer": self.no_answer, "seconds": round(seconds, 2),
                "per_second": round(requests / seconds, 1) if seconds else 0.0,
                "answer_p50_ms": summary(self.latencies, seconds, 0)["p50_ms"]}


async def repeat(stop: asyncio.Event, client: Client, method: str, path: str,
                 headers: dict[str, str], body: Callable[[int], bytes], tally: Tally) -> None:
    """Send the next request as soon as the last one is answered, until stopped."""
    n = 0
    while not stop.is_set():
        started = time.perf_counter()
        try:
            answer = await client.request(method, path, headers, body(n))
        except NoAnswer:
            tally.no_answer += 1
            await asyncio.sleep(0.05)  # refused or reset: no busy loop on a dead socket
            continue
        tally.latencies.append((time.perf_counter() - started) * 1000)
        tally.statuses[str(answer.status)] += 1
        n += 1
    client.close()


def _login(username: str, password: str) -> bytes:
    return json.dumps({"username": username, "password": password}).encode()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def until_stopped(spec: dict[str, Any],
                        loads: Callable[[asyncio.Event, Tally], list[Awaitable[None]]],
                        check: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the loads; "ready" after spec["ramp"] seconds; stop when stdin closes."""
    stop, loop, tally = asyncio.Event(), asyncio.get_running_loop(), Tally()

    def wait_for_eof() -> None:
        sys.stdin.read()
        with contextlib.suppress(RuntimeError):  # the loop is gone already
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    tasks = [asyncio.ensure_future(load) for load in loads(stop, tally)]
    ready_at = time.monotonic() + spec.get("ramp", 1.0)
    announced = False
    deadline = time.monotonic() + spec.get("max_seconds", 600)
    while not stop.is_set() and time.monotonic() < deadline:
        if check is not None:
            check()
        if not announced and time.monotonic() >= ready_at:
            print("ready", flush=True)
            announced = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return tally.summary()


def _right_and_wrong(user: str, password: str) -> Callable[[int], bytes]:
    return lambda n: _login(user, password if n % 2 else WRONG)


async def logins(spec: dict[str, Any]) -> dict[str, Any]:
    """Each client logs in to its own account, the right password and a wrong one in turn."""
    def loads(stop: asyncio.Event, tally: Tally) -> list[Awaitable[None]]:
        return [repeat(stop, Client(spec["host"], spec["port"], source), "POST", "/auth/token",
                       JSON, _right_and_wrong(user, spec["password"]), tally)
                for source, user in zip(spec["sources"], spec["users"], strict=True)]
    return await until_stopped(spec, loads)


async def uploads(spec: dict[str, Any]) -> dict[str, Any]:
    """Each user replaces his picture with the largest one allowed, again and again."""
    picture = Path(spec["picture"]).read_bytes()

    def loads(stop: asyncio.Event, tally: Tally) -> list[Awaitable[None]]:
        return [repeat(stop, Client(spec["host"], spec["port"], up["source"], timeout=120),
                       "PUT", f"/people/{up['user']}/photo",
                       {**_bearer(up["token"]), "Content-Type": "image/webp"},
                       lambda n: picture, tally)
                for up in spec["uploaders"]]
    return await until_stopped(spec, loads)


async def flood(spec: dict[str, Any]) -> dict[str, Any]:
    """One signed-in client, many connections, the same listing as fast as answered."""
    def loads(stop: asyncio.Event, tally: Tally) -> list[Awaitable[None]]:
        return [repeat(stop, Client(spec["host"], spec["port"], spec["source"]), "GET",
                       spec["path"], _bearer(spec["token"]), lambda n: b"", tally)
                for _ in range(spec["connections"])]
    return await until_stopped(spec, loads)


async def holding(spec: dict[str, Any], connections: held.Held) -> dict[str, Any]:
    try:
        result = await until_stopped(spec, lambda stop, tally: [], connections.check)
    finally:
        connections.close()
    return {**result, **connections.summary()}


async def stalls(spec: dict[str, Any]) -> dict[str, Any]:
    return await holding(spec, held.Held(
        lambda: held.ldap_stall(spec["ldap_host"], spec["ldap_port"], spec["searches"]),
        spec["connections"]))


async def half_sent(spec: dict[str, Any]) -> dict[str, Any]:
    return await holding(spec, held.Held(
        lambda: held.half_sent(spec["host"], spec["port"], spec["source"]),
        spec["connections"]))


async def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """The victim: a signed-in user reading himself, one request after another."""
    client = Client(spec["host"], spec["port"], spec["source"])
    tally = Tally()
    deadline = time.perf_counter() + spec["duration"]
    errors = 0
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            answer = await client.request("GET", spec["path"], _bearer(spec["token"]))
        except NoAnswer:
            tally.no_answer += 1
            errors += 1
            await asyncio.sleep(0.05)
            continue
        tally.statuses[str(answer.status)] += 1
        if answer.status == 200:  # a quick refusal is no service: only 200s are timed
            tally.latencies.append((time.perf_counter() - started) * 1000)
        else:
            errors += 1
    client.close()
    elapsed = time.perf_counter() - tally.started
    return {**summary(tally.latencies, elapsed, errors), **tally.summary()}


async def guessing(spec: dict[str, Any]) -> dict[str, Any]:
    """Guessers on many addresses send wrong passwords for one account as fast
    as they are answered; its owner, from his usual address (he logged in from
    there once before the attack: where else would an owner be), logs in with
    the right one every `owner_interval` seconds (or after Retry-After, if
    longer) until he gets in or `owner_limit` seconds have passed."""
    stop, tally = asyncio.Event(), Tally()
    account = spec["account"]
    home = Client(spec["host"], spec["port"], spec["owner_source"])
    before = await home.request("POST", "/auth/token", JSON, _login(account, spec["password"]))
    home.close()
    if before.status != 200:
        raise RuntimeError(f"the owner's login before the attack answered {before.status}")
    guessers = [asyncio.ensure_future(repeat(
        stop, Client(spec["host"], spec["port"], source), "POST", "/auth/token", JSON,
        lambda n: _login(account, WRONG), tally)) for source in spec["guessers"]]
    await asyncio.sleep(spec["owner_start"])
    owner = Client(spec["host"], spec["port"], spec["owner_source"])
    first = time.monotonic()
    attempts: list[dict[str, Any]] = []
    succeeded_after = None
    while True:
        at = time.monotonic() - first
        answer: Answer | None = None
        with contextlib.suppress(NoAnswer):
            answer = await owner.request("POST", "/auth/token", JSON,
                                         _login(account, spec["password"]))
        retry_after = int(answer.headers.get("retry-after", "0")) if answer else 0
        attempts.append({"at_s": round(at, 1), "status": answer.status if answer else None,
                         **({"retry_after_s": retry_after} if retry_after else {})})
        if answer is not None and answer.status == 200:
            succeeded_after = round(time.monotonic() - first, 1)
            break
        wait = max(spec["owner_interval"], retry_after)
        if time.monotonic() - first + wait > spec["owner_limit"]:
            break
        await asyncio.sleep(wait)
    owner.close()
    stop.set()
    await asyncio.gather(*guessers, return_exceptions=True)
    return {"owner_succeeded_after_s": succeeded_after, "owner_attempts": attempts,
            "owner_limit_s": spec["owner_limit"], "owner_interval_s": spec["owner_interval"],
            "owner_start_s": spec["owner_start"], "guessers": len(spec["guessers"]),
            "guesses": tally.summary()}


KINDS: dict[str, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
    "probe": probe, "logins": logins, "stalls": stalls, "uploads": uploads,
    "half_sent": half_sent, "flood": flood, "guessing": guessing,
}


def main() -> None:
    spec = json.loads(sys.stdin.readline())
    print(json.dumps(asyncio.run(KINDS[spec["kind"]](spec))), flush=True)


if __name__ == "__main__":
    main()

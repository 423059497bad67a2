"""The bounded pools service calls run on (app/bulkhead.py): shares, turns, rests."""

from __future__ import annotations

import concurrent.futures
import functools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from app.bulkhead import REST, Bulkhead
from app.domain import Overloaded, Throttled


def test_the_bulkhead_serves_clients_in_turn() -> None:
    """A client's calls beyond its share are refused (429), calls beyond the
    queue are refused (503), and waiting calls are served one client at a time."""
    pool = Bulkhead("test", workers=1, queue_limit=6, client_limit=3)
    gate, order = threading.Event(), list[str]()
    try:
        pool.submit("a", gate.wait)  # holds the one worker
        time.sleep(0.1)
        for client, n in [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1)]:
            pool.submit(client, functools.partial(order.append, f"{client}{n}"))
        with pytest.raises(Throttled):
            pool.submit("a", lambda: None)
        pool.submit("d", functools.partial(order.append, "d1"))
        with pytest.raises(Overloaded):
            pool.submit("e", lambda: None)
    finally:
        gate.set()
        pool.close()
    assert order == ["a1", "b1", "c1", "d1", "a2", "a3"]


def test_a_call_held_back_by_its_clients_share_runs_when_the_share_frees() -> None:
    """Four workers, a share of one running call per client: the client's
    next call starts as its running one ends, though three workers sleep
    (the finishing worker takes it; nobody else is woken for it)."""
    pool = Bulkhead("test", workers=4, queue_limit=8, client_limit=8)
    assert pool.client_running == 1
    gates = [threading.Event() for _ in range(3)]
    try:
        futures = [pool.submit("a", functools.partial(g.wait, 10)) for g in gates]
        for gate, future in zip(gates, futures, strict=True):
            time.sleep(0.05)
            assert pool.running == 1
            gate.set()
            assert future.result(timeout=5) is True
    finally:
        for gate in gates:
            gate.set()
        pool.close()


def _burn(seconds: float, starts: list[float], cpu: list[float]) -> None:
    """Hold the interpreter (a large listing's decoding) for `seconds` of CPU."""
    starts.append(time.monotonic())
    began = time.thread_time()
    while time.thread_time() - began < seconds:
        sum(range(1000))
    cpu.append(time.thread_time() - began)


@dataclass
class Flood:
    """A flooder's calls, each burning CPU, queued while another client's
    call holds the second of two workers."""

    pool: Bulkhead
    calls: list[concurrent.futures.Future[None]]
    starts: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)


@contextmanager
def flooding(calls: int, burn: float) -> Iterator[Flood]:
    pool = Bulkhead("test", workers=2, queue_limit=8, client_limit=8)
    other = threading.Event()
    try:
        pool.submit("victim", functools.partial(other.wait, 10))
        time.sleep(0.05)
        flood = Flood(pool, [])
        for _ in range(calls):
            call = pool.submit("flooder", functools.partial(_burn, burn, flood.starts, flood.cpu))
            call.add_done_callback(lambda _: flood.ends.append(time.monotonic()))
            flood.calls.append(call)
        yield flood
    finally:
        other.set()
        pool.close()


def test_a_busy_client_rests_between_calls_while_another_is_served() -> None:
    """The listing flood: one client's calls follow one another on a worker
    while another client's call runs; between two of his calls he waits at
    least REST times the CPU the last one took (the other's threads get
    the interpreter meanwhile)."""
    with flooding(3, 0.1) as flood:
        for call in flood.calls:
            call.result(timeout=10)
    starts, cpu, ends = flood.starts, flood.cpu, flood.ends
    assert len(starts) == 3
    for n in (1, 2):
        assert starts[n] - ends[n - 1] >= REST * cpu[n - 1] * 0.99, (starts, ends, cpu)


def test_a_rest_holds_when_another_client_comes() -> None:
    """The busy client last asked well over RECENT ago (his calls all wait):
    a newcomer's call does not cut his rest short."""
    with flooding(2, 0.3) as flood:
        flood.calls[0].result(timeout=10)
        time.sleep(0.1)  # within his rest of ~0.3 s, ≥ 0.4 s after his last call came
        flood.pool.submit("newcomer", lambda: None).result(timeout=5)
        flood.calls[1].result(timeout=10)
    starts, cpu, ends = flood.starts, flood.cpu, flood.ends
    assert starts[1] - ends[0] >= REST * cpu[0] * 0.99, (starts, ends, cpu)


def test_a_client_alone_never_rests() -> None:
    """Nobody else wants a turn: the busy client's calls run back to back,
    and nothing is left to rest (all the interpreter is his)."""
    pool = Bulkhead("test", workers=2, queue_limit=8, client_limit=8)
    starts: list[float] = []
    cpu: list[float] = []
    try:
        calls = [pool.submit("alone", functools.partial(_burn, 0.05, starts, cpu))
                 for _ in range(3)]
        for call in calls:
            call.result(timeout=10)
        assert not pool._resting
    finally:
        pool.close()
    assert len(starts) == 3


def test_a_resting_client_is_woken_though_every_other_worker_sleeps() -> None:
    """Four workers; the busy client rests while another client's calls come
    and go: an idle worker still wakes for him when his rest ends (not when
    some long call elsewhere finishes)."""
    pool = Bulkhead("test", workers=4, queue_limit=16, client_limit=16)
    starts: list[float] = []
    cpu: list[float] = []
    long_call = threading.Event()
    try:
        pool.submit("slow", functools.partial(long_call.wait, 30))  # one worker, 30 s
        time.sleep(0.05)
        calls = [pool.submit("flooder", functools.partial(_burn, 0.05, starts, cpu))
                 for _ in range(3)]
        for _ in range(5):  # others come and go meanwhile
            pool.submit("other", lambda: None).result(timeout=5)
        for call in calls:
            call.result(timeout=5)  # well before the slow call's 30 s
    finally:
        long_call.set()
        pool.close()
    assert len(starts) == 3

"""Bounded worker pools that serve their callers' clients in turn, so none starves the others.

Blocking work (ldap3, Pillow) runs on worker threads, never on the event loop.
Each kind of work has its own pool (a bulkhead): password binds, which cost
slapd an argon2 verification each, cannot take the threads that reads and
writes need, and picture decoding cannot take either. A pool holds at most
`queue_limit` waiting calls (more are refused at once with Overloaded, a
503, rather than left to wait for seconds) and at most `client_limit` of them
from one client (more: Throttled, a 429). Waiting calls are served round-robin
by client, so a client with many calls queued delays another client's call
by at most one call of his.

Turns are not enough on their own: a call's Python work holds the
interpreter lock, and a client whose calls keep a worker busy (64 listings
at once) makes everyone else's threads wait for it at each step of theirs
(measured: a victim's GET 3.1 times slower during one user's listing
flood). So a client with more calls waiting rests after each of his calls
for REST times the CPU time it took (unless SHORT), while another client
has a call running or has asked within RECENT seconds: he then gets about
half of the interpreter at most, and all of it when nobody else wants it
(the victim's GET: 1.3-2.0 times slower, the flood still served at ~85%).

The client is the one `current_client` names for the request (its address,
set by app/api/edge.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from app.domain import Overloaded, Throttled

T = TypeVar("T")
# The client of the request being served; None outside requests (start-up,
# the CLI), whose calls share one line with no per-client limit.
current_client: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_client", default=None)
REST = 1.0  # a busy client's rest after each call, times the CPU time the call took
RECENT = 0.25  # seconds: a client served this recently is still someone who wants a turn
# Calls shorter than this (in CPU seconds) hold the interpreter for a switch
# interval or two (app/server.py): no rest, and the turns stay as they are.
SHORT = 0.002


@dataclass
class _Call:
    run: Callable[[], Any]
    future: concurrent.futures.Future[Any]
    line: str = ""


class Observer(Protocol):
    """Who is told how busy a pool is (app/metrics.py)."""

    def changed(self, pool: str, queued: int, running: int) -> None: ...

    def refused(self, pool: str, reason: str) -> None: ...


class Bulkhead:
    def __init__(self, name: str, workers: int, queue_limit: int, client_limit: int,
                 observer: Observer | None = None) -> None:
        self.name = name
        self.workers = workers
        self.queue_limit = queue_limit
        self.client_limit = client_limit
        self.observer = observer
        self._waiting: OrderedDict[str, deque[_Call]] = OrderedDict()
        self._queued = 0
        self._running = 0
        # Calls of one client running at once, at most `client_running`: a
        # client with many calls waiting takes at most half the workers (its
        # calls' Python work shares one interpreter lock with everyone's).
        self._running_by: dict[str, int] = {}
        self.client_running = max(1, workers // 4)
        # Until when a client that keeps this pool busy waits before his next call.
        self._resting: dict[str, float] = {}
        # When each client last submitted a call, oldest first (pruned past RECENT).
        self._seen: OrderedDict[str, float] = OrderedDict()
        # When each idle worker waiting for a rest to end will wake.
        self._timers: list[float] = []
        self._closed = False
        self._lock = threading.Condition()
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def running(self) -> int:
        return self._running

    async def run(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` on a worker thread, in this client's turn,
        with the caller's context variables (the request's origin, which the
        audit marker reads), as asyncio.to_thread does."""
        context = contextvars.copy_context()
        future = self.submit(current_client.get(),
                             lambda: context.run(function, *args, **kwargs))
        result: T = await asyncio.wrap_future(future)
        return result

    def submit(self, client: str | None,
               function: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        line = "" if client is None else client
        with self._lock:
            if self._closed:
                raise Overloaded(f"the {self.name} pool is shut down")
            if self._queued >= self.queue_limit:
                self._refused("overloaded")
                raise Overloaded(f"too much {self.name} work is waiting; retry shortly")
            calls = self._waiting.get(line)
            if client is not None and calls is not None and len(calls) >= self.client_limit:
                self._refused("share")
                raise Throttled(1, f"too many {self.name} requests at once from one client")
            if calls is None:
                calls = self._waiting[line] = deque()
            if client is not None:
                self._saw(line)
            calls.append(_Call(function, future, line))
            self._queued += 1
            self._changed()
            self._lock.notify()
        return future

    def _changed(self) -> None:
        """Tell the observer (under the lock, so values arrive in order)."""
        if self.observer is not None:
            self.observer.changed(self.name, self._queued, self._running)

    def _refused(self, reason: str) -> None:
        if self.observer is not None:
            self.observer.refused(self.name, reason)

    def _saw(self, client: str) -> None:
        now = time.monotonic()
        self._seen[client] = now
        self._seen.move_to_end(client)
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= RECENT:
                break
            del self._seen[oldest]

    def _resting_now(self, client: str, now: float) -> bool:
        until = self._resting.get(client)
        return until is not None and until > now

    def _others_want(self, client: str) -> bool:
        """Whether a client other than this one wants a turn and is not
        resting himself: he has a call running or waiting, or has asked
        lately (a client sending one request after another)."""
        now = time.monotonic()
        if any(c not in ("", client) for c in self._running_by):
            return True
        if any(c not in ("", client) and not self._resting_now(c, now) for c in self._waiting):
            return True
        for other, at in reversed(self._seen.items()):
            if now - at > RECENT:
                break
            if other != client and not self._resting_now(other, now):
                return True
        return False

    def _next(self) -> _Call | None:
        """The oldest call of the first client in line whose turn it is (not
        already at `client_running`, not resting); None once closed and empty."""
        with self._lock:
            while True:
                if not self._waiting and self._closed:
                    return None
                now = time.monotonic()
                wake: float | None = None  # when the first resting client may go on
                client = None
                for c in self._waiting:
                    if c != "" and self._running_by.get(c, 0) >= self.client_running:
                        continue
                    # Closing: what is queued is finished without rests.
                    if not self._closed and self._resting_now(c, now):
                        until = self._resting[c]
                        wake = until if wake is None else min(wake, until)
                    elif client is None:
                        client = c
                if client is not None:
                    if wake is not None and not any(d <= wake for d in self._timers):
                        # An idle worker must wake when that rest ends.
                        self._lock.notify()
                    break
                if wake is None:
                    self._lock.wait()
                    continue
                self._timers.append(wake)
                try:
                    self._lock.wait(wake - now)
                finally:
                    self._timers.remove(wake)
            calls = self._waiting.pop(client)
            call = calls.popleft()
            if calls:  # this client goes to the back of the line
                self._waiting[client] = calls
            else:  # nothing left to hold back
                self._resting.pop(client, None)
            self._queued -= 1
            self._running += 1
            self._running_by[client] = self._running_by.get(client, 0) + 1
            self._changed()
            return call

    def _work(self) -> None:
        while (call := self._next()) is not None:
            try:
                # Not started if its caller gave up meanwhile (a client that left).
                if call.future.set_running_or_notify_cancel():
                    started = time.thread_time()
                    failure: BaseException | None = None
                    try:
                        result = call.run()
                    except BaseException as e:  # handed to the caller, who raises it
                        failure = e
                    # Before the caller hears: his next call must find the rest.
                    self._rest(call.line, time.thread_time() - started)
                    if failure is not None:
                        call.future.set_exception(failure)
                    else:
                        call.future.set_result(result)
            finally:
                with self._lock:
                    self._running -= 1
                    left = self._running_by[call.line] - 1
                    if left:
                        self._running_by[call.line] = left
                    else:
                        del self._running_by[call.line]
                    self._changed()
                # No wake-up here: the one call this makes eligible (its
                # client's share freed a place) is taken by this very thread,
                # which goes straight back to _next(). Waking every idle
                # worker after every call cost a tenth of the interpreter's
                # time under load (py-spy --gil, GET one user).

    def _rest(self, client: str, cpu: float) -> None:
        """A client with more calls waiting rests while others want a turn
        (a rest already longer, from another of his calls, is kept)."""
        if client == "":
            return
        with self._lock:
            now = time.monotonic()
            if cpu >= SHORT and client in self._waiting and self._others_want(client):
                until = now + REST * cpu
                if until > self._resting.get(client, 0.0):
                    self._resting[client] = until
            elif not self._resting_now(client, now):
                self._resting.pop(client, None)

    def close(self, wait: bool = True) -> None:
        """Finish what is queued, then stop the threads."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

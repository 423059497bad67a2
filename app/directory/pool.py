"""Bound ldap3 connections, borrowed one operation at a time and replaced when lost."""

from __future__ import annotations

import contextlib
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ldap3 import NONE, SYNC, Connection, Server

from app.directory import speedup
from app.directory.errors import StaleConnection, Unreachable, raise_for_result, translated
from app.domain import Unavailable

STALE_FAILURE_SECONDS = 0.5


class Breaker:
    """After a timeout or a refused connection, fail at once for `pause`
    seconds rather than let every queued request wait out its own timeout
    (SPEC §6: fail fast while slapd is away, recover alone when it is back)."""

    def __init__(self, pause: float = 1.0) -> None:
        self.pause = pause
        self._open_until = 0.0
        self.on_trip: Callable[[], None] | None = None  # told each time it opens (metrics)

    def check(self) -> None:
        if time.monotonic() < self._open_until:
            raise Unavailable("directory unavailable (it failed a moment ago)")

    def trip(self) -> None:
        self._open_until = time.monotonic() + self.pause
        if self.on_trip is not None:
            self.on_trip()

    def reset(self) -> None:
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until


@dataclass(frozen=True)
class Endpoint:
    """How to reach slapd and as whom."""

    url: str
    bind_dn: str
    password: str
    connect_timeout: float = 2.0
    operation_timeout: float = 4.0
    breaker: Breaker = field(default_factory=Breaker, compare=False)

    def server(self, connect_timeout: float | None = None) -> Server:
        return Server(
            self.url, get_info=NONE, connect_timeout=connect_timeout or self.connect_timeout
        )

    def connect(self, bind_dn: str | None = None, password: str | None = None,
                timeout: float | None = None) -> Connection:
        """A new connection, bound as the service (or as whoever is given)."""
        self.breaker.check()
        secret = password if password is not None else self.password
        filled = speedup.fills_empty_attributes()
        conn = Connection(
            self.server(timeout),
            user=bind_dn if bind_dn is not None else self.bind_dn,
            # As bytes: ldap3 would otherwise SASLprep a str (mapping, normalising,
            # refusing control characters), while slapd hashed the password
            # exactly as it was set. It must be checked exactly as received.
            password=secret.encode(),
            # SYNC, not SAFE_SYNC: a connection serves one borrower at a time
            # here, and SAFE_SYNC deep-copies every response (~20% of an op).
            client_strategy=SYNC,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds.
            receive_timeout=max(1, math.ceil(timeout or self.operation_timeout)),
            raise_exceptions=False,
            auto_referrals=False,
            # Without a schema (get_info=NONE) there is nothing to check names
            # against; values are escaped by names.py, not by ldap3.
            check_names=False,
            read_only=False,
            # Entries come with every asked-for attribute (missing ones as
            # []) from app/directory/speedup.py, far cheaper than ldap3's own
            # loop, which (with its scan for Active Directory's ranged values,
            # which slapd never sends) runs only where that is not in place.
            return_empty_attributes=not filled,
            auto_range=not filled,
        )
        try:
            with translated():
                conn.open()
                result, _ = execute(conn, "bind")
        except Unreachable:
            self.breaker.trip()
            raise
        except Unavailable:
            close_quietly(conn)
            raise
        if result["result"] != 0:
            close_quietly(conn)
            raise_for_result(result, "bind")
        return conn


def execute(conn: Connection, operation: str, *args: Any,
            **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One operation on a connection its caller holds alone: (result, entries)."""
    getattr(conn, operation)(*args, **kwargs)
    return conn.result or {}, conn.response or []


def close_quietly(conn: Any) -> None:
    # The socket may already be gone; there is nothing to report then.
    with contextlib.suppress(Exception):
        conn.unbind()


class ConnectionPool:
    """At most `size` bound connections; a connection that fails is dropped, not
    reused, and one idle for `max_idle` seconds is closed before slapd's own
    idle timeout (olcIdleTimeout) would close it under a write."""

    def __init__(self, endpoint: Endpoint, size: int, max_idle: float = 240.0) -> None:
        self.endpoint = endpoint
        self.size = size
        self.max_idle = max_idle
        self._idle: queue.LifoQueue[tuple[Connection, float]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        breaker = self.endpoint.breaker
        breaker.check()
        if not self._slots.acquire(timeout=self.endpoint.operation_timeout):
            raise Unavailable("no directory connection became free in time")
        try:
            conn, reused = self._take()
            started = time.monotonic()
            try:
                with translated():
                    yield conn
            except Unavailable as e:
                close_quietly(conn)
                if reused and time.monotonic() - started < STALE_FAILURE_SECONDS:
                    raise StaleConnection(e.message) from e
                if isinstance(e, Unreachable):
                    breaker.trip()
                raise
            except BaseException:
                self._idle.put((conn, time.monotonic()))
                raise
            else:
                self._idle.put((conn, time.monotonic()))
        finally:
            self._slots.release()

    def reading(self, base: str) -> AbstractContextManager[Connection]:
        """A connection for a search under `base`: one of this pool's (a
        ReplicatedPool may hand out a consumer's, app/directory/replicas.py)."""
        return self.connection()

    def read_endpoint(self, base: str) -> Endpoint:
        """Where a sorted listing under `base` opens its connection."""
        return self.endpoint

    def read_failed(self, endpoint: Endpoint) -> None:
        """A read on `endpoint` (not this pool's own: a consumer's) failed."""

    def routing(self, reads: bool, client: str | None,
                fresh: bool = False) -> AbstractContextManager[None]:
        """The scope of one service call: whether it only reads, whose writes
        it makes, and whether its reads must be fresh (the provider's, for a
        request that may change something) (app/directory/replicas.py)."""
        return contextlib.nullcontext()

    def _take(self) -> tuple[Connection, bool]:
        """An idle connection (True: reused) or a new one."""
        while True:
            try:
                conn, since = self._idle.get_nowait()
            except queue.Empty:
                return self.endpoint.connect(), False
            if time.monotonic() - since > self.max_idle:
                close_quietly(conn)
            elif not conn.closed:
                return conn, True

    def close(self) -> None:
        while True:
            try:
                close_quietly(self._idle.get_nowait()[0])
            except queue.Empty:
                return


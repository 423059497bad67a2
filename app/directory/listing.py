"""Sorted, windowed listing with server-side sort + VLV (slapo-sssvlv).

slapd sorts the whole result set once, when a sort context is created, and
keeps it on that connection; later windows of the same (filter, sort) on the
same connection only walk the sorted tree and send `limit` entries, so the
cost of a page does not grow with the directory. A context is a snapshot:
it is reused for at most `ttl` seconds and never after a write made through
this process (`invalidate`). Contexts are only freed when their connection
closes, so each slot owns one connection holding at most one context.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ldap3 import SUBTREE, Connection
from ldap3.core.results import RESULT_CODES

from app.directory.controls import (
    VLV_RESPONSE,
    SortKey,
    parse_vlv_response,
    server_sort,
    virtual_list_view,
)
from app.directory.errors import BUSY, Unreachable, raise_for_result, translated
from app.directory.operations import Entry, Ldap
from app.directory.pool import STALE_FAILURE_SECONDS, Endpoint, close_quietly, execute
from app.domain import Busy, InvalidInput, Unavailable

VLV_ERROR = 76  # LDAP_VLV_ERROR: e.g. an offset past the end
# The VLV control's offset is an INTEGER slapd reads as 32 bits: beyond it,
# protocolError. No directory holds that many entries.
MAX_POSITION = 2**31 - 2
REAP_SECONDS = 1.0
# ldap3 2.9.1 looks every result code up in this table and raises KeyError on
# the ones it lacks, vlvError among them, before we could see the result.
RESULT_CODES.setdefault(VLV_ERROR, "vlvError")


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    conn: Connection | None = None
    key: tuple[Any, ...] | None = None
    context: bytes | None = None
    created: float = 0.0
    generation: int = -1
    last_used: float = 0.0
    waiting: int = 0


class Listing:
    def __init__(self, endpoint: Endpoint, ldap: Ldap, slots: int, ttl: float,
                 sort_timeout: float | None = None) -> None:
        self.endpoint = endpoint
        self.ldap = ldap
        self.ttl = ttl
        # slapd sorts every candidate before the first window: at a million
        # people that takes seconds, longer than an ordinary answer may.
        self.sort_timeout = sort_timeout
        self._slots = [_Slot() for _ in range(slots)]
        self._choose = threading.Lock()
        self._generation = 0
        self.sorts_started = 0
        _reaper.watch(self)

    def release_expired(self) -> None:
        """Close the connections of snapshots past their time: slapd frees a
        sort context (memory, and one of its olcSssVlvMax) only then, and an
        idle process would otherwise hold its last ones for good."""
        for slot in self._slots:
            if slot.lock.acquire(blocking=False):  # a slot in use is not idle
                try:
                    if slot.key is not None and not self._is_fresh(slot, slot.key):
                        self._reset(slot)
                finally:
                    slot.lock.release()

    def invalidate(self) -> None:
        """Forget every sorted snapshot: the next window sorts afresh."""
        self._generation += 1

    def window(self, base: str, filter_string: str, sort: Sequence[SortKey],
               attributes: Sequence[str], offset: int, limit: int) -> tuple[list[Entry], int]:
        """Entries offset..offset+limit-1 (0-based) of the sorted result, and its size."""
        if offset + limit > MAX_POSITION:
            raise InvalidInput("page", "Invalid page: beyond any listing.")
        # The provider's, or a consumer's (read replicas: app/directory/replicas.py).
        endpoint = self.ldap.pool.read_endpoint(base)
        endpoint.breaker.check()
        slot = self._pick((endpoint.url, base, filter_string, tuple(sort)))
        try:
            with slot.lock:
                for attempt in (1, 2):
                    key = (endpoint.url, base, filter_string, tuple(sort))
                    reuse = self._is_fresh(slot, key)
                    if not reuse:
                        self._reset(slot)
                    started = time.monotonic()
                    try:
                        return self._fetch(slot, endpoint, key, base, filter_string, sort,
                                           attributes, offset, limit, reuse)
                    except Unavailable as e:
                        self._reset(slot)
                        if endpoint is not self.endpoint and attempt == 1:
                            # A consumer failed: the provider sorts instead.
                            self.ldap.pool.read_failed(endpoint)
                            endpoint = self.endpoint
                            continue
                        # A kept connection that died while idle (slapd
                        # restarted) fails at once: try again on a new one.
                        stale = reuse and time.monotonic() - started < STALE_FAILURE_SECONDS
                        if attempt == 2 or not stale:
                            if isinstance(e, Unreachable):
                                endpoint.breaker.trip()
                            raise
                raise AssertionError("unreachable")
        finally:
            with self._choose:
                slot.waiting -= 1

    def close(self) -> None:
        for slot in self._slots:
            with slot.lock:
                self._reset(slot)

    def _pick(self, key: tuple[Any, ...]) -> _Slot:
        """The slot already holding this snapshot (waiting for it beats sorting
        again), else the least busy, least recently used one."""
        with self._choose:
            fresh = [s for s in self._slots if self._is_fresh(s, key)]
            slot = min(fresh or self._slots, key=lambda s: (s.waiting, s.last_used))
            slot.waiting += 1
            return slot

    def _is_fresh(self, slot: _Slot, key: tuple[Any, ...]) -> bool:
        return (
            slot.conn is not None
            and slot.key == key
            and slot.generation == self._generation
            and time.monotonic() - slot.created < self.ttl
        )

    def _reset(self, slot: _Slot) -> None:
        if slot.conn is not None:
            close_quietly(slot.conn)
        slot.conn, slot.key, slot.context = None, None, None

    def _fetch(self, slot: _Slot, endpoint: Endpoint, key: tuple[Any, ...], base: str,
               filter_string: str, sort: Sequence[SortKey], attributes: Sequence[str],
               offset: int, limit: int, reuse: bool) -> tuple[list[Entry], int]:
        if slot.conn is None:
            slot.conn = endpoint.connect()
            slot.created, slot.generation = time.monotonic(), self._generation
            self.sorts_started += 1
        context = slot.context if reuse else None
        controls = [server_sort(list(sort)),
                    virtual_list_view(offset + 1, max(limit - 1, 0), context)]
        with translated(), _answer_within(slot.conn, None if reuse else self.sort_timeout):
            result, response = execute(
                slot.conn, "search", base, filter_string, search_scope=SUBTREE,
                attributes=list(attributes), controls=controls,
            )
        slot.last_used = time.monotonic()
        vlv = result.get("controls", {}).get(VLV_RESPONSE)
        if result["result"] == BUSY:
            self._reset(slot)
            raise Busy("too many sorted listings at once; retry shortly")
        if result["result"] not in (0, VLV_ERROR) or vlv is None:
            self._reset(slot)
            raise_for_result(result, "listing")
            raise Unavailable("the directory did not answer the sorted listing")
        answer = parse_vlv_response(vlv["value"])
        slot.key, slot.context = key, answer.context
        entries = [e for e in response or [] if e.get("type") == "searchResEntry"]
        if result["result"] == VLV_ERROR:  # past the end: no entries, but a count
            entries = []
        self.ldap.entries_received += len(entries)
        return entries[:limit], answer.content_count


@contextmanager
def _answer_within(conn: Any, seconds: float | None) -> Iterator[None]:
    """This one answer may take `seconds` (the socket's timeout, which ldap3
    set to the connection's receive_timeout, is put back after it)."""
    sock = getattr(conn, "socket", None)
    if seconds is None or sock is None:
        yield
        return
    sock.settimeout(seconds)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(conn.receive_timeout)


class _Reaper:
    """One daemon thread for the process, releasing expired snapshots of every
    live Listing about once a second."""

    def __init__(self) -> None:
        self._listings: weakref.WeakSet[Listing] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, listing: Listing) -> None:
        with self._lock:
            self._listings.add(listing)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="listing-reaper",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(REAP_SECONDS)
            with self._lock:
                listings = list(self._listings)
            for listing in listings:
                with contextlib.suppress(Exception):  # a closing runtime: next round
                    listing.release_expired()


_reaper = _Reaper()

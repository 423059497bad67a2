"""How far each consumer has come: the servers' contextCSNs, watched, and each consumer's lag.

syncprov keeps on the suffix entry a contextCSN, the CSN of the newest
change the server holds (one value per server id; a single provider writes
them all with its own). A consumer's contextCSN moves as syncrepl applies the
provider's changes, and only then: ldif/consumer.ldif turns off core
lastbind there, whose local writes would move it ahead of changes not yet
received. So "the consumer's contextCSN covers the provider's at the time of
a write" means "the consumer holds that write".

A watcher thread per server reads its contextCSN every `interval` seconds
on a connection of its own (bounded: one thread and one connection per
server, whatever the load; never on the event loop, never on the request
pools). A consumer's lag is how long ago the watcher first saw the provider
hold a change the consumer still lacks: 0 when it holds all the provider
had, unknown (None) when it does not answer.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ldap3 import BASE, Connection

from app.directory.errors import raise_for_result, translated
from app.directory.pool import ConnectionPool, Endpoint, close_quietly, execute

Csns = dict[str, str]  # server id -> the newest CSN of that server's changes
HISTORY = 4096  # provider CSNs remembered while some consumer lacks them


def csns(values: Iterable[str]) -> Csns:
    """contextCSN (or entryCSN) values by server id. A CSN is
    time#count#sid#mod with fixed widths (slapd's csn.c): for one server id
    the text orders as the changes were made."""
    found: Csns = {}
    for value in values:
        parts = value.split("#")
        if len(parts) == 4 and value > found.get(parts[2], ""):
            found[parts[2]] = value
    return found


def covers(have: Csns, want: Csns) -> bool:
    """Does a server holding `have` hold every change up to `want`?"""
    return all(have.get(sid, "") >= csn for sid, csn in want.items())


def read_csns(conn: Connection, base: str) -> Csns:
    with translated():
        result, entries = execute(conn, "search", base, "(objectClass=*)", search_scope=BASE,
                                  attributes=["contextCSN"])
    raise_for_result(result, "contextCSN")
    found = [e for e in entries if e.get("type") == "searchResEntry"]
    return csns(found[0]["attributes"].get("contextCSN", [])) if found else {}


@dataclass(eq=False)
class Replica:
    """A consumer: its endpoint, its pool of service connections, what it was last seen holding."""

    endpoint: Endpoint
    pool: ConnectionPool
    csns: Csns = field(default_factory=dict)
    answers: bool = False  # its watcher's last read succeeded

    @property
    def url(self) -> str:
        return self.endpoint.url


class Freshness:
    """The provider's and every consumer's contextCSN, kept current by one
    watcher thread per server."""

    def __init__(self, provider: Endpoint, replicas: Sequence[Replica], base: str,
                 interval: float) -> None:
        self.provider = provider
        self.replicas = list(replicas)
        self.base = base
        self.interval = interval
        self.provider_csns: Csns = {}
        self.provider_answers = False
        self._history: deque[tuple[float, Csns]] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Told each consumer's lag (None: it did not answer) as its watcher reads it.
        self.on_lag: Callable[[str, float | None], None] | None = None
        self._threads = [threading.Thread(target=self._watch, args=(provider, self._provider_seen),
                                          name="replica-watch-provider", daemon=True)]
        self._threads += [threading.Thread(target=self._watch, args=(r.endpoint, self._seen(r)),
                                           name=f"replica-watch-{i}", daemon=True)
                          for i, r in enumerate(self.replicas)]
        for thread in self._threads:
            thread.start()

    def lag(self, replica: Replica, now: float | None = None) -> float | None:
        """Seconds since the provider first held a change this consumer still
        lacks (0: it lacks none), or None if it does not answer."""
        with self._lock:
            if not replica.answers:
                return None
            now = time.monotonic() if now is None else now
            for seen, wanted in self._history:
                if not covers(replica.csns, wanted):
                    return now - seen
            return 0.0

    def close(self) -> None:
        self._stop.set()

    def _provider_seen(self, found: Csns | None) -> None:
        with self._lock:
            self.provider_answers = found is not None
            if found is None or covers(self.provider_csns, found):
                return
            self.provider_csns = found
            self._history.append((time.monotonic(), found))
            # What every consumer holds needs no remembering.
            while self._history and all(covers(r.csns, self._history[0][1])
                                        for r in self.replicas):
                self._history.popleft()

    def _seen(self, replica: Replica) -> Callable[[Csns | None], None]:
        def seen(found: Csns | None) -> None:
            with self._lock:
                replica.answers = found is not None
                if found is not None:
                    replica.csns = found
            if self.on_lag is not None:
                self.on_lag(replica.url, self.lag(replica))
        return seen

    def _watch(self, endpoint: Endpoint, report: Callable[[Csns | None], None]) -> None:
        conn: Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = endpoint.connect()
                report(read_csns(conn, self.base))
            except Exception:  # the thread must not die: tried again next round
                # Down, refusing, or anything unforeseen: reported as not answering.
                if conn is not None:
                    close_quietly(conn)
                conn = None
                report(None)
            self._stop.wait(self.interval)
        if conn is not None:
            with contextlib.suppress(Exception):
                close_quietly(conn)

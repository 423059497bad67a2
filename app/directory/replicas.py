"""Read replicas: writes to the provider, reads to a consumer that is fresh enough for the caller.

`[ldap] url` is the one provider: every write, and every search of a service
call that may write (uniqueness checks, the uidNumber counter, locks, the
last-admin checks read what they are about to change), and every password
bind. A service call that only reads (`reads` in app/service/base.py) may
search a consumer of `[ldap] read_urls` instead, one that answers and lags
the provider by at most `ldap.max_lag` seconds (app/directory/freshness.py);
otherwise the provider. A read call that writes after all (a user adopted
when first shown) searches the provider from its first write on.

Read-your-writes. After a call that writes, the pool reads the provider's
contextCSN (one base search) and remembers it for the calling client (the
address the bulkheads tell clients apart by). That client's reads then go
only to a consumer whose contextCSN, as its watcher last saw it, covers
that mark; until one does, to the provider. Falling back at once rather
than waiting for the consumer to catch up was measured (bench/
replication.py, README "Read replicas"): a consumer holds a write about
12 ms after it returns (p90 40 ms on a busy 2-core loopback), a read costs
the provider what it costs a consumer (~6 ms), and the mark ~2.5 ms per
write. Waiting would add the lag to the writer's next read; the fallback
adds nothing and moves only the writer's reads, for a moment (until the
watcher, reading every max_lag/4, sees the consumer hold the mark).
The marks live in the API process: a client that changes process (another
worker, another replica behind a load balancer without sticky sessions)
reads its own writes only once replication has brought them, as everyone
else does, within `max_lag`.

With the provider away, writes fail (503) and reads carry on from the
consumers, however far behind (there is nothing fresher to prefer), except
those of a client whose own write has not reached them.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ldap3 import Connection

from app.directory.errors import StaleConnection
from app.directory.freshness import Csns, Freshness, Replica, covers, read_csns
from app.directory.names import normalise_dn
from app.directory.pool import ConnectionPool, Endpoint
from app.domain import DomainError, Unavailable
from app.lru import Lru

MARKS = 10_000  # clients whose last write is remembered (a few hundred bytes each)
MIN_INTERVAL, MAX_INTERVAL = 0.05, 1.0  # seconds between two reads of a contextCSN


@dataclass
class _Scope:
    replicas: bool  # may this call's searches go to a consumer?
    client: str | None
    wrote: bool = False


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("ldap_scope",
                                                                      default=None)


class ReplicatedPool(ConnectionPool):
    """The provider's pool, which hands some searches to consumers."""

    def __init__(self, endpoint: Endpoint, size: int, max_idle: float,
                 readers: Sequence[Endpoint], base_dn: str, max_lag: float) -> None:
        super().__init__(endpoint, size, max_idle)
        self.base_dn = normalise_dn(base_dn)
        self.max_lag = max_lag
        self.replicas = [Replica(e, ConnectionPool(e, size, max_idle)) for e in readers]
        # Watched a few times within max_lag: a lag is seen before it is much over.
        interval = min(MAX_INTERVAL, max(MIN_INTERVAL, max_lag / 4))
        self.freshness = Freshness(endpoint, self.replicas, base_dn, interval)
        self._marks: Lru[str, Csns] = Lru(MARKS)
        self._turn = itertools.count()
        # Searches and sorted listings sent to each server (the tests, and the curious).
        self.searches: dict[str, int] = {e.url: 0 for e in [endpoint, *readers]}

    # --- scopes ------------------------------------------------------------

    @contextmanager
    def routing(self, reads: bool, client: str | None,
                fresh: bool = False) -> Iterator[None]:
        scope = _Scope(reads and not fresh, client)
        token = _scope.set(scope)
        try:
            yield
        finally:
            _scope.reset(token)
            if scope.wrote or not reads:
                self._remember(client)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A provider connection for a write: from here on, this call's
        searches go to the provider too."""
        scope = _scope.get()
        if scope is not None:
            scope.wrote = True
        with super().connection() as conn:
            yield conn

    def _remember(self, client: str | None) -> None:
        """The provider's contextCSN now, as what `client` must read from here on."""
        if client is None:
            return
        # The provider away: the write failed too, or its answer never came.
        with contextlib.suppress(DomainError), ConnectionPool.connection(self) as conn:
            found = read_csns(conn, self.base_dn)
            # Two writes of one client may finish out of order: keep the newest of each server.
            earlier = self._marks.get(client) or {}
            self._marks.put(client, {sid: max(csn, earlier.get(sid, ""))
                                     for sid, csn in {**earlier, **found}.items()})

    # --- reads -------------------------------------------------------------

    def reading(self, base: str) -> contextlib.AbstractContextManager[Connection]:
        replica = self._choose(base)
        if replica is None:
            self.searches[self.endpoint.url] += 1
            scope = _scope.get()
            if scope is not None and scope.replicas and not scope.wrote and self.replicas:
                return self._provider_reading()
            return ConnectionPool.connection(self)
        self.searches[replica.url] += 1
        return self._consumer_connection(replica)

    @contextmanager
    def _provider_reading(self) -> Iterator[Connection]:
        """A read a consumer could have served, sent to the provider (the
        caller's own write not yet on any consumer, or every consumer behind):
        if the provider has just gone away, Ldap.search tries once more, and
        _choose, seeing its breaker open, takes a consumer."""
        try:
            with ConnectionPool.connection(self) as conn:
                yield conn
        except Unavailable as e:
            if not self.endpoint.breaker.is_open:
                raise
            raise StaleConnection(e.message) from e

    def read_endpoint(self, base: str) -> Endpoint:
        replica = self._choose(base)
        endpoint = self.endpoint if replica is None else replica.endpoint
        self.searches[endpoint.url] += 1
        return endpoint

    def read_failed(self, endpoint: Endpoint) -> None:
        """A consumer failed a read: not asked again before its watcher hears from it."""
        for replica in self.replicas:
            if replica.endpoint is endpoint:
                replica.answers = False

    @contextmanager
    def _consumer_connection(self, replica: Replica) -> Iterator[Connection]:
        try:
            with replica.pool.connection() as conn:
                yield conn
        except Unavailable as e:
            # Ldap.search tries a StaleConnection once more: on another
            # server, as this one is left out until it answers again.
            replica.answers = False
            raise StaleConnection(e.message) from e

    def _choose(self, base: str) -> Replica | None:
        """A consumer for this search, taken in turn among the fitting ones;
        None: the provider."""
        scope = _scope.get()
        if scope is None or not scope.replicas or scope.wrote or not self.replicas:
            return None
        under = normalise_dn(base)
        if under != self.base_dn and not under.endswith("," + self.base_dn):
            return None  # cn=accesslog and the like are the provider's alone
        mark = self._marks.get(scope.client) if scope.client is not None else None
        # The provider away (a request to it has just failed: its breaker is
        # open), a consumer's answer, however late, beats none: neither lag
        # nor the caller's last write can be waited for. Before its watcher's
        # first answer the provider counts as up.
        provider_away = self.endpoint.breaker.is_open
        provider_up = self.freshness.provider_answers and not provider_away
        fitting = []
        for replica in self.replicas:
            lag = self.freshness.lag(replica)
            if lag is None or replica.endpoint.breaker.is_open or \
                    (lag > self.max_lag and provider_up):
                continue
            if mark is not None and not provider_away and not covers(replica.csns, mark):
                continue
            fitting.append(replica)
        if not fitting:
            return None
        return fitting[next(self._turn) % len(fitting)]

    def close(self) -> None:
        self.freshness.close()
        for replica in self.replicas:
            replica.pool.close()
        super().close()

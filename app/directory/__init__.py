"""The LDAP gateway: the only package that speaks LDAP."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

from ldap3 import BASE, SYNC, Connection

from app.directory.audit import AuditedLdap
from app.directory.codes import CodeState, EmailCodeStore
from app.directory.errors import CONNECTION_ERRORS
from app.directory.groups import GroupChanged, Groups
from app.directory.listing import Listing
from app.directory.locks import Locks
from app.directory.names import Tree
from app.directory.operations import Ldap
from app.directory.people import People, PersonEntry
from app.directory.pool import ConnectionPool, Endpoint, close_quietly, execute
from app.directory.replicas import ReplicatedPool
from app.directory.speedup import install as install_speedup

PROBE_SECONDS = 1.0

__all__ = ["CodeState", "Directory", "Endpoint", "GroupChanged", "PersonEntry", "Tree"]


class Directory:
    """Everything userdir keeps in slapd, over one pool of service connections."""

    def __init__(self, endpoint: Endpoint, base_dn: str, *, pool_size: int = 4,
                 max_idle: float = 240.0, listing_slots: int = 4,
                 listing_ttl: float = 5.0, sort_timeout: float | None = None,
                 readers: Sequence[Endpoint] = (),
                 max_lag: float = 1.0) -> None:
        install_speedup()
        self.endpoint = endpoint
        self.tree = Tree(base_dn)
        # With read replicas (`readers`: [ldap] read_urls), reads may go to
        # consumers; the pool is the provider's all the same.
        self.pool = ReplicatedPool(endpoint, pool_size, max_idle, readers, base_dn, max_lag) \
            if readers else ConnectionPool(endpoint, pool_size, max_idle)
        # Writes to people and groups say who asked (the audit marker).
        self.ldap: Ldap = AuditedLdap(self.pool, self.tree)
        self.listing = Listing(endpoint, self.ldap, listing_slots, listing_ttl, sort_timeout)
        self.people = People(self.ldap, self.tree, endpoint, self.listing)
        self.groups = Groups(self.ldap, self.tree)
        self.locks = Locks(self.ldap, self.tree)
        self.codes = EmailCodeStore(self.ldap, self.tree)
        self._probing = threading.Lock()
        self._probed = (-PROBE_SECONDS, False)

    def ping(self, timeout: float = 1.0) -> bool:
        """Does slapd answer a root DSE read within `timeout`, on a fresh
        connection? Asked at most once a second: a flood of health checks
        (anyone may ask) costs slapd one connection a second, and waits for
        the probe in progress rather than opening more."""
        with self._probing:
            asked, up = self._probed
            if time.monotonic() - asked < PROBE_SECONDS:
                return up
            up = self._probe(timeout)
            self._probed = (time.monotonic(), up)
            return up

    def _probe(self, timeout: float) -> bool:
        conn = Connection(self.endpoint.server(timeout), client_strategy=SYNC,
                          receive_timeout=max(1, math.ceil(timeout)), raise_exceptions=False)
        try:
            conn.open()
            result, _ = execute(conn, "search", "", "(objectClass=*)", search_scope=BASE,
                                attributes=["1.1"])
            up = bool(result["result"] == 0)
            if up:
                self.endpoint.breaker.reset()  # back: no need to wait out the pause
            return up
        except CONNECTION_ERRORS:
            return False
        finally:
            close_quietly(conn)

    def close(self) -> None:
        self.listing.close()
        self.pool.close()

"""LDAP operations on pooled connections, returning plain data or raising domain errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ldap3 import BASE, SUBTREE

from app.directory.controls import Control
from app.directory.errors import LdapResult, StaleConnection, raise_for_result
from app.directory.pool import ConnectionPool, execute
from app.domain import NotFound

Entry = dict[str, Any]
Changes = Mapping[str, list[tuple[str, list[Any]]]]


class Ldap:
    """The gateway's only door to slapd. A read that met a pooled connection
    which died while idle (slapd restarted), or a server found away (a
    consumer, or the provider of a read a consumer may serve), is retried on
    a fresh one (of another server): a stale connection and then an absent
    server, three tries at most. Writes are not retried."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self.entries_received = 0

    def search(
        self,
        base: str,
        filter_string: str,
        attributes: Sequence[str],
        *,
        scope: str = SUBTREE,
        controls: Sequence[Control] | None = None,
        size_limit: int = 0,
        subject: str = "entry",
    ) -> tuple[list[Entry], dict[str, Any]]:
        for attempt in (1, 2, 3):
            try:
                with self.pool.reading(base) as conn:
                    result, response = execute(
                        conn, "search", base, filter_string, search_scope=scope,
                        attributes=list(attributes), size_limit=size_limit,
                        controls=list(controls) if controls else None,
                    )
                break
            except StaleConnection:
                if attempt == 3:
                    raise
        if result["result"] not in (0, 4):  # 4: sizeLimitExceeded still returns entries
            raise_for_result(result, subject)
        entries = [e for e in response or [] if e.get("type") == "searchResEntry"]
        self.entries_received += len(entries)
        return entries, result

    def read(self, dn: str, attributes: Sequence[str], subject: str = "entry") -> Entry | None:
        try:
            entries, _ = self.search(dn, "(objectClass=*)", attributes, scope=BASE,
                                     subject=subject)
        except NotFound:
            return None
        return entries[0] if entries else None

    def add(self, dn: str, object_classes: Sequence[str], attributes: Mapping[str, Any],
            subject: str = "entry") -> None:
        with self.pool.connection() as conn:
            result, _ = execute(conn, "add", dn, list(object_classes), dict(attributes))
        raise_for_result(result, subject)

    def modify(self, dn: str, changes: Changes, *, controls: Sequence[Control] | None = None,
               tolerate: Iterable[int] = (), subject: str = "entry") -> dict[str, Any]:
        """Apply changes atomically; result codes in `tolerate` are returned, not raised."""
        with self.pool.connection() as conn:
            result, _ = execute(conn, "modify", dn, dict(changes),
                                controls=list(controls) if controls else None)
        if result["result"] not in tolerate:
            raise_for_result(result, subject)
        return dict(result)

    def rename(self, dn: str, new_rdn: str, new_superior: str | None = None,
               subject: str = "entry") -> None:
        with self.pool.connection() as conn:
            result, _ = execute(conn, "modify_dn", dn, new_rdn, delete_old_dn=True,
                                new_superior=new_superior)
        raise_for_result(result, subject)

    def delete(self, dn: str, *, controls: Sequence[Control] | None = None,
               tolerate: Iterable[int] = (), subject: str = "entry") -> int:
        """Delete an entry; result codes in `tolerate` are returned, not raised."""
        with self.pool.connection() as conn:
            result, _ = execute(conn, "delete", dn,
                                controls=list(controls) if controls else None)
        if result["result"] not in tolerate:
            raise_for_result(result, subject)
        return int(result["result"])

    def extended(self, oid: str, value: Any, subject: str = "entry") -> dict[str, Any]:
        with self.pool.connection() as conn:
            result, _ = execute(conn, "extended", oid, value)
        raise_for_result(result, subject)
        return dict(result)


__all__ = ["Changes", "Entry", "Ldap", "LdapResult"]

"""Short leases held in the directory, so every API process sees the same lock.

Taking one is an Add of `cn=<key>,ou=locks`: slapd allows one entry per DN,
so exactly one Add of a free key succeeds (RFC 4511 §4.7, entryAlreadyExists).
A lease that outlives its holder (a crashed process) expires and is taken
over with an Assertion on its exact lease (expiry and a random tag), so two
takers cannot both win; a holder releases only his own lease, the same way,
so one that overran his lease cannot free the next holder's.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from app.directory import names
from app.directory.controls import assertion
from app.directory.errors import ASSERTION_FAILED, NO_SUCH_OBJECT
from app.directory.names import Tree
from app.directory.operations import Ldap
from app.directory.schema import first, format_time, parse_time
from app.domain import AlreadyExists, Busy

LEASE_SECONDS = 30
WAIT_SECONDS = 5.0


class Locks:
    def __init__(self, ldap: Ldap, tree: Tree) -> None:
        self.ldap = ldap
        self.tree = tree

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        dn = self.tree.lock(key)
        lease = self._acquire(dn)
        try:
            yield
        finally:
            self._delete_if(dn, lease)

    def _acquire(self, dn: str) -> str:
        deadline = time.monotonic() + WAIT_SECONDS
        pause = 0.01
        while True:
            expiry = format_time(datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS))
            lease = f"{expiry} {secrets.token_hex(8)}"
            try:
                self.ldap.add(dn, ["applicationProcess"],
                              {"cn": [names.first_rdn_value(dn)], "description": [lease]},
                              subject="lock")
                return lease
            except AlreadyExists:
                if self._break_if_expired(dn):
                    continue
            if time.monotonic() > deadline:
                raise Busy("another change to this user is in progress")
            time.sleep(pause + secrets.randbelow(10) / 1000)
            pause = min(pause * 2, 0.2)

    def _break_if_expired(self, dn: str) -> bool:
        entry = self.ldap.read(dn, ["description"], subject="lock")
        if entry is None:
            return True
        lease = first(entry, "description")
        if lease is None:
            return False
        expires = parse_time(lease.split(" ")[0])
        if expires is None or expires > datetime.now(UTC):
            return False
        self._delete_if(dn, lease)  # someone else may have broken it first: fine
        return True

    def _delete_if(self, dn: str, lease: str) -> None:
        """Delete the lock entry if it still holds this lease (gone: fine)."""
        self.ldap.delete(dn, controls=[assertion(names.equals("description", lease))],
                         tolerate=(ASSERTION_FAILED, NO_SUCH_OBJECT), subject="lock")

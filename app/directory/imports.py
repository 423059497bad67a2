"""What `userdir import` and `export` do over LDAP: paged reads, batched adds, foreign hashes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_INCREMENT, MODIFY_REPLACE, SUBTREE

from app.directory import names
from app.directory.controls import POST_READ, assertion, post_read
from app.directory.doctor import Leftovers, only_for
from app.directory.errors import (
    ASSERTION_FAILED,
    ATTRIBUTE_OR_VALUE_EXISTS,
    CONSTRAINT_VIOLATION,
    NO_SUCH_OBJECT,
    raise_for_result,
)
from app.directory.names import Tree
from app.directory.operations import Entry, Ldap
from app.directory.pool import execute
from app.directory.schema import PERSON_CLASSES, first
from app.domain import Busy

PAGED_RESULTS = "1.2.840.113556.1.4.319"  # RFC 2696
PAGE_SIZE = 1000
PERSON = "(objectClass=inetOrgPerson)"
FOREIGN_HASH = "userdirForeignHash"
# What an import needs to know of everyone already there.
KNOWN_ATTRIBUTES = ["uid", "mail", "uidNumber", "memberOf"]
RESERVE_ATTEMPTS = 20
MDB_DATABASE = "olcDatabase={1}mdb,cn=config"  # the embedded directory's (ldif/config.ldif)


def pages(ldap: Ldap, base: str, filter_string: str, attributes: Sequence[str],
          page_size: int = PAGE_SIZE) -> Iterator[list[Entry]]:
    """One subtree search, page by page, on one pooled connection (a cookie
    is only good on the connection that got it): slapd drops a client that
    reads 100k entries of one answer more slowly than olcWriteTimeout allows."""
    cookie: bytes | None = None
    with ldap.pool.connection() as conn:
        while True:
            result, response = execute(conn, "search", base, filter_string,
                                       search_scope=SUBTREE, attributes=list(attributes),
                                       paged_size=page_size, paged_cookie=cookie)
            if result["result"] == NO_SUCH_OBJECT:
                return
            raise_for_result(result, "entry")
            yield [e for e in response if e.get("type") == "searchResEntry"]
            control = (result.get("controls") or {}).get(PAGED_RESULTS) or {}
            cookie = (control.get("value") or {}).get("cookie")
            if not cookie:
                return


class ImportTarget:
    """The directory as the importer identity writes it (ldif/config.ldif:
    manage on userPassword, so hashes are stored as they come)."""

    def __init__(self, ldap: Ldap, tree: Tree) -> None:
        self.ldap = ldap
        self.tree = tree
        self.leftovers = Leftovers(ldap, tree)

    def people(self) -> Iterator[Entry]:
        """Everyone under the base (people and users being created), for the
        re-run, clash and id checks made before any write."""
        for page in pages(self.ldap, self.tree.base, PERSON, KNOWN_ATTRIBUTES):
            yield from page

    def counter(self) -> int:
        return self.leftovers.counter()

    def move_counter(self, highest: int) -> None:
        """Past every id imported as it was: the API never hands one out again."""
        self.leftovers.move_counter(highest)

    def reserve(self, count: int, held: set[int]) -> range:
        """`count` new ids at once: one Modify-Increment with Post-Read. The
        step may be a little larger (slapo-unique refuses an increment equal to
        an id a person holds, 2.5.13); the caller skips ids in `held`."""
        step = count
        for _ in range(RESERVE_ATTEMPTS):
            while step in held:
                step += 1
            result = self.ldap.modify(
                self.tree.uid_counter, {"uidNumber": [(MODIFY_INCREMENT, [step])]},
                controls=[post_read(["uidNumber"])], tolerate=(CONSTRAINT_VIOLATION,),
                subject="uidNumber counter")
            if result["result"] == 0:
                last = int(result["controls"][POST_READ]["value"]["result"]["uidNumber"][0])
                return range(last - step + 1, last + 1)
            step += 1
        raise Busy("no block of uidNumbers could be reserved; retry")

    def add_person(self, dn: str, attributes: Mapping[str, Any]) -> None:
        """One complete entry, password included, in one Add (atomic: an
        interrupted import leaves it whole or absent)."""
        self.ldap.add(dn, PERSON_CLASSES, attributes, subject="user")

    def add_members(self, group_dn: str, member_dns: Sequence[str]) -> None:
        """Many members in one modify: a group of 100k members costs one
        rewrite per modify, whatever the number of values added."""
        if not member_dns:
            return
        result = self.ldap.modify(group_dn, {"member": [(MODIFY_ADD, list(member_dns))]},
                                  tolerate=(ATTRIBUTE_OR_VALUE_EXISTS,), subject="group")
        if result["result"] == ATTRIBUTE_OR_VALUE_EXISTS:  # one was in already: each alone
            for dn in member_dns:
                self.ldap.modify(group_dn, {"member": [(MODIFY_ADD, [dn])]},
                                 tolerate=(ATTRIBUTE_OR_VALUE_EXISTS,), subject="group")


class ForeignHashes:
    """Imported hashes slapd cannot verify (userdirForeignHash, readable by
    the service alone), checked by the service at a user's first login."""

    def __init__(self, ldap: Ldap) -> None:
        self.ldap = ldap

    def read(self, dn: str) -> str | None:
        entry = self.ldap.read(dn, [FOREIGN_HASH], subject="user")
        return first(entry, FOREIGN_HASH) if entry else None

    def replace(self, dn: str, stored: str, password: str) -> str | None:
        """Give slapd the password (it hashes it: argon2) and drop the
        foreign hash, in one modify, only while that hash is still the one
        checked (RFC 4528). The new pwdChangedTime (RFC 4527 Post-Read), or
        None if the hash changed meanwhile. slapd's policy may refuse the
        password (PolicyViolation): the foreign hash then stays."""
        condition = only_for("inetOrgPerson", names.equals(FOREIGN_HASH, stored))
        result = self.ldap.modify(
            dn, {"userPassword": [(MODIFY_REPLACE, [password])],
                 FOREIGN_HASH: [(MODIFY_REPLACE, [])]},
            controls=[assertion(condition), post_read(["pwdChangedTime"])],
            tolerate=(ASSERTION_FAILED,), subject="user")
        if result["result"] == ASSERTION_FAILED:
            return None
        stamp = (result["controls"][POST_READ]["value"]["result"].get("pwdChangedTime")
                 or [""])[0]
        return stamp.decode() if isinstance(stamp, bytes) else str(stamp)


@contextmanager
def deferred_sync(ldapi_url: str) -> Iterator[bool]:
    """While an import runs into the embedded slapd, let back-mdb skip its
    fsync per write (olcDbNoSync): that fsync, not the work, bounds adds to
    about 50 a second on this kind of disk. Set over ldapi as the data dir's
    owner (ldif/config.ldif: cn=config belongs to that Unix account), and
    turned off again at the end, whose next write flushes everything. True
    if it could be set; an external server is left alone."""
    if not _set_no_sync(ldapi_url, True):
        yield False
        return
    try:
        yield True
    finally:
        _set_no_sync(ldapi_url, False)


def _set_no_sync(ldapi_url: str, on: bool) -> bool:
    change = (f"dn: {MDB_DATABASE}\nchangetype: modify\nreplace: olcDbNoSync\n"
              f"olcDbNoSync: {'TRUE' if on else 'FALSE'}\n")
    result = subprocess.run(["ldapmodify", "-Q", "-Y", "EXTERNAL", "-H", ldapi_url],
                            input=change, capture_output=True, text=True, check=False)
    return result.returncode == 0

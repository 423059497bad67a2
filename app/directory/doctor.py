"""What other LDAP tools leave behind: found by filtered paged searches, fixed under Assertions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import combinations

from ldap3 import LEVEL, MODIFY_ADD, MODIFY_DELETE, MODIFY_INCREMENT, MODIFY_REPLACE, SUBTREE

from app.directory import names
from app.directory.controls import assertion
from app.directory.errors import (
    ASSERTION_FAILED,
    NO_SUCH_ATTRIBUTE,
    NO_SUCH_OBJECT,
    OBJECT_CLASS_VIOLATION,
    UniqueViolation,
    raise_for_result,
)
from app.directory.locks import LEASE_SECONDS
from app.directory.names import Tree
from app.directory.operations import Entry, Ldap
from app.directory.pool import execute
from app.directory.schema import DISABLED, LOCKED_FOREVER, first, parse_time, username_of, values
from app.domain import Busy

PAGED_RESULTS = "1.2.840.113556.1.4.319"  # RFC 2696
# Pages, not one answer: slapd drops a client that reads 100k entries more
# slowly than olcWriteTimeout allows, and ldap3 decodes ~20k entries a second.
PAGE_SIZE = 1000
PERSON_CLASS = "inetOrgPerson"
PERSON = f"(objectClass={PERSON_CLASS})"
# ppolicy deletes this pwdAccountLockedTime on any password change; the
# pwdEndTime userdir disables with (schema.DISABLED) survives them.
OLD_DISABLE = names.all_of(names.equals("pwdAccountLockedTime", LOCKED_FOREVER),
                           names.negate("(pwdEndTime=*)"))
COMPLETING_CLASSES = ("posixAccount", "userdirPerson")
NUMBER_ATTEMPTS = 5
RETRIES = 20
# A DN of plain RDNs, as userdir and most tools write them: its lower case is
# its normal form (names.normalise_dn), at a hundredth of the cost.
_PLAIN_DN = re.compile(r"[A-Za-z]+=[A-Za-z0-9._@-]+(?:,[A-Za-z]+=[A-Za-z0-9._@-]+)*")


def comparable(dn: str) -> str:
    """names.normalise_dn, fast for the 100k member values of a large directory."""
    return dn.lower() if _PLAIN_DN.fullmatch(dn) else names.normalise_dn(dn)


def old_uids(dn: str, uids: Sequence[str]) -> list[str]:
    """uid values other than the RDN's: `ldapmodrdn` without -r keeps the old name."""
    if dn.split("=", 1)[0].strip().lower() != "uid":
        return []
    name = names.first_rdn_value(dn)
    return [uid for uid in uids if not names.same_name(uid, name)]


def only_for(object_class: str, condition: str) -> str:
    """An Assertion on entries of `object_class` only. slapo-unique and
    slapo-memberof repeat a modify's controls on their own operations (a
    search based at the suffix, a modify of the member), which would fail
    the whole modify if the condition had to hold there (2.5.13, seen here)."""
    return names.any_of(condition, names.negate(names.equals("objectClass", object_class)))


def missing_parts(person: Entry) -> list[str]:
    """What a person made by an LDAP tool lacks of what userdir writes."""
    classes = {c.lower() for c in values(person, "objectClass")}
    missing = [f"objectClass {c}" for c in COMPLETING_CLASSES if c.lower() not in classes]
    return [*missing, *(["uidNumber"] if not values(person, "uidNumber") else [])]


class Leftovers:
    """The doctor's reads and repairs. Every repair is conditional on the
    entry still being as it was read (RFC 4528), so two doctors, or a doctor
    and the API, never both apply one: the second's Assertion fails."""

    def __init__(self, ldap: Ldap, tree: Tree) -> None:
        self.ldap = ldap
        self.tree = tree

    # --- finding -----------------------------------------------------------

    def people(self, condition: str, attributes: Sequence[str]) -> list[Entry]:
        """People matching `condition`: slapd filters, only the culprits travel."""
        wanted = names.all_of(PERSON, condition)
        return [e for page in self._pages(self.tree.people, wanted, attributes) for e in page]

    def without_type(self, type_dns: Sequence[str]) -> list[Entry]:
        held = names.any_of(*(names.equals("memberOf", dn) for dn in type_dns))
        return self.people(names.negate(held), ["entryUUID"])

    def with_several_types(self, type_dns: Sequence[str]) -> list[Entry]:
        pairs = [names.all_of(names.equals("memberOf", a), names.equals("memberOf", b))
                 for a, b in combinations(type_dns, 2)]
        return self.people(names.any_of(*pairs), ["memberOf"]) if pairs else []

    def incomplete(self) -> list[Entry]:
        lacking = names.any_of(*(names.negate(names.equals("objectClass", c))
                                 for c in COMPLETING_CLASSES), "(!(uidNumber=*))")
        return self.people(lacking, ["objectClass", "uid", "uidNumber", "gidNumber",
                                     "homeDirectory"])

    def disabled_the_old_way(self) -> list[Entry]:
        return self.people(OLD_DISABLE, ["1.1"])

    def names(self) -> list[tuple[str, list[str]]]:
        """Every person's DN and uid values: the one search of all of ou=people,
        with the one attribute no filter can check (a second uid value)."""
        return [(e["dn"], values(e, "uid"))
                for page in self._pages(self.tree.people, PERSON, ["uid"]) for e in page]

    def counter(self) -> int:
        entry = self.ldap.read(self.tree.uid_counter, ["uidNumber"], subject="uidNumber counter")
        number = first(entry, "uidNumber") if entry else None
        if number is None or not number.isdigit():
            raise Busy("the uidNumber counter cannot be read")
        return int(number)

    def highest_uid_number_above(self, number: int) -> int | None:
        """The highest uidNumber in use above `number`, anywhere (ou=staging too)."""
        above = names.all_of(f"(uidNumber>={number + 1})",
                             names.negate("(objectClass=userdirCounter)"))
        found = [int(n) for page in self._pages(self.tree.base, above, ["uidNumber"])
                 for e in page if (n := first(e, "uidNumber") or "").isdigit()]
        return max(found, default=None)

    def exists(self, dn: str) -> bool:
        return self.ldap.read(dn, ["1.1"]) is not None

    def stale_staged(self, seconds: float) -> list[tuple[str, str, str]]:
        """Entries staged more than `seconds` ago: (DN, createTimestamp, the
        condition that it is still that entry, not one staged again since)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
        found = []
        for entry in self._children(self.tree.staging, ["createTimestamp"]):
            stamp = first(entry, "createTimestamp") or ""
            created = parse_time(stamp)
            if created is not None and created < cutoff:
                found.append((entry["dn"], stamp, names.equals("createTimestamp", stamp)))
        return found

    def expired_locks(self) -> list[tuple[str, datetime, str]]:
        """Locks whose lease ended: (DN, when, the condition that it is still
        that lease). The lease is "<expiry> <tag>" (locks.py); a lock a tool
        made without one lasts LEASE_SECONDS from its creation."""
        now, found = datetime.now(UTC), []
        for entry in self._children(self.tree.locks, ["description", "createTimestamp"]):
            lease, stamp = first(entry, "description"), first(entry, "createTimestamp") or ""
            expires, created = parse_time(lease.split(" ")[0] if lease else None), \
                parse_time(stamp)
            if expires is None and created is not None:
                expires = created + timedelta(seconds=LEASE_SECONDS)
            if expires is not None and expires < now:
                same = names.equals("description", lease) if lease else "(!(description=*))"
                found.append((entry["dn"], expires,
                              names.all_of(names.equals("createTimestamp", stamp), same)))
        return found

    def _children(self, parent: str, attributes: Sequence[str]) -> list[Entry]:
        return [e for page in self._pages(parent, "(objectClass=*)", attributes, LEVEL)
                for e in page]

    def _pages(self, base: str, filter_string: str, attributes: Sequence[str],
               scope: str = SUBTREE) -> Iterator[list[Entry]]:
        """One search, page by page, on one connection (a cookie is only
        good on the connection that got it). Callers only read between pages."""
        cookie: bytes | None = None
        with self.ldap.pool.connection() as conn:
            while True:
                result, response = execute(conn, "search", base, filter_string,
                                           search_scope=scope, attributes=list(attributes),
                                           paged_size=PAGE_SIZE, paged_cookie=cookie)
                if result["result"] == NO_SUCH_OBJECT:
                    return  # the branch itself is missing: nothing under it
                raise_for_result(result, "entry")
                yield [e for e in response if e.get("type") == "searchResEntry"]
                control = (result.get("controls") or {}).get(PAGED_RESULTS) or {}
                cookie = (control.get("value") or {}).get("cookie")
                if not cookie:
                    return

    # --- repairing ---------------------------------------------------------

    def complete(self, person: Entry, gid_number: int,
                 allocate: Callable[[], int]) -> dict[str, str] | None:
        """Add the object classes and posixAccount's values the person lacks,
        with a new uidNumber from the counter; None if the entry changed since
        it was read. The Assertion that the classes and the uidNumber are still
        absent makes two doctors (or a doctor and the API) unable to give one
        entry two numbers; a number lost so is never reused, like any other."""
        dn = person["dn"]
        classes = {c.lower() for c in values(person, "objectClass")}
        missing = [c for c in COMPLETING_CLASSES if c.lower() not in classes]
        added: dict[str, str] = {}
        if "posixaccount" not in classes:
            for attribute, value in (("gidNumber", str(gid_number)),
                                     ("homeDirectory", f"/home/{username_of(person)}")):
                if not values(person, attribute):
                    added[attribute] = value
        numbered = bool(values(person, "uidNumber"))
        if not missing and numbered:
            return None  # complete already (made so since it was read)
        still = only_for(PERSON_CLASS, names.all_of(
            *(names.negate(names.equals("objectClass", c)) for c in missing),
            *([] if numbered else ["(!(uidNumber=*))"])))
        for _ in range(NUMBER_ATTEMPTS):
            if not numbered:
                added["uidNumber"] = str(allocate())
            changes = {a: [(MODIFY_ADD, [v])] for a, v in added.items()}
            if missing:
                changes["objectClass"] = [(MODIFY_ADD, missing)]
            try:
                result = self.ldap.modify(dn, changes, controls=[assertion(still)],
                                          tolerate=(ASSERTION_FAILED, NO_SUCH_OBJECT),
                                          subject="user")
            except UniqueViolation:
                if numbered:
                    raise
                continue  # a tool gave this number to someone meanwhile: another
            if result["result"] != 0:
                return None
            return {**({"objectClass": ", ".join(missing)} if missing else {}), **added}
        raise Busy("no free uidNumber could be held; retry")

    def move_counter(self, highest: int) -> bool:
        """Raise the id counter to `highest`, never lower it, by increments
        (a replace is refused by slapo-unique: a user holds that number),
        each conditional on the value read: an allocation in between makes
        us read again rather than overshoot. False if it was there already."""
        moved = False
        for _ in range(RETRIES):
            current = self.counter()
            if current >= highest:
                return moved
            result = self.ldap.modify(
                self.tree.uid_counter,
                {"uidNumber": [(MODIFY_INCREMENT, [self._free_step(highest - current)])]},
                controls=[assertion(only_for("userdirCounter",
                                             names.equals("uidNumber", str(current))))],
                tolerate=(ASSERTION_FAILED,), subject="uidNumber counter")
            moved = moved or result["result"] == 0
        raise Busy("the uidNumber counter keeps moving; retry")

    def _free_step(self, wanted: int) -> int:
        """The largest of wanted, wanted/2, wanted/4... that no person holds as
        his uidNumber: slapo-unique checks an increment's amount as if it were
        the new value (2.5.13, seen here) and refuses one a person holds."""
        step = wanted
        while step > 0:
            held, _ = self.ldap.search(
                self.tree.base, names.all_of(PERSON, names.equals("uidNumber", str(step))),
                ["1.1"], size_limit=1)
            if not held:
                return step
            step //= 2
        raise Busy("slapo-unique refuses every increment of the uidNumber counter: "
                   "a person holds uidNumber 1")

    def drop_member(self, group_dn: str, member: str) -> bool:
        """Remove a member value that names no entry, without reading the
        group (a type group holds every user). Should it be the last member,
        slapd refuses (groupOfNames MUST have one) and the placeholder takes
        its place in the same modify."""
        if self.exists(member):
            return False  # made since it was examined: a member now
        for changes in ([(MODIFY_DELETE, [member])],
                        [(MODIFY_DELETE, [member]), (MODIFY_ADD, [self.tree.placeholder])]):
            result = self.ldap.modify(
                group_dn, {"member": changes}, subject="group",
                tolerate=(NO_SUCH_ATTRIBUTE, NO_SUCH_OBJECT, OBJECT_CLASS_VIOLATION))
            if result["result"] != OBJECT_CLASS_VIOLATION:
                return bool(result["result"] == 0)
        return False

    def delete_if(self, dn: str, condition: str) -> bool:
        """Delete the entry if it still matches `condition` (already escaped)."""
        return self.ldap.delete(dn, controls=[assertion(condition)],
                                tolerate=(ASSERTION_FAILED, NO_SUCH_OBJECT)) == 0

    def disable_for_good(self, dn: str) -> bool:
        """Give a user disabled the old way the pwdEndTime no password change
        removes, unless he was enabled (or so disabled) since he was read."""
        result = self.ldap.modify(dn, {"pwdEndTime": [(MODIFY_REPLACE, [DISABLED])]},
                                  controls=[assertion(only_for(PERSON_CLASS, OLD_DISABLE))],
                                  tolerate=(ASSERTION_FAILED, NO_SUCH_OBJECT), subject="user")
        return bool(result["result"] == 0)

    def drop_old_uids(self, dn: str) -> list[str]:
        """Remove the uid values other than the RDN's, as they are now (a
        rename in between moves the entry: nothing is removed then)."""
        entry = self.ldap.read(dn, ["uid"], subject="user")
        old = old_uids(dn, values(entry, "uid")) if entry else []
        if not old:
            return []
        result = self.ldap.modify(dn, {"uid": [(MODIFY_DELETE, old)]},
                                  tolerate=(NO_SUCH_ATTRIBUTE, NO_SUCH_OBJECT), subject="user")
        return old if result["result"] == 0 else []

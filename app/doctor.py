"""`userdir doctor [--fix]`: what other LDAP tools left in the directory, found and repaired."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from app.config import Config
from app.directory import Directory, Endpoint
from app.directory.doctor import Leftovers, comparable, missing_parts, old_uids
from app.directory.schema import DISABLED, values
from app.domain import AccountTypes, AlreadyExists, DomainError
from app.service.base import Pools
from app.service.users import STALE_STAGING_SECONDS, Users

log = logging.getLogger("userdir.doctor")

HELP = """\
List what other tools (ldapadd, ldapmodify, ldapmodrdn, LAM...) left in the
directory that userdir never writes, one line each; with --fix, repair it.
Users in no account-type group join users.default_account_type. Users in
several keep the HIGHEST (the last of users.account_types they are in: the
type the API already shows and memberOf-based integrations already grant, so
nobody's rights change) and leave the others. Users lacking posixAccount,
uidNumber or userdirPerson get them (a new uidNumber from the counter). The id
counter moves up to the highest uidNumber in use. Group members naming no
entry go (a group left empty keeps cn=nobody). Stale staging entries and
expired locks are deleted. Users disabled by pwdAccountLockedTime alone get
pwdEndTime, which no password change removes. uid values other than the
RDN's (ldapmodrdn without -r) go. No fix removes the last admin. Safe while
`userdir serve` runs. Exit status 0 if nothing is (left) wrong, else 1."""

# kind: (one, several), in the order findings are listed and repaired.
KINDS: dict[str, tuple[str, str]] = {
    "type-group-missing": ("missing account-type group", "missing account-type groups"),
    "counter-behind": ("id counter behind", "id counters behind"),
    "incomplete": ("user without posixAccount/uidNumber/userdirPerson",
                   "users without posixAccount/uidNumber/userdirPerson"),
    "no-type": ("user without a type", "users without a type"),
    "several-types": ("user with several types", "users with several types"),
    "old-disable": ("user disabled the old way", "users disabled the old way"),
    "old-uid": ("user with an old uid", "users with old uids"),
    "dangling-member": ("dangling group member", "dangling group members"),
    "stale-staging": ("stale staging entry", "stale staging entries"),
    "expired-lock": ("expired lock", "expired locks"),
}


class Changed(DomainError):
    """The entry changed since it was examined (its Assertion failed): left alone."""


CHANGED = "changed since examined; left alone (run the doctor again)"


@dataclass
class Finding:
    kind: str
    dn: str
    problem: str
    remedy: str  # what --fix does
    repair: Callable[[], str] = field(repr=False, compare=False)
    outcome: str | None = None  # what --fix did, or why it did not
    fixed: bool | None = None

    def line(self) -> str:
        done = {None: f"--fix: {self.remedy}", True: f"fixed: {self.outcome}",
                False: f"NOT fixed: {self.outcome}"}[self.fixed]
        return f"{KINDS[self.kind][0]}: {self.dn}: {self.problem}; {done}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dn": self.dn, "problem": self.problem,
                "fix": self.remedy, "fixed": self.fixed, "outcome": self.outcome}


class Doctor(Users):
    """The checks, each a few filtered searches, and their repairs. Type
    changes go through the service's own (_move_to_type, under the user's
    lock): one type at every moment, never the last admin removed."""

    def __init__(self, directory: Directory, types: AccountTypes, gid_number: int) -> None:
        super().__init__(directory, types, gid_number=gid_number,
                         pools=Pools.sized(1, 1, decoders=1))
        self.leftovers = Leftovers(directory.ldap, directory.tree)

    def examine(self) -> list[Finding]:
        """Everything wrong, in the order it is best repaired in (the
        counter before new numbers, the type groups before joining them)."""
        return [*self._type_groups(), *self._counter(), *self._incomplete(), *self._types(),
                *self._old_disables(), *self._names_and_members(), *self._staging(),
                *self._locks()]

    def repair(self, finding: Finding) -> None:
        try:
            finding.outcome, finding.fixed = finding.repair(), True
        except DomainError as e:
            finding.outcome, finding.fixed = e.message or type(e).__name__, False

    def _type_groups(self) -> Iterator[Finding]:
        for name, dn in self.group_types.dn_of.items():
            if not self.leftovers.exists(dn):
                yield Finding("type-group-missing", dn, f"account type {name!r} has no group",
                              "create it", functools.partial(self._create_type_group, name))

    def _counter(self) -> Iterator[Finding]:
        current = self.leftovers.counter()
        highest = self.leftovers.highest_uid_number_above(current)
        if highest is not None:
            yield Finding("counter-behind", self.directory.tree.uid_counter,
                          f"at {current} while uidNumber {highest} is in use",
                          f"move it to {highest}", functools.partial(self._move_counter, highest))

    def _incomplete(self) -> Iterator[Finding]:
        for person in self.leftovers.incomplete():
            yield Finding("incomplete", person["dn"], "lacks " + ", ".join(missing_parts(person)),
                          f"add them (uidNumber from the counter, gidNumber {self.gid_number}, "
                          "homeDirectory /home/<username>)",
                          functools.partial(self._complete, person))

    def _types(self) -> Iterator[Finding]:
        type_dns = list(self.group_types.dn_of.values())
        for person in self.leftovers.without_type(type_dns):
            yield Finding("no-type", person["dn"], "in no account-type group",
                          f"join {self.types.default!r} (users.default_account_type)",
                          functools.partial(self._settle_type, person["dn"]))
        for person in self.leftovers.with_several_types(type_dns):
            held = self.group_types.memberships(values(person, "memberOf"))
            yield Finding("several-types", person["dn"], f"in {', '.join(held)}",
                          f"keep {self.types.pick(held)!r} (the highest), leave the others",
                          functools.partial(self._settle_type, person["dn"]))

    def _old_disables(self) -> Iterator[Finding]:
        for person in self.leftovers.disabled_the_old_way():
            yield Finding("old-disable", person["dn"],
                          "disabled by pwdAccountLockedTime alone (a password change enables)",
                          f"add pwdEndTime {DISABLED}",
                          functools.partial(self._disable_for_good, person["dn"]))

    def _names_and_members(self) -> Iterator[Finding]:
        known: set[str] = set()
        for dn, uids in self.leftovers.names():
            known.add(comparable(dn))
            old = old_uids(dn, uids)
            if old:
                yield Finding("old-uid", dn, f"uid also holds {', '.join(old)}",
                              "remove those values", functools.partial(self._drop_old_uids, dn))
        placeholder = comparable(self.directory.tree.placeholder)
        for group in self.directory.groups.all():
            for member in values(group, "member"):
                key = comparable(member)
                if key == placeholder or key in known:
                    continue
                if self.leftovers.exists(member):  # a group, a service, a staged user
                    known.add(key)
                    continue
                yield Finding("dangling-member", group["dn"], f"member {member} names no entry",
                              "remove it (a group left empty keeps the placeholder)",
                              functools.partial(self._drop_member, group["dn"], member))

    def _staging(self) -> Iterator[Finding]:
        for dn, stamp, same in self.leftovers.stale_staged(STALE_STAGING_SECONDS):
            yield Finding("stale-staging", dn, f"made {stamp} by a create that never finished",
                          "delete it", functools.partial(self._delete_if, dn, same))

    def _locks(self) -> Iterator[Finding]:
        for dn, expires, same in self.leftovers.expired_locks():
            yield Finding("expired-lock", dn, f"lease ended {expires:%Y-%m-%d %H:%M:%S}Z",
                          "delete it", functools.partial(self._delete_if, dn, same))

    def _create_type_group(self, name: str) -> str:
        try:
            self.directory.groups.create(name, f"userdir account type {name}")
        except AlreadyExists as e:
            raise Changed(CHANGED) from e
        return "created"

    def _move_counter(self, highest: int) -> str:
        return _applied(self.leftovers.move_counter(highest), f"moved to {highest}")

    def _complete(self, person: dict[str, Any]) -> str:
        added = self.leftovers.complete(person, self.gid_number,
                                        self.directory.people.allocate_uid_number) or {}
        return _applied(added, "added " + ", ".join(f"{a} {v}" for a, v in added.items()))

    def _settle_type(self, dn: str) -> str:
        """As the API changes a type: under the user's lock, with his groups
        read under it, joining before leaving (_move_to_type refuses to
        remove the last admin: such a user stays as he is, reported)."""
        person = self._by_dn(dn)
        with self.directory.locks.hold(person.uuid):
            person = self._by_dn(dn)
            held = self.group_types.memberships(person.member_of)
            if len(held) == 1:
                raise Changed(CHANGED)
            keep = self.types.pick(held)
            self._move_to_type(person, keep)
        left = [t for t in held if t != keep]
        return f"kept {keep!r}, left {', '.join(left)}" if held else f"joined {keep!r}"

    def _disable_for_good(self, dn: str) -> str:
        return _applied(self.leftovers.disable_for_good(dn), f"pwdEndTime {DISABLED} added")

    def _drop_old_uids(self, dn: str) -> str:
        dropped = self.leftovers.drop_old_uids(dn)
        return _applied(dropped, f"removed uid {', '.join(dropped)}")

    def _drop_member(self, group_dn: str, member: str) -> str:
        return _applied(self.leftovers.drop_member(group_dn, member), f"removed {member}")

    def _delete_if(self, dn: str, condition: str) -> str:
        return _applied(self.leftovers.delete_if(dn, condition), "deleted")


def _applied(done: object, outcome: str) -> str:
    """`outcome`, if the repair was applied; else the entry had changed (Changed)."""
    if not done:
        raise Changed(CHANGED)
    return outcome


def summary(findings: list[Finding], *, fixing: bool = False, remaining: int = 0) -> str:
    """The one line `serve` logs at start-up and `doctor` ends with."""
    if not findings:
        return "doctor: directory consistent"
    counts = Counter(f.kind for f in findings)
    kinds = ", ".join(f"{counts[k]} {KINDS[k][counts[k] != 1]}" for k in KINDS if counts[k])
    head = f"doctor: {len(findings)} finding{'s' * (len(findings) != 1)} ({kinds})"
    if not fixing:
        return f"{head}; run `userdir doctor --fix`"
    fixed = sum(1 for f in findings if f.fixed)
    left = f"{remaining} still wrong; run `userdir doctor`" if remaining else \
        "directory consistent now"
    return f"{head}; {fixed} fixed; {left}"


@contextlib.contextmanager
def opened(config: Config) -> Iterator[Doctor]:
    """A doctor on its own connections, bound as the service account (never
    the root DN: ppolicy, ACLs and every overlay apply to its repairs)."""
    endpoint = Endpoint(url=config.ldap_url, bind_dn=config.bind_dn,
                        password=config.bind_password,
                        connect_timeout=config.ldap.connect_timeout,
                        operation_timeout=config.ldap.operation_timeout)
    types = AccountTypes(config.users.account_types, config.users.default_account_type)
    doctor = Doctor(Directory(endpoint, config.ldap.base_dn, pool_size=2), types,
                    config.users.gid_number)
    try:
        yield doctor
    finally:
        doctor.close()


def run(config: Config, *, fix: bool = False, as_json: bool = False,
        out: TextIO | None = None) -> int:
    """`userdir doctor`: one line per finding, then the summary; 1 if anything is left wrong."""
    out = out or sys.stdout
    with opened(config) as doctor:
        findings = doctor.examine()
        for finding in findings:
            if fix:
                doctor.repair(finding)
            print(json.dumps(finding.as_dict()) if as_json else finding.line(), file=out,
                  flush=True)
        # After repairs, what is still wrong is what a fresh look finds.
        remaining = len(doctor.examine()) if fix and findings else len(findings)
    text = summary(findings, fixing=fix, remaining=remaining)
    print(json.dumps({"summary": text, "findings": len(findings), "remaining": remaining,
                      "fixed": sum(1 for f in findings if f.fixed)}) if as_json else text,
          file=out)
    return 1 if remaining else 0


def log_summary(config: Config) -> str | None:
    """The start-up check: examine, fix nothing, log one line (and return it)."""
    try:
        with opened(config) as doctor:
            findings = doctor.examine()
    except DomainError as e:
        log.warning("doctor: the start-up check did not finish: %s", e)
        return None
    text = summary(findings)
    log.log(logging.WARNING if findings else logging.INFO, "%s", text)
    return text


def check_in_background(config: Config) -> threading.Thread:
    """Run log_summary beside the server: ldap3 decodes ~20k entries a second,
    so the one search of all people would hold up a start with 100k users by
    seconds; on its own thread it holds up nothing."""
    thread = threading.Thread(target=log_summary, args=(config,), name="doctor", daemon=True)
    thread.start()
    return thread

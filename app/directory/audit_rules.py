"""Which access-log entries are audit records, and of which type: each rule a filter and a test.

slapd filters, sorts and counts the records (a page costs a window, never
the whole log), and the page's records are then classified in Python: both
from the same rules, so a `type=` filter and a record's type never disagree.
Rules read only what the service may read: never a secret value (the ACLs
of ldif/config.ldif hide them), so a password change is known by the
pwdChangedTime ppolicy stamps with it. reqMod values are "attr:<op> value"
(op `+` add, `-` delete, `=` replace, `#` increment), reqOld "attr: value".
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.directory import names
from app.directory.audit import parent_of


@dataclass
class LogEntry:
    """One access-log entry, as the service reads it."""

    start: str
    type: str
    dn: str
    authz: str
    result: int
    mods: list[str] = field(default_factory=list)
    old: list[str] = field(default_factory=list)
    new_rdn: str = ""
    new_superior: str = ""
    uuid: str = ""


class Rule(Protocol):
    def ldap(self) -> str: ...

    def test(self, entry: LogEntry) -> bool: ...


@dataclass(frozen=True)
class IsType:
    value: str

    def ldap(self) -> str:
        return names.equals("reqType", self.value)

    def test(self, entry: LogEntry) -> bool:
        return entry.type == self.value


@dataclass(frozen=True)
class DnIs:
    """An attribute of DN syntax (reqDN, reqAuthzID) names this entry."""

    attribute: str
    dn: str

    def ldap(self) -> str:
        return names.equals(self.attribute, self.dn)

    def test(self, entry: LogEntry) -> bool:
        value = entry.dn if self.attribute == "reqDN" else entry.authz
        return bool(value) and _same_dn(value, self.dn)


@dataclass(frozen=True)
class UuidIs:
    uuid: str

    def ldap(self) -> str:
        return names.equals("reqEntryUUID", self.uuid)

    def test(self, entry: LogEntry) -> bool:
        return entry.uuid.lower() == self.uuid.lower()


@dataclass(frozen=True)
class Below:
    """The target is a child of `parent` (OpenLDAP's dnOneLevelMatch)."""

    parent: str

    def ldap(self) -> str:
        return f"(reqDN:dnOneLevelMatch:={names.filter_value(self.parent)})"

    def test(self, entry: LogEntry) -> bool:
        return parent_of(entry.dn) == names.normalise_dn(self.parent)


@dataclass(frozen=True)
class Value:
    """A value of reqMod (or reqOld) that starts with `prefix`, holds each of
    `parts` after it in order and ends with `suffix`; `exact`: is `prefix`."""

    prefix: str
    parts: tuple[str, ...] = ()
    suffix: str = ""
    exact: bool = False
    attribute: str = "reqMod"

    def ldap(self) -> str:
        if self.exact:
            return names.equals(self.attribute, self.prefix)
        pieces = [self.prefix, *self.parts, self.suffix]
        return f"({self.attribute}={'*'.join(names.filter_value(p) for p in pieces)})"

    def test(self, entry: LogEntry) -> bool:
        values = entry.mods if self.attribute == "reqMod" else entry.old
        return any(self._matches(v) for v in values)

    def _matches(self, value: str) -> bool:
        if self.exact:
            return value == self.prefix
        if not value.startswith(self.prefix) or not value.endswith(self.suffix):
            return False
        at, end = len(self.prefix), len(value) - len(self.suffix)
        for part in self.parts:
            found = value.find(part, at, end)
            if found < 0:
                return False
            at = found + len(part)
        return True


def old(prefix: str, *parts: str) -> Value:
    return Value(prefix, parts, attribute="reqOld")


@dataclass(frozen=True)
class AnyOf:
    rules: tuple[Rule, ...]

    def ldap(self) -> str:
        return names.any_of(*(r.ldap() for r in self.rules))

    def test(self, entry: LogEntry) -> bool:
        return any(r.test(entry) for r in self.rules)


@dataclass(frozen=True)
class AllOf:
    rules: tuple[Rule, ...]

    def ldap(self) -> str:
        return names.all_of(*(r.ldap() for r in self.rules))

    def test(self, entry: LogEntry) -> bool:
        return all(r.test(entry) for r in self.rules)


@dataclass(frozen=True)
class Not:
    rule: Rule

    def ldap(self) -> str:
        return names.negate(self.rule.ldap())

    def test(self, entry: LogEntry) -> bool:
        return not self.rule.test(entry)


def any_of(*rules: Rule) -> AnyOf:
    return AnyOf(rules)


def all_of(*rules: Rule) -> AllOf:
    return AllOf(rules)


@functools.lru_cache(maxsize=1024)
def _same_dn(a: str, b: str) -> bool:
    return names.normalise_dn(a) == names.normalise_dn(b)


MARKER_PREFIX = {"mod": "userdirChange:", "old": "userdirChange: ",
                 "announced": 'userdirChange: {"before":'}


class Rules:
    """The rules of one directory (its tree and its account-type groups)."""

    def __init__(self, tree: names.Tree, type_groups: Sequence[str]) -> None:
        staging = tree.staging
        created_from_staging = all_of(IsType("modrdn"), Below(staging))
        # slapd tries these in order and stops at the first that holds: the
        # commonest first (a login's), the DN tests last and only for adds
        # and deletes (dnOneLevelMatch costs ten times a substring test).
        self.noise = any_of(
            # slapd's own writes after binds: core olcLastBind, slapo-lastbind,
            # ppolicy's failure count (a lockout it causes stays visible).
            Value("pwdLastSuccess:= "), Value("authTimestamp:= "),
            all_of(Value("pwdFailureTime:+ "), Not(Value("pwdAccountLockedTime:= "))),
            Value("userdirTokenLastUsed:= "),
            Value(MARKER_PREFIX["announced"].replace(": ", ":= ")),  # a delete's or rename's marker
            Value("member:+ ", suffix="," + staging),  # a user being created joins his type
            DnIs("reqDN", tree.uid_counter),
            # lock leases; users being assembled (their publish is the record)
            all_of(any_of(IsType("add"), IsType("delete")),
                   any_of(Below(tree.locks), Below(staging))),
        )
        self.types: list[tuple[str, Rule]] = [
            ("created", any_of(IsType("add"), created_from_staging)),
            ("deleted", IsType("delete")),
            ("renamed", IsType("modrdn")),
            ("password", Value("pwdChangedTime:")),
            ("disabled", any_of(Value("pwdEndTime:= "), Value("pwdEndTime:+ "),
                                Value("pwdAccountLockedTime:= 000001010000Z", exact=True),
                                Value("pwdAccountLockedTime:+ 000001010000Z", exact=True))),
            ("enabled", any_of(Value("pwdEndTime:=", exact=True), Value("pwdEndTime:-"),
                               Value("pwdAccountLockedTime:=", exact=True),
                               Value("pwdAccountLockedTime:-"))),
            ("locked", Value("pwdAccountLockedTime:")),
            ("type", all_of(Value("member:"), any_of(*(DnIs("reqDN", g) for g in type_groups)))),
            ("membership", Value("member:")),
        ]
        self._created_from_staging = created_from_staging

    def visible(self) -> Rule:
        return Not(self.noise)

    def of_type(self, wanted: str) -> Rule:
        """Records of this type: its rule, and none of the rules before it."""
        earlier: list[Rule] = []
        for name, rule in self.types:
            if name == wanted:
                return all_of(rule, Not(AnyOf(tuple(earlier)))) if earlier else rule
            earlier.append(rule)
        return Not(AnyOf(tuple(earlier)))  # "changed": whatever no other rule takes

    def classify(self, entry: LogEntry) -> str:
        return next((name for name, rule in self.types if rule.test(entry)), "changed")

    def marked(self, *parts: str) -> Rule:
        """Records whose trusted marker holds `parts` (JSON pieces, in order):
        an add's or modify's own; a publish's (the staged add's, moved with
        it); a delete's or rename's announced one."""
        return any_of(
            all_of(any_of(IsType("add"), IsType("modify")),
                   Value(MARKER_PREFIX["mod"], parts)),
            all_of(self._created_from_staging, old(MARKER_PREFIX["old"], *parts)),
            all_of(any_of(IsType("delete"), IsType("modrdn")),
                   old(MARKER_PREFIX["announced"], *parts)),
        )

    def marker_of(self, entry: LogEntry) -> str | None:
        """The trusted marker's JSON, if the entry has one (as `marked` says)."""
        if entry.type in ("add", "modify"):
            prefix, values = MARKER_PREFIX["mod"], entry.mods
        elif self._created_from_staging.test(entry):
            prefix, values = MARKER_PREFIX["old"], entry.old
        elif entry.type in ("delete", "modrdn"):
            prefix, values = MARKER_PREFIX["announced"], entry.old
        else:
            return None
        for value in values:
            if value.startswith(prefix):
                return value.split(" ", 1)[1] if " " in value else None
        return None

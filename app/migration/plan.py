"""Before any write: which rows are new, already there, clashing, or bad, and their ids."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from msgspec import UNSET

from app.directory.names import normalise_dn
from app.directory.schema import PROFILE_ATTRIBUTES, profile_attributes
from app.domain import AccountTypes, User
from app.migration.mapping import Mapper, RowError
from app.migration.records import Candidate, Outcome, Row

DISABLED = "19700101000000Z"  # app/directory/schema.py's DISABLED: how a user is disabled


@dataclass
class Person:
    """Someone already in the directory, as far as an import needs to know."""

    dn: str
    username: str
    uid_number: int | None
    types: list[str]


@dataclass
class Known:
    """Everyone already there, indexed by (lower-case) name, address and id."""

    people: dict[str, Person] = field(default_factory=dict)
    mails: dict[str, str] = field(default_factory=dict)
    ids: dict[int, str] = field(default_factory=dict)

    def add(self, dn: str, uid: str, mails: Iterable[str], uid_number: str | None,
            type_of_group: dict[str, str], member_of: Iterable[str]) -> None:
        key = uid.lower()
        number = int(uid_number) if uid_number and uid_number.isdigit() else None
        types = [t for g in member_of if (t := type_of_group.get(normalise_dn(g)))]
        self.people[key] = Person(dn, uid, number, types)
        for mail in mails:
            self.mails[mail.lower()] = key
        if number is not None:
            self.ids[number] = key


@dataclass
class Plan:
    new: list[Candidate] = field(default_factory=list)
    existing: list[tuple[Candidate, Person]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    rows: int = 0

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "error")

    def fail(self, line: int, username: str, reason: str) -> None:
        self.outcomes.append(Outcome(line, username, "error", reason))


def make_plan(rows: Iterable[Row], mapper: Mapper, known: Known) -> Plan:
    """Check every row against the directory and the rows before it. A row
    naming someone already there is his (a re-run, or a resumed import)."""
    plan = Plan()
    names: dict[str, int] = {}
    mails: dict[str, int] = {}
    ids: dict[int, int] = {}
    for row in rows:
        plan.rows += 1
        try:
            found = mapper.candidate(row)
        except RowError as e:
            name = row.fields.get("username")
            plan.fail(row.line, name if isinstance(name, str) else "", str(e))
            continue
        key = found.username.lower()
        mail = found.profile.email.lower() if isinstance(found.profile.email, str) else None
        earlier = names.get(key) or (mails.get(mail) if mail else None) or \
            (ids.get(found.uid_number) if found.uid_number is not None else None)
        if earlier:
            plan.fail(found.line, found.username,
                      f"same username, email or id as line {earlier} of this file")
            continue
        names[key] = found.line
        if mail:
            mails[mail] = found.line
        if found.uid_number is not None:
            ids[found.uid_number] = found.line
        for warning in found.warnings:
            plan.outcomes.append(Outcome(found.line, found.username, "warning", warning))
        if key in known.people:
            plan.existing.append((found, known.people[key]))
            continue
        holder = known.mails.get(mail) if mail else None
        if holder:
            plan.fail(found.line, found.username,
                      f"email already taken by {known.people[holder].username}")
            continue
        if found.uid_number is not None and found.uid_number in known.ids:
            other = known.people[known.ids[found.uid_number]].username
            plan.fail(found.line, found.username,
                      f"id {found.uid_number} is held by {other}: not renumbered (map the "
                      "id column away, --map id=, to give these users new ids)")
            continue
        plan.new.append(found)
    return plan


def assign_ids(new: list[Candidate], numbers: Iterable[int], held: set[int]) -> None:
    """New ids, in row order, for the users that bring none (skipping held ones)."""
    free = (n for n in numbers if n not in held)
    for candidate in new:
        if candidate.uid_number is None:
            candidate.uid_number = next(free)


def attributes(candidate: Candidate, gid_number: int) -> dict[str, list[str | bytes]]:
    """The entry the service would make, password as imported."""
    name = candidate.username
    found: dict[str, list[str | bytes]] = {
        k: list(v) for k, v in profile_attributes(candidate.profile, name).items()}
    found |= {"uid": [name], "uidNumber": [str(candidate.uid_number)],
              "gidNumber": [str(gid_number)], "homeDirectory": [f"/home/{name}"]}
    if candidate.password is not None:
        where = "userPassword" if candidate.password.kind == "ldap" else "userdirForeignHash"
        found[where] = [candidate.password.value]
    elif candidate.cleartext is not None:
        found["userPassword"] = [candidate.cleartext]  # hashed by slapd (ppolicy)
    if not candidate.active:
        found["pwdEndTime"] = [DISABLED]
    if candidate.photo:
        found["jpegPhoto"] = [candidate.photo]
    return found


def differences(candidate: Candidate, user: User) -> list[str]:
    """Profile fields the row gives whose value differs from the user's."""
    return [name for name in PROFILE_ATTRIBUTES
            if (value := getattr(candidate.profile, name)) is not UNSET and value is not None
            and value != getattr(user, name)]


def types_of(types: AccountTypes, group_dns: dict[str, str]) -> dict[str, str]:
    return {normalise_dn(dn): name for name, dn in group_dns.items() if name in types}

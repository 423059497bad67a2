"""Accounts and ordinary groups as SCIM sees them: which attributes, read and written how."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ldap3 import LEVEL, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE

from app.accounts import AccountState, Address, GroupRef, MemberRef, Team, VersionMismatch
from app.directory import Directory, PersonEntry
from app.directory import names as n
from app.directory.controls import SortKey, assertion
from app.directory.errors import ASSERTION_FAILED
from app.directory.operations import Changes, Entry
from app.directory.schema import (
    USER_ATTRIBUTES,
    USERDIR_ATTRIBUTES,
    USERDIR_CLASS,
    first,
    parse_time,
    values,
)
from app.domain import User

# State fields with no home in the domain's Profile -> attribute (inetOrgPerson
# and organizationalPerson where one exists; userdirPerson for the others).
EXTRA_ATTRIBUTES = {
    "title": "title", "mobile": "mobile", "home": "homePhone",
    "fax": "facsimileTelephoneNumber", "street": "street", "region": "st",
    "postal_code": "postalCode", "employee_number": "employeeNumber",
    "department": "departmentNumber", "manager": "manager",
    "external_id": "userdirExternalId", "locale": "userdirLocale",
}
USERDIR_EXTRAS = {"userdirExternalId", "userdirLocale"}
ACCOUNT_ATTRIBUTES = [*USER_ATTRIBUTES, *EXTRA_ATTRIBUTES.values()]
TEAM_ATTRIBUTES = ["cn", "entryUUID", "entryCSN", "createTimestamp", "modifyTimestamp",
                   "member", "objectClass", "userdirExternalId"]
PERSON_FILTER = "(objectClass=inetOrgPerson)"
TEAM_FILTER = "(objectClass=groupOfNames)"
CHUNK = 200  # ids per search: a filter of 200 alternatives stays small
FEW = 202  # at most this many matches are paged without a sort context


def extras_of(entry: Mapping[str, Any]) -> dict[str, str | None]:
    """The extra fields an entry holds, as stored (manager as a DN)."""
    return {field: first(entry, attribute) for field, attribute in EXTRA_ATTRIBUTES.items()}


def account_state(entry: Mapping[str, Any], user: User, manager: str | None) -> AccountState:
    """What SCIM shows of an entry; `user` is its domain reading, `manager` the
    manager's id. displayName is the attribute itself, not cn standing in."""
    extra = extras_of(entry)
    phones = {kind: number for kind, number in (
        ("work", user.phone), ("mobile", extra["mobile"]), ("home", extra["home"]),
        ("fax", extra["fax"])) if number}
    return AccountState(
        username=user.username, active=user.active, account_type=user.account_type,
        external_id=extra["external_id"], email=user.email, first_name=user.first_name,
        last_name=user.last_name, display_name=first(entry, "displayName"),
        title=extra["title"], phones=phones,
        address=Address(formatted=user.address, street=extra["street"],
                        locality=user.location, region=extra["region"],
                        postal_code=extra["postal_code"], country=user.country),
        language=user.language, locale=extra["locale"], timezone=user.timezone,
        employee_number=extra["employee_number"], department=extra["department"],
        manager=manager)


def extras_changes(entry: Mapping[str, Any] | None,
                   wanted: Mapping[str, str | None]) -> dict[str, list[tuple[str, list[Any]]]]:
    """Replace each extra field whose value differs from the entry's (all, for a new entry)."""
    current = extras_of(entry) if entry is not None else {}
    changes: dict[str, list[tuple[str, list[Any]]]] = {}
    for field, value in wanted.items():
        if entry is None or current.get(field) != value:
            changes[EXTRA_ATTRIBUTES[field]] = [(MODIFY_REPLACE, [value] if value else [])]
    return changes


def password_change(password: str) -> dict[str, list[tuple[str, list[Any]]]]:
    """A cleartext replace, which slapd hashes (olcPPolicyHashCleartext) and
    checks against its password policy within the modify it is part of."""
    return {"userPassword": [(MODIFY_REPLACE, [password])]}


def team_of(entry: Mapping[str, Any], members: Sequence[MemberRef]) -> Team:
    return Team(uuid=first(entry, "entryUUID") or "", name=first(entry, "cn") or "",
                external_id=first(entry, "userdirExternalId"), members=tuple(members),
                created=parse_time(first(entry, "createTimestamp")),
                updated=parse_time(first(entry, "modifyTimestamp")),
                version=first(entry, "entryCSN") or "")


class AccountStore:
    """The reads and writes SCIM needs beyond app/directory/people.py and groups.py."""

    def __init__(self, directory: Directory) -> None:
        self.ldap = directory.ldap
        self.tree = directory.tree
        self.listing = directory.listing

    # --- people -------------------------------------------------------------

    def person(self, uuid: str) -> PersonEntry | None:
        entries, _ = self.ldap.search(self.tree.people,
                                      n.all_of(PERSON_FILTER, n.equals("entryUUID", uuid)),
                                      ACCOUNT_ATTRIBUTES, size_limit=2, subject="user")
        return PersonEntry(entries[0]["dn"], entries[0]) if entries else None

    def people_window(self, filter_string: str, keys: list[SortKey], offset: int,
                      limit: int, *, few: bool = False) -> tuple[list[PersonEntry], int]:
        """A sorted window and the number of matches. With `few` (a filter in
        creation order, such as an IdP's `userName eq` before a create), a
        search of at most offset+limit+1 entries comes first: when that finds
        them all, the page is cut from it without a sort context (each costs
        slapd a sort and the API a new connection); otherwise slapd sorts."""
        filter_string = n.all_of(PERSON_FILTER, filter_string)
        if few and offset + limit < FEW and [k.attribute for k in keys] == ["uidNumber"] \
                and not keys[0].reverse:
            entries, result = self.ldap.search(self.tree.people, filter_string,
                                               ACCOUNT_ATTRIBUTES, scope=LEVEL,
                                               size_limit=offset + limit + 1, subject="user")
            if result["result"] == 0:  # all of them (4: the size limit cut them)
                entries.sort(key=lambda e: int(first(e, "uidNumber") or 0))
                return ([PersonEntry(e["dn"], e) for e in entries[offset:offset + limit]],
                        len(entries))
        entries, total = self.listing.window(self.tree.people, filter_string, keys,
                                             ACCOUNT_ATTRIBUTES, offset, limit)
        return [PersonEntry(e["dn"], e) for e in entries], total

    def ids_of_people(self, dns: Iterable[str]) -> dict[str, MemberRef]:
        """People DNs (normalised) -> (id, username), in one search by uid."""
        wanted = {n.normalise_dn(dn): dn for dn in dns if self.tree.is_person(dn)}
        if not wanted:
            return {}
        uids = sorted({n.first_rdn_value(dn) for dn in wanted.values()})
        entries, _ = self.ldap.search(
            self.tree.people, n.all_of(PERSON_FILTER, n.any_of(*(n.equals("uid", u)
                                                                 for u in uids))),
            ["entryUUID", "uid"], scope=LEVEL, subject="user")
        found = {n.normalise_dn(e["dn"]): MemberRef(first(e, "entryUUID") or "",
                                                     n.first_rdn_value(e["dn"]))
                 for e in entries}
        return {dn: ref for dn, ref in found.items() if dn in wanted}

    def dn_by_id(self, base: str, uuid: str, object_filter: str) -> str | None:
        entries, _ = self.ldap.search(base, n.all_of(object_filter, n.equals("entryUUID", uuid)),
                                      ["1.1"], scope=LEVEL, size_limit=2)
        return str(entries[0]["dn"]) if entries else None

    def people_dns(self, uuids: Sequence[str]) -> dict[str, str]:
        """The DNs of the people with these ids (lower-cased id -> DN), a few searches."""
        found: dict[str, str] = {}
        for start in range(0, len(uuids), CHUNK):
            part = uuids[start:start + CHUNK]
            entries, _ = self.ldap.search(
                self.tree.people, n.all_of(PERSON_FILTER, n.any_of(
                    *(n.equals("entryUUID", u) for u in part))),
                ["entryUUID"], scope=LEVEL, subject="user")
            found.update({(first(e, "entryUUID") or "").lower(): e["dn"] for e in entries})
        return found

    def members_by_group(self, group_dns: Sequence[str]) -> dict[str, list[MemberRef]]:
        """The people in each of these groups (normalised DN -> members), one search."""
        if not group_dns:
            return {}
        wanted = {n.normalise_dn(dn) for dn in group_dns}
        entries, _ = self.ldap.search(
            self.tree.people, n.all_of(PERSON_FILTER, n.any_of(*(n.equals("memberOf", dn)
                                                                 for dn in group_dns))),
            ["entryUUID", "memberOf"], scope=LEVEL, subject="group")
        found: dict[str, list[MemberRef]] = {dn: [] for dn in wanted}
        for entry in sorted(entries, key=lambda e: n.first_rdn_value(e["dn"]).lower()):
            ref = MemberRef(first(entry, "entryUUID") or "", n.first_rdn_value(entry["dn"]))
            for group in values(entry, "memberOf"):
                if n.normalise_dn(group) in found:
                    found[n.normalise_dn(group)].append(ref)
        return found

    def modify_person(self, person: PersonEntry, changes: Changes, version: str) -> None:
        """One atomic modify, only if the entry is still at `version` (RFC 4528
        assertion on entryCSN: the check and the write are one operation).
        Attributes of userdirPerson first add that class to an entry an LDAP
        tool made without it."""
        if not changes:
            return
        if (USERDIR_ATTRIBUTES | USERDIR_EXTRAS) & set(changes) and \
                USERDIR_CLASS not in person.object_classes:
            changes = {"objectClass": [(MODIFY_ADD, ["userdirPerson"])], **changes}
        # slapo-unique's own search (on uid or mail) carries the operation's
        # controls too: the assertion holds for any entry but this one.
        unchanged = n.any_of(n.equals("entryCSN", version),
                             n.negate(n.equals("entryUUID", person.uuid)))
        controls = [assertion(unchanged)]
        result = self.ldap.modify(person.dn, changes, controls=controls,
                                  tolerate=(ASSERTION_FAILED,), subject="user")
        if result["result"] == ASSERTION_FAILED:
            raise VersionMismatch("the resource changed since that version")

    # --- ordinary groups ------------------------------------------------------

    def team(self, uuid: str) -> Entry | None:
        entries, _ = self.ldap.search(self.tree.groups,
                                      n.all_of(TEAM_FILTER, n.equals("entryUUID", uuid)),
                                      TEAM_ATTRIBUTES, scope=LEVEL, size_limit=2,
                                      subject="group")
        return entries[0] if entries else None

    def team_at(self, dn: str) -> Entry | None:
        return self.ldap.read(dn, TEAM_ATTRIBUTES, subject="group")

    def team_window(self, filter_string: str, keys: list[SortKey], offset: int,
                    limit: int) -> tuple[list[Entry], int]:
        return self.listing.window(self.tree.groups, n.all_of(TEAM_FILTER, filter_string),
                                   keys, TEAM_ATTRIBUTES, offset, limit)

    def teams_named(self, dns: Iterable[str]) -> dict[str, GroupRef]:
        """Group DNs under ou=groups (normalised) -> (id, name), one search by cn."""
        wanted = {n.normalise_dn(dn): dn for dn in dns
                  if n.normalise_dn(dn).endswith("," + n.normalise_dn(self.tree.groups))}
        if not wanted:
            return {}
        names = sorted({n.first_rdn_value(dn) for dn in wanted.values()})
        entries, _ = self.ldap.search(
            self.tree.groups, n.all_of(TEAM_FILTER, n.any_of(*(n.equals("cn", c)
                                                               for c in names))),
            ["entryUUID", "cn"], scope=LEVEL, subject="group")
        return {n.normalise_dn(e["dn"]): GroupRef(first(e, "entryUUID") or "",
                                                  first(e, "cn") or "")
                for e in entries if n.normalise_dn(e["dn"]) in wanted}

    def add_team(self, name: str, external_id: str | None, member_dns: Sequence[str]) -> str:
        """The group with its members, in one Add (none: the placeholder)."""
        dn = self.tree.group(name)
        attributes: dict[str, list[str]] = {"cn": [name],
                                            "member": list(member_dns) or [self.tree.placeholder]}
        classes = ["groupOfNames"]
        if external_id:
            attributes["userdirExternalId"] = [external_id]
            classes.append("userdirGroup")
        self.ldap.add(dn, classes, attributes, subject="group")
        return dn

    def team_changes(self, entry: Entry, external_id: str | None,
                     member_dns: Sequence[str]) -> dict[str, list[tuple[str, list[Any]]]]:
        """Members added and removed, and the externalId, as one modify. A group
        left with no real member keeps the placeholder (groupOfNames needs one)."""
        placeholder = n.normalise_dn(self.tree.placeholder)
        current = {n.normalise_dn(m): m for m in values(entry, "member")}
        wanted = {n.normalise_dn(m): m for m in member_dns}
        gone = [dn for key, dn in current.items() if key not in wanted and key != placeholder]
        new = [dn for key, dn in wanted.items() if key not in current]
        if not wanted and placeholder not in current:
            new.append(self.tree.placeholder)
        operations: list[tuple[str, list[Any]]] = []
        if new:
            operations.append((MODIFY_ADD, new))
        if gone:
            operations.append((MODIFY_DELETE, gone))
        changes: dict[str, list[tuple[str, list[Any]]]] = {"member": operations} \
            if operations else {}
        if first(entry, "userdirExternalId") != external_id:
            changes["userdirExternalId"] = [(MODIFY_REPLACE, [external_id] if external_id
                                             else [])]
            if "userdirgroup" not in {c.lower() for c in values(entry, "objectClass")}:
                changes["objectClass"] = [(MODIFY_ADD, ["userdirGroup"])]
        return changes

    def modify_team(self, dn: str, changes: Changes, version: str) -> None:
        """As `modify`, for a group: slapo-memberof repeats the operation's
        controls on its own modify of each member entry (2.5.13, see
        groups.py), so the assertion only constrains the group itself."""
        if not changes:
            return
        unchanged = n.any_of(n.equals("entryCSN", version), n.negate(TEAM_FILTER))
        result = self.ldap.modify(dn, changes, controls=[assertion(unchanged)],
                                  tolerate=(ASSERTION_FAILED,), subject="group")
        if result["result"] == ASSERTION_FAILED:
            raise VersionMismatch("the resource changed since that version")

    def rename_team(self, dn: str, name: str) -> str:
        new_dn = self.tree.group(name)
        self.ldap.rename(dn, new_dn.split(",", 1)[0], subject="group")
        self.ldap.modify(new_dn, {"cn": [(MODIFY_REPLACE, [name])]}, subject="group")
        return new_dn

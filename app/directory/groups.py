"""groupOfNames entries under ou=groups; memberOf on members is kept by slapo-memberof."""

from __future__ import annotations

from ldap3 import LEVEL, MODIFY_ADD, MODIFY_DELETE

from app.directory import names
from app.directory.controls import assertion
from app.directory.errors import ASSERTION_FAILED, ATTRIBUTE_OR_VALUE_EXISTS, NO_SUCH_ATTRIBUTE
from app.directory.names import Tree
from app.directory.operations import Entry, Ldap
from app.directory.schema import first, values
from app.domain import DomainError

GROUP_ATTRIBUTES = ["cn", "description", "member", "entryCSN"]


class GroupChanged(DomainError):
    """The group changed since it was read (the Assertion control failed)."""


class Groups:
    def __init__(self, ldap: Ldap, tree: Tree) -> None:
        self.ldap = ldap
        self.tree = tree

    def all(self) -> list[Entry]:
        entries, _ = self.ldap.search(self.tree.groups, "(objectClass=groupOfNames)",
                                      GROUP_ATTRIBUTES, scope=LEVEL, subject="group")
        return entries

    def read(self, dn: str) -> Entry | None:
        return self.ldap.read(dn, GROUP_ATTRIBUTES, subject="group")

    def create(self, name: str, description: str | None) -> str:
        dn = self.tree.group(name)
        attributes: dict[str, list[str]] = {"cn": [name], "member": [self.tree.placeholder]}
        if description:
            attributes["description"] = [description]
        # userdirGroup: the group may carry the audit marker (userdirChange).
        self.ldap.add(dn, ["groupOfNames", "userdirGroup"], attributes, subject="group")
        return dn

    def delete(self, dn: str) -> None:
        self.ldap.delete(dn, subject="group")

    def members_and_version(self, dn: str) -> tuple[list[str], str]:
        """Real members (the placeholder left out) and the entryCSN they were read at."""
        entry = self.read(dn)
        if entry is None:
            raise DomainError(f"group {dn} is missing")
        placeholder = names.normalise_dn(self.tree.placeholder)
        members = [m for m in values(entry, "member") if names.normalise_dn(m) != placeholder]
        return members, first(entry, "entryCSN") or ""

    def add_member(self, group_dn: str, member_dn: str) -> bool:
        """True if added, False if it was a member already."""
        result = self.ldap.modify(group_dn, {"member": [(MODIFY_ADD, [member_dn])]},
                                  tolerate=(ATTRIBUTE_OR_VALUE_EXISTS,), subject="group")
        return bool(result["result"] == 0)

    def remove_member(self, group_dn: str, member_dn: str, *, version: str | None = None) -> bool:
        """True if removed, False if it was not a member.

        With `version` (an entryCSN), the removal only happens if the group is
        still exactly as it was read (RFC 4528, evaluated atomically with the
        change); otherwise GroupChanged.
        """
        # slapo-memberof repeats the operation's controls on its internal
        # modify of the member entry (2.5.13, seen on this slapd): a bare
        # (entryCSN=...) would fail there and leave a stale memberOf. The
        # assertion therefore only constrains the group itself.
        unchanged = names.any_of(names.equals("entryCSN", version or ""),
                                 names.negate("(objectClass=groupOfNames)"))
        controls = [assertion(unchanged)] if version else None
        result = self.ldap.modify(
            group_dn, {"member": [(MODIFY_DELETE, [member_dn])]}, controls=controls,
            tolerate=(NO_SUCH_ATTRIBUTE, ASSERTION_FAILED), subject="group",
        )
        if result["result"] == ASSERTION_FAILED:
            raise GroupChanged("group changed concurrently")
        return bool(result["result"] == 0)

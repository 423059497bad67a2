"""Ordinary groups (groupOfNames); account-type groups change only with a user's type."""

from __future__ import annotations

from typing import Any

from app.directory import names as n
from app.directory.schema import (
    values,
)
from app.domain import (
    Group,
    InvalidInput,
    NotFound,
)
from app.service.base import ServiceBase, reads, writes


class Groups(ServiceBase):
    # --- groups ------------------------------------------------------------

    @reads
    def list_groups(self) -> list[Group]:
        return [self._group(e) for e in self.directory.groups.all()]

    @reads
    def get_group(self, name: str) -> Group:
        return self._group(self._group_entry(name))

    @writes
    def create_group(self, name: str, description: str | None = None) -> Group:
        dn = self.directory.groups.create(name, description)
        return self._group(self._group_entry(n.first_rdn_value(dn)))

    @writes
    def delete_group(self, name: str) -> None:
        self._ordinary_group(name)
        self.directory.groups.delete(self.directory.tree.group(name))

    @writes
    def add_group_member(self, name: str, username: str) -> Group:
        self._ordinary_group(name)
        self._group_entry(name)
        self.directory.groups.add_member(self.directory.tree.group(name),
                                         self._person(username).dn)
        return self._group(self._group_entry(name))

    @writes
    def remove_group_member(self, name: str, username: str) -> Group:
        self._ordinary_group(name)
        self._group_entry(name)
        if not self.directory.groups.remove_member(self.directory.tree.group(name),
                                                   self._person(username).dn):
            raise NotFound(f"{username} is not a member of {name}")
        return self._group(self._group_entry(name))

    def _ordinary_group(self, name: str) -> None:
        """Account types change only with a user's type (one per user, never
        zero admins). LDAP names groups ignoring case, so `Staff` is `staff`."""
        if n.normalise_dn(self.directory.tree.group(name)) in self._type_dns:
            raise InvalidInput("name", f"{name!r} is an account type; change the user's type")

    @property
    def _type_dns(self) -> set[str]:
        return {n.normalise_dn(dn) for dn in self.group_types.dn_of.values()}

    def _group_entry(self, name: str) -> dict[str, Any]:
        entry = self.directory.groups.read(self.directory.tree.group(name))
        if entry is None:
            raise NotFound(f"group {name} not found")
        return entry

    def _group(self, entry: dict[str, Any]) -> Group:
        tree = self.directory.tree
        members = [n.first_rdn_value(m) for m in values(entry, "member") if tree.is_person(m)]
        name = values(entry, "cn")[0] if values(entry, "cn") else n.first_rdn_value(entry["dn"])
        description = values(entry, "description")
        return Group(name=name, description=description[0] if description else None,
                     members=members, account_type=n.normalise_dn(entry["dn"]) in self._type_dns)

"""Which groups a person is in, read from his own entry (memberOf), not from the groups."""

from __future__ import annotations

from app.directory import names as n
from app.service.base import ServiceBase, reads


class Memberships(ServiceBase):
    @reads
    def groups_of(self, username: str) -> list[str]:
        """The names of his groups, account types included, sorted. One read of
        his entry: reading every group instead would carry an account type's
        member list, all of it, at each call (megabytes at 100k users)."""
        under = "," + n.normalise_dn(self.directory.tree.groups)
        return sorted((n.first_rdn_value(dn) for dn in self._person(username).member_of
                       if n.normalise_dn(dn).endswith(under)), key=str.lower)

"""Provisioning tokens in ou=tokens: one userdirToken entry each, the token's hash only."""

from __future__ import annotations

import contextlib
from datetime import datetime

from ldap3 import LEVEL, MODIFY_REPLACE

from app.accounts import TokenInfo
from app.directory import Directory
from app.directory import names as n
from app.directory.operations import Entry
from app.directory.schema import first, format_time, parse_time, values
from app.domain import AlreadyExists, InvalidInput, NotFound

TOKEN_ATTRIBUTES = ["cn", "userdirTokenScope", "userdirTokenLastUsed", "description",
                    "createTimestamp"]
ENTRY_FILTER = "(objectClass=userdirToken)"


def _token(entry: Entry) -> TokenInfo:
    return TokenInfo(name=first(entry, "cn") or n.first_rdn_value(entry["dn"]),
                       scopes=tuple(values(entry, "userdirTokenScope")),
                       created=parse_time(first(entry, "createTimestamp")),
                       last_used=parse_time(first(entry, "userdirTokenLastUsed")),
                       description=first(entry, "description"))


class TokenStore:
    def __init__(self, directory: Directory) -> None:
        self.ldap = directory.ldap
        self.base = f"ou=tokens,{directory.tree.base}"

    def dn(self, name: str) -> str:
        return f"cn={n.rdn_value(name)},{self.base}"

    def add(self, name: str, digest: str, scopes: list[str], description: str | None) -> None:
        """A new token entry; the branch is made first where an older
        directory lacks it (ldif/base.ldif has it since SCIM came)."""
        attributes: dict[str, list[str]] = {"cn": [name], "userdirTokenHash": [digest],
                                            "userdirTokenScope": scopes}
        if description:
            attributes["description"] = [description]
        try:
            self.ldap.add(self.dn(name), ["userdirToken"], attributes, subject="token")
        except NotFound:
            with contextlib.suppress(AlreadyExists):
                self.ldap.add(self.base, ["organizationalUnit"], {"ou": ["tokens"]},
                              subject="token")
            self.ldap.add(self.dn(name), ["userdirToken"], attributes, subject="token")

    def all(self) -> list[TokenInfo]:
        try:
            entries, _ = self.ldap.search(self.base, ENTRY_FILTER, TOKEN_ATTRIBUTES,
                                          scope=LEVEL, subject="token")
        except NotFound:
            return []
        return sorted((_token(e) for e in entries), key=lambda t: t.name.lower())

    def by_digest(self, digest: str) -> TokenInfo | None:
        try:
            entries, _ = self.ldap.search(
                self.base, n.all_of(ENTRY_FILTER, n.equals("userdirTokenHash", digest)),
                TOKEN_ATTRIBUTES, scope=LEVEL, size_limit=2, subject="token")
        except NotFound:
            return None
        return _token(entries[0]) if len(entries) == 1 else None

    def delete(self, name: str) -> None:
        self.ldap.delete(self.dn(name), subject="token")

    def used(self, name: str, moment: datetime) -> None:
        with contextlib.suppress(NotFound):  # revoked meanwhile: nothing to record
            self.ldap.modify(self.dn(name),
                             {"userdirTokenLastUsed": [(MODIFY_REPLACE, [format_time(moment)])]},
                             subject="token")


def checked_name(name: str) -> str:
    """Token names are short identifiers (they are RDNs and shown in lists)."""
    if not (1 <= len(name) <= 64) or not all(c.isalnum() or c in "-_." for c in name) \
            or not name.isascii():
        raise InvalidInput("name", "a token name is 1 to 64 letters, digits, - _ or .")
    return name

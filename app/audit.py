"""The audit log's records, its kinds of change and the questions asked of it: plain types."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from msgspec import Struct

# The vocabulary of a record's `type`, in the order a change is classified
# (the first that applies): app/directory/audit_rules.py says what each means.
TYPES = ("created", "deleted", "renamed", "password", "disabled", "enabled", "locked",
         "type", "membership", "changed")
AuditType = Literal["created", "deleted", "renamed", "password", "disabled", "enabled",
                    "locked", "type", "membership", "changed"]
Operation = Literal["add", "delete", "replace", "increment"]


class Change(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One attribute of a change. `hidden`: a secret or binary value, never
    shown (only that it changed); `old` is known for people only."""

    attribute: str
    op: Operation
    old: list[str] | None = None
    new: list[str] | None = None
    hidden: bool = False


class Target(Struct, frozen=True, kw_only=True):
    dn: str
    kind: Literal["person", "group", "other"]
    name: str


class Who(Struct, frozen=True, kw_only=True):
    """`user`: a signed-in user (name, entryUUID); `tool`: an LDAP identity
    or a userdir command (cli, doctor, service); `anonymous`: a request
    nobody signed in to. `bound_as` is the identity slapd saw."""

    kind: Literal["user", "tool", "anonymous"]
    name: str
    id: str | None = None
    bound_as: str = ""


class Via(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """How an API change came (what the request's marker recorded)."""

    dialect: str | None = None
    route: str | None = None
    client: str | None = None
    request_id: str | None = None


class AuditRecord(Struct, frozen=True, kw_only=True):
    id: str  # the log entry's reqStart: unique, ordered
    when: datetime
    type: AuditType
    target: Target
    who: Who
    via: Via | None
    what: list[Change]
    result: str  # "success", or slapd's result name


class AuditQuery(Struct, frozen=True, kw_only=True):
    user: str | None = None    # the target's username
    actor: str | None = None   # a username, a tool label or an LDAP DN
    type: AuditType | None = None
    since: datetime | None = None
    until: datetime | None = None
    offset: int = 0
    limit: int = 20


class AuditPage(Struct, frozen=True, kw_only=True):
    records: list[AuditRecord]
    total: int

"""An access-log entry told as an audit record: when, what, to whom, by whom, which route."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ldap3.core.results import RESULT_CODES

from app.audit import AuditRecord, AuditType, Change, Operation, Target, Via, Who
from app.directory import names
from app.directory.audit import parent_of
from app.directory.audit_rules import LogEntry, Rules
from app.directory.operations import Entry
from app.directory.schema import first
from app.requests import ANONYMOUS

# Values never shown, only that they changed (the log DB's ACLs hide them from
# the service already; this is the second line).
SECRET = frozenset({"userpassword", "userdiremailcodehash", "userdirforeignhash",
                    "userdirtokenhash"})
BINARY = frozenset({"jpegphoto", "photo", "usercertificate", "cacertificate", "audio",
                    "userpkcs12", "usersmimecertificate"})
# What slapd keeps by itself, or says elsewhere in the record.
BOOKKEEPING = frozenset({"entrycsn", "modifiersname", "modifytimestamp", "creatorsname",
                         "createtimestamp", "entryuuid", "structuralobjectclass", "memberof",
                         "userdirchange", "pwdchangedtime", "pwdfailuretime",
                         "pwdlastsuccess", "authtimestamp", "entrydn", "contextcsn"})
# A secret's value is hidden from the service, so its change is told by what
# comes with it: ppolicy stamps every password change; a code has an expiry.
ALONGSIDE = {"pwdchangedtime": "userPassword", "userdiremailcodeexpiry": "userdirEmailCodeHash"}
OPERATIONS: dict[str, Operation] = {"+": "add", "-": "delete", "=": "replace",
                                    "#": "increment"}
_BINARY_VALUE = "\x00"  # stands for a value that is not text


def log_entry(entry: Entry) -> LogEntry:
    raw = entry["raw_attributes"]
    return LogEntry(
        start=first(entry, "reqStart") or "", type=first(entry, "reqType") or "",
        dn=first(entry, "reqDN") or "", authz=first(entry, "reqAuthzID") or "",
        result=int(first(entry, "reqResult") or 0),
        mods=[_text(v) for v in raw.get("reqMod", [])],
        old=[_text(v) for v in raw.get("reqOld", [])],
        new_rdn=first(entry, "reqNewRDN") or "", new_superior=first(entry, "reqNewSuperior") or "",
        uuid=first(entry, "reqEntryUUID") or "")


def _text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:  # a picture: its attribute and operation are enough
        head = value.split(b" ", 1)[0].decode("ascii", "replace")
        return f"{head} {_BINARY_VALUE}"


def when(start: str) -> datetime:
    """reqStart (YYYYmmddHHMMSS.nnnnnnZ: the fraction is a counter) as a time."""
    return datetime.strptime(start[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


class Teller:
    """Turns log entries into records, for one directory's rules and tree."""

    def __init__(self, rules: Rules, tree: names.Tree) -> None:
        self.rules = rules
        self.tree = tree
        self._people = names.normalise_dn(tree.people)
        self._groups = names.normalise_dn(tree.groups)
        self._staging = names.normalise_dn(tree.staging)

    def record(self, entry: LogEntry, staged: LogEntry | None = None,
               joined: str | None = None) -> AuditRecord:
        """`staged`: the add a publish from ou=staging completes; `joined`: the
        account-type group the user joined while staged."""
        kind: AuditType = self.rules.classify(entry)  # type: ignore[assignment]
        dn = entry.dn
        if entry.type == "modrdn" and parent_of(dn) == self._staging:
            dn = f"{entry.new_rdn},{entry.new_superior}"
        marker = self.rules.marker_of(entry) or (self.rules.marker_of(staged) if staged else None)
        facts: dict[str, Any] = json.loads(marker) if marker else {}
        return AuditRecord(
            id=entry.start, when=when(entry.start), type=kind, target=self._target(dn),
            who=self._who(entry, facts), via=_via(facts), result=_result(entry.result),
            what=self._what(entry, staged, joined))

    def _target(self, dn: str) -> Target:
        parent = parent_of(dn)
        kind = "person" if parent in (self._people, self._staging) else \
            "group" if parent == self._groups else "other"
        name = names.first_rdn_value(dn) if dn else ""
        return Target(dn=dn, kind=kind, name=name)  # type: ignore[arg-type]

    def _who(self, entry: LogEntry, facts: dict[str, Any]) -> Who:
        actor = facts.get("actor")
        if actor and facts.get("actor_id"):
            return Who(kind="user", name=actor, id=facts["actor_id"], bound_as=entry.authz)
        if actor == ANONYMOUS:
            return Who(kind="anonymous", name=actor, bound_as=entry.authz)
        if actor:
            return Who(kind="tool", name=actor, bound_as=entry.authz)
        if entry.authz and parent_of(entry.authz) == self._people:
            return Who(kind="user", name=names.first_rdn_value(entry.authz),
                       bound_as=entry.authz)
        return Who(kind="tool", name=entry.authz or "slapd", bound_as=entry.authz)

    def _what(self, entry: LogEntry, staged: LogEntry | None,
              joined: str | None) -> list[Change]:
        if entry.type == "modrdn" and staged is None:
            return [Change(attribute="dn", op="replace", old=[entry.dn],
                           new=[f"{entry.new_rdn},{entry.new_superior or _parent(entry.dn)}"])]
        if entry.type == "delete":
            return _grouped(entry.old, "delete", with_op=False)
        changes = _grouped((staged or entry).mods, "add", with_op=True,
                           old=entry.old if entry.type == "modify" else [])
        if joined:
            changes.append(Change(attribute="memberOf", op="add", new=[joined]))
        return changes


def _grouped(values: list[str], default: Operation, *, with_op: bool,
             old: list[str] | None = None) -> list[Change]:
    """reqMod or reqOld values, one Change per attribute and operation."""
    found: dict[tuple[str, Operation], list[str]] = {}
    for value in values:
        head, _, text = value.partition(" ")
        attribute, op = head.rstrip(":"), default
        if with_op and head[-1:] in OPERATIONS and head[-2:-1] == ":":
            attribute, op = head[:-2], OPERATIONS[head[-1]]
        found.setdefault((attribute, op), [])
        if text:
            found[(attribute, op)].append(text)
    for (attribute, op), _ in list(found.items()):
        secret = ALONGSIDE.get(attribute.lower())
        if secret and not any(a.lower() == secret.lower() for a, _ in found):
            found[(secret, "replace" if op == "add" and with_op else op)] = []
    previous = _grouped(old, "replace", with_op=False) if old else []
    changes = []
    for (attribute, op), texts in found.items():
        lower = attribute.lower()
        if lower in BOOKKEEPING:
            continue
        hidden = lower in SECRET or lower in BINARY or _BINARY_VALUE in texts
        before = next((c.old for c in previous if c.attribute.lower() == lower), None)
        if hidden:
            changes.append(Change(attribute=attribute, op=op, hidden=True))
        elif not with_op or op == "delete":  # the values removed, or all there were
            changes.append(Change(attribute=attribute, op=op, old=texts or before))
        elif op == "add":
            changes.append(Change(attribute=attribute, op=op, new=texts))
        else:
            changes.append(Change(attribute=attribute, op=op, old=before, new=texts))
    return changes


def _via(facts: dict[str, Any]) -> Via | None:
    via = Via(dialect=facts.get("dialect"), route=facts.get("route"),
              client=facts.get("client"), request_id=facts.get("request"))
    return via if any((via.dialect, via.route, via.client, via.request_id)) else None


def _result(code: int) -> str:
    return "success" if code == 0 else str(RESULT_CODES.get(code, code))


def _parent(dn: str) -> str:
    return dn.split(",", 1)[1] if "," in dn else ""

"""The audit log: slapd's access log (cn=accesslog), filtered, sorted and paged by slapd."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from ldap3 import LEVEL

from app.audit import AuditPage, AuditQuery
from app.directory import names
from app.directory.audit_records import Teller, log_entry
from app.directory.audit_rules import (
    DnIs,
    LogEntry,
    Not,
    Rule,
    Rules,
    UuidIs,
    Value,
    all_of,
    any_of,
)
from app.directory.controls import SortKey
from app.directory.listing import Listing
from app.directory.operations import Ldap
from app.directory.schema import first
from app.domain import NotFound
from app.requests import ANONYMOUS, SERVICE

LOG_BASE = "cn=accesslog"
RECORD = "(objectClass=auditWriteObject)"
ATTRIBUTES = ["reqStart", "reqType", "reqDN", "reqAuthzID", "reqResult", "reqMod", "reqOld",
              "reqNewRDN", "reqNewSuperior", "reqEntryUUID"]
NEWEST_FIRST = [SortKey("reqStart", reverse=True)]
TOOLS = frozenset({SERVICE, ANONYMOUS, "cli", "doctor"})  # actors that are no user


class NoAuditLog(NotFound):
    """The directory has no cn=accesslog database (set up before audit existed,
    or `userdir init` without --log-directory)."""


class AuditLog:
    """Pages of audit records. slapd sorts and counts (server-side sort and
    VLV on the log database, slapo-sssvlv), so a page costs a window of the
    sorted matches, whatever the page number; snapshots are shared with the
    people listing's (Listing: reused for listing.context_ttl, dropped on any
    write through this process)."""

    def __init__(self, ldap: Ldap, listing: Listing, tree: names.Tree,
                 type_groups: Sequence[str]) -> None:
        self.ldap = ldap
        self.listing = listing
        self.tree = tree
        self.rules = Rules(tree, type_groups)
        self.teller = Teller(self.rules, tree)
        self._type_groups = list(type_groups)

    def page(self, query: AuditQuery) -> AuditPage:
        try:
            # The filter itself reads the log (a user's earlier names).
            wanted = self.filter(query)
            entries, total = self.listing.window(LOG_BASE, wanted, NEWEST_FIRST, ATTRIBUTES,
                                                 query.offset, query.limit)
        except NotFound as e:
            raise NoAuditLog("this directory keeps no audit log (no cn=accesslog database)") \
                from e
        found = [log_entry(e) for e in entries]
        published = [e for e in found if e.type == "modrdn"
                     and self.rules.classify(e) == "created"]
        staged, joined = self._publications(published)
        return AuditPage(total=total, records=[
            self.teller.record(e, staged.get(e.uuid.lower()), joined.get(e.dn.lower()))
            if e in published else self.teller.record(e) for e in found])

    def filter(self, query: AuditQuery) -> str:
        """The whole question as one LDAP filter: slapd answers it with its
        indexes (reqEntryUUID, reqAuthzID, reqStart, reqType) where it can."""
        rules: list[Rule] = [self.rules.visible()]
        if query.user is not None:
            rules.append(self._about(query.user))
        if query.actor is not None:
            rules.append(self._by(query.actor))
        if query.type is not None:
            rules.append(self.rules.of_type(query.type))
        times = [f"(reqStart>={_time(query.since, '000000')})" if query.since else "",
                 f"(reqStart<={_time(query.until, '999999')})" if query.until else ""]
        return names.all_of(RECORD, *(t for t in times if t), *(r.ldap() for r in rules))

    def _about(self, username: str) -> Rule:
        """Changes to the entry (or entries, over time) named so, and to
        group memberships naming it by this or an earlier name."""
        dn = self.tree.person(username)
        uuids = self._uuids(username, dn)
        dns = {dn, *self._earlier_names(uuids)}
        return any_of(*(UuidIs(u) for u in uuids),
                      *(Value(f"member:{op} {d}", exact=True) for d in sorted(dns)
                        for op in "+-"))

    def _uuids(self, username: str, dn: str) -> list[str]:
        """The person's entryUUID; with none (deleted), those of the entries
        the log saw created, renamed or deleted under that name."""
        person = self._person(username)
        if person is not None:
            return [person[0]]
        # By reqDN (indexed): his creation is a publish from his staged DN.
        entries, _ = self.ldap.search(
            LOG_BASE, names.all_of(
                RECORD, names.any_of(names.equals("reqDN", dn),
                                     names.equals("reqDN", self.tree.staged_person(username))),
                "(|(reqType=add)(reqType=delete)(reqType=modrdn))"),
            ["reqEntryUUID"], size_limit=100, subject="audit log")
        return sorted({u for e in entries if (u := first(e, "reqEntryUUID"))})

    def _earlier_names(self, uuids: list[str]) -> list[str]:
        """The DNs these entries had before a rename (the log's modrdns)."""
        if not uuids:
            return []
        entries, _ = self.ldap.search(
            LOG_BASE, names.all_of(RECORD, "(reqType=modrdn)",
                                   names.any_of(*(names.equals("reqEntryUUID", u)
                                                  for u in uuids))),
            ["reqDN"], size_limit=100, subject="audit log")
        staging = names.normalise_dn(self.tree.staging)
        return [dn for e in entries if (dn := first(e, "reqDN"))
                and names.normalise_dn(dn).partition(",")[2] != staging]

    def _by(self, actor: str) -> Rule:
        """Changes by a user (whatever route), a userdir command, or an LDAP identity."""
        unmarked = Not(self.rules.marked())
        if "=" in actor:
            return all_of(DnIs("reqAuthzID", actor), unmarked)
        if actor in TOOLS:
            return self.rules.marked(f'"actor":{json.dumps(actor)}')
        dn = self.tree.person(actor)
        person = self._person(actor)
        said = f'"actor_id":{json.dumps(person[0])}' if person else \
            f'"actor":{json.dumps(actor)}'
        return any_of(self.rules.marked(said), all_of(DnIs("reqAuthzID", person[1] if person
                                                           else dn), unmarked))

    def _person(self, username: str) -> tuple[str, str] | None:
        """(entryUUID, DN) of the person named so now, if any."""
        entries, _ = self.ldap.search(
            self.tree.people, names.all_of("(objectClass=inetOrgPerson)",
                                           names.equals("uid", username)),
            ["entryUUID", "uid"], scope=LEVEL, size_limit=4, subject="user")
        # By the RDN's name first: another may hold it as an old uid (ldapmodrdn without -r).
        found = [e for e in entries
                 if names.same_name(names.first_rdn_value(e["dn"]), username)] or entries[:1]
        return (first(found[0], "entryUUID") or "", found[0]["dn"]) if found else None

    def _publications(self, published: list[LogEntry]) -> tuple[dict[str, LogEntry],
                                                                   dict[str, str]]:
        """For each user created on this page (published from ou=staging):
        the staged add (his attributes, who asked) and the account-type group
        he joined while staged, in one search."""
        if not published:
            return {}, {}
        adds = [names.all_of("(reqType=add)", names.equals("reqEntryUUID", e.uuid))
                for e in published if e.uuid]
        joins = [names.all_of("(reqType=modify)", names.equals("reqMod", f"member:+ {e.dn}"),
                              names.any_of(*(names.equals("reqDN", g)
                                             for g in self._type_groups)))
                 for e in published] if self._type_groups else []
        entries, _ = self.ldap.search(LOG_BASE, names.all_of(RECORD, names.any_of(*adds, *joins)),
                                      ATTRIBUTES, size_limit=4 * len(published) + 4,
                                      subject="audit log")
        staged: dict[str, LogEntry] = {}
        joined: dict[str, str] = {}
        for entry in map(log_entry, entries):
            if entry.type == "add":
                staged[entry.uuid.lower()] = entry
            for value in entry.mods:
                if value.startswith("member:+ "):
                    joined[value.removeprefix("member:+ ").lower()] = entry.dn
        return staged, joined


def _time(moment: datetime, fraction: str) -> str:
    """Generalized time; reqStart's fraction counts operations within a second."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime(f"%Y%m%d%H%M%S.{fraction}Z")

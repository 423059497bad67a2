"""`userdir audit`: who changed what in the directory, newest first, as a table or JSON lines."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

import msgspec

from app.audit import TYPES, AuditQuery, AuditRecord, Change
from app.config import Config
from app.runtime import Runtime
from app.service.audit import AuditTrail

HELP = """Every write to the directory, by any client, as slapd's access log recorded it:
the API's changes name the signed-in user, the route and the client address;
LDAP tools' changes name the identity they bound as. Kept audit.retention_days."""


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    audit = commands.add_parser("audit", help="who changed what: the audit log, newest first",
                                description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    audit.add_argument("--user", help="changes to this user (his username)")
    audit.add_argument("--actor", help="changes by this user, tool (cli, doctor, service, "
                       "anonymous) or LDAP identity (a DN)")
    audit.add_argument("--type", choices=TYPES, help="one kind of change")
    audit.add_argument("--since", type=_moment, help="from this time (ISO 8601; UTC if no offset)")
    audit.add_argument("--until", type=_moment, help="up to this time (ISO 8601)")
    audit.add_argument("--page", type=int, default=1, help="page number (default 1)")
    audit.add_argument("--per-page", type=int, default=50, help="records a page (default 50)")
    audit.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def run(config: Config, args: argparse.Namespace, out: TextIO | None = None,
        build: Callable[[Config], Runtime] = Runtime.build) -> int:
    """One page of the audit log of the configured directory (slapd must be running)."""
    per_page = max(1, min(args.per_page, config.audit.max_per_page))
    query = AuditQuery(user=args.user, actor=args.actor, type=args.type, since=args.since,
                       until=args.until, offset=(max(args.page, 1) - 1) * per_page,
                       limit=per_page)
    runtime = build(config)
    try:
        page = asyncio.run(AuditTrail.beside(runtime.service).audit(query))
    finally:
        runtime.close()
    for record in page.records:
        print(msgspec.json.encode(record).decode() if args.json else line(record), file=out)
    if not args.json:
        print(f"-- {len(page.records)} of {page.total} records (page {max(args.page, 1)})",
              file=out)
    return 0


def line(record: AuditRecord) -> str:
    """One record as a line of the table."""
    via = record.via
    route = " ".join(p for p in (via.dialect, via.route, via.client) if p) if via else "ldap"
    what = "; ".join(_change(c) for c in record.what) or "-"
    result = "" if record.result == "success" else f" [{record.result}]"
    return (f"{record.when:%Y-%m-%d %H:%M:%S}  {record.type:<10} {record.target.name:<20} "
            f"{record.who.name:<20} {route}  {what}{result}")


def _change(change: Change) -> str:
    if change.hidden:
        return f"{change.attribute}: changed"
    old = ", ".join(change.old or [])
    new = ", ".join(change.new or [])
    if change.op == "add":
        return f"{change.attribute} + {new}"
    if change.op == "delete":
        return f"{change.attribute} - {old}" if old else f"{change.attribute} removed"
    return f"{change.attribute}: {old or '-'} -> {new or '-'}"


def _moment(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from e

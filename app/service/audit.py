"""Who changed what, when and how: the audit log, read (it is written by slapd itself)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from app.audit import AuditPage, AuditQuery
from app.directory.audit_log import AuditLog
from app.domain import InvalidInput
from app.service.base import ServiceBase, reads

MAX_OFFSET = 2**31 - 2  # the VLV offset slapd reads as 32 bits (app/directory/listing.py)


class AuditTrail(ServiceBase):
    """Reads the access log slapd keeps of every write, from any client."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.log = AuditLog(self.directory.ldap, self.directory.listing, self.directory.tree,
                            list(self.group_types.dn_of.values()))

    @reads
    def audit(self, query: AuditQuery) -> AuditPage:
        """One page of records, newest first (NoAuditLog if slapd keeps none)."""
        query = msgspec.structs.replace(query, since=_utc(query.since), until=_utc(query.until))
        if query.since and query.until and query.since > query.until:
            raise InvalidInput("since", "since must not be after until")
        if query.limit < 1 or query.offset < 0 or query.offset + query.limit > MAX_OFFSET:
            raise InvalidInput("page", "Invalid page: beyond any listing.")
        return self.log.page(query)


def _utc(moment: datetime | None) -> datetime | None:
    """A time without an offset is UTC (as slapd's)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)

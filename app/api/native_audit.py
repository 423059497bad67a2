"""The native API's GET /audit: who changed what, newest first (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, get_args

import msgspec
from litestar import get
from litestar.openapi import ResponseSpec
from litestar.params import QueryParameter

from app.api import Caller, Rt
from app.api.native_models import Problem
from app.audit import AuditQuery, AuditRecord, AuditType
from app.auth import require_admin
from app.runtime import Runtime
from app.service.audit import AuditTrail

_trails: list[tuple[Runtime, AuditTrail]] = []
ERRORS = {status: ResponseSpec(Problem, description=description,
                               media_type="application/problem+json", generate_examples=False)
          for status, description in {
              400: "Malformed query (a time that is not ISO 8601, an unknown type)",
              401: "Missing, invalid or expired token", 403: "Not an admin",
              404: "The directory keeps no audit log", 422: "Invalid username or page",
              429: "Too many requests (Retry-After)",
              503: "The directory is unavailable or busy (Retry-After)"}.items()}


class AuditPageOut(msgspec.Struct):
    records: list[AuditRecord]
    total: int
    page: int
    per_page: int


def trail_of(runtime: Runtime) -> AuditTrail:
    if not _trails or _trails[0][0] is not runtime:
        _trails[:] = [(runtime, AuditTrail.beside(runtime.service))]
    return _trails[0][1]


@get("/audit", responses=ERRORS, summary="The audit log: every change by any client (admin)",
     description="Records newest first. Types: " + ", ".join(get_args(AuditType)) + ".")
async def audit(
    caller: Caller,
    runtime: Rt,
    user: Annotated[str | None, QueryParameter(
        description="changes to this user (username)", max_length=64)] = None,
    actor: Annotated[str | None, QueryParameter(
        description="changes by this username, tool (cli, doctor, service, anonymous) or "
                    "LDAP identity (DN)", max_length=512)] = None,
    type: Annotated[AuditType | None, QueryParameter(
        description="one kind of change")] = None,
    since: Annotated[datetime | None, QueryParameter(description="ISO 8601; UTC if no offset")]
    = None,
    until: Annotated[datetime | None, QueryParameter(description="ISO 8601")] = None,
    page: Annotated[int, QueryParameter(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
) -> AuditPageOut:
    require_admin(caller)
    per_page = min(per_page, runtime.config.audit.max_per_page)
    found = await trail_of(runtime).audit(AuditQuery(
        user=user, actor=actor, type=type, since=since, until=until,
        offset=(page - 1) * per_page, limit=per_page))
    return AuditPageOut(found.records, found.total, page, per_page)


ROUTES = [audit]

"""SCIM resources (pydantic, scim2-models) to and from plain accounts; filters to conditions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from scim2_models import Context, InvalidValueException, Resource
from scim2_models.path import (
    AttrPath,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)

from app.accounts import (
    PHONE_KINDS,
    Account,
    AccountState,
    Address,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Negation,
    Team,
    Within,
)
from app.scim.schemas import CORE_GROUP, CORE_USER, ENTERPRISE, USERDIR

PREFIXES = {CORE_USER.lower(): "", CORE_GROUP.lower(): "", ENTERPRISE.lower(): "enterprise:",
            USERDIR.lower(): "userdir:"}


def etag(version: str) -> str:
    """A weak ETag (RFC 9110 §8.8.3) of an entryCSN: equal entries, equal tags."""
    return f'W/"{version}"'


def csn(tag: str | None) -> str | None:
    """The entryCSN inside an ETag we made (None: no tag given)."""
    if not tag:
        return None
    return tag.removeprefix("W/").strip('"')


def _meta(kind: str, created: datetime | None, updated: datetime | None,
          version: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceType": kind, "version": etag(version)}
    if created:
        meta["created"] = created.isoformat()
    if updated or created:
        meta["lastModified"] = (updated or created or datetime.min).isoformat()
    return meta


def _drop_empty(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if v not in (None, [], {})}


def user_document(account: Account) -> dict[str, Any]:
    """The stored account as SCIM JSON (locations are the server's to add)."""
    s = account.state
    address = _drop_empty({
        "formatted": s.address.formatted, "streetAddress": s.address.street,
        "locality": s.address.locality, "region": s.address.region,
        "postalCode": s.address.postal_code, "country": s.address.country})
    name = _drop_empty({"givenName": s.first_name, "familyName": s.last_name})
    enterprise = _drop_empty({
        "employeeNumber": s.employee_number, "department": s.department,
        "manager": {"value": s.manager, "$ref": f"Users/{s.manager}"} if s.manager else None})
    return _drop_empty({
        "schemas": [CORE_USER], "id": account.uuid, "externalId": s.external_id,
        "userName": s.username, "name": name, "displayName": s.display_name,
        "title": s.title, "preferredLanguage": s.language, "locale": s.locale,
        "timezone": s.timezone, "active": s.active,
        "emails": [{"value": s.email, "type": "work"}] if s.email else None,
        "phoneNumbers": [{"value": s.phones[k], "type": k} for k in PHONE_KINDS
                         if k in s.phones],
        "addresses": [{**address, "type": "work"}] if address else None,
        "groups": [{"value": g.uuid, "$ref": f"Groups/{g.uuid}", "display": g.name,
                    "type": "direct"} for g in account.groups],
        ENTERPRISE: enterprise,
        USERDIR: {"accountType": s.account_type},
        "meta": _meta("User", account.created, account.updated, account.version)})


def group_document(team: Team) -> dict[str, Any]:
    return _drop_empty({
        "schemas": [CORE_GROUP], "id": team.uuid, "externalId": team.external_id,
        "displayName": team.name,
        "members": [{"value": m.uuid, "$ref": f"Users/{m.uuid}", "type": "User"}
                    for m in team.members],
        "meta": _meta("Group", team.created, team.updated, team.version)})


def _chosen(entries: Iterable[Any] | None) -> Any:
    """The value userdir keeps of several: the primary one, else the work one,
    else the first. (`primary` is not published, as only one value is kept,
    but an IdP sending it is heard.)"""
    values = list(entries or [])
    for wanted in (lambda e: (getattr(e, "unknown_attributes", None) or {}).get("primary"),
                   lambda e: (getattr(e, "type", None) or "").lower() == "work"):
        found = [e for e in values if wanted(e)]
        if found:
            return found[0]
    return values[0] if values else None


def account_state(resource: Resource[Any]) -> AccountState:
    """The state a resource asks for; a missing userdir extension keeps the type."""
    body = resource.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    enterprise = body.get(ENTERPRISE) or {}
    name = body.get("name") or {}
    email = _chosen(getattr(resource, "emails", None))
    address = _chosen(getattr(resource, "addresses", None))
    phones: dict[str, str] = {}
    for phone in body.get("phoneNumbers") or []:
        kind = (phone.get("type") or "work").lower()
        if kind not in PHONE_KINDS:
            raise InvalidValueException(detail=f"phone types are {', '.join(PHONE_KINDS)}")
        if kind in phones:
            raise InvalidValueException(detail=f"one phone number of type {kind!r} at most")
        if phone.get("value"):
            phones[kind] = phone["value"]
    manager = enterprise.get("manager") or {}
    return AccountState(
        username=body.get("userName") or "", active=body.get("active") is not False,
        account_type=(body.get(USERDIR) or {}).get("accountType"),
        password=body.get("password"), external_id=body.get("externalId"),
        email=getattr(email, "value", None), first_name=name.get("givenName"),
        last_name=name.get("familyName"), display_name=body.get("displayName"),
        title=body.get("title"), phones=phones,
        address=Address(
            formatted=getattr(address, "formatted", None),
            street=getattr(address, "street_address", None),
            locality=getattr(address, "locality", None),
            region=getattr(address, "region", None),
            postal_code=getattr(address, "postal_code", None),
            country=getattr(address, "country", None)),
        language=body.get("preferredLanguage"), locale=body.get("locale"),
        timezone=body.get("timezone"), employee_number=enterprise.get("employeeNumber"),
        department=enterprise.get("department"), manager=manager.get("value"))


def group_state(resource: Resource[Any]) -> tuple[str, str | None, list[str]]:
    """(displayName, externalId, member ids) a group resource asks for."""
    body = resource.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    members = [m["value"] for m in body.get("members") or [] if m.get("value")]
    return body.get("displayName") or "", body.get("externalId"), members


def path_of(attribute: AttrPath | str) -> str:
    """A lower-case attribute path: core attributes bare, extensions by short prefix."""
    text = str(attribute).lower()
    for urn, prefix in sorted(PREFIXES.items(), key=lambda p: -len(p[0])):
        if text.startswith(urn + ":"):
            return prefix + text[len(urn) + 1:]
    return text


def condition(node: FilterNode) -> Condition:
    """The filter tree scim2-models parsed, as app/accounts.py's plain one."""
    if isinstance(node, LogicalExpr):
        parts = tuple(condition(t) for t in node.terms)
        return AllOf(parts) if node.op == LogicalOperator.and_ else AnyOf(parts)
    if isinstance(node, Not):
        return Negation(condition(node.expr))
    if isinstance(node, Present):
        return Compare(path_of(node.attr_path), "pr")
    if isinstance(node, ValuePath):
        return Within(path_of(node.attr_path), condition(node.val_filter))
    if isinstance(node, Comparison):
        return Compare(path_of(node.attr_path), node.op.value, node.value)
    raise InvalidValueException(detail=f"unsupported filter: {node}")

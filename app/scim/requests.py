"""The forms real identity providers send that RFC 7644 does not, rewritten before validation."""

from __future__ import annotations

import json
from typing import Any

from scim2_server.requests import ScimRequest

from app.scim.schemas import ENTERPRISE, USERDIR

MANAGER = f"{ENTERPRISE}:manager".lower()


def rewritten(request: ScimRequest) -> ScimRequest:
    """Rewrite a Users request body where an IdP deviates; anything else as it came.

    - Entra ID sends the enterprise `manager` as a plain id string, where
      RFC 7643 §4.3 has a complex {"value": id}.
    """
    method, path = request.method.upper(), request.path.strip("/").lower()
    if method not in ("POST", "PUT", "PATCH") or not path.startswith("users") \
            or path.endswith(".search") or not request.body:
        return request
    try:
        body = json.loads(request.body)
    except ValueError:
        return request  # the service answers invalidSyntax
    if not isinstance(body, dict):
        return request
    if method == "PATCH":
        for operation in body.get("Operations") or body.get("operations") or []:
            if isinstance(operation, dict):
                _patch_operation(operation)
    else:
        _resource(body)
    request.body = json.dumps(body).encode()
    return request


def wants_completion(request: ScimRequest) -> str | None:
    """"new" for a POST of a user, the id for a PUT of one, whose body lacks
    `active` or the userdir extension; else None."""
    method, parts = request.method.upper(), request.path.strip("/").split("/")
    if parts[0].lower() != "users" or method not in ("POST", "PUT") or \
            len(parts) != (1 if method == "POST" else 2):
        return None
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    keys = {k.lower() for k in body}
    if "active" in keys and USERDIR.lower() in keys:
        return None
    return "new" if method == "POST" else parts[1]


def completed(request: ScimRequest, active: bool, account_type: str) -> ScimRequest:
    """`active` and the account type, required (every account has them), filled
    in where a client left them out: a new account's defaults, or, in a PUT,
    the values it has now (RFC 7644 §3.5.1 would refuse such a PUT; IdPs that
    map neither send them)."""
    body = json.loads(request.body or b"{}")
    if not any(k.lower() == "active" for k in body):
        body["active"] = active
    if not any(k.lower() == USERDIR.lower() for k in body):
        body[USERDIR] = {"accountType": account_type}
    request.body = json.dumps(body).encode()
    return request


def _resource(document: dict[str, Any]) -> None:
    for key, value in list(document.items()):
        if key.lower() == ENTERPRISE.lower() and isinstance(value, dict):
            _manager(value, "manager")
        elif key.lower() == MANAGER:
            document[key] = _as_manager(value)


def _patch_operation(operation: dict[str, Any]) -> None:
    path = str(operation.get("path") or "").lower()
    value = operation.get("value")
    if path in (MANAGER, "manager"):
        operation["value"] = _as_manager(value)
    elif not path and isinstance(value, dict):
        _resource(value)
    elif path == ENTERPRISE.lower() and isinstance(value, dict):
        _manager(value, "manager")


def _manager(extension: dict[str, Any], key: str) -> None:
    for name in list(extension):
        if name.lower() == key:
            extension[name] = _as_manager(extension[name])


def _as_manager(value: Any) -> Any:
    if isinstance(value, str):
        return {"value": value} if value else None
    return value

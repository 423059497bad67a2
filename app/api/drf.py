"""Django REST Framework's ways of saying no, for the dialects copying DRF (ufdl, accounts)."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException, ValidationException
from msgspec import UNSET, Struct, UnsetType

PYTHON_TYPES = {"array": "list", "int": "int", "float": "float", "str": "str", "bool": "bool",
                "null": "NoneType"}


class Detail(Struct):
    """DRF's and simplejwt's non-field errors: `{"detail": ..., "code": ...}`."""

    detail: str
    code: str | UnsetType = UNSET
    messages: list[dict[str, str]] | UnsetType = UNSET


def throttled(retry_after: int) -> Detail:
    """rest_framework.exceptions.Throttled's text."""
    unit = "second" if retry_after == 1 else "seconds"
    return Detail(f"Request was throttled. Expected available in {retry_after} {unit}.")


def wrong_types(error: ValidationException, flags: Iterable[str] = ()) -> dict[str, list[str]]:
    """Litestar's decoding errors as a DRF serializer words them; `flags`
    name the boolean fields ("Must be a valid boolean.")."""
    errors: dict[str, list[str]] = {}
    booleans = set(flags)
    for item in error.extra if isinstance(error.extra, list) else []:
        key, message = str(item.get("key", "")), str(item.get("message", ""))
        if key in ("", "data"):
            got = message.rpartition("got `")[2].rstrip("`") or "nothing"
            errors["non_field_errors"] = [
                f"Invalid data. Expected a dictionary, but got {PYTHON_TYPES.get(got, got)}."]
        elif key in booleans:
            errors[key] = ["Must be a valid boolean."]
        else:
            errors[key] = ["Not a valid string."]
    return errors or {"non_field_errors": ["Invalid data."]}


def http_error(request: Request[Any, Any, Any], error: HTTPException) -> tuple[int, Detail]:
    """What DRF answers for what Litestar raised before the view ran."""
    status = error.status_code
    if status == 400:  # the body is no JSON
        return 400, Detail(f"JSON parse error - {error.detail}")
    if status == 404:
        return 404, Detail("Not found.")
    if status == 405:
        return 405, Detail(f'Method "{request.method}" not allowed.')
    if status == 413:
        return 413, Detail("Request body is too large.")
    if status == 429 and isinstance(error.extra, dict):
        return 429, throttled(int(error.extra.get("retry_after", 1)))
    return status, Detail(HTTPStatus(status).phrase)

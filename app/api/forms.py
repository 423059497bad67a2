"""HTML form bodies, read within bounds: a few fields, and no long parse on the event loop.

Litestar's own urlencoded parser has no field limit, runs on the event loop
(a 1 MB body of `a=1&a=1...` took 0.3 s, every other request waiting) and
caches each distinct body it parsed (lru_cache keyed on the bytes: 1 MB forms
kept about 12 MB each, for good). This one counts the fields before it parses
(urllib stops at `max_fields` in about a millisecond), keeps nothing, and
hands a body of more than SMALL bytes to a worker thread.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request

MAX_FIELDS = 32
SMALL = 64 * 1024
URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


class BadForm(Exception):
    """Not a form we read: too many fields, or not a form at all."""


def media_type(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_form(request: Request[Any, Any, Any]) -> bool:
    return media_type(request) in (URLENCODED, MULTIPART)


async def form_fields(request: Request[Any, Any, Any],
                      max_fields: int = MAX_FIELDS) -> dict[str, str]:
    """The text fields of a urlencoded or multipart body (the first value of
    each name, as a form's `get` gives it); files are left out."""
    if media_type(request) == MULTIPART:
        # Litestar's multipart parser stops at the app's multipart_form_part_limit.
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    body = await request.body()
    if len(body) <= SMALL:
        return _parse(body, max_fields)
    return await asyncio.to_thread(_parse, body, max_fields)


def _parse(body: bytes, max_fields: int) -> dict[str, str]:
    try:  # as Litestar reads a form: bytes as latin-1, %-escapes as UTF-8
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                          max_num_fields=max_fields, separator="&")
    except ValueError as e:  # urllib: "Max number of fields exceeded"
        raise BadForm(f"at most {max_fields} form fields") from e
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields

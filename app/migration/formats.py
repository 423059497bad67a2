"""Readers: each source format as rows of userdir field names, with their line numbers."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from app.migration.ldif import read_ldif
from app.migration.records import Row, Value

FORMATS = ("csv", "jsonl", "ldif", "django", "fittrackee", "vikunja")
FIELDS = frozenset({
    "username", "email", "first_name", "last_name", "display_name", "phone", "address",
    "location", "language", "bio", "gender", "birthday", "country", "timezone",
    "email_verified", "id", "account_type", "admin", "staff", "role", "active", "suspended",
    "status", "password", "password_hash", "picture", "photo", "created",
})
# Source column -> userdir field, per system; columns not named are ignored.
DJANGO = {"pk": "id", "username": "username", "email": "email", "first_name": "first_name",
          "last_name": "last_name", "is_active": "active", "is_staff": "staff",
          "is_superuser": "admin", "password": "password_hash", "date_joined": "created",
          # custom user models (the accounts service, UFDL)
          "phone": "phone", "phone_number": "phone", "gender": "gender", "country": "country",
          "birthday": "birthday", "birth_date": "birthday", "date_of_birth": "birthday",
          "bio": "bio", "location": "location", "timezone": "timezone",
          "language": "language", "email_verified": "email_verified",
          "is_verified": "email_verified", "display_name": "display_name"}
FITTRACKEE = {"id": "id", "username": "username", "email": "email", "password": "password_hash",
              "created_at": "created", "admin": "admin", "role": "role",
              "first_name": "first_name", "last_name": "last_name", "birth_date": "birthday",
              "location": "location", "bio": "bio", "picture": "picture",
              "timezone": "timezone", "language": "language", "is_active": "active",
              "suspended_at": "suspended"}
VIKUNJA = {"id": "id", "name": "display_name", "username": "username", "email": "email",
           "password": "password_hash", "status": "status", "created": "created",
           "is_admin": "admin", "isAdmin": "admin", "admin": "admin"}
COLUMNS: dict[str, Mapping[str, str]] = {
    "django": DJANGO, "fittrackee": FITTRACKEE, "vikunja": VIKUNJA}


class FormatError(ValueError):
    """The file itself cannot be read as the format says (not one bad row)."""


def read(path: Path, kind: str, mapping: Mapping[str, str] | None = None) -> Iterator[Row]:
    """Rows of `path` read as `kind`. `mapping` renames source columns
    (column -> field; an empty field ignores the column) over the format's own."""
    columns = {**COLUMNS.get(kind, {}), **(mapping or {})}
    if kind in ("csv", "fittrackee", "vikunja"):
        rows = _csv(path)
    elif kind == "jsonl":
        rows = _jsonl(path)
    elif kind == "django":
        rows = _django(path)
    elif kind == "ldif":
        rows = read_ldif(path)
    else:
        raise FormatError(f"unknown format {kind!r} (one of {', '.join(FORMATS)})")
    for row in rows:
        yield Row(row.line, _renamed(row.fields, columns, kind), row.problem)


def _renamed(fields: Mapping[str, Value], columns: Mapping[str, str], kind: str) -> dict[str,
                                                                                        Value]:
    out: dict[str, Value] = {}
    for name, value in fields.items():
        field = columns.get(name, name if kind in ("csv", "jsonl", "ldif") else "")
        if field in FIELDS and (value not in (None, "") or field not in out):
            out[field] = value
    return out


def _csv(path: Path) -> Iterator[Row]:
    """A header row, then one row per user (psql's `\\copy ... CSV HEADER`: t/f, empty = NULL)."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise FormatError(f"{path}: no header row")
        for record in reader:
            if None in record:
                yield Row(reader.line_num, {}, "more values than columns")
                continue
            yield Row(reader.line_num, {k.strip(): v for k, v in record.items() if k})


def _jsonl(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                yield Row(number, {}, f"not JSON: {e.msg}")
                continue
            if not isinstance(record, dict):
                yield Row(number, {}, "not a JSON object")
                continue
            yield Row(number, {k: _text(v) for k, v in record.items()})


def _django(path: Path) -> Iterator[Row]:
    """`manage.py dumpdata` output: a JSON array of {model, pk, fields}.
    Users are the records whose fields hold a username and a password (auth.user
    or a custom user model); each keeps the line its record starts on."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    position = text.find("[")
    if position < 0:
        raise FormatError(f"{path}: not a dumpdata JSON array")
    position += 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return
        line = text.count("\n", 0, position) + 1
        try:
            record, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as e:
            raise FormatError(f"{path}:{line}: not JSON: {e.msg}") from e
        fields = record.get("fields") if isinstance(record, dict) else None
        if not isinstance(fields, dict) or "username" not in fields or "password" not in fields:
            continue  # groups, permissions, sessions...
        yield Row(line, {"pk": _text(record.get("pk")),
                         **{k: _text(v) for k, v in fields.items()}})


def _text(value: object) -> str | None:
    """JSON values as the CSV readers give them: text, booleans as true/false."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)

"""LDIF in and out (RFC 2849): people of another directory as rows, entries as text."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from app.migration.records import Row, Value

PERSON_CLASSES = {"inetorgperson", "person", "organizationalperson", "posixaccount"}
# Attribute (lower case) -> userdir field; the same table as app/directory/schema.py's.
ATTRIBUTES = {
    "uid": "username", "mail": "email", "givenname": "first_name", "sn": "last_name",
    "displayname": "display_name", "telephonenumber": "phone", "postaladdress": "address",
    "l": "location", "preferredlanguage": "language", "description": "bio",
    "userdirgender": "gender", "userdirbirthday": "birthday", "c": "country",
    "userdirtimezone": "timezone", "userdiremailverified": "email_verified",
    "uidnumber": "id", "jpegphoto": "photo", "createtimestamp": "created",
    "userdirforeignhash": "password_hash",
}
BINARY = {"jpegphoto", "userpassword"}
SAFE = re.compile(r"^[\x01-\x09\x0b-\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b-\x0c"
                  r"\x0e-\x7f]*$")
LOCKED_FOREVER = "000001010000Z"


def entries(text_lines: Iterable[str]) -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
    """(first line, [(attribute, raw value)]) per record, continuations unfolded,
    base64 values decoded, comments skipped."""
    record: list[tuple[str, bytes]] = []
    start = 0
    current: str | None = None
    for number, raw in enumerate(text_lines, 1):
        line = raw.rstrip("\r\n")
        if line.startswith(" ") and current is not None:
            current += line[1:]
            continue
        if current is not None:
            record.append(_value(current))
            current = None
        if not line.strip():
            if record:
                yield start, record
                record = []
            continue
        if line.startswith("#") or line.startswith("version:"):
            continue
        if not record and current is None:
            start = number
        current = line
    if current is not None:
        record.append(_value(current))
    if record:
        yield start, record


def _value(line: str) -> tuple[str, bytes]:
    name, _, rest = line.partition(":")
    if rest.startswith(":"):
        return name.strip(), base64.b64decode(rest[1:].strip())
    return name.strip(), rest.strip().encode()


def read_ldif(path: Path) -> Iterator[Row]:
    """The person entries of an LDIF file (slapcat, ldapsearch -LLL, lldap's
    export); groups, units and the like are no users and are passed over."""
    with path.open(encoding="utf-8", errors="surrogateescape") as f:
        for line, record in entries(f):
            attributes: dict[str, list[bytes]] = {}
            for name, value in record:
                attributes.setdefault(name.lower(), []).append(value)
            classes = {c.decode(errors="replace").lower()
                       for c in attributes.get("objectclass", [])}
            if "dn" not in attributes or not classes & PERSON_CLASSES:
                continue
            yield Row(line, person_fields(attributes))


def person_fields(attributes: Mapping[str, Sequence[bytes]]) -> dict[str, Value]:
    fields: dict[str, Value] = {}
    for name, field in ATTRIBUTES.items():
        found = attributes.get(name)
        if found:
            fields[field] = found[0] if name in BINARY else found[0].decode(errors="replace")
    if "address" in fields and isinstance(fields["address"], str):
        fields["address"] = fields["address"].replace("$", "\n")
    if "display_name" not in fields and attributes.get("cn"):
        fields["display_name"] = attributes["cn"][0].decode(errors="replace")
    if fields.get("last_name") == fields.get("username"):
        fields.pop("last_name")  # userdir's stand-in for "no last name"
    password = (attributes.get("userpassword") or [b""])[0].decode(errors="replace")
    if password.startswith("{"):
        fields.setdefault("password_hash", password)
    elif password:
        fields["password"] = password
    fields["active"] = "false" if _disabled(attributes) else "true"
    groups = [m.decode(errors="replace") for m in attributes.get("memberof", [])]
    if groups:
        fields["role"] = ",".join(g.split(",", 1)[0].partition("=")[2] for g in groups)
    return fields


def _disabled(attributes: Mapping[str, Sequence[bytes]]) -> bool:
    if any(v.decode(errors="replace") == LOCKED_FOREVER
           for v in attributes.get("pwdaccountlockedtime", [])):
        return True
    ends = [v.decode(errors="replace") for v in attributes.get("pwdendtime", [])]
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return any(end[:14] <= now for end in ends)


def record(dn: str, attributes: Mapping[str, Sequence[str | bytes]]) -> str:
    """One entry as LDIF text (values that are not safe strings in base64)."""
    lines = [_line("dn", dn)]
    for name, found in attributes.items():
        lines.extend(_line(name, value) for value in found)
    return "\n".join(lines) + "\n\n"


def _line(name: str, value: str | bytes) -> str:
    if isinstance(value, str) and SAFE.match(value) and not value.endswith(" "):
        return f"{name}: {value}"
    data = value.encode() if isinstance(value, str) else value
    return f"{name}:: {base64.b64encode(data).decode()}"

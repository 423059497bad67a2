"""A source row becomes a checked Candidate, or the reason it cannot."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

from app.domain import (
    ADMIN,
    STAFF,
    AccountTypes,
    DomainError,
    Profile,
    check_password,
    check_profile,
    is_valid_username,
)
from app.migration import hashes
from app.migration.records import Candidate, Row, Value
from app.pictures import Pictures

TRUE = {"t", "true", "1", "yes", "y", "on"}
FALSE = {"f", "false", "0", "no", "n", "off", ""}
PROFILE_FIELDS = ("email", "first_name", "last_name", "display_name", "phone", "address",
                  "location", "language", "bio", "gender", "country", "timezone")
# Roles of FitTrackee >= 0.9 (and group names of an LDIF's memberOf).
ROLE_TYPES = {"owner": ADMIN, "admin": ADMIN, "moderator": STAFF, "staff": STAFF}
MAX_PICTURE_BYTES = 20 * 1024 * 1024


class RowError(ValueError):
    """Why a row cannot be imported: reported with its line, the rest goes on."""


def text(row: Row, name: str) -> str | None:
    value = row.fields.get(name)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    value = value.strip() if value is not None else None
    return value or None


def flag(row: Row, name: str) -> bool | None:
    value = text(row, name)
    if value is None:
        return None
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise RowError(f"{name}: not a boolean: {value[:20]!r}")


class Mapper:
    """Checks every value as the service would (usernames, emails, profile
    fields, account types) before anything is written."""

    def __init__(self, types: AccountTypes, pictures_dir: Path | None = None,
                 pictures: Pictures | None = None) -> None:
        self.types = types
        self.pictures_dir = pictures_dir
        self.pictures = pictures or Pictures()

    def candidate(self, row: Row) -> Candidate:
        if row.problem:
            raise RowError(row.problem)
        username = text(row, "username")
        if username is None:
            raise RowError("no username")
        if not is_valid_username(username):
            raise RowError(f"invalid username {username[:80]!r} (letters, digits and "
                           "@ . + - _, at most 64)")
        try:
            profile = check_profile(self._profile(row))
        except DomainError as e:
            raise RowError(f"{getattr(e, 'field', 'value')}: {e.message}") from e
        found = Candidate(row.line, username, self._account_type(row), self._active(row),
                          profile, uid_number=self._id(row), created=self._created(row))
        self._password(row, found)
        found.photo = self._photo(row, found)
        return found

    def _profile(self, row: Row) -> Profile:
        values: dict[str, object] = {f: text(row, f) for f in PROFILE_FIELDS if text(row, f)}
        birthday = text(row, "birthday")
        if birthday:
            try:
                values["birthday"] = date.fromisoformat(birthday[:10])
            except ValueError as e:
                raise RowError(f"birthday: not a date: {birthday[:20]!r}") from e
        verified = flag(row, "email_verified")
        if "email" in values:
            # The source system had the user use this address: verified unless it says not.
            values["email_verified"] = verified if verified is not None else True
        return Profile(**values)  # type: ignore[arg-type]

    def _account_type(self, row: Row) -> str:
        named = text(row, "account_type")
        if named is not None:
            if named not in self.types:
                raise RowError(f"account_type: unknown {named!r} (valid: "
                               f"{', '.join(self.types.names)})")
            return named
        wanted = [t for t in (text(row, "role") or "").lower().split(",") if t]
        if flag(row, "admin") or any(ROLE_TYPES.get(r) == ADMIN for r in wanted):
            return ADMIN
        staff = flag(row, "staff") or any(ROLE_TYPES.get(r) == STAFF for r in wanted)
        if staff and STAFF in self.types:
            return STAFF
        configured = [r for r in wanted if r in self.types]
        return self.types.pick(configured) if configured else self.types.default

    def _active(self, row: Row) -> bool:
        if text(row, "suspended"):  # FitTrackee: suspended_at set
            return False
        status = text(row, "status")  # Vikunja: 0 active, else confirmation/disabled/locked
        if status is not None and status not in ("0", "active"):
            return False
        active = flag(row, "active")
        return True if active is None else active

    def _id(self, row: Row) -> int | None:
        value = text(row, "id")
        if value is None:
            return None
        if not value.isdigit() or not 0 < int(value) < 2**31:
            raise RowError(f"id: not a positive integer: {value[:20]!r}")
        return int(value)

    def _created(self, row: Row) -> str | None:
        """Any ISO 8601 time, Unix seconds (Vikunja) or GeneralizedTime, as GeneralizedTime."""
        value = text(row, "created")
        if value is None:
            return None
        if re.fullmatch(r"\d{14}(\.\d+)?Z", value):
            return value[:14] + "Z"
        try:
            moment = datetime.fromtimestamp(int(value), UTC) if value.isdigit() else \
                datetime.fromisoformat(value.replace(" ", "T"))
        except (ValueError, OverflowError):
            return None  # a date we cannot read is no reason to leave the user out
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")

    def _password(self, row: Row, found: Candidate) -> None:
        hashed = text(row, "password_hash")
        clear = text(row, "password")
        if hashed and not hashed.startswith("!"):  # Django: "!..." is an unusable password
            try:
                found.password = hashes.convert(hashed)
            except hashes.UnsupportedHash as e:
                found.warnings.append(f"password not imported: {e}")
        elif clear:
            try:
                check_password(clear)
            except DomainError as e:
                raise RowError(f"password: {e.message}") from e
            found.cleartext = clear
        if found.password is None and found.cleartext is None:
            found.warnings.append("no usable password: cannot log in until an admin sets one")

    def _photo(self, row: Row, found: Candidate) -> bytes | None:
        raw: Value = row.fields.get("photo")
        name = text(row, "picture")
        if raw is None and name and name.lower() not in TRUE | FALSE:
            raw = self._picture_file(name, found)
        if not raw:
            return None
        try:
            return self.pictures.normalise(raw if isinstance(raw, bytes) else raw.encode())
        except (DomainError, ValueError, OSError) as e:
            found.warnings.append(f"picture not imported: {getattr(e, 'message', '') or e}")
            return None

    def _picture_file(self, name: str, found: Candidate) -> bytes | None:
        if self.pictures_dir is None:
            found.warnings.append("picture not imported: no --pictures-dir given")
            return None
        root = self.pictures_dir.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            found.warnings.append(f"picture not imported: no file {name!r} in --pictures-dir")
            return None
        if path.stat().st_size > MAX_PICTURE_BYTES:
            found.warnings.append("picture not imported: larger than 20 MiB")
            return None
        return path.read_bytes()

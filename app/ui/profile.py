"""Profile fields as the console's forms show and read them, and the picture crop field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile

from app.domain import InvalidInput, Profile, User, UserChanges
from app.pictures import Crop, InvalidPicture


@dataclass(frozen=True)
class Field:
    name: str  # a Profile field, and the form field's name
    label: str
    kind: str = "text"  # an <input> type, or "textarea"
    autocomplete: str = "off"


FIELDS = [
    Field("first_name", "First name", autocomplete="given-name"),
    Field("last_name", "Last name", autocomplete="family-name"),
    Field("display_name", "Display name", autocomplete="nickname"),
    Field("email", "Email", "email", "email"),
    Field("phone", "Phone", "tel", "tel"),
    Field("location", "Location", autocomplete="address-level2"),
    Field("address", "Address", "textarea", "street-address"),
    Field("country", "Country code", autocomplete="country"),
    Field("language", "Language", autocomplete="language"),
    Field("timezone", "Time zone"),
    Field("birthday", "Birthday", "date", "bday"),
    Field("gender", "Gender", autocomplete="sex"),
    Field("bio", "Bio", "textarea"),
]


def values_of(user: User) -> dict[str, str]:
    """What the form shows for a user: every field as text."""
    shown = {f.name: getattr(user, f.name) for f in FIELDS}
    return {name: "" if value is None else str(value) for name, value in shown.items()}


def changes_from(fields: dict[str, str]) -> UserChanges:
    """The profile fields present in a form (blank removes a value); the
    service checks them (app/domain.py check_profile)."""
    given: dict[str, Any] = {f.name: fields[f.name].strip() if f.kind != "textarea"
                             else fields[f.name] for f in FIELDS if f.name in fields}
    if given.get("birthday"):
        try:
            given["birthday"] = date.fromisoformat(given["birthday"])
        except ValueError as e:
            raise InvalidInput("birthday", "Enter a valid date (YYYY-MM-DD).") from e
    return UserChanges(profile=Profile(**given))


def display_name(user: User) -> str:
    full = " ".join(n for n in (user.first_name, user.last_name) if n)
    return user.display_name or full


async def upload(request: Request[Any, Any, Any]) -> tuple[bytes, Crop | None]:
    """The picture of a console form and the square chosen for it, if any
    (four whole numbers: the crop widget's fields)."""
    posted = await request.form()
    picture = posted.get("picture")
    if not isinstance(picture, UploadFile):
        raise InvalidPicture("Choose a picture first.")
    raw = await picture.read()
    if not raw:
        raise InvalidPicture("Choose a picture first.")
    numbers = [str(posted.get(f"crop_{n}", "")) for n in ("left", "top", "side", "width")]
    if not all(n.isdigit() and len(n) <= 6 for n in numbers):
        return raw, None
    left, top, side, width = (int(n) for n in numbers)
    return raw, Crop(left, top, side, width) if side > 0 and width > 0 else None

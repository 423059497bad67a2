"""Bodies of the accounts dialect, checked field by field with Django REST Framework's messages."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from msgspec import UNSET, Meta, Struct, UnsetType

from app.domain import (
    InvalidInput,
    NewUser,
    Profile,
    User,
    UserChanges,
    check_password,
    check_profile,
    is_valid_email,
)

REQUIRED = "This field is required."
NOT_NULL = "This field may not be null."
BLANK = "This field may not be blank."
GENDERS = ("M", "F", "O")
# ISO 3166-1 alpha-2, the officially assigned codes.
COUNTRIES = frozenset({
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX",
    "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ",
    "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK",
    "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM",
    "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR",
    "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS",
    "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN",
    "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN",
    "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV",
    "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ",
    "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI",
    "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM",
    "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC",
    "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV",
    "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR",
    "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
})
Given = str | None | UnsetType  # absent, null or a string: each gets its own message
# Request bodies are frozen so that an empty body can default to an empty
# instance: DRF reads a request without a body as {}.
Email = Annotated[str, Meta(examples=["user@example.com"])]


class FieldErrors(Exception):
    """DRF's `{"<field>": ["<message>"]}`, every field at once."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("invalid fields")
        self.errors = errors


class Fields:
    """Checks one body's fields the way a DRF serializer does, collecting every error."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def text(self, name: str, value: Given, *, required: bool, max_length: int = 150,
             nullable: bool = False, blank: bool = False) -> str | UnsetType | None:
        """DRF's CharField: trimmed; absent, null and blank refused unless allowed."""
        if value is UNSET or value is None:
            if value is UNSET and required:
                self.fail(name, REQUIRED)
            elif value is None and not nullable:
                self.fail(name, NOT_NULL)
            return value if value is None and nullable else UNSET
        text = value.strip()
        if not text and not blank:
            self.fail(name, BLANK)
            return UNSET
        if len(text) > max_length:
            self.fail(name, f"Ensure this field has no more than {max_length} characters.")
            return UNSET
        return text

    def email(self, name: str, value: Given, *, required: bool) -> str | UnsetType:
        text = self.text(name, value, required=required, max_length=254)
        if isinstance(text, str) and not is_valid_email(text):
            self.fail(name, "Enter a valid email address.")
            return UNSET
        return text if isinstance(text, str) else UNSET

    def password(self, name: str, value: Given) -> str | UnsetType:
        """Not trimmed: spaces at either end are part of a password."""
        if self.text(name, value, required=True, max_length=1024) is UNSET:
            return UNSET
        assert isinstance(value, str)
        try:
            check_password(value)
        except InvalidInput as e:
            self.fail(name, e.message)
            return UNSET
        return value

    def phone(self, name: str, value: Given, *, required: bool) -> str | UnsetType:
        text = self.text(name, value, required=required, max_length=256)
        if isinstance(text, str) and re.fullmatch(r"\+[0-9]{7,15}", text) is None:
            self.fail(name, "Enter a valid phone number.")
            return UNSET
        return text if isinstance(text, str) else UNSET

    def choice(self, name: str, value: Given, choices: tuple[str, ...], *,
               required: bool) -> str | UnsetType:
        text = self.text(name, value, required=required)
        if isinstance(text, str) and text not in choices:
            self.fail(name, f'"{text}" is not a valid choice.')
            return UNSET
        return text if isinstance(text, str) else UNSET

    def country(self, name: str, value: Given, *, required: bool) -> str | UnsetType:
        text = self.text(name, value, required=required)
        if isinstance(text, str) and text.upper() not in COUNTRIES:
            self.fail(name, "Enter a valid country code.")
            return UNSET
        return text.upper() if isinstance(text, str) else UNSET

    def birthday(self, name: str, value: Given) -> date | UnsetType | None:
        if value is UNSET or value is None:
            return value
        try:
            if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip()):
                return date.fromisoformat(value.strip())
        except ValueError:
            pass
        self.fail(name, "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.")
        return UNSET

    def done(self) -> None:
        if self.errors:
            raise FieldErrors(self.errors)

    def checked(self, profile: Profile) -> Profile:
        """Raise what was found; then what the directory itself cannot store."""
        self.done()
        try:
            return check_profile(profile)
        except InvalidInput as e:
            raise FieldErrors({e.field: [e.message]}) from e


def username_from_email(email: str) -> str:
    """The local part, cut down to what a username may hold (the service
    appends digits when it is taken); never shown by this dialect."""
    local = re.sub(r"[^a-z0-9._+-]", "", email.rpartition("@")[0].lower())
    return re.sub(r"^[^a-z0-9_]+", "", local)[:56] or "user"


# --- requests ----------------------------------------------------------------

class SignUpBody(Struct, frozen=True):
    email: Annotated[Given, Meta(examples=["user@example.com"])] = UNSET
    password: Annotated[Given, Meta(examples=["securepassword123"])] = UNSET
    confirm_password: Given = UNSET
    first_name: Annotated[Given, Meta(examples=["John"])] = UNSET
    last_name: Annotated[Given, Meta(examples=["Doe"])] = UNSET
    phone: Annotated[Given, Meta(examples=["+1234567890"])] = UNSET
    gender: Annotated[Given, Meta(examples=["M"], description="M, F or O")] = UNSET
    country: Annotated[Given, Meta(examples=["US"], description="ISO 3166-1 alpha-2")] = UNSET

    def to_new_user(self) -> NewUser:
        fields = Fields()
        email = fields.email("email", self.email, required=True)
        password = fields.password("password", self.password)
        confirm = fields.password("confirm_password", self.confirm_password)
        profile = Profile(
            email=email,
            first_name=fields.text("first_name", self.first_name, required=True),
            last_name=fields.text("last_name", self.last_name, required=True),
            phone=fields.phone("phone", self.phone, required=True),
            gender=fields.choice("gender", self.gender, GENDERS, required=True),
            country=fields.country("country", self.country, required=True),
        )
        profile = fields.checked(profile)
        if password != confirm:  # DRF's validate(): only once every field is valid
            raise FieldErrors({"confirm_password": ["Passwords do not match."]})
        assert isinstance(email, str) and isinstance(password, str)
        return NewUser(username=username_from_email(email), password=password, profile=profile)


class PatchBody(Struct, frozen=True):
    """Any subset; absent fields stay as they are."""

    email: Annotated[Given, Meta(examples=["new-email@example.com"])] = UNSET
    first_name: Given = UNSET
    last_name: Given = UNSET
    phone: Given = UNSET
    gender: Given = UNSET
    country: Given = UNSET
    address: Annotated[Given, Meta(examples=["123 Main Street, Some City"])] = UNSET
    birthday: Annotated[Given, Meta(examples=["1990-01-01"], description="YYYY-MM-DD")] = UNSET

    def to_changes(self) -> tuple[str | UnsetType, UserChanges]:
        """The new email (which waits for its code), and every other change."""
        fields = Fields()
        email = fields.email("email", self.email, required=False)
        profile = Profile(
            first_name=fields.text("first_name", self.first_name, required=False),
            last_name=fields.text("last_name", self.last_name, required=False),
            phone=fields.phone("phone", self.phone, required=False),
            gender=fields.choice("gender", self.gender, GENDERS, required=False),
            country=fields.country("country", self.country, required=False),
            address=fields.text("address", self.address, required=False, max_length=1024,
                                nullable=True, blank=True),
            birthday=fields.birthday("birthday", self.birthday),
        )
        return email, UserChanges(profile=fields.checked(profile))


class VerifyBody(Struct, frozen=True):
    email: Annotated[Given, Meta(examples=["user@example.com"])] = UNSET
    otp: Annotated[Given, Meta(examples=["123456"])] = UNSET

    def checked(self) -> tuple[str, str]:
        fields = Fields()
        email = fields.email("email", self.email, required=True)
        otp = fields.text("otp", self.otp, required=True, max_length=32)
        fields.done()
        assert isinstance(email, str) and isinstance(otp, str)
        return email, otp


class EmailBody(Struct, frozen=True):
    email: Annotated[Given, Meta(examples=["user@example.com"])] = UNSET

    def checked(self) -> str:
        fields = Fields()
        email = fields.email("email", self.email, required=True)
        fields.done()
        assert isinstance(email, str)
        return email


class TokenBody(Struct, frozen=True):
    """simplejwt's serializer: plain CharFields (an odd email is just a failed login)."""

    email: Annotated[Given, Meta(examples=["user@example.com"])] = UNSET
    password: Given = UNSET

    def checked(self) -> tuple[str, str]:
        fields = Fields()
        email = fields.text("email", self.email, required=True, max_length=254)
        password = fields.password("password", self.password)
        fields.done()
        assert isinstance(email, str) and isinstance(password, str)
        return email, password


class RefreshBody(Struct, frozen=True):
    refresh: Given = UNSET

    def checked(self) -> str:
        fields = Fields()
        token = fields.text("refresh", self.refresh, required=True, max_length=4096)
        fields.done()
        assert isinstance(token, str)
        return token


# --- responses ---------------------------------------------------------------

class AccountSummary(Struct):
    """The seed's sign-up `data` and PATCH response."""

    id: Annotated[int, Meta(examples=[1])]
    email: Email | None
    first_name: Annotated[str, Meta(examples=["John"])]
    last_name: Annotated[str, Meta(examples=["Doe"])]
    phone: Annotated[str | None, Meta(examples=["+1234567890"])]
    gender: Annotated[str | None, Meta(examples=["M"])]
    country: Annotated[str | None, Meta(examples=["US"])]
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, user: User) -> AccountSummary:
        # Django's CharFields hold "" rather than null for a missing name.
        return cls(id=user.id or 0, email=user.email, first_name=user.first_name or "",
                   last_name=user.last_name or "", phone=user.phone, gender=user.gender,
                   country=user.country, created_at=user.created, updated_at=user.updated)


class AccountUser(Struct):
    id: Annotated[int, Meta(examples=[1])]
    email: Email | None
    first_name: str
    last_name: str
    phone: str | None
    photo: Annotated[str | None, Meta(examples=["http://localhost:8000/api/v1/accounts/users/1/photo/"])]
    address: str | None
    gender: str | None
    country: str | None
    birthday: date | None
    has_initial_profile: bool
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, user: User, photo: str | None) -> AccountUser:
        return cls(id=user.id or 0, email=user.email, first_name=user.first_name or "",
                   last_name=user.last_name or "", phone=user.phone, photo=photo,
                   address=user.address, gender=user.gender, country=user.country,
                   birthday=user.birthday,
                   has_initial_profile=bool(user.address and user.birthday),
                   created_at=user.created, updated_at=user.updated)


class SignedUp(Struct):
    msg: Annotated[str, Meta(examples=["Email sent successfully!"])]
    data: AccountSummary


class Message(Struct):
    msg: str


class TokenPairBody(Struct):
    refresh: str
    access: str


class AccessBody(Struct):
    access: str


class UserNotFound(Struct):
    """An unknown id: `error` (the seed); an unknown path: DRF's `detail`."""

    error: str | UnsetType = UNSET
    detail: str | UnsetType = UNSET

"""Plain domain types, account types and errors; nothing of Litestar or ldap3."""

from __future__ import annotations

import enum
import re
import zoneinfo
from collections.abc import Sequence
from datetime import date, datetime

import msgspec
from msgspec import UNSET, Struct, UnsetType

# One allow-list for usernames, checked before a name ever reaches a DN
# (ldap3's escape_rdn crashes on "" and mis-escapes NUL). It is the ASCII
# subset of what Django accepts (letters, digits and @ . + - _).
USERNAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9._@+-]{0,63}"
# Deliberately plain: one @, no spaces or control characters, a dot in the domain.
EMAIL_PATTERN = r"[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f.]+(\.[^@\s\x00-\x1f\x7f.]+)+"
# Spaces only inside: LDAP ignores them at either end ("admin " is "admin").
GROUP_NAME_PATTERN = r"[A-Za-z0-9_]([A-Za-z0-9._ -]{0,62}[A-Za-z0-9._-])?"
ADMIN = "admin"
STAFF = "staff"


def is_valid_username(value: str) -> bool:
    return re.fullmatch(USERNAME_PATTERN, value) is not None


def is_valid_email(value: str) -> bool:
    return len(value) <= 254 and re.fullmatch(EMAIL_PATTERN, value) is not None


class AccountTypes:
    """The configured account types, least privileged first; `admin` is always one."""

    def __init__(self, names: Sequence[str], default: str) -> None:
        self.names = tuple(names)
        self.default = default

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def rank(self, name: str) -> int:
        return self.names.index(name)

    def pick(self, memberships: Sequence[str]) -> str:
        """The type of a user: the highest one he belongs to, else the default.

        userdir keeps exactly one; several or none only happen when an LDAP
        tool edited the groups, and then the most privileged one counts.
        """
        present = [name for name in self.names if name in memberships]
        return present[-1] if present else self.default

    @staticmethod
    def is_staff(name: str) -> bool:
        return name in (STAFF, ADMIN)


class User(Struct, frozen=True, kw_only=True):
    uuid: str
    id: int | None
    username: str
    account_type: str
    active: bool
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    phone: str | None = None
    address: str | None = None
    location: str | None = None
    language: str | None = None
    bio: str | None = None
    gender: str | None = None
    birthday: date | None = None
    country: str | None = None
    timezone: str | None = None
    email_verified: bool = False
    pending_email: str | None = None
    created: datetime | None = None
    updated: datetime | None = None
    last_login: datetime | None = None
    password_changed: datetime | None = None
    # pwdChangedTime as stored: tokens carry it and die when it changes.
    password_stamp: str = ""
    # slapd's password policy refuses binds until then (failed logins).
    locked_until: datetime | None = None
    # The entry's change stamp (entryCSN): it changes with every write to it.
    version: str = ""

    @property
    def is_admin(self) -> bool:
        return self.account_type == ADMIN

    def may_log_in(self, now: datetime) -> bool:
        """Would slapd let a bind through (given the right password)?"""
        return self.active and (self.locked_until is None or self.locked_until <= now)

    @property
    def is_staff(self) -> bool:
        return AccountTypes.is_staff(self.account_type)


class Principal(Struct, frozen=True, kw_only=True):
    """Who is calling: what authorization needs, read afresh on every request
    (a small read: the profile fields are not part of it)."""

    uuid: str
    id: int | None
    username: str
    account_type: str
    active: bool
    password_changed: datetime | None = None
    password_stamp: str = ""

    @property
    def is_admin(self) -> bool:
        return self.account_type == ADMIN

    @property
    def is_staff(self) -> bool:
        return AccountTypes.is_staff(self.account_type)


class Profile(Struct, kw_only=True):
    """Profile fields to write. UNSET: leave as is; None: remove."""

    email: str | UnsetType | None = UNSET
    first_name: str | UnsetType | None = UNSET
    last_name: str | UnsetType | None = UNSET
    display_name: str | UnsetType | None = UNSET
    phone: str | UnsetType | None = UNSET
    address: str | UnsetType | None = UNSET
    location: str | UnsetType | None = UNSET
    language: str | UnsetType | None = UNSET
    bio: str | UnsetType | None = UNSET
    gender: str | UnsetType | None = UNSET
    birthday: date | UnsetType | None = UNSET
    country: str | UnsetType | None = UNSET
    timezone: str | UnsetType | None = UNSET
    email_verified: bool | UnsetType = UNSET
    pending_email: str | UnsetType | None = UNSET


class NewUser(Struct, kw_only=True):
    username: str
    password: str
    account_type: str | None = None
    active: bool = True
    profile: Profile = msgspec.field(default_factory=Profile)


class UserChanges(Struct, kw_only=True):
    """A partial update: a new username (a rename) and/or profile fields."""

    username: str | UnsetType = UNSET
    profile: Profile = msgspec.field(default_factory=Profile)


class SortKey(enum.Enum):
    USERNAME = "username"
    DISPLAY_NAME = "display_name"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    EMAIL = "email"
    CREATED = "created"
    LAST_LOGIN = "last_login"
    ID = "id"
    ACTIVE = "active"
    ACCOUNT_TYPE = "account_type"
    IS_ADMIN = "is_admin"  # non-admins (whatever their type), then admins
    IS_STAFF = "is_staff"  # users, then staff and admins together


# Keys on the account type (group memberships, which slapd cannot sort on).
TYPE_SORT_KEYS = frozenset({SortKey.ACCOUNT_TYPE, SortKey.IS_ADMIN, SortKey.IS_STAFF})


class Match(Struct, frozen=True, kw_only=True):
    """One field against one value. `field` is a User field name; `active`
    takes "true"/"false". Substring matches follow LDAP's matching rules,
    which ignore case for names and addresses."""

    field: str
    value: str
    contains: bool = False
    case_sensitive: bool = False
    negate: bool = False


class Combine(Struct, frozen=True, kw_only=True):
    """All (or, with `any`, at least one) of the parts."""

    parts: tuple[Match | Combine, ...]
    any: bool = False
    negate: bool = False


Filter = Match | Combine


class Order(Struct, frozen=True):
    key: SortKey
    descending: bool = False


class UserQuery(Struct, kw_only=True, frozen=True):
    """A listing: filters, sort keys (ties in creation order), a window.

    `text` is a substring of username, names or email; `where` any filter
    tree. ACCOUNT_TYPE, IS_ADMIN and IS_STAFF only come before other keys."""

    text: str | None = None
    exact: tuple[tuple[str, str], ...] = ()
    active: bool | None = None
    account_type: str | None = None
    where: Filter | None = None
    sort: SortKey = SortKey.ID
    descending: bool = False
    then: tuple[Order, ...] = ()
    offset: int = 0
    limit: int = 50
    # Leave out sign-ups still waiting for their email code (for non-admins).
    verified_only: bool = False


class Page(Struct, frozen=True):
    users: list[User]
    total: int


class Group(Struct, frozen=True, kw_only=True):
    name: str
    description: str | None
    members: list[str]
    account_type: bool


class DomainError(Exception):
    """Base of every error the service reports; each dialect maps them."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    def __init__(self, field: str, message: str = "") -> None:
        super().__init__(message or f"{field} already exists")
        self.field = field


class InvalidInput(DomainError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PolicyViolation(DomainError):
    """slapd's password policy refused a password; the message is slapd's."""


class LastAdmin(DomainError):
    """The change would leave the directory without an admin."""


class PermissionDenied(DomainError):
    pass


class AuthenticationFailed(DomainError):
    """Wrong credentials, unknown user or a disabled account: one answer for all."""


class InvalidCode(DomainError):
    """An email code that is wrong, expired, used up or was never sent: one answer for all."""


class Throttled(DomainError):
    """Too many attempts from this client or on this account: HTTP 429, and
    `retry_after` seconds to wait."""

    def __init__(self, retry_after: int, message: str = "") -> None:
        super().__init__(message or f"too many attempts; retry in {retry_after} s")
        self.retry_after = max(1, retry_after)


class TooSoon(Throttled):
    """Another email code was asked for before mail.resend_interval passed."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after, f"another code may be sent in {retry_after} s")


class Busy(DomainError):
    """The directory asked us to come back later (retryable)."""

    retry_after = 1


class Overloaded(Busy):
    """Too much work already waits for the directory: refused at once, not queued."""


class Unavailable(DomainError):
    """The directory does not answer."""


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FIELD_LIMITS = {"bio": 4096, "address": 1024, "gender": 64, "timezone": 64, "language": 35,
                 "phone": 32, "country": 2}
_FIELD_PATTERNS = {
    "country": (r"[A-Za-z]{2}", "Enter a valid country code."),
    "language": (r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*", "Enter a valid language tag."),
    "phone": (r"\+?[0-9][0-9 ()./-]{0,31}", "Enter a valid phone number."),
}


MAX_PASSWORD_BYTES = 1024  # auth.max_password_length's default


def check_password(password: str, max_bytes: int = MAX_PASSWORD_BYTES) -> None:
    """Only what LDAP itself cannot carry; strength is slapd's password policy.
    The length counts UTF-8 bytes, as slapd's pwdMaxLength does."""
    if not password:
        raise InvalidInput("password", "This field may not be blank.")
    if len(password.encode("utf-8", "surrogatepass")) > max_bytes or "\x00" in password:
        raise InvalidInput("password",
                           f"Passwords are at most {max_bytes} bytes long, without NUL.")


def check_profile(profile: Profile) -> Profile:
    """Refuse what cannot be stored; blank strings mean "remove the value"."""
    checked: dict[str, object] = {}
    for field in profile.__struct_fields__:
        value = getattr(profile, field)
        if isinstance(value, str):
            value = _checked_text(field, value)
        checked[field] = value
    return Profile(**checked)  # type: ignore[arg-type]


def _checked_text(field: str, value: str) -> str | None:
    if value == "":
        return None
    multiline = field in ("address", "bio")
    if _CONTROL.search(value) or (not multiline and ("\n" in value or "\r" in value)):
        raise InvalidInput(field, "Control characters are not allowed.")
    limit = _FIELD_LIMITS.get(field, 256)
    if len(value) > limit:
        raise InvalidInput(field, f"Ensure this field has no more than {limit} characters.")
    if field in ("email", "pending_email") and not is_valid_email(value):
        raise InvalidInput(field, "Enter a valid email address.")
    if field in _FIELD_PATTERNS:
        pattern, message = _FIELD_PATTERNS[field]
        if re.fullmatch(pattern, value) is None:
            raise InvalidInput(field, message)
    if field == "country":
        return value.upper()
    if field == "timezone" and not _is_timezone(value):
        raise InvalidInput(field, "Enter a valid IANA time zone.")
    return value


def _is_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True

"""Accounts as identity providers see them (SCIM): plain types, no LDAP, no pydantic."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

import msgspec
from msgspec import Struct

from app.domain import DomainError, InvalidInput, User

# Phone numbers by kind, each in its own inetOrgPerson attribute (mapped in
# app/directory/accounts.py); "work" is the `phone` every dialect shows.
PHONE_KINDS = ("work", "mobile", "home", "fax")
PhoneKind = Literal["work", "mobile", "home", "fax"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 5646 in short, as domain.py checks preferredLanguage.
_LOCALE = re.compile(r"[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*")
_PHONE = re.compile(r"\+?[0-9][0-9 ()./-]{0,31}")


class Address(Struct, frozen=True, kw_only=True):
    """The one postal address kept: postalAddress, street, l, st, postalCode, c."""

    formatted: str | None = None
    street: str | None = None
    locality: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None

    @property
    def empty(self) -> bool:
        return not any(msgspec.structs.astuple(self))


class AccountState(Struct, frozen=True, kw_only=True):
    """What an identity provider writes, whole (a SCIM PUT, or a PATCH applied).

    None is "no value". `manager` is the manager's id (entryUUID)."""

    username: str
    active: bool = True
    account_type: str | None = None  # None: keep it (on create: the default type)
    password: str | None = None  # write-only; None: keep it (on create: a random one)
    external_id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    title: str | None = None
    phones: dict[str, str] = msgspec.field(default_factory=dict)  # PhoneKind -> number
    address: Address = msgspec.field(default_factory=Address)
    language: str | None = None
    locale: str | None = None
    timezone: str | None = None
    employee_number: str | None = None
    department: str | None = None
    manager: str | None = None


class GroupRef(Struct, frozen=True):
    uuid: str
    name: str


class Account(Struct, frozen=True, kw_only=True):
    """An account as stored: its state, what the directory keeps about it, its groups."""

    uuid: str
    state: AccountState
    groups: tuple[GroupRef, ...] = ()
    created: datetime | None = None
    updated: datetime | None = None
    version: str = ""

    @classmethod
    def of(cls, user: User, state: AccountState, groups: tuple[GroupRef, ...]) -> Account:
        return cls(uuid=user.uuid, state=state, groups=groups, created=user.created,
                   updated=user.updated, version=user.version)


class VersionMismatch(DomainError):
    """The entry changed since the version the client holds (HTTP 412)."""


class TokenInfo(Struct, frozen=True, kw_only=True):
    """A provisioning token as listed: never the token itself."""

    name: str
    scopes: tuple[str, ...]
    created: datetime | None = None
    last_used: datetime | None = None
    description: str | None = None


class MemberRef(Struct, frozen=True):
    uuid: str
    username: str


class Team(Struct, frozen=True, kw_only=True):
    """An ordinary group (account-type groups are never one): name, members by id."""

    uuid: str
    name: str
    external_id: str | None = None
    members: tuple[MemberRef, ...] = ()
    created: datetime | None = None
    updated: datetime | None = None
    version: str = ""


# --- a filter tree any protocol can build; app/directory/scim_filters.py makes LDAP of it ---

Operator = Literal["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr"]


class Compare(Struct, frozen=True):
    """`path operator value`: path is an attribute path, lower case
    ("username", "emails.type", "<schema urn>:department"); `pr` has no value."""

    path: str
    operator: Operator
    value: str | bool | int | float | datetime | None = None


class Within(Struct, frozen=True):
    """A value path: some value of a multi-valued attribute matches `condition`."""

    path: str
    condition: Condition


class AllOf(Struct, frozen=True):
    parts: tuple[Condition, ...]


class AnyOf(Struct, frozen=True):
    parts: tuple[Condition, ...]


class Negation(Struct, frozen=True):
    part: Condition


Condition = Compare | Within | AllOf | AnyOf | Negation


class Listing(Struct, frozen=True, kw_only=True):
    """A filtered, sorted window: `sort_by` is an attribute path as in Compare."""

    where: Condition | None = None
    sort_by: str | None = None
    descending: bool = False
    offset: int = 0
    limit: int = 100
    with_members: bool = True  # groups: whether the members are wanted


# --- checks of the fields the domain's check_profile does not know ---

_LIMITS = {"title": 256, "street": 256, "region": 128, "postal_code": 40,
           "employee_number": 64, "department": 128, "external_id": 256, "locale": 64}


def checked_text(field: str, value: str | None) -> str | None:
    """Blank is "no value" (LDAP keeps no empty strings); control characters
    and over-long values are refused before anything is written."""
    if value is None or value.strip() == "":
        return None
    if _CONTROL.search(value):
        raise InvalidInput(field, "Control characters are not allowed.")
    limit = _LIMITS.get(field, 256)
    if len(value) > limit:
        raise InvalidInput(field, f"Ensure this field has no more than {limit} characters.")
    if field == "locale" and not _LOCALE.fullmatch(value):
        raise InvalidInput(field, "Enter a valid locale, e.g. en-US.")
    return value


def checked_phone(kind: str, value: str) -> str:
    if kind not in PHONE_KINDS:
        raise InvalidInput("phoneNumbers", f"unknown phone type {kind!r}")
    if not _PHONE.fullmatch(value):
        raise InvalidInput("phoneNumbers", "Enter a valid phone number.")
    return value

"""Request and response bodies of the nervai dialect, and its field checks (flask-restx's words)."""

from __future__ import annotations

from datetime import datetime

from msgspec import UNSET, Struct, UnsetType

from app.domain import AccountTypes, NewUser, User

# The seed's reqparse help texts, which flask-restx puts under "errors".
BLANK = {
    "username": "Username cannot be blank",
    "password": "Password cannot be blank",
    "account_type": "Account type cannot be blank",
}
VALIDATION_FAILED = "Input payload validation failed"


class Credentials(Struct):
    username: str | None = None
    password: str | None = None


class NewUserBody(Struct):
    username: str | None = None
    password: str | None = None
    account_type: str | None = None

    def to_domain(self, types: AccountTypes) -> NewUser:
        given = required(username=self.username, password=self.password,
                         account_type=self.account_type)
        return NewUser(username=given["username"], password=given["password"],
                       account_type=known_type(given["account_type"], types))


class TypeBody(Struct):
    account_type: str | None = None

    def to_domain(self, types: AccountTypes) -> str:
        return known_type(required(account_type=self.account_type)["account_type"], types)


class DeleteBody(Struct):
    username: str | None = None


class NervaiUser(Struct):
    id: int | None
    username: str
    account_type: str
    email: str | None
    created_at: datetime | None
    updated_at: datetime | None
    last_login: datetime | None

    @classmethod
    def of(cls, user: User) -> NervaiUser:
        return cls(id=user.id, username=user.username, account_type=user.account_type,
                   email=user.email, created_at=user.created, updated_at=user.updated,
                   last_login=user.last_login)


class LoginResponse(Struct):
    access_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 - the OAuth 2 token type, not a secret


class Availability(Struct):
    username: str
    available: bool


class Message(Struct):
    """Every error, and some successes: flask-restx's `abort()` body."""

    message: str
    errors: dict[str, str] | UnsetType = UNSET


class PayloadInvalid(Exception):
    """Field errors, worded like flask-restx reqparse."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(VALIDATION_FAILED)
        self.errors = errors


class BadRequest(Exception):
    """A 400 with a message of this dialect's own."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def required(**fields: str | None) -> dict[str, str]:
    """The fields, or PayloadInvalid naming every missing or blank one."""
    blank = {name: BLANK[name] for name, value in fields.items()
             if value is None or not value.strip()}
    if blank:
        raise PayloadInvalid(blank)
    return {name: value for name, value in fields.items() if value is not None}


def known_type(account_type: str, types: AccountTypes) -> str:
    if account_type not in types:
        raise BadRequest(f"Invalid account type. Valid account types: {', '.join(types.names)}.")
    return account_type

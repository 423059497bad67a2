"""Request and response bodies of the native API (msgspec structs, with examples)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from msgspec import UNSET, Meta, Struct, UnsetType

from app.domain import Group, NewUser, Profile, User, UserChanges

Username = Annotated[str, Meta(min_length=1, max_length=64, examples=["alice"])]
# Its longest (auth.max_password_length, in bytes) is the service's to check.
Password = Annotated[str, Meta(min_length=1, examples=["correct-Horse-battery-9"])]
Email = Annotated[str, Meta(max_length=254, examples=["alice@example.org"])]
Text = Annotated[str, Meta(max_length=4096)]


class TokenRequest(Struct, forbid_unknown_fields=True):
    """Either `username` or `email`, and the password."""

    password: Password
    username: Username | None = None
    email: Email | None = None


class TokenResponse(Struct):
    access_token: Annotated[str, Meta(examples=["eyJhbGciOiJFUzI1NiIsImtpZCI6Ii4uLiJ9..."])]
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth 2 token type, not a secret
    expires_in: Annotated[int, Meta(examples=[900])] = 900


class RefreshRequest(Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, Meta(min_length=1, max_length=4096)]


class Person(Struct):
    id: Annotated[int | None, Meta(examples=[10001])]
    uuid: Annotated[str, Meta(examples=["2c659bea-7c4d-1041-833f-8ff48ad9b9ce"])]
    username: Username
    account_type: Annotated[str, Meta(examples=["user"])]
    active: bool
    # Failed logins made slapd's password policy lock the account until then.
    locked_until: datetime | None
    email: Email | None
    email_verified: bool
    # A new address waiting for the code mailed to it (POST .../email/verify).
    pending_email: Email | None
    first_name: Annotated[str | None, Meta(examples=["Alice"])]
    last_name: Annotated[str | None, Meta(examples=["Liddell"])]
    display_name: Annotated[str | None, Meta(examples=["Alice Liddell"])]
    phone: Annotated[str | None, Meta(examples=["+44 20 7946 0000"])]
    address: str | None
    location: Annotated[str | None, Meta(examples=["Oxford"])]
    language: Annotated[str | None, Meta(examples=["en"])]
    bio: str | None
    gender: str | None
    birthday: date | None
    country: Annotated[str | None, Meta(examples=["GB"])]
    timezone: Annotated[str | None, Meta(examples=["Europe/London"])]
    created: datetime | None
    updated: datetime | None
    last_login: datetime | None

    @classmethod
    def of(cls, user: User) -> Person:
        return cls(
            id=user.id, uuid=user.uuid, username=user.username,
            account_type=user.account_type, active=user.active,
            locked_until=user.locked_until, email=user.email,
            email_verified=user.email_verified, pending_email=user.pending_email,
            first_name=user.first_name,
            last_name=user.last_name, display_name=user.display_name, phone=user.phone,
            address=user.address, location=user.location, language=user.language,
            bio=user.bio, gender=user.gender, birthday=user.birthday, country=user.country,
            timezone=user.timezone, created=user.created, updated=user.updated,
            last_login=user.last_login,
        )


class _ProfileFields(Struct, forbid_unknown_fields=True, kw_only=True):
    """Profile fields: absent leaves a value alone, null removes it."""

    email: Email | UnsetType | None = UNSET
    # Admins only: an address an admin sets reads as unverified unless this says so.
    email_verified: bool | UnsetType = UNSET
    first_name: Text | UnsetType | None = UNSET
    last_name: Text | UnsetType | None = UNSET
    display_name: Text | UnsetType | None = UNSET
    phone: Text | UnsetType | None = UNSET
    address: Text | UnsetType | None = UNSET
    location: Text | UnsetType | None = UNSET
    language: Text | UnsetType | None = UNSET
    bio: Text | UnsetType | None = UNSET
    gender: Text | UnsetType | None = UNSET
    birthday: date | UnsetType | None = UNSET
    country: Text | UnsetType | None = UNSET
    timezone: Text | UnsetType | None = UNSET

    def profile(self) -> Profile:
        return Profile(**{f: getattr(self, f) for f in self.__struct_fields__
                          if f in Profile.__struct_fields__})


class NewPerson(_ProfileFields, kw_only=True):
    username: Username
    password: Password
    account_type: Annotated[str | None, Meta(examples=["user"])] = None
    active: bool = True

    def to_domain(self) -> NewUser:
        return NewUser(username=self.username, password=self.password,
                       account_type=self.account_type, active=self.active,
                       profile=self.profile())


class PersonPatch(_ProfileFields, kw_only=True):
    username: Username | UnsetType = UNSET

    def renames(self) -> bool:
        return self.username is not UNSET

    def to_domain(self) -> UserChanges:
        return UserChanges(username=self.username, profile=self.profile())


class CodeCheck(Struct, forbid_unknown_fields=True):
    code: Annotated[str, Meta(min_length=1, max_length=32, examples=["123456"])]


class TypeChange(Struct, forbid_unknown_fields=True):
    account_type: Annotated[str, Meta(min_length=1, max_length=32, examples=["staff"])]


class PasswordChange(Struct, forbid_unknown_fields=True):
    """`current_password` is required when a user changes his own password."""

    new_password: Password
    current_password: Password | None = None


class PeoplePage(Struct):
    items: list[Person]
    total: Annotated[int, Meta(examples=[137])]
    page: Annotated[int, Meta(examples=[1])]
    per_page: Annotated[int, Meta(examples=[20])]


class GroupOut(Struct):
    name: Annotated[str, Meta(examples=["developers"])]
    description: str | None
    members: Annotated[list[str], Meta(examples=[["alice", "bob"]])]
    account_type: bool

    @classmethod
    def of(cls, group: Group) -> GroupOut:
        return cls(group.name, group.description, group.members, group.account_type)


class NewGroup(Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64, examples=["developers"])]
    description: Annotated[str, Meta(max_length=1024)] | None = None


class Problem(Struct):
    """RFC 9457 problem details: every error of the native API."""

    type: Annotated[str, Meta(examples=["about:blank"])]
    title: Annotated[str, Meta(examples=["not found"])]
    status: Annotated[int, Meta(examples=[404])]
    detail: Annotated[str, Meta(examples=["user not found"])]
    field: Annotated[str, Meta(examples=["username"])] | UnsetType = UNSET
    errors: Any | UnsetType = UNSET


class Health(Struct):
    status: Annotated[str, Meta(examples=["ok"])]
    ldap: Annotated[str, Meta(examples=["ok"])]

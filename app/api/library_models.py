"""Request and response bodies of the library dialect (the seed's Go structs, as JSON)."""

from __future__ import annotations

from msgspec import UNSET, Struct

from app.domain import ADMIN, NewUser, Profile, User, UserChanges


class UserPayload(Struct, rename="camel"):
    """The seed's user object as clients send it; Go's zero values mean "not given"."""

    name: str | None = None
    username: str | None = None
    password: str | None = None
    email: str | None = None
    is_admin: bool | None = None

    def to_new_user(self) -> NewUser:
        if not self.username or not self.password:
            raise Refused("Please specify a username and a password.")
        return NewUser(username=self.username, password=self.password,
                       account_type=ADMIN if self.is_admin else None,
                       profile=Profile(display_name=self.name or UNSET,
                                       email=self.email or UNSET))

    def changes(self) -> UserChanges:
        """Only the fields given with a value; the password never changes here."""
        return UserChanges(username=self.username or UNSET,
                           profile=Profile(display_name=self.name or UNSET,
                                           email=self.email or UNSET))

    def account_type(self, user: User, default: str) -> str | None:
        """The type to move to: isAdmin true promotes, false demotes an admin only."""
        if self.is_admin is None or self.is_admin == user.is_admin:
            return None
        return ADMIN if self.is_admin else default


class LoginPayload(Struct):
    username: str = ""
    password: str = ""


class PasswordPayload(Struct):
    password: str = ""


class LibraryUser(Struct, rename="camel"):
    id: int
    name: str
    username: str
    password: str  # always "": the seed's object has the field, userdir never fills it
    email: str
    is_admin: bool
    created: int
    updated: int

    @classmethod
    def of(cls, user: User) -> LibraryUser:
        return cls(id=user.id or 0, name=user.display_name or "", username=user.username,
                   password="", email=user.email or "", is_admin=user.is_admin,
                   created=int(user.created.timestamp()) if user.created else 0,
                   updated=int(user.updated.timestamp()) if user.updated else 0)


class Token(Struct):
    token: str


class Message(Struct):
    message: str


class Refused(Exception):
    """An answer of this dialect's own, worded as the origin words it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

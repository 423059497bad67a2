"""Bodies of the ufdl dialect, its list filter as a domain filter tree, and DRF's field messages."""

from __future__ import annotations

import re
from datetime import datetime

from msgspec import UNSET, Struct, UnsetType

from app.domain import (
    ADMIN,
    STAFF,
    TYPE_SORT_KEYS,
    AccountTypes,
    Combine,
    Filter,
    Match,
    NewUser,
    Order,
    Profile,
    SortKey,
    User,
    UserChanges,
    UserQuery,
    is_valid_email,
    is_valid_username,
)

REQUIRED = "This field is required."
BLANK = "This field may not be blank."
NOT_NULL = "This field may not be null."
INVALID_USERNAME = ("Enter a valid username. This value may contain only letters, numbers, "
                    "and @/./+/-/_ characters.")
INVALID_EMAIL = "Enter a valid email address."
# Django's User: 150 for names; userdir's usernames stop at 64 (domain.USERNAME_PATTERN).
NAME_LENGTH, USERNAME_LENGTH, EMAIL_LENGTH, PASSWORD_LENGTH = 150, 64, 254, 128
# Filters nest this deep at most: enough for any real query, and a bound on recursion.
MAX_DEPTH = 16
# Terms (exact and contains) in one filter body, at most: each becomes several
# LDAP assertions slapd evaluates per entry (15,000 of them took 6.8 s).
MAX_TERMS = 100
# Sort keys besides is_staff/is_superuser: slapd sorts by at most five
# (olcSssVlvMaxKeys), and one more (the id) breaks ties.
MAX_ORDER_KEYS = 4

Text = str | None | UnsetType  # absent, null or a string: DRF words each differently
Flag = bool | None | UnsetType


class FieldErrors(Exception):
    """DRF's `{"<field>": ["<message>", ...]}`, every field at once."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("invalid fields")
        self.errors = errors


class BadFilter(Exception):
    """A list body the directory cannot answer: DRF's `{"detail": ...}`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Fields:
    """Checks a body field by field as a DRF serializer does, collecting every error."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def text(self, name: str, value: Text, *, required: bool, blank: bool = True,
             max_length: int = NAME_LENGTH, trim: bool = True) -> str | UnsetType:
        """DRF's CharField: trimmed; absent, null and (unless allowed) blank refused."""
        if value is UNSET:
            if required:
                self.fail(name, REQUIRED)
            return UNSET
        if value is None:
            self.fail(name, NOT_NULL)
            return UNSET
        text = value.strip() if trim else value
        if not text and not blank:
            self.fail(name, BLANK)
            return UNSET
        if len(text) > max_length:
            self.fail(name, f"Ensure this field has no more than {max_length} characters.")
            return UNSET
        return text

    def username(self, value: Text, *, required: bool) -> str | UnsetType:
        name = self.text("username", value, required=required, blank=False,
                         max_length=USERNAME_LENGTH)
        if isinstance(name, str) and not is_valid_username(name):
            self.fail("username", INVALID_USERNAME)
            return UNSET
        return name

    def password(self, value: Text, *, required: bool) -> str | UnsetType:
        # Not trimmed: spaces at either end are part of a password.
        return self.text("password", value, required=required, blank=False,
                         max_length=PASSWORD_LENGTH, trim=False)

    def email(self, value: Text) -> str | UnsetType:
        address = self.text("email", value, required=False, max_length=EMAIL_LENGTH)
        if address and not is_valid_email(address):
            self.fail("email", INVALID_EMAIL)
            return UNSET
        return address

    def flag(self, name: str, value: Flag) -> bool | None:
        if value is None:
            self.fail(name, NOT_NULL)
        return value if isinstance(value, bool) else None

    def done(self) -> None:
        if self.errors:
            raise FieldErrors(self.errors)


# --- requests ----------------------------------------------------------------
# Frozen, so that a missing body can default to an empty one (DRF reads it as {}).

class Credentials(Struct, frozen=True):
    username: Text = UNSET
    password: Text = UNSET

    def checked(self) -> tuple[str, str]:
        fields = Fields()
        username = fields.text("username", self.username, required=True, blank=False)
        password = fields.password(self.password, required=True)
        fields.done()
        assert isinstance(username, str) and isinstance(password, str)
        return username, password


class RefreshBody(Struct, frozen=True):
    refresh: Text = UNSET

    def checked(self) -> str:
        fields = Fields()
        token = fields.text("refresh", self.refresh, required=True, blank=False,
                            max_length=4096)
        fields.done()
        assert isinstance(token, str)
        return token


class Update(Struct, frozen=True, kw_only=True):
    """What a PUT or PATCH asks for, checked; None: leave as it is."""

    changes: UserChanges
    password: str | None
    staff: bool | None
    active: bool | None

    def account_type(self, user: User, types: AccountTypes) -> str | None:
        """is_staff true makes a user staff, false makes staff a user; an admin stays admin."""
        if self.staff is None or user.is_admin or self.staff == user.is_staff:
            return None
        return STAFF if self.staff else types.default


class UserBody(Struct, frozen=True):
    """The user object as clients send it. pk, is_superuser, last_login and
    date_joined are read-only: ignored like any unknown key."""

    username: Text = UNSET
    password: Text = UNSET
    first_name: Text = UNSET
    last_name: Text = UNSET
    email: Text = UNSET
    is_active: Flag = UNSET
    is_staff: Flag = UNSET

    def to_new_user(self) -> NewUser:
        update = self.to_update(partial=False)
        assert isinstance(update.changes.username, str) and update.password is not None
        return NewUser(username=update.changes.username, password=update.password,
                       account_type=STAFF if update.staff else None,
                       active=update.active is not False, profile=update.changes.profile)

    def to_update(self, *, partial: bool) -> Update:
        """PUT (and create) require username and password; PATCH takes any subset."""
        fields = Fields()
        username = fields.username(self.username, required=not partial)
        password = fields.password(self.password, required=not partial)
        # Blank names and email are allowed: they remove the value.
        profile = Profile(first_name=fields.text("first_name", self.first_name, required=False),
                          last_name=fields.text("last_name", self.last_name, required=False),
                          email=fields.email(self.email))
        staff = fields.flag("is_staff", self.is_staff)
        active = fields.flag("is_active", self.is_active)
        fields.done()
        return Update(changes=UserChanges(username=username, profile=profile),
                      password=password if isinstance(password, str) else None,
                      staff=staff, active=active)


# --- the list filter (ufdl.json.core.filter) ---------------------------------

class Exact(Struct, frozen=True, tag="exact", tag_field="type"):
    field: str
    value: str | int | float | bool
    case_insensitive: bool = False
    invert: bool = False


class Contains(Struct, frozen=True, tag="contains", tag_field="type"):
    field: str
    sub_string: str
    case_insensitive: bool = False
    invert: bool = False


class And(Struct, frozen=True, tag="and", tag_field="type"):
    sub_expressions: list[Expression]
    invert: bool = False


class Or(Struct, frozen=True, tag="or", tag_field="type"):
    sub_expressions: list[Expression]
    invert: bool = False


Expression = Exact | Contains | And | Or


class OrderBy(Struct, frozen=True):
    field: str
    ascending: bool = True


class ListBody(Struct, frozen=True):
    expressions: list[Expression] = []
    order_by: list[OrderBy] = []
    include_inactive: bool = False

    def to_query(self, types: AccountTypes) -> UserQuery:
        """One filter tree (the directory makes it one escaped LDAP filter) and
        the sort keys slapd applies."""
        if count_terms(self.expressions) > MAX_TERMS:
            raise BadFilter(f"A filter may hold at most {MAX_TERMS} exact and contains "
                            "expressions.")
        where = all_of([to_filter(e, types, 1) for e in self.expressions])
        orders = sort_orders(self.order_by)
        first, rest = (orders[0], orders[1:]) if orders else (Order(SortKey.ID), [])
        return UserQuery(where=where, active=None if self.include_inactive else True,
                         sort=first.key, descending=first.descending, then=tuple(rest))


TEXT_FIELDS = ("username", "first_name", "last_name", "email")
FLAG_FIELDS = ("is_active", "is_staff", "is_superuser")
USER_FIELDS = ("username", "pk", "last_login", "is_superuser", "first_name", "last_name",
               "email", "is_staff", "is_active", "date_joined")
SORT_KEYS = {
    "username": SortKey.USERNAME, "pk": SortKey.ID, "last_login": SortKey.LAST_LOGIN,
    "first_name": SortKey.FIRST_NAME, "last_name": SortKey.LAST_NAME, "email": SortKey.EMAIL,
    "is_active": SortKey.ACTIVE, "date_joined": SortKey.CREATED,
    # Account types rank user < staff < admin: false before true for both.
    "is_staff": SortKey.IS_STAFF, "is_superuser": SortKey.IS_ADMIN,
}
# Django's BooleanField.to_python
TRUE, FALSE = ("t", "true", "1"), ("f", "false", "0")
# Matches every user: an empty `contains` (Django's LIKE '%%'), which LDAP cannot say.
EVERYONE = Combine(parts=(Match(field="active", value="true"),
                          Match(field="active", value="false")), any=True)


def count_terms(expressions: list[Expression]) -> int:
    """Exact and contains expressions in a filter, however nested (no recursion)."""
    terms, pending = 0, list(expressions)
    while pending and terms <= MAX_TERMS:
        expression = pending.pop()
        if isinstance(expression, And | Or):
            pending.extend(expression.sub_expressions)
        else:
            terms += 1
    return terms


def all_of(parts: list[Filter]) -> Filter | None:
    if len(parts) > 1:
        return Combine(parts=tuple(parts))
    return parts[0] if parts else None


def to_filter(expression: Expression, types: AccountTypes, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise BadFilter(f"Filter expressions may nest at most {MAX_DEPTH} levels deep.")
    match expression:
        case And() | Or():
            kind = "and" if isinstance(expression, And) else "or"
            if not expression.sub_expressions:
                raise BadFilter(f"An '{kind}' expression needs at least one sub-expression.")
            parts = tuple(to_filter(e, types, depth + 1) for e in expression.sub_expressions)
            return Combine(parts=parts, any=kind == "or", negate=expression.invert)
        case Contains():
            return contains_filter(expression)
        case Exact():
            return exact_filter(expression, types)


def contains_filter(expression: Contains) -> Filter:
    field = known_field(expression.field)
    if field not in TEXT_FIELDS:
        raise BadFilter(f"'contains' applies to {', '.join(TEXT_FIELDS)}, not '{field}'.")
    if not expression.sub_string:
        return Combine(parts=(EVERYONE,), negate=expression.invert)
    # LDAP's substring rules for these attributes ignore case: case_insensitive
    # false still matches any case.
    return Match(field=field, value=expression.sub_string, contains=True,
                 negate=expression.invert)


def exact_filter(expression: Exact, types: AccountTypes) -> Filter:
    field, value = known_field(expression.field), expression.value
    if field == "pk":
        return Match(field="id", value=str(as_number(value)), negate=expression.invert)
    if field == "is_active":
        return Match(field="active", value=str(as_flag(field, value)).lower(),
                     negate=expression.invert)
    if field in ("is_staff", "is_superuser"):
        wanted = as_flag(field, value)
        names = [t for t in types.names if (t == ADMIN if field == "is_superuser"
                                            else AccountTypes.is_staff(t))]
        parts = tuple(Match(field="account_type", value=name) for name in names)
        return Combine(parts=parts, any=True, negate=wanted == expression.invert)
    if field not in TEXT_FIELDS:
        raise BadFilter(f"Filtering on '{field}' is not supported; order by it instead.")
    text = value if isinstance(value, str) else str(value)
    # A blank text matches users without the field: blank is no attribute in LDAP.
    return Match(field=field, value=text, case_sensitive=not expression.case_insensitive,
                 negate=expression.invert)


def known_field(field: str) -> str:
    if field not in USER_FIELDS:
        raise BadFilter(f"Cannot resolve keyword '{field}' into field. "
                        f"Choices are: {', '.join(sorted(USER_FIELDS))}.")
    return field


def as_number(value: str | int | float | bool) -> int:
    """Django's IntegerField: an integer, or a string of one."""
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        text = str(value).strip()
        if re.fullmatch(r"[0-9]{1,18}(\.0*)?", text):
            return int(float(text)) if "." in text else int(text)
    raise BadFilter(f"Field 'pk' expected a number but got {value!r}.")


def as_flag(field: str, value: str | int | float | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise BadFilter(f"Field '{field}' expected true or false but got {value!r}.")


def sort_orders(order_by: list[OrderBy]) -> list[Order]:
    """Each key once (a repeated key cannot change the order); the flags on
    the account type only before other keys, because slapd cannot sort on a
    group membership."""
    orders: list[Order] = []
    for item in order_by:
        key = SORT_KEYS.get(item.field)
        if key is None:
            raise BadFilter(f"Cannot order by '{item.field}'. "
                            f"Choices are: {', '.join(sorted(USER_FIELDS))}.")
        if any(order.key is key for order in orders):
            continue
        if key in TYPE_SORT_KEYS and any(order.key not in TYPE_SORT_KEYS for order in orders):
            raise BadFilter("is_staff and is_superuser can only come before other order_by "
                            "fields.")
        orders.append(Order(key, descending=not item.ascending))
    if sum(order.key not in TYPE_SORT_KEYS for order in orders) > MAX_ORDER_KEYS:
        raise BadFilter(f"order_by may name at most {MAX_ORDER_KEYS} fields besides "
                        "is_staff and is_superuser.")
    return orders


# --- responses ---------------------------------------------------------------

class UfdlUser(Struct):
    """Django's User as UFDL's UserSerialiser shows it (this key order)."""

    username: str
    pk: int | None
    last_login: datetime | None
    is_superuser: bool
    first_name: str
    last_name: str
    email: str
    is_staff: bool
    is_active: bool
    date_joined: datetime | None

    @classmethod
    def of(cls, user: User) -> UfdlUser:
        # Django's CharFields hold "" rather than null.
        return cls(username=user.username, pk=user.id, last_login=user.last_login,
                   is_superuser=user.is_admin, first_name=user.first_name or "",
                   last_name=user.last_name or "", email=user.email or "",
                   is_staff=user.is_staff, is_active=user.active, date_joined=user.created)


class TokenPairBody(Struct):
    refresh: str
    access: str


class AccessBody(Struct):
    access: str

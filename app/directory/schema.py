"""One table maps domain fields to LDAP attributes; entries become Users here."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ldap3 import MODIFY_REPLACE
from msgspec import UNSET

from app.directory.names import first_rdn_value, normalise_dn
from app.domain import AccountTypes, Principal, Profile, User

PERSON_CLASSES = ["inetOrgPerson", "posixAccount", "userdirPerson"]
USERDIR_CLASS = "userdirperson"
# How userdir disables an account: a pwdEndTime in the past, which ppolicy
# checks before anything else and refuses every bind for. Unlike
# pwdAccountLockedTime, which ppolicy deletes on any password change (so
# that "disable, then reset the password" would enable the account again),
# no password change touches it, and a refused bind writes nothing.
DISABLED = "19700101000000Z"
# slapo-ppolicy(5): this pwdAccountLockedTime locks an account until an
# administrator removes it; other tools disable accounts so, and it counts.
LOCKED_FOREVER = "000001010000Z"
# The modification that enables an account, whichever way it was disabled
# (a replace with no values removes an attribute, and is no error if absent).
ENABLE: dict[str, list[tuple[str, list[str]]]] = {
    "pwdEndTime": [(MODIFY_REPLACE, [])], "pwdAccountLockedTime": [(MODIFY_REPLACE, [])]}

# Profile field -> attribute (SPEC §2). Standard attributes wherever one exists.
PROFILE_ATTRIBUTES: dict[str, str] = {
    "email": "mail",
    "first_name": "givenName",
    "last_name": "sn",
    "display_name": "displayName",
    "phone": "telephoneNumber",
    "address": "postalAddress",
    "location": "l",
    "language": "preferredLanguage",
    "bio": "description",
    "gender": "userdirGender",
    "birthday": "userdirBirthday",
    "country": "c",
    "timezone": "userdirTimezone",
    "email_verified": "userdirEmailVerified",
    "pending_email": "userdirPendingEmail",
}
# Attributes only userdirPerson allows: writing one to an entry made by an
# LDAP tool first adds that object class.
USERDIR_ATTRIBUTES = frozenset(
    {"userdirGender", "userdirBirthday", "c", "userdirTimezone",
     "userdirEmailVerified", "userdirPendingEmail",
     "userdirEmailCodeHash", "userdirEmailCodeExpiry", "userdirEmailCodeAttempts"}
)
# What an email verification reads and writes (the code hash is readable by
# the service alone: ldif/config.ldif).
EMAIL_CODE_ATTRIBUTES = ["mail", "userdirPendingEmail", "userdirEmailVerified",
                         "userdirEmailCodeHash", "userdirEmailCodeExpiry",
                         "userdirEmailCodeAttempts", "pwdAccountLockedTime", "pwdEndTime",
                         "objectClass",
                         "createTimestamp"]
# Fields a listing may filter on with an exact match.
EXACT_ATTRIBUTES: dict[str, str] = {
    "username": "uid", "id": "uidNumber", "uuid": "entryUUID", **PROFILE_ATTRIBUTES,
}
PRINCIPAL_ATTRIBUTES = ["uid", "uidNumber", "entryUUID", "memberOf", "pwdAccountLockedTime",
                        "pwdEndTime", "pwdChangedTime"]
USER_ATTRIBUTES = [
    "objectClass", "uid", "uidNumber", "entryUUID", "cn", "memberOf",
    "pwdAccountLockedTime", "pwdEndTime", "createTimestamp", "modifyTimestamp",
    "pwdLastSuccess", "authTimestamp", "pwdChangedTime", "pwdAccountTmpLockoutEnd",
    "homeDirectory", "entryCSN",
    *PROFILE_ATTRIBUTES.values(),
]


class GroupTypes:
    """Which group DN stands for which account type."""

    def __init__(self, types: AccountTypes, group_dns: Mapping[str, str]) -> None:
        self.types = types
        self.dn_of = dict(group_dns)
        self._type_of = {normalise_dn(dn): name for name, dn in group_dns.items()}

    def type_of(self, member_of: Sequence[str]) -> str:
        names = [self._type_of.get(normalise_dn(dn)) for dn in member_of]
        return self.types.pick([n for n in names if n])

    def memberships(self, member_of: Sequence[str]) -> list[str]:
        names = (self._type_of.get(normalise_dn(dn)) for dn in member_of)
        return [name for name in names if name]


def is_disabled(entry: Mapping[str, Any]) -> bool:
    """Can no bind succeed, whatever the password (queries.active_filter says the same)?"""
    return disabled_by(first(entry, "pwdAccountLockedTime"), first(entry, "pwdEndTime"))


def disabled_by(locked_time: str | None, end_time: str | None) -> bool:
    if locked_time == LOCKED_FOREVER:
        return True
    ends = parse_time(end_time)
    return ends is not None and ends <= datetime.now(UTC)


def locked_until(entry: Mapping[str, Any],
                 lockout: Callable[[], timedelta | None]) -> datetime | None:
    """Until when failed binds keep the account locked (ppolicy): a
    pwdAccountLockedTime (other than LOCKED_FOREVER) plus pwdLockoutDuration,
    or a pwdAccountTmpLockoutEnd; None if it is not locked so."""
    ends = [parse_time(first(entry, "pwdAccountTmpLockoutEnd"))]
    locked = first(entry, "pwdAccountLockedTime")
    since = parse_time(locked) if locked != LOCKED_FOREVER else None
    if since is not None:
        duration = lockout()
        ends.append(since + duration if duration else datetime.max.replace(tzinfo=UTC))
    known = [end for end in ends if end is not None]
    return max(known) if known else None


def values(entry: Mapping[str, Any], attribute: str) -> list[str]:
    raw = entry["raw_attributes"].get(attribute) or []
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw]


def first(entry: Mapping[str, Any], attribute: str) -> str | None:
    found = values(entry, attribute)
    return found[0] if found else None


def username_of(entry: Mapping[str, Any]) -> str:
    """The username is the RDN's uid: an LDAP rename that kept the old value
    (ldapmodrdn without -r) leaves it in `uid`, but it names the user no more."""
    dn = entry["dn"]
    if dn.split("=", 1)[0].strip().lower() == "uid":
        return first_rdn_value(dn)
    return first(entry, "uid") or first_rdn_value(dn)


def to_user(entry: Mapping[str, Any], group_types: GroupTypes,
            lockout: Callable[[], timedelta | None] = lambda: None) -> User:
    """The user an entry holds; `lockout` gives the password policy's
    pwdLockoutDuration (None: locks last until an admin lifts them), asked
    only for an account that failed binds locked."""
    username = username_of(entry)
    uid_number = first(entry, "uidNumber")
    last_name = first(entry, "sn")
    birthday = first(entry, "userdirBirthday")
    return User(
        uuid=first(entry, "entryUUID") or "",
        id=int(uid_number) if uid_number and uid_number.isdigit() else None,
        username=username,
        version=first(entry, "entryCSN") or "",
        account_type=group_types.type_of(values(entry, "memberOf")),
        active=not is_disabled(entry),
        email=first(entry, "mail"),
        first_name=first(entry, "givenName"),
        # sn is mandatory in `person`; userdir fills it with the username
        # when no last name is known, and reads that back as "no last name".
        last_name=None if last_name == username else last_name,
        display_name=first(entry, "displayName") or first(entry, "cn"),
        phone=first(entry, "telephoneNumber"),
        address=_from_postal(first(entry, "postalAddress")),
        location=first(entry, "l"),
        language=first(entry, "preferredLanguage"),
        bio=first(entry, "description"),
        gender=first(entry, "userdirGender"),
        birthday=_parse_date(birthday),
        country=first(entry, "c"),
        timezone=first(entry, "userdirTimezone"),
        email_verified=first(entry, "userdirEmailVerified") == "TRUE",
        pending_email=first(entry, "userdirPendingEmail"),
        created=parse_time(first(entry, "createTimestamp")),
        updated=parse_time(first(entry, "modifyTimestamp")),
        last_login=parse_time(first(entry, "pwdLastSuccess") or first(entry, "authTimestamp")),
        password_changed=parse_time(first(entry, "pwdChangedTime")),
        password_stamp=first(entry, "pwdChangedTime") or "",
        locked_until=locked_until(entry, lockout),
    )


def to_principal(entry: Mapping[str, Any], group_types: GroupTypes) -> Principal:
    uid_number = first(entry, "uidNumber")
    return Principal(
        uuid=first(entry, "entryUUID") or "",
        id=int(uid_number) if uid_number and uid_number.isdigit() else None,
        username=username_of(entry),
        account_type=group_types.type_of(values(entry, "memberOf")),
        active=not is_disabled(entry),
        password_changed=parse_time(first(entry, "pwdChangedTime")),
        password_stamp=first(entry, "pwdChangedTime") or "",
    )


def profile_attributes(profile: Profile, username: str) -> dict[str, list[str]]:
    """Attribute values for an Add: only the fields given."""
    result: dict[str, list[str]] = {}
    for field, attribute in PROFILE_ATTRIBUTES.items():
        value = getattr(profile, field)
        if value is not UNSET and value is not None:
            result[attribute] = [encode(field, value)]
    full_name = " ".join(
        v for v in (first_of(result, "givenName"), first_of(result, "sn")) if v
    )
    # cn and sn are mandatory in `person`.
    result["cn"] = result.get("displayName") or [full_name or username]
    result.setdefault("sn", [username])
    return result


def first_of(attributes: Mapping[str, list[str]], name: str) -> str | None:
    found = attributes.get(name)
    return found[0] if found else None


def profile_modifications(profile: Profile,
                          username: str) -> dict[str, list[tuple[str, list[str]]]]:
    """Replace for every field given; None removes (sn falls back to the username)."""
    changes: dict[str, list[tuple[str, list[str]]]] = {}
    for field, attribute in PROFILE_ATTRIBUTES.items():
        value = getattr(profile, field)
        if value is UNSET:
            continue
        new = [] if value is None else [encode(field, value)]
        if attribute == "sn" and not new:
            new = [username]
        changes[attribute] = [(MODIFY_REPLACE, new)]
        if attribute == "displayName":
            changes["cn"] = [(MODIFY_REPLACE, new or [username])]
    return changes


def email_code_attributes(stored: str, expires: datetime) -> dict[str, list[str]]:
    """A fresh code's hash and expiry, with no attempt counted yet (an Add's values)."""
    return {"userdirEmailCodeHash": [stored], "userdirEmailCodeExpiry": [format_time(expires)],
            "userdirEmailCodeAttempts": ["0"]}


def email_code_changes(stored: str, expires: datetime,
                       pending: str | None = None) -> dict[str, list[tuple[str, list[str]]]]:
    """Replace whatever code there was (its attempts too); `pending`: the address it is for."""
    changes = {attribute: [(MODIFY_REPLACE, value)]
               for attribute, value in email_code_attributes(stored, expires).items()}
    if pending is not None:
        changes["userdirPendingEmail"] = [(MODIFY_REPLACE, [pending])]
    return changes


def encode(field: str, value: object) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, date):
        return value.isoformat()
    if field == "address":
        return _to_postal(str(value))
    return str(value)


def _to_postal(text: str) -> str:
    """RFC 4517 §3.3.28: lines joined by `$`, with `\\` and `$` escaped."""
    lines = text.replace("\r\n", "\n").split("\n")
    return "$".join(line.replace("\\", "\\5C").replace("$", "\\24") for line in lines)


def _from_postal(value: str | None) -> str | None:
    if value is None:
        return None
    lines = value.split("$")
    return "\n".join(line.replace("\\24", "$").replace("\\5C", "\\").replace("\\5c", "\\")
                     for line in lines)


def _parse_date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def parse_time(value: str | None) -> datetime | None:
    """LDAP GeneralizedTime (20261124120820Z, maybe with a fraction) as UTC."""
    if not value or len(value) < 15 or not value[:14].isdigit():
        return None
    try:  # by hand: strptime costs more than the LDAP read it follows
        return datetime(int(value[0:4]), int(value[4:6]), int(value[6:8]), int(value[8:10]),
                        int(value[10:12]), int(value[12:14]), tzinfo=UTC)
    except ValueError:
        return None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")

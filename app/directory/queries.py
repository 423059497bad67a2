"""A UserQuery as LDAP sees it: one escaped filter, and sort keys slapd can apply."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from app.directory import names as n
from app.directory.controls import CASE_IGNORE_ORDERING, SortKey
from app.directory.schema import (
    DISABLED,
    EXACT_ATTRIBUTES,
    LOCKED_FOREVER,
    GroupTypes,
    format_time,
)
from app.domain import (
    ADMIN,
    TYPE_SORT_KEYS,
    AccountTypes,
    Filter,
    InvalidInput,
    Match,
    Order,
    UserQuery,
)
from app.domain import SortKey as Key

TEXT_ATTRIBUTES = ("uid", "cn", "mail", "givenName", "sn")
# uid, cn, sn, givenName and mail have no ORDERING rule of their own.
SORT_ATTRIBUTES = {
    Key.USERNAME: SortKey("uid", CASE_IGNORE_ORDERING),
    Key.DISPLAY_NAME: SortKey("cn", CASE_IGNORE_ORDERING),
    Key.FIRST_NAME: SortKey("givenName", CASE_IGNORE_ORDERING),
    Key.LAST_NAME: SortKey("sn", CASE_IGNORE_ORDERING),
    Key.EMAIL: SortKey("mail", CASE_IGNORE_ORDERING),
    Key.CREATED: SortKey("createTimestamp"),
    Key.LAST_LOGIN: SortKey("pwdLastSuccess"),
    Key.ID: SortKey("uidNumber"),
    # Disabled users carry an end time; entries without a key value sort last.
    Key.ACTIVE: SortKey("pwdEndTime"),
}
# Case-sensitive equality for attributes whose own rule ignores case.
CASE_EXACT_RULES = {"mail": "caseExactIA5Match", "userdirPendingEmail": "caseExactIA5Match",
                    "userdirTimezone": "caseExactIA5Match"}
NO_SUBSTRINGS = {"uidNumber", "entryUUID", "userdirEmailVerified", "userdirBirthday"}
# A user without displayName is shown with his cn (schema.to_user): filters match what is shown.
SHOWN_INSTEAD = {"displayName": "cn"}


def user_filter(query: UserQuery, groups: GroupTypes) -> str:
    parts = ["(objectClass=inetOrgPerson)"]
    if query.text:
        parts.append(n.any_of(*(n.contains(a, query.text) for a in TEXT_ATTRIBUTES)))
    parts.extend(match_filter(Match(field=f, value=v), groups) for f, v in query.exact)
    if query.active is not None:
        parts.append(active_filter(query.active))
    if query.account_type is not None:
        parts.append(type_filter(query.account_type, groups))
    if query.where is not None:
        parts.append(where_filter(query.where, groups))
    if query.verified_only:
        # Sign-ups still waiting for their code: unverified and disabled as
        # made (an address an admin set is unverified too, but listed).
        parts.append(n.negate(n.all_of("(userdirEmailVerified=FALSE)",
                                       n.equals("pwdEndTime", DISABLED))))
    return n.all_of(*parts)


def where_filter(expression: Filter, groups: GroupTypes) -> str:
    if isinstance(expression, Match):
        return match_filter(expression, groups)
    if not expression.parts:
        raise InvalidInput("filter", "and/or need at least one sub-expression")
    inner = [where_filter(part, groups) for part in expression.parts]
    combined = n.any_of(*inner) if expression.any else n.all_of(*inner)
    return n.negate(combined) if expression.negate else combined


def match_filter(match: Match, groups: GroupTypes) -> str:
    result = _positive_match(match, groups)
    return n.negate(result) if match.negate else result


def _positive_match(match: Match, groups: GroupTypes) -> str:
    if match.field == "account_type":
        if match.contains:
            raise InvalidInput(match.field, "account types match exactly")
        return type_filter(match.value, groups)
    if match.field == "active":
        if match.contains or match.value.lower() not in ("true", "false"):
            raise InvalidInput(match.field, "active is true or false")
        return active_filter(match.value.lower() == "true")
    attribute = EXACT_ATTRIBUTES.get(match.field)
    if attribute is None:
        raise InvalidInput(match.field, f"cannot filter on {match.field!r}")
    found = _attribute_match(attribute, match)
    fallback = SHOWN_INSTEAD.get(attribute)
    if fallback is None:
        return found
    if not match.value and not match.contains:  # shown as nothing: neither is there
        return n.all_of(found, _attribute_match(fallback, match))
    return n.any_of(found, n.all_of(n.negate(f"({attribute}=*)"),
                                    _attribute_match(fallback, match)))


def _attribute_match(attribute: str, match: Match) -> str:
    if match.contains:
        if attribute in NO_SUBSTRINGS and match.value:
            raise InvalidInput(match.field, f"{match.field} only matches exactly")
        return n.contains(attribute, match.value)
    if not match.value:
        # An empty value is no value in LDAP: "equals nothing" is "absent".
        return n.negate(f"({attribute}=*)")
    if match.case_sensitive and attribute not in NO_SUBSTRINGS:
        rule = CASE_EXACT_RULES.get(attribute, "caseExactMatch")
        return f"({attribute}:{rule}:={n.filter_value(match.value)})"
    return n.equals(attribute, match.value)


def active_filter(active: bool) -> str:
    """schema.is_disabled as a filter. The time compared to is this minute's
    start, so that a listing's filter (its sort snapshot's key) stays the
    same within a minute: an end time set for a moment within the last
    minute (by a tool: userdir writes schema.DISABLED) counts a minute late."""
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    disabled = n.any_of(n.equals("pwdAccountLockedTime", LOCKED_FOREVER),
                        n.all_of("(pwdEndTime=*)",
                                 f"(pwdEndTime<={n.filter_value(format_time(minute))})"))
    return n.negate(disabled) if active else disabled


def type_filter(account_type: str, groups: GroupTypes) -> str:
    """Users whose type is `account_type`, as AccountTypes.pick decides it:
    the highest type group they are in, the default type when in none."""
    types = groups.types
    if account_type not in types:
        raise InvalidInput("account_type", f"unknown account type {account_type!r}")
    member_of = [n.equals("memberOf", groups.dn_of[t]) for t in types.names]
    rank = types.rank(account_type)
    mine = member_of[rank]
    if account_type == types.default:
        mine = n.any_of(mine, n.negate(n.any_of(*member_of)))
    higher = member_of[rank + 1:]
    return n.all_of(mine, n.negate(n.any_of(*higher))) if higher else mine


def type_partitions(orders: Sequence[Order], groups: GroupTypes) -> list[str]:
    """Filters splitting users by account type, in the order the type keys
    ask (account type: least privileged first; a flag: false first). Types
    equal under every key share one part, in which the next keys order."""
    names = groups.types.names

    def value(key: Key, name: str) -> int:
        if key is Key.IS_ADMIN:
            return int(name == ADMIN)
        if key is Key.IS_STAFF:
            return int(AccountTypes.is_staff(name))
        return names.index(name)

    def place(name: str) -> tuple[int, ...]:
        return tuple(-value(o.key, name) if o.descending else value(o.key, name)
                     for o in orders)

    parts: dict[tuple[int, ...], list[str]] = {}
    for name in sorted(names, key=place):
        parts.setdefault(place(name), []).append(name)
    return [n.any_of(*(type_filter(name, groups) for name in part))
            for part in parts.values()]


def sort_keys(orders: Sequence[Order]) -> list[SortKey]:
    """The keys in order, then uidNumber: ties fall in creation order."""
    keys: list[SortKey] = []
    for order in orders:
        if order.key in TYPE_SORT_KEYS:
            raise InvalidInput("order_by", "account type keys only come before other keys")
        base = SORT_ATTRIBUTES[order.key]
        keys.append(SortKey(base.attribute, base.ordering_rule, reverse=order.descending))
    if not any(k.attribute == "uidNumber" for k in keys):
        keys.append(SORT_ATTRIBUTES[Key.ID])
    return keys

"""An account filter tree (app/accounts.py) as ONE escaped LDAP filter, and its sort keys.

RFC 7644 §3.4.2.2 on the entries of app/directory/accounts.py: every value
is escaped by names.py; what LDAP cannot answer exactly is refused
(InvalidInput on "filter"), never filtered in Python afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.accounts import AllOf, AnyOf, Compare, Condition, Negation, Within
from app.directory import names as n
from app.directory.controls import CASE_IGNORE_ORDERING, SortKey
from app.directory.queries import active_filter, type_filter
from app.directory.schema import GroupTypes, format_time
from app.domain import InvalidInput

TRUE, FALSE = "(objectClass=*)", "(!(objectClass=*))"
CASE_EXACT_ORDERING = "2.5.13.6"


@dataclass(frozen=True)
class Column:
    """One attribute: `kind` says which matching rules it has (RFC 4517)."""

    attribute: str
    kind: str = "text"  # text | exact | ia5 | time | uuid | standin

    @property
    def substrings(self) -> bool:
        return self.kind in ("text", "exact", "ia5", "standin") and \
            self.attribute != "userdirTimezone"


@dataclass(frozen=True)
class Element:
    """One value of a multi-valued complex attribute: sub-attributes kept in
    columns, and those that are the same for every such value (constants)."""

    columns: dict[str, Column]
    constants: dict[str, str] = field(default_factory=dict)

    def present(self) -> str:
        return n.any_of(*(f"({c.attribute}=*)" for c in self.columns.values()))


PHONE_ATTRIBUTES = {"work": "telephoneNumber", "mobile": "mobile", "home": "homePhone",
                    "fax": "facsimileTelephoneNumber"}
ADDRESS_ATTRIBUTES = {"formatted": "postalAddress", "streetaddress": "street", "locality": "l",
                      "region": "st", "postalcode": "postalCode", "country": "c"}
USER_COLUMNS = {
    "id": Column("entryUUID", "uuid"), "externalid": Column("userdirExternalId", "exact"),
    "username": Column("uid"), "name.givenname": Column("givenName"),
    "name.familyname": Column("sn", "standin"), "displayname": Column("displayName"),
    "title": Column("title"), "preferredlanguage": Column("preferredLanguage"),
    "locale": Column("userdirLocale", "ia5"), "timezone": Column("userdirTimezone", "ia5"),
    "meta.created": Column("createTimestamp", "time"),
    "meta.lastmodified": Column("modifyTimestamp", "time"),
    "enterprise:employeenumber": Column("employeeNumber"),
    "enterprise:department": Column("departmentNumber"),
}
USER_ELEMENTS = {
    "emails": [Element({"value": Column("mail", "ia5")}, {"type": "work"})],
    "phonenumbers": [Element({"value": Column(a)}, {"type": k})
                     for k, a in PHONE_ATTRIBUTES.items()],
    "addresses": [Element({k: Column(a) for k, a in ADDRESS_ATTRIBUTES.items()},
                          {"type": "work"})],
}
GROUP_COLUMNS = {
    "id": Column("entryUUID", "uuid"), "externalid": Column("userdirExternalId", "exact"),
    "displayname": Column("cn"), "meta.created": Column("createTimestamp", "time"),
    "meta.lastmodified": Column("modifyTimestamp", "time"),
}
USER_SORTS = {
    "username": SortKey("uid", CASE_IGNORE_ORDERING),
    "displayname": SortKey("displayName", CASE_IGNORE_ORDERING),
    "name.givenname": SortKey("givenName", CASE_IGNORE_ORDERING),
    "title": SortKey("title", CASE_IGNORE_ORDERING),
    "emails": SortKey("mail", CASE_IGNORE_ORDERING),
    "emails.value": SortKey("mail", CASE_IGNORE_ORDERING),
    "emails.type": SortKey("mail", CASE_IGNORE_ORDERING),  # "work" wherever there is one
    # Disabled accounts carry pwdEndTime: false sorts before true, as SCIM orders booleans.
    "active": SortKey("pwdEndTime"),
    "preferredlanguage": SortKey("preferredLanguage", CASE_IGNORE_ORDERING),
    "locale": SortKey("userdirLocale", CASE_IGNORE_ORDERING),
    "timezone": SortKey("userdirTimezone", CASE_IGNORE_ORDERING),
    "externalid": SortKey("userdirExternalId"),
    "id": SortKey("entryUUID"),
    "meta.created": SortKey("createTimestamp"),
    "meta.lastmodified": SortKey("modifyTimestamp"),
    "enterprise:employeenumber": SortKey("employeeNumber", CASE_IGNORE_ORDERING),
    "enterprise:department": SortKey("departmentNumber", CASE_IGNORE_ORDERING),
}
GROUP_SORTS = {
    "displayname": SortKey("cn", CASE_IGNORE_ORDERING), "externalid": SortKey("userdirExternalId"),
    "id": SortKey("entryUUID"), "meta.created": SortKey("createTimestamp"),
    "meta.lastmodified": SortKey("modifyTimestamp"),
}
# Filled by the caller with one directory read each: an id (entryUUID) to its DN.
Resolve = Callable[[str], str | None]


def refuse(path: str, why: str) -> InvalidInput:
    return InvalidInput("filter", f"cannot filter on {path}: {why}")


def sort_keys(path: str | None, descending: bool, sorts: dict[str, SortKey],
              tie: SortKey) -> list[SortKey]:
    """slapd's sort keys for sortBy (RFC 7644 §3.4.2.3), ties in `tie`'s order."""
    if path is None:
        return [tie]
    key = sorts.get(path)
    if key is None:
        raise InvalidInput("sortBy", f"cannot sort on {path}")
    keys = [SortKey(key.attribute, key.ordering_rule, reverse=descending)]
    return keys if key.attribute == tie.attribute else [*keys, tie]


@dataclass
class Translator:
    """Users (`groups` set) or groups (`people` set): which paths mean what."""

    columns: dict[str, Column]
    elements: dict[str, list[Element]]
    special: Callable[[Compare], str | None]

    def filter(self, condition: Condition) -> str:
        if isinstance(condition, AllOf):
            return n.all_of(*(self.filter(p) for p in condition.parts))
        if isinstance(condition, AnyOf):
            return n.any_of(*(self.filter(p) for p in condition.parts))
        if isinstance(condition, Negation):
            return n.negate(self.filter(condition.part))
        if isinstance(condition, Within):
            return self._within(condition)
        return self._compare(condition)

    def _compare(self, test: Compare) -> str:
        special = self.special(test)
        if special is not None:
            return special
        column = self.columns.get(test.path)
        if column is not None:
            return compare(column, test, test.path)
        head, _, sub = test.path.partition(".")
        kinds = self.elements.get(head)
        if kinds is None:
            raise refuse(test.path, "no such attribute here")
        if not sub and test.operator == "pr":
            return n.any_of(*(k.present() for k in kinds))
        inner = Compare(sub or "value", test.operator, test.value)
        if test.operator == "ne":  # no value equals it (RFC 7644 leaves it open; scim2-models)
            inner = Compare(inner.path, "eq", test.value)
            return n.negate(n.any_of(*(element(k, inner, test.path) for k in kinds)))
        return n.any_of(*(n.all_of(k.present(), element(k, inner, test.path)) for k in kinds))

    def _within(self, within: Within) -> str:
        kinds = self.elements.get(within.path)
        inner = within.condition
        if kinds is None and isinstance(inner, Compare):  # groups[value eq "id"]
            return self._compare(Compare(f"{within.path}.{inner.path}", inner.operator,
                                         inner.value))
        if kinds is None:
            raise refuse(within.path, "not a multi-valued attribute with values to select")
        return n.any_of(*(n.all_of(k.present(), _inside(k, within.condition, within.path))
                          for k in kinds))


def _inside(kind: Element, condition: Condition, path: str) -> str:
    if isinstance(condition, AllOf):
        return n.all_of(*(_inside(kind, p, path) for p in condition.parts))
    if isinstance(condition, AnyOf):
        return n.any_of(*(_inside(kind, p, path) for p in condition.parts))
    if isinstance(condition, Negation):
        return n.negate(_inside(kind, condition.part, path))
    if isinstance(condition, Within):
        raise refuse(path, "value paths do not nest")
    return element(kind, condition, path)


def element(kind: Element, test: Compare, path: str) -> str:
    """A test on one sub-attribute of one value (single-valued in LDAP)."""
    if test.path in kind.constants:
        return TRUE if constant(kind.constants[test.path], test) else FALSE
    column = kind.columns.get(test.path)
    if column is None:
        return FALSE  # a sub-attribute this kind of value never has
    return compare(column, test, f"{path}.{test.path}")


def constant(value: str, test: Compare) -> bool:
    """A sub-attribute every such value has, decided here (e.g. emails.type is "work")."""
    if test.operator == "pr":
        return True
    if not isinstance(test.value, str):
        return test.operator == "ne"
    mine, theirs = value.casefold(), test.value.casefold()
    return {"eq": mine == theirs, "ne": mine != theirs, "co": theirs in mine,
            "sw": mine.startswith(theirs), "ew": mine.endswith(theirs), "gt": mine > theirs,
            "ge": mine >= theirs, "lt": mine < theirs, "le": mine <= theirs}[test.operator]


def compare(column: Column, test: Compare, path: str) -> str:
    """One attribute against one value, with the null rules of scim2-models:
    `eq null` is absent, `ne null` present, any other test of null false."""
    attribute, operator = column.attribute, test.operator
    present = f"({attribute}=*)"
    if column.kind == "standin" and operator not in ("eq", "ne"):
        # sn holds the username where no family name is known (person needs one).
        raise refuse(path, "only eq and ne (sn stands in for a missing family name)")
    if operator == "pr":
        return present
    if test.value is None:
        return {"eq": n.negate(present), "ne": present}.get(operator, FALSE)
    if operator in ("co", "sw", "ew") and column.kind == "time":
        return FALSE  # a dateTime is no string (scim2-models matches none)
    value = _text(column, test.value, path)
    if operator in ("eq", "ne"):
        found = n.equals(attribute, value)
        if column.kind == "standin":
            found = n.all_of(found, n.negate(n.equals("uid", value)))
        return found if operator == "eq" else n.negate(found)
    if operator in ("co", "sw", "ew"):
        if not column.substrings:
            raise refuse(path, "no substring matching for this attribute")
        escaped = n.filter_value(value)
        pattern = {"co": f"*{escaped}*", "sw": f"{escaped}*", "ew": f"*{escaped}"}[operator]
        return f"({attribute}={pattern})"
    return _ordered(column, operator, value, path)


def _ordered(column: Column, operator: str, value: str, path: str) -> str:
    attribute, escaped = column.attribute, n.filter_value(value)
    present = f"({attribute}=*)"
    if column.kind in ("time", "uuid", "exact"):  # ORDERING rules of their own
        less_equal, greater_equal = f"({attribute}<={escaped})", f"({attribute}>={escaped})"
        return {"le": less_equal, "ge": greater_equal,
                "lt": n.all_of(present, n.negate(greater_equal)),
                "gt": n.all_of(present, n.negate(less_equal))}[operator]
    if column.kind != "text":
        raise refuse(path, "no ordering for this attribute")
    # An extensible match with an ordering rule is "less than" (RFC 4517 §4.2.3).
    below = f"({attribute}:{CASE_IGNORE_ORDERING}:={escaped})"
    equal = f"({attribute}={escaped})"
    return {"lt": below, "le": n.any_of(below, equal),
            "ge": n.all_of(present, n.negate(below)),
            "gt": n.all_of(present, n.negate(below), n.negate(equal))}[operator]


def _text(column: Column, value: object, path: str) -> str:
    if column.kind == "time":
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError as e:
                raise refuse(path, "not a dateTime") from e
        if not isinstance(value, datetime):
            raise refuse(path, "not a dateTime")
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return format_time(moment)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return str(value)


def user_translator(groups: GroupTypes, people: Resolve, teams: Resolve,
                    group_dn: Callable[[str], str]) -> Translator:
    """Users: `people` and `teams` give the DN of a user's or a group's id."""

    def special(test: Compare) -> str | None:
        path, operator, value = test.path, test.operator, test.value
        if path == "active":  # always true or false: present, never null
            if operator == "pr" or value is None:
                return TRUE if operator in ("pr", "ne") else FALSE
            if operator not in ("eq", "ne") or not isinstance(value, bool):
                raise refuse(path, "active matches with eq or ne")
            return active_filter(value == (operator == "eq"))
        if path == "userdir:accounttype":
            if operator == "pr":
                return TRUE
            if operator not in ("eq", "ne") or not isinstance(value, str):
                raise refuse(path, "account types match with eq or ne")
            found = type_filter(value, groups) if value in groups.types else FALSE
            return found if operator == "eq" else n.negate(found)
        if path in ("enterprise:manager", "enterprise:manager.value"):
            return _reference("manager", test, people)
        if path in ("groups", "groups.value"):
            return _reference("memberOf", test, teams, allow_present=False)
        if path == "groups.display" and operator in ("eq", "ne") and isinstance(value, str):
            try:
                found = n.equals("memberOf", group_dn(value))
            except InvalidInput:
                found = FALSE
            return found if operator == "eq" else n.negate(found)
        if path.startswith("groups") or path == "name":
            raise refuse(path, "not supported")
        return None

    return Translator(USER_COLUMNS, USER_ELEMENTS, special)


def _reference(attribute: str, test: Compare, resolve: Resolve,
               allow_present: bool = True) -> str:
    """An attribute holding DNs, tested by the id of the entry it names."""
    if test.operator == "pr" and allow_present:
        return f"({attribute}=*)"
    if test.operator not in ("eq", "ne") or not isinstance(test.value, str):
        raise refuse(test.path, "ids match with eq or ne")
    dn = resolve(test.value)
    found = n.equals(attribute, dn) if dn else FALSE
    return found if test.operator == "eq" else n.negate(found)


def group_translator(people: Resolve, person_dn: Callable[[str], str]) -> Translator:
    """Groups: members by id (`people` gives a user's DN) or by username."""

    def special(test: Compare) -> str | None:
        if test.path in ("members", "members.value"):
            return _reference("member", test, people, allow_present=False)
        if test.path == "members.display" and test.operator in ("eq", "ne") and \
                isinstance(test.value, str):
            try:
                found = n.equals("member", person_dn(test.value))
            except InvalidInput:
                found = FALSE
            return found if test.operator == "eq" else n.negate(found)
        if test.path.startswith("members"):
            raise refuse(test.path, "members match by value or display, with eq or ne")
        return None

    return Translator(GROUP_COLUMNS, {}, special)

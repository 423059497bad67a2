"""DNs and filters: every value that reaches LDAP text is escaped here, and only here."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from app.domain import GROUP_NAME_PATTERN, InvalidInput, is_valid_username


def filter_value(value: str) -> str:
    """RFC 4515 §3: escape `* ( ) \\` (and nothing else) in an assertion value.

    A NUL is refused rather than escaped: slapd ends a substring assertion
    at an escaped \\00, so "a<NUL>b" would match everything containing "a".
    """
    if "\x00" in value:
        raise InvalidInput("filter", "NUL characters are not allowed in a search")
    escaped: str = escape_filter_chars(value)
    return escaped


def equals(attribute: str, value: str) -> str:
    return f"({attribute}={filter_value(value)})"


def contains(attribute: str, value: str) -> str:
    """A substring match; the empty substring is any value: (attr=*), not the
    invalid (attr=**)."""
    return f"({attribute}=*{filter_value(value)}*)" if value else f"({attribute}=*)"


def any_of(*filters: str) -> str:
    return filters[0] if len(filters) == 1 else f"(|{''.join(filters)})"


def all_of(*filters: str) -> str:
    return filters[0] if len(filters) == 1 else f"(&{''.join(filters)})"


def negate(filter_string: str) -> str:
    return f"(!{filter_string})"


def rdn_value(value: str) -> str:
    """RFC 4514 §2.4 escaping of an RDN value that already passed an allow-list."""
    if not value or "\x00" in value:
        # escape_rdn crashes on "" (ldap3 #1086) and writes NUL as "\" + NUL.
        raise InvalidInput("name", "empty name or NUL character")
    escaped: str = escape_rdn(value)
    return escaped


def first_rdn_value(dn: str) -> str:
    """The value of a DN's first RDN, unescaped (uid=a\\,b,... -> 'a,b')."""
    attribute_type, value, _ = parse_dn(dn, escape=False, strip=True)[0]
    del attribute_type
    return re.sub(r"\\([0-9a-fA-F]{2}|.)", _unescape, value)


def _unescape(match: re.Match[str]) -> str:
    text = match.group(1)
    return chr(int(text, 16)) if len(text) == 2 else text


def same_name(a: str, b: str) -> bool:
    """Do two names match as slapd's caseIgnoreMatch says (RFC 4518: NFKC,
    case folded, insignificant spaces ignored)? For uid and cn values."""
    return _folded(a) == _folded(b)


def _folded(value: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


@functools.lru_cache(maxsize=4096)  # memberOf values: the same few group DNs
def normalise_dn(dn: str) -> str:
    """A comparable form: parsed, attribute types and values lower-cased."""
    parts = parse_dn(dn, escape=False, strip=True)
    return ",".join(f"{attr.lower()}={value.lower()}" for attr, value, _ in parts)


@dataclass(frozen=True)
class Tree:
    """Where userdir keeps things under the base DN (SPEC §2)."""

    base: str

    @property
    def people(self) -> str:
        return f"ou=people,{self.base}"

    @property
    def staging(self) -> str:
        return f"ou=staging,{self.base}"

    @property
    def groups(self) -> str:
        return f"ou=groups,{self.base}"

    @property
    def locks(self) -> str:
        return f"ou=locks,{self.base}"

    @property
    def uid_counter(self) -> str:
        return f"cn=uidNumber,ou=counters,{self.base}"

    @property
    def default_policy(self) -> str:
        return f"cn=default,ou=policies,{self.base}"

    @property
    def decoy(self) -> str:
        return f"cn=decoy,ou=services,{self.base}"

    @property
    def placeholder(self) -> str:
        return f"cn=nobody,{self.base}"

    def person(self, username: str) -> str:
        return f"uid={rdn_value(self.checked_username(username))},{self.people}"

    def staged_person(self, username: str) -> str:
        return f"uid={rdn_value(self.checked_username(username))},{self.staging}"

    def group(self, name: str) -> str:
        if re.fullmatch(GROUP_NAME_PATTERN, name) is None:
            raise InvalidInput("name", "invalid group name")
        return f"cn={rdn_value(name)},{self.groups}"

    def lock(self, key: str) -> str:
        return f"cn={rdn_value(key)},{self.locks}"

    def is_person(self, dn: str) -> bool:
        return normalise_dn(dn).endswith("," + normalise_dn(self.people))

    @staticmethod
    def checked_username(username: str) -> str:
        if not is_valid_username(username):
            raise InvalidInput(
                "username",
                "Enter a valid username: letters, digits and @ . + - _ only (at most 64).",
            )
        return username

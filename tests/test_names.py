"""Escaping and the username allow-list (pure functions)."""

from __future__ import annotations

import pytest

from app.directory import names
from app.directory.names import Tree
from app.domain import InvalidInput, is_valid_email, is_valid_username

TREE = Tree("dc=example,dc=org")


@pytest.mark.parametrize("name", ["alice", "Alice", "a.b-c_d", "x@y.z", "a+b", "_x", "7"])
def test_valid_usernames(name: str) -> None:
    assert is_valid_username(name)
    assert names.first_rdn_value(TREE.person(name)) == name


@pytest.mark.parametrize("name", ["", " alice", "alice ", "#x", "a,b", "a=b", "a\x00b", "a*",
                                  "(x)", "a;b", '"q"', "<x>", "é", "a" * 65, ".x", "-x", "a\\b"])
def test_invalid_usernames_never_reach_a_dn(name: str) -> None:
    assert not is_valid_username(name)
    with pytest.raises(InvalidInput):
        TREE.person(name)


def test_plus_is_escaped_in_a_dn() -> None:
    assert TREE.person("a+b") == "uid=a\\+b,ou=people,dc=example,dc=org"


@pytest.mark.parametrize(("value", "escaped"), [
    ("*", "\\2a"), (")(uid=*", "\\29\\28uid=\\2a"), ("\\", "\\5c"), ("é*", "é\\2a"),
])
def test_filter_values_are_escaped(value: str, escaped: str) -> None:
    assert names.filter_value(value) == escaped
    assert names.equals("uid", value) == f"(uid={escaped})"


def test_nul_in_a_filter_value_is_refused() -> None:
    with pytest.raises(InvalidInput):
        names.equals("uid", "a\x00b")


def test_empty_rdn_value_is_refused_not_crashed() -> None:
    with pytest.raises(InvalidInput):
        names.rdn_value("")


@pytest.mark.parametrize("email", ["a@b.co", "first.last+tag@sub.example.org"])
def test_valid_emails(email: str) -> None:
    assert is_valid_email(email)


@pytest.mark.parametrize("email", ["", "a", "a@b", "a b@c.d", "a@@b.c", "a@b.c\n", "@b.c"])
def test_invalid_emails(email: str) -> None:
    assert not is_valid_email(email)


def test_dn_comparison_ignores_case() -> None:
    assert TREE.is_person("UID=Alice,OU=People,DC=Example,DC=org")
    assert not TREE.is_person("uid=alice,ou=staging,dc=example,dc=org")

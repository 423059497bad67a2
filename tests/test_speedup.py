"""The ldap3 decoding shortcut gives what ldap3's own function gives."""

from __future__ import annotations

from typing import Any

import ldap3.operation.search as search_module
import pytest
from ldap3.utils import conv

from app.directory import speedup


@pytest.fixture(scope="module")
def fast() -> Any:
    speedup.install()
    installed = search_module.to_unicode
    assert installed is not conv.to_unicode
    speedup.install()  # a second Directory in the same process: nothing wraps twice
    assert search_module.to_unicode is installed
    return installed


@pytest.mark.parametrize("value", [
    b"plain", "Zoë".encode(), b"", "déjà".encode("latin-1"), "ĳ".encode("utf-16"),
    "already text", 42, bytearray(b"array"),
])
@pytest.mark.parametrize("from_server", [True, False])
def test_same_answer_as_ldap3(fast: Any, value: Any, from_server: bool) -> None:
    def outcome(function: Any) -> Any:
        try:
            return function(value, from_server=from_server)
        except UnicodeError as e:
            return type(e)
    assert outcome(fast) == outcome(conv.to_unicode)


def test_entries_decode_through_it(fast: Any) -> None:
    attributes = [[0, 0, 0, [[0, 0, 0, b"cn"], [0, 0, 0, [[0, 0, 0, "Zoë".encode()]]]]]]
    assert search_module.attributes_to_dict_fast(attributes) == {"cn": ["Zoë"]}

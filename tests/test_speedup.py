"""The ldap3 shortcuts give what ldap3 gives, and leave to ldap3 what they do not know."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import ldap3.operation.search as search_module
import ldap3.strategy.sync as sync_module
import pytest
from ldap3 import (
    ASYNC,
    BASE,
    LEVEL,
    NONE,
    RESTARTABLE,
    SAFE_SYNC,
    SCHEMA,
    SYNC,
    Connection,
    Server,
)
from ldap3.core.exceptions import LDAPAttributeError, LDAPSocketOpenError
from ldap3.strategy.base import BaseStrategy
from ldap3.strategy.sync import SyncStrategy
from ldap3.utils import conv
from ldap3.utils.log import (
    EXTENDED,
    PROTOCOL,
    get_library_log_activation_lavel,
    get_library_log_detail_level,
    set_library_log_activation_level,
    set_library_log_detail_level,
)

from app.directory import speedup
from app.directory.pool import Endpoint
from tests.conftest import BASE_DN, SlapdInstance
from tests.test_ber import Tee, assert_same, shortcut


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


# --- the search shortcut: what takes it, and what goes through ldap3 ----------

PEOPLE = f"ou=people,{BASE_DN}"


def connect(slapd: SlapdInstance, **kwargs: Any) -> Any:
    options = {"client_strategy": SYNC, "auto_bind": True, "raise_exceptions": False, **kwargs}
    server = Server(slapd.url, get_info=options.pop("get_info", NONE))
    return Connection(server, slapd.service_dn, slapd.service_password.encode(), **options)


@pytest.fixture
def plain(slapd: SlapdInstance) -> Iterator[Any]:
    speedup.install()
    conn = connect(slapd)
    conn.socket = Tee(conn.socket)
    try:
        yield conn
    finally:
        conn.unbind()


def test_installed_once() -> None:
    speedup.install()
    assert Connection.search is speedup.search
    speedup.install()
    assert Connection.search is speedup.search


@pytest.mark.parametrize("search_filter", ["(objectClass=*)", b"(objectClass=*)"])
def test_a_service_connection_takes_it(plain: Any, search_filter: Any) -> None:
    assert speedup.is_plain(plain)
    kwargs = {"search_base": PEOPLE, "search_filter": search_filter, "search_scope": BASE,
              "attributes": ["ou", "objectClass"]}
    assert shortcut(plain, kwargs) is not None
    assert_same(plain, 5, kwargs)


@pytest.mark.parametrize("kwargs", [
    {"search_base": PEOPLE.encode()},
    {"size_limit": "4"}, {"size_limit": 4.0}, {"time_limit": True}, {"size_limit": -1},
    {"search_scope": "WHOLE"}, {"dereference_aliases": 7},
    {"attributes": [b"ou"]}, {"attributes": {"ou"}},
    {"controls": [("1.2.3.4", 1, None)]}, {"controls": [("1.2.3.4", False, bytearray(b"v"))]},
    {"controls": [("1.2.3.4", False)]}, {"controls": ("1.2.3.4", False, None)},
    {"search_filter": "(ou=\udcff)"},
], ids=repr)
def test_unusual_arguments_go_through_ldap3(plain: Any, kwargs: dict[str, Any]) -> None:
    kwargs = {"search_base": PEOPLE, "search_filter": "(objectClass=*)", "search_scope": BASE,
              "attributes": ["ou"], **kwargs}
    assert shortcut(plain, kwargs) is None
    assert_same(plain, 6, kwargs)


def test_a_generator_of_names_is_read_once(plain: Any) -> None:
    plain.search(PEOPLE, "(objectClass=*)", BASE, attributes=(a for a in ["ou"]))
    assert plain.response[0]["attributes"]["ou"] == ["people"]


def test_operational_attributes_are_added_to_the_callers_list(plain: Any) -> None:
    wanted: list[str] = ["ou"]
    plain.search(PEOPLE, "(objectClass=*)", BASE, attributes=wanted,
                 get_operational_attributes=True)
    assert wanted == ["ou", "+"]  # as ldap3 does it
    assert "entryUUID" in plain.response[0]["attributes"]


@pytest.mark.parametrize("options", [
    {"client_strategy": SAFE_SYNC}, {"client_strategy": RESTARTABLE},
    {"client_strategy": ASYNC}, {"get_info": SCHEMA}, {"collect_usage": True},
    {"lazy": True},
], ids=repr)
def test_other_connections_go_through_ldap3(slapd: SlapdInstance,
                                            options: dict[str, Any]) -> None:
    speedup.install()
    conn = connect(slapd, **options)
    try:
        returned = conn.search(PEOPLE, "(objectClass=*)", BASE, attributes=["ou"])
        assert not speedup.is_plain(conn)
        strategy = options.get("client_strategy")
        if strategy == ASYNC:
            response, result = conn.get_response(returned)
        elif strategy == SAFE_SYNC:
            _, result, response, _ = returned
        else:
            response, result = conn.response, conn.result
        assert result["result"] == 0
        assert response[0]["attributes"]["ou"] == ["people"]
        if options.get("collect_usage"):
            assert conn.usage.bytes_transmitted > 0
    finally:
        conn.unbind()


def test_names_are_checked_against_a_schema_as_ldap3_does(slapd: SlapdInstance) -> None:
    speedup.install()
    conn = connect(slapd, get_info=SCHEMA)
    try:
        with pytest.raises(LDAPAttributeError, match="notAnAttribute"):
            conn.search(PEOPLE, "(objectClass=*)", BASE, attributes=["notAnAttribute"])
    finally:
        conn.unbind()


def test_ldap3_logging_sees_the_request(plain: Any, caplog: pytest.LogCaptureFixture) -> None:
    level, detail = get_library_log_activation_lavel(), get_library_log_detail_level()
    set_library_log_detail_level(PROTOCOL)
    set_library_log_activation_level(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="ldap3"):
            assert not speedup.is_plain(plain)
            plain.search(PEOPLE, "(objectClass=*)", BASE, attributes=["ou"])
    finally:
        set_library_log_activation_level(level)
        set_library_log_detail_level(detail)
    assert speedup.is_plain(plain)
    assert any("SEARCH request" in r.getMessage() for r in caplog.records)


def test_a_closed_connection_fails_as_in_ldap3(plain: Any) -> None:
    plain.unbind()
    with pytest.raises(LDAPSocketOpenError):
        plain.search(PEOPLE, "(objectClass=*)", BASE)


# --- entries read back by ber.search_entry: what is left to ldap3 ---------------

def responses_both_ways(conn: Any, monkeypatch: pytest.MonkeyPatch,
                        *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    conn.search(*args, **kwargs)
    fast = conn.response
    with monkeypatch.context() as stock:
        stock.setattr(sync_module, "decode_message_fast", speedup.STOCK_DECODE_MESSAGE)
        stock.setattr(SyncStrategy, "decode_response_fast", BaseStrategy.decode_response_fast)
        conn.search(*args, **kwargs)
    return fast, conn.response


def test_a_connection_with_a_schema_reads_entries_as_ldap3_does(
        slapd: SlapdInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Values formatted by the schema (uidNumber an int, single values alone)."""
    speedup.install()
    conn = connect(slapd, get_info=SCHEMA)
    try:
        fast, stock = responses_both_ways(conn, monkeypatch, BASE_DN, "(objectClass=*)",
                                          attributes=["cn", "uidNumber", "createTimestamp",
                                                      "member"])
    finally:
        conn.unbind()
    assert fast == stock and fast
    assert any(isinstance(e["attributes"].get("uidNumber"), int) for e in fast)


def test_a_service_connection_reads_entries_as_ldap3_does(
        plain: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, stock = responses_both_ways(plain, monkeypatch, BASE_DN, "(objectClass=*)",
                                      attributes=["*", "+"])
    assert fast == stock and len(fast) > 2


def test_ldap3_extended_logging_sees_the_entries(
        plain: Any, caplog: pytest.LogCaptureFixture) -> None:
    level, detail = get_library_log_activation_lavel(), get_library_log_detail_level()
    set_library_log_detail_level(EXTENDED)
    set_library_log_activation_level(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG, logger="ldap3"):
            plain.search(PEOPLE, "(objectClass=*)", BASE, attributes=["ou"])
    finally:
        set_library_log_activation_level(level)
        set_library_log_detail_level(detail)
    assert plain.response[0]["attributes"]["ou"] == ["people"]
    assert any("ldap message received" in r.getMessage() for r in caplog.records)


SELECTION = ["ou", "OU", "cn", "mail", "telephoneNumber", "jpegPhoto", "memberOf",
             "noSuchAttribute", "+"]


def _stock_search(conn: Any, monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any) -> Any:
    with monkeypatch.context() as stock:
        stock.setattr(sync_module, "decode_message_fast", speedup.STOCK_DECODE_MESSAGE)
        stock.setattr(SyncStrategy, "decode_response_fast", BaseStrategy.decode_response_fast)
        conn.search(*args, **kwargs)
    return conn.response


def _entries(response: Any) -> list[Any]:
    return [(e["dn"], list(e["raw_attributes"].items()), list(e["attributes"].items()))
            for e in response if e["type"] == "searchResEntry"]


@pytest.mark.parametrize("extended_logging", [False, True])
def test_entries_have_every_attribute_they_asked_for(
        slapd: SlapdInstance, monkeypatch: pytest.MonkeyPatch, extended_logging: bool) -> None:
    """The service's connections leave ldap3's filling-in of missing
    attributes off: entries still have every name the search asked for, the
    missing ones as [], in ldap3's order and case (a name asked for twice in
    two cases once), whether ber.search_entry read them or ldap3 did."""
    speedup.install()
    assert speedup.fills_empty_attributes()
    ours = Endpoint(slapd.url, slapd.service_dn, slapd.service_password).connect()
    stock = connect(slapd)  # ldap3's defaults: it fills them in itself
    assert not ours.empty_attributes and not ours.auto_range and stock.empty_attributes
    level, detail = get_library_log_activation_lavel(), get_library_log_detail_level()
    if extended_logging:  # entries then go ldap3's way, then are filled in
        set_library_log_detail_level(EXTENDED)
        set_library_log_activation_level(logging.DEBUG)
    try:
        # The branches under the base: entries no other test changes meanwhile.
        ours.search(BASE_DN, "(objectClass=*)", LEVEL, attributes=SELECTION)
        fast = ours.response
        expected = _stock_search(stock, monkeypatch, BASE_DN, "(objectClass=*)", LEVEL,
                                 attributes=SELECTION)
    finally:
        set_library_log_activation_level(level)
        set_library_log_detail_level(detail)
        ours.unbind()
        stock.unbind()
    assert _entries(fast) == _entries(expected) and len(_entries(fast)) >= 3
    assert all(e["attributes"]["telephoneNumber"] == [] for e in fast)
    assert all(e["raw_attributes"]["noSuchAttribute"] == [] for e in fast)
    assert all(e["attributes"]["ou"] for e in fast)  # present ones kept, OU not added
    assert all("OU" not in list(e["attributes"].keys()) for e in fast)


def test_without_the_shortcut_ldap3_fills_them_in(
        slapd: SlapdInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the entry reader is not installed (another ldap3), connections
    keep ldap3's own filling-in."""
    monkeypatch.setattr(SyncStrategy, "decode_response_fast", BaseStrategy.decode_response_fast)
    monkeypatch.setattr(sync_module, "decode_message_fast", speedup.STOCK_DECODE_MESSAGE)
    assert not speedup.fills_empty_attributes()
    conn = Endpoint(slapd.url, slapd.service_dn, slapd.service_password).connect()
    try:
        assert conn.empty_attributes
        conn.search(PEOPLE, "(objectClass=*)", BASE, attributes=["ou", "telephoneNumber"])
        assert conn.response[0]["attributes"]["telephoneNumber"] == []
    finally:
        conn.unbind()

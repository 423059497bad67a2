"""ber.py writes what ldap3 and pyasn1 write: the primitives, then a corpus of
searches sent both ways to a real slapd, compared byte for byte."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ldap3 import BASE, LEVEL, NONE, SUBTREE, SYNC, Connection, Server
from ldap3.core.server import Server as ServerClass
from ldap3.strategy.base import BaseStrategy
from ldap3.utils.asn1 import encode
from pyasn1.type import univ

from app.directory import ber, speedup
from app.directory.controls import (
    VLV_RESPONSE,
    SortKey,
    assertion,
    parse_vlv_response,
    post_read,
    server_sort,
    virtual_list_view,
)
from app.directory.schema import USER_ATTRIBUTES
from tests.conftest import BASE_DN, SlapdInstance, start_slapd

PEOPLE = f"ou=people,{BASE_DN}"
SIZES = [0, 1, 127, 128, 255, 256, 65535, 65536, 16777215, 16777216]
NUMBERS = [0, 1, 4, 127, 128, 255, 256, 32767, 32768, 65535, 65536, 2147483647]


@pytest.mark.parametrize("size", SIZES)
def test_lengths_as_pyasn1_writes_them(size: int) -> None:
    assert ber.tlv(ber.OCTET_STRING, b"x" * size) == encode(univ.OctetString(b"x" * size))


@pytest.mark.parametrize("number", NUMBERS)
def test_integers_as_pyasn1_writes_them(number: int) -> None:
    assert ber.integer(number) == encode(univ.Integer(number))


# --- the corpus, sent both ways ----------------------------------------------

class Tee:
    """The connection's real socket, remembering what was sent through it."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def people_ldif() -> str:
    names = ["plain", "Zoë Ĳssel", "日本 語", "star*paren(s)", "back\\slash"]
    return "\n".join(
        f"dn: uid=corpus{i},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: corpus{i}\n"
        f"cn:: {_base64(name)}\nsn: Corpus\nmail: corpus{i}@example.org\n"
        f"description: {'long ' * 60}\n"
        for i, name in enumerate(names))


def _base64(text: str) -> str:
    import base64
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def slapd_with_people(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdInstance]:
    instance = start_slapd(Path(tmp_path_factory.mktemp("ber")), people_ldif())
    try:
        yield instance
    finally:
        instance.process.stop()


@pytest.fixture(scope="module")
def conn(slapd_with_people: SlapdInstance) -> Iterator[Connection]:
    speedup.install()
    connection = Connection(Server(slapd_with_people.url, get_info=NONE),
                            slapd_with_people.service_dn,
                            slapd_with_people.service_password.encode(),
                            client_strategy=SYNC, auto_bind=True, raise_exceptions=False)
    connection.socket = Tee(connection.socket)
    try:
        yield connection
    finally:
        connection.unbind()


@dataclass
class Outcome:
    sent: list[bytes]
    answer: Any


def outcome(conn: Any, search: Any, message_id: int, kwargs: dict[str, Any]) -> Outcome:
    ServerClass._message_counter = message_id - 1  # the next request takes `message_id`
    conn.socket.sent.clear()
    conn.request = conn.result = conn.response = conn.last_error = None
    try:
        returned = search(conn, **kwargs)
    except Exception as e:
        return Outcome(list(conn.socket.sent), (type(e), str(e)))
    return Outcome(list(conn.socket.sent),
                   (returned, conn.request, without_context(conn.result), conn.response,
                    conn.last_error))


def without_context(result: dict[str, Any]) -> dict[str, Any]:
    """slapd names each VLV context anew (its contextID): all else must match."""
    vlv = (result.get("controls") or {}).get(VLV_RESPONSE)
    if vlv is None:
        return result
    answer = parse_vlv_response(vlv["value"])
    vlv = {**vlv, "value": (answer.target_position, answer.content_count, answer.result)}
    return {**result, "controls": {**result["controls"], VLV_RESPONSE: vlv}}


PIECES = ["a", "Zoë", "ĳ", "日本", "😀", " ", "0", "person", "inetOrgPerson", "x" * 140,
          "\\2a", "\\28", "\\29", "\\5c", "\\00", "\\c3\\a9", "\\ff", "\\2A", "-", "=", "~",
          "corpus1", "back\\5cslash", "\\zz", "\\5", ":", "!", "&", "|"]
ATTRIBUTES = ["cn", "uid", "mail", "objectClass", "entryUUID", "sn", "description", "2.5.4.3",
              "cn;lang-fr", "a" * 130]
RULES = ["2.5.13.2", "caseExactMatch", "1.2.840.113556.1.4.803", "caseIgnoreIA5Match"]
BASES = ["", BASE_DN, PEOPLE, f"uid=corpus1,{PEOPLE}", f"cn=Zoë,{PEOPLE}",
         f"cn={'x' * 150},{PEOPLE}", "ou=nowhere,dc=example,dc=org"]
SCOPES: list[Any] = ["BASE", "LEVEL", "SUBTREE", 0, 1, 2]
DEREFS: list[Any] = ["NEVER", "SEARCH", "FINDING_BASE", "ALWAYS", 0, 1, 2, 3]
SELECTIONS: list[Any] = [None, [], "*", ["*"], ["+"], ["1.1"], ["*", "+"], ("cn", "mail"),
                         USER_ATTRIBUTES, [f"attr{i}" for i in range(200)],
                         ["cn;lang-fr", "Zoë", "uid"], ["cn", "cn", "CN"]]


def value(rng: random.Random, pieces: list[str] = PIECES) -> str:
    return "".join(rng.choice(pieces) for _ in range(rng.choice([0, 1, 1, 2, 3, 5])))


# ldap3 cannot print a substring that is not UTF-8 (REFUSED has one): not here.
TEXT_PIECES = [p for p in PIECES if p != "\\ff"]


def leaf(rng: random.Random) -> str:
    attribute = rng.choice(ATTRIBUTES)
    form = rng.randrange(7)
    if form == 0:
        return f"({attribute}{rng.choice(['=', '>=', '<=', '~='])}{value(rng)})"
    if form == 1:
        return f"({attribute}=*)"
    if form in (2, 3):
        part = [value(rng, TEXT_PIECES) for _ in range(2 + rng.randrange(4))]
        text = "*".join(part)
        if text.strip(" ") in ("*", "**", "***"):  # present, or no substrings at all
            text = "a" + text
        return f"({attribute}={text})"
    if form == 4:
        dn = rng.choice(["", ":dn"])
        rule = rng.choice(["", ":" + rng.choice(RULES)])
        return f"({attribute}{dn}{rule}:={value(rng)})"
    if form == 5:
        return f"({rng.choice(['', ':dn'])}:{rng.choice(RULES)}:={value(rng)})"
    return f"(objectClass={rng.choice(['inetOrgPerson', 'person', '*'])})"


def search_filter(rng: random.Random, depth: int = 0) -> str:
    if depth >= 4 or rng.random() < 0.35:
        return leaf(rng)
    operator = rng.choice("&|!")
    if operator == "!":
        return f"(!{search_filter(rng, depth + 1)})"
    children = [search_filter(rng, depth + 1) for _ in range(rng.randint(1, 5))]
    gap = rng.choice(["", "", " "])
    return f"({operator}{gap}{gap.join(children)})"


def controls(rng: random.Random) -> Any:
    choices: list[Any] = [
        None, [],
        [server_sort([SortKey("uid", "2.5.13.3"), SortKey("cn", reverse=True)])],
        [server_sort([SortKey("uid", "2.5.13.3")]), virtual_list_view(1, 9, None)],
        [server_sort([SortKey("cn")]), virtual_list_view(200, 0, b"\x00" * 200)],
        [assertion("(objectClass=*)")],
        [assertion("(&(uid=corpus1)(cn=Zo\\c3\\ab*))")],
        [post_read(["cn", "uid"])],
        [("2.16.840.1.113730.3.4.2", False, None)],
        [("1.3.6.1.4.1.4203.1.10.1", True, b"")],
        [("1.2.3.4", False, b"v" * 300), ("1.2.3.5", True, "text value")],
        (("1.2.3.4", False, b"w" * 70000),),
        [(b"1.2.3.6", False, None)],
    ]
    return rng.choice(choices)


def corpus() -> Iterator[tuple[int, dict[str, Any]]]:
    rng = random.Random(22)
    ids = iter(range(1000, 10**6))
    fixed_ids = [1, 127, 128, 255, 256, 65535, 65536, 16777215, 16777216, 2147483646]
    for i in range(900):
        kwargs: dict[str, Any] = {
            "search_base": rng.choice(BASES), "search_filter": search_filter(rng),
            "search_scope": rng.choice(SCOPES), "dereference_aliases": rng.choice(DEREFS),
            "attributes": rng.choice(SELECTIONS), "size_limit": rng.choice(NUMBERS),
            "time_limit": rng.choice([0, 1, 127, 128, 2147483647]),
            "types_only": rng.random() < 0.2, "controls": controls(rng),
            "auto_escape": rng.choice([None, True, False]),
        }
        if rng.random() < 0.1:
            kwargs["paged_size"] = rng.choice([0, 1, 500, 65536])
            kwargs["paged_criticality"] = rng.random() < 0.5
            kwargs["paged_cookie"] = rng.choice([None, b"", b"\x01cookie"])
        yield fixed_ids[i] if i < len(fixed_ids) else next(ids), kwargs


LONG = [
    f"(description={'y' * 70000})",  # one value past 65535 octets
    "(|" + "".join(f"(uid=corpus{i}{'z' * 100})" for i in range(700)) + ")",  # a filter too
    "(cn=*" + "*".join(["abcdefgh"] * 8000) + "*)",
]
REFUSED = ["(cn=a", "cn=a", "(&)", "(cn=**)", "(cn= *)", "(cn=*\\ff*)", "(!(a=b)(c=d))",
           "((cn=a))", "", "(:dn:=x)"]


def assert_same(conn: Any, message_id: int, kwargs: dict[str, Any]) -> bool:
    """Sent both ways: the same bytes and the same everything; True if ldap3 took it."""
    stock = outcome(conn, speedup.STOCK_SEARCH, message_id, kwargs)
    fast = outcome(conn, Connection.search, message_id, kwargs)
    assert fast.sent == stock.sent, kwargs
    assert fast.answer == stock.answer, kwargs
    return len(stock.sent) == 1


def shortcut(conn: Any, kwargs: dict[str, Any]) -> speedup.Request | None:
    """What the shortcut makes of these `Connection.search` arguments (None: ldap3's path)."""
    given = {"search_scope": "SUBTREE", "dereference_aliases": "ALWAYS", "attributes": None,
             "size_limit": 0, "time_limit": 0, "types_only": False, "controls": None,
             "paged_size": None, "paged_criticality": False, "paged_cookie": None,
             "auto_escape": None, **kwargs}
    return speedup.search_request(
        conn, given["search_base"], given["search_filter"], given["search_scope"],
        given["dereference_aliases"], given["attributes"], given["size_limit"],
        given["time_limit"], given["types_only"], given["controls"], given["paged_size"],
        given["paged_criticality"], given["paged_cookie"], given["auto_escape"])


def test_corpus_same_bytes_on_the_wire(conn: Any) -> None:
    assert speedup.is_plain(conn)
    taken = 0
    for message_id, kwargs in corpus():
        accepted = assert_same(conn, message_id, kwargs)
        # Every search ldap3 takes is written by ber.py, none is left to pyasn1.
        assert (shortcut(conn, kwargs) is not None) == accepted, kwargs
        taken += accepted
    assert taken > 850


@pytest.mark.parametrize("search_filter", LONG, ids=["long-value", "long-or", "many-any"])
def test_long_filters(conn: Any, search_filter: str) -> None:
    assert assert_same(conn, 70000, {"search_base": PEOPLE, "search_filter": search_filter,
                                     "attributes": ["cn"]})


def test_long_attribute_list(conn: Any) -> None:
    names = [f"attribute{i:05d}" for i in range(7000)]  # > 65535 octets of names
    assert assert_same(conn, 3, {"search_base": PEOPLE, "search_filter": "(uid=corpus1)",
                                 "attributes": names})


@pytest.mark.parametrize("auto_escape", [True, False])
@pytest.mark.parametrize("search_filter", REFUSED)
def test_what_ldap3_refuses_it_still_refuses(conn: Any, search_filter: str,
                                             auto_escape: bool) -> None:
    assert not assert_same(conn, 9, {"search_base": PEOPLE, "search_filter": search_filter,
                                     "auto_escape": auto_escape})


def test_an_octet_below_zero(conn: Any) -> None:
    """Unescaped, "\\-1" reads as hexadecimal -1: ldap3 raises ValueError."""
    assert not assert_same(conn, 9, {"search_base": PEOPLE, "search_filter": "(cn=\\-1x)",
                                     "auto_escape": False})


def test_answers_are_read_back(conn: Any) -> None:
    conn.search(PEOPLE, "(cn=Zo\\c3\\ab*)", attributes=["cn"])
    assert [e["attributes"]["cn"] for e in conn.response] == [["Zoë Ĳssel"]]


# --- entries read back: ber.search_entry against ldap3's own decoder ---------------

class Recorder:
    """The messages a strategy receives, kept as they came off the socket."""

    def __init__(self, receiving: Any) -> None:
        self.receiving = receiving
        self.messages: list[bytes] = []

    def __call__(self) -> Any:
        messages = self.receiving()
        self.messages += [bytes(m) for m in messages]
        return messages


def read_both_ways(conn: Any, message: bytes) -> tuple[Any, Any]:
    stock = BaseStrategy.decode_response_fast(conn.strategy,
                                             speedup.STOCK_DECODE_MESSAGE(message))
    fast = conn.strategy.decode_response_fast(speedup.decode_message(message))
    return stock, fast


def assert_read_alike(conn: Any, message: bytes) -> None:
    stock, fast = read_both_ways(conn, message)
    assert fast == stock
    for key in ("attributes", "raw_attributes"):
        if key in stock:
            assert type(fast[key]) is type(stock[key])
            assert list(fast[key].items()) == list(stock[key].items())
            assert [type(v) for vs in fast[key].values() for v in vs or []] == \
                [type(v) for vs in stock[key].values() for v in vs or []]


def test_entries_are_read_as_ldap3_reads_them(conn: Any) -> None:
    """Every message of a corpus of real answers (unicode, binary and long
    values, operational attributes, the schema, the root DSE, VLV and
    paged results) reads the same both ways, and entries take the short way."""
    binary = f"uid=binary,{PEOPLE}"
    conn.delete(binary)
    assert conn.add(binary, ["inetOrgPerson"], {
        "uid": "binary", "cn": "Binary", "sn": "B", "jpegPhoto": bytes(range(256)) * 300,
        "description": ["é" * 40000, "plain"], "mail": ["b1@example.org", "b2@example.org"]})
    recorder = Recorder(conn.strategy.receiving)
    conn.strategy.receiving = recorder
    try:
        for base, scope, selection in [
                (PEOPLE, SUBTREE, ["*", "+"]), (PEOPLE, SUBTREE, USER_ATTRIBUTES),
                (PEOPLE, SUBTREE, ["1.1"]), (binary, BASE, ["jpegPhoto", "description"]),
                ("", BASE, ["+"]), ("cn=subschema", BASE, ["*", "+"]),
                (PEOPLE, LEVEL, ["cn;lang-fr", "CN", "objectclass"])]:
            assert conn.search(base, "(objectClass=*)", scope, attributes=selection)
        keys = [SortKey("uid", "2.5.13.3")]
        conn.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["uid"],
                    controls=[server_sort(keys), virtual_list_view(2, 2)])
        conn.search(PEOPLE, "(objectClass=*)", SUBTREE, attributes=["uid"], paged_size=2)
    finally:
        conn.strategy.receiving = recorder.receiving
    entries = [m for m in recorder.messages if ber.search_entry(m) is not None]
    assert len(entries) >= 20 and len(recorder.messages) > len(entries)
    for message in recorder.messages:
        assert_read_alike(conn, message)
    assert any(len(m) > 65536 for m in entries)  # lengths in three octets


def test_odd_entries_are_left_to_ldap3(conn: Any) -> None:
    entry = ber.tlv(0x64, ber.tlv(ber.OCTET_STRING, b"uid=x,dc=example,dc=org") + ber.tlv(
        ber.SEQUENCE, ber.tlv(ber.SEQUENCE, ber.tlv(ber.OCTET_STRING, b"cn")
                              + ber.tlv(ber.SET, b""))))  # a type without values
    plain = ber.message(7, entry)
    assert ber.search_entry(plain) == (7, b"uid=x,dc=example,dc=org", [(b"cn", [])])
    assert_read_alike(conn, plain)
    with_controls = ber.message(7, entry, ber.controls([ber.control(b"1.2.3", False, b"v")]))
    assert ber.search_entry(with_controls) is None
    assert_read_alike(conn, with_controls)
    for broken in (plain[:-1], plain + b"\x00", plain[:3], b"", b"\x30\x80" + plain[2:],
                   plain.replace(b"\x31\x00", b"\x31\x05")):
        assert ber.search_entry(broken) is None

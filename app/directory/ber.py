"""BER of the LDAP requests userdir sends most, byte for byte as ldap3 2.9 and pyasn1 write them.

RFC 4511 §5.1: definite lengths in their shortest form, INTEGERs in the
fewest octets (X.690 §8.3), BOOLEAN true as 0xFF (ldap3 patches pyasn1 so),
a DEFAULT FALSE component left out when false. tests/test_ber.py compares
every shape below with ldap3's own encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ldap3.operation import search as filters
from ldap3.protocol.convert import prepare_filter_for_sending

SEQUENCE = 0x30
OCTET_STRING = 0x04
TRUE = b"\x01\x01\xff"
FALSE = b"\x01\x01\x00"
SEARCH_REQUEST = 0x63  # [APPLICATION 3], constructed
BIND_REQUEST = 0x60  # [APPLICATION 0], constructed
SIMPLE = 0x80  # a bind's simple authentication [0], primitive
PRESENT = 0x87  # a present filter [7], primitive
CONTROLS = 0xA0  # [0], constructed

_ENUMERATED = tuple(bytes((0x0A, 1, n)) for n in range(4))
# RFC 4511 §4.5.1.7: and [0], or [1], not [2] ... extensibleMatch [9].
_ASSERTIONS = {filters.MATCH_EQUAL: 0xA3, filters.MATCH_GREATER_OR_EQUAL: 0xA5,
               filters.MATCH_LESS_OR_EQUAL: 0xA6, filters.MATCH_APPROX: 0xA8}
_SETS = {filters.AND: 0xA0, filters.OR: 0xA1}


class Unencodable(ValueError):
    """A request this module does not write the way ldap3 would (or ldap3 refuses)."""


def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets + content


def integer(value: int) -> bytes:
    """A non-negative INTEGER: a leading zero octet only where the top bit is set."""
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def enumerated(value: int) -> bytes:
    return _ENUMERATED[value]


def text(value: Any) -> bytes:
    """An LDAPString (RFC 4511 §4.1.2: UTF-8)."""
    if type(value) is not str:
        raise Unencodable(f"not a str: {type(value).__name__}")
    return value.encode("utf-8")


def assertion_value(value: Any) -> bytes:
    """A filter value as ldap3 sends it: its \\XX escapes turned into octets."""
    if type(value) is bytes and b"\\" not in value:
        return value
    prepared: bytes = prepare_filter_for_sending(value)  # ldap3's own, quirks and all
    return prepared


def search_filter(node: Any) -> bytes:
    """A filter from ldap3's parse of its string form (`parse_filter`)."""
    tag = node.tag
    assertion = node.assertion
    if tag in _ASSERTIONS:
        return tlv(_ASSERTIONS[tag], tlv(OCTET_STRING, text(assertion["attr"]))
                   + tlv(OCTET_STRING, assertion_value(assertion["value"])))
    if tag in _SETS:
        if not node.elements:
            raise Unencodable("an empty and/or")
        return tlv(_SETS[tag], b"".join(search_filter(e) for e in node.elements))
    if tag == filters.NOT:
        return tlv(0xA2, search_filter(node.elements[0]))
    if tag == filters.MATCH_PRESENT:
        return tlv(0x87, text(assertion["attr"]))
    if tag == filters.MATCH_SUBSTRING:
        return tlv(0xA4, tlv(OCTET_STRING, text(assertion["attr"])) + _substrings(assertion))
    if tag == filters.MATCH_EXTENSIBLE:
        return tlv(0xA9, _matching_rule_assertion(assertion))
    raise Unencodable(f"filter node {tag!r}")


def _substrings(assertion: dict[str, Any]) -> bytes:
    parts = []
    if assertion.get("initial"):
        parts.append(tlv(0x80, assertion_value(assertion["initial"])))
    for middle in assertion.get("any") or ():
        parts.append(tlv(0x81, assertion_value(middle)))
    if assertion.get("final"):
        parts.append(tlv(0x82, assertion_value(assertion["final"])))
    if not parts:
        raise Unencodable("no substrings")  # "(cn=**)": pyasn1 refuses it (SIZE 1..MAX)
    return tlv(SEQUENCE, b"".join(parts))


def _matching_rule_assertion(assertion: dict[str, Any]) -> bytes:
    parts = []
    if assertion["matchingRule"]:
        parts.append(tlv(0x81, text(assertion["matchingRule"])))
    if assertion["attr"]:
        parts.append(tlv(0x82, text(assertion["attr"])))
    parts.append(tlv(0x83, assertion_value(assertion["value"])))
    if assertion["dnAttributes"]:
        parts.append(b"\x84\x01\xff")  # dnAttributes [4] BOOLEAN DEFAULT FALSE
    return b"".join(parts)


def attribute_selection(names: Sequence[bytes]) -> bytes:
    return tlv(SEQUENCE, b"".join(tlv(OCTET_STRING, name) for name in names))


def search_request(base: bytes, scope: int, deref: int, size_limit: int, time_limit: int,
                   types_only: bool, encoded_filter: bytes, selection: bytes) -> bytes:
    return tlv(SEARCH_REQUEST, b"".join((
        tlv(OCTET_STRING, base), _ENUMERATED[scope], _ENUMERATED[deref],
        integer(size_limit), integer(time_limit), TRUE if types_only else FALSE,
        encoded_filter, selection,
    )))


def control(oid: bytes, critical: bool, value: bytes | None) -> bytes:
    """RFC 4511 §4.1.11; criticality is DEFAULT FALSE, so false is left out."""
    return tlv(SEQUENCE, tlv(OCTET_STRING, oid) + (TRUE if critical else b"")
               + (b"" if value is None else tlv(OCTET_STRING, value)))


def controls(encoded: Sequence[bytes]) -> bytes:
    return tlv(CONTROLS, b"".join(encoded)) if encoded else b""


def message(message_id: int, operation: bytes, encoded_controls: bytes = b"") -> bytes:
    return tlv(SEQUENCE, integer(message_id) + operation + encoded_controls)


# --- reading: the message slapd sends most ---------------------------------

SEARCH_RESULT_ENTRY = 0x64  # [APPLICATION 4], constructed
SET = 0x31
INTEGER = 0x02
Entry = tuple[int, bytes, list[tuple[bytes, list[bytes]]]]


def _length(data: bytes, at: int) -> tuple[int, int]:
    """The length whose octets start at `at`, and where its content starts.
    IndexError for anything but a definite length of at most 8 octets."""
    first = data[at]
    if first < 0x80:
        return first, at + 1
    count = first & 0x7F
    if not 0 < count <= 8:
        raise IndexError("indefinite or oversized length")
    start = at + 1 + count
    if start > len(data):
        raise IndexError("truncated length")
    return int.from_bytes(data[at + 1:start], "big"), start


def _octets(data: bytes, at: int, end: int) -> tuple[bytes, int]:
    """An OCTET STRING (primitive, tag 0x04) at `at` that ends by `end`."""
    start, stop = _container(data, at, OCTET_STRING, end)
    return data[start:stop], stop


def _container(data: bytes, at: int, tag: int, end: int) -> tuple[int, int]:
    """(start, end) of the content of the `tag` element at `at`, inside `end`."""
    if data[at] != tag:
        raise IndexError("unexpected tag")
    size, start = _length(data, at + 1)
    stop = start + size
    if stop > end:
        raise IndexError("overruns its container")
    return start, stop


def search_entry(message: bytes) -> Entry | None:
    """(messageID, objectName, [(type, [values])]) of an LDAPMessage that is
    a SearchResultEntry without controls (RFC 4511 §4.5.2), exactly as
    ldap3's decoder reads it; None for any other message or any encoding
    this does not expect, which ldap3 then reads itself. The inner loop
    reads short lengths inline: it runs once per value of every entry."""
    try:
        body, end = _container(message, 0, SEQUENCE, len(message))
        if end != len(message) or message[body] != INTEGER:
            return None
        size, at = _length(message, body + 1)
        if size == 0:
            return None
        message_id = int.from_bytes(message[at:at + size], "big", signed=True)
        at, operation_end = _container(message, at + size, SEARCH_RESULT_ENTRY, end)
        if operation_end != end:  # controls follow
            return None
        name, at = _octets(message, at, operation_end)
        at, attributes_end = _container(message, at, SEQUENCE, operation_end)
        if attributes_end != operation_end:
            return None
        attributes: list[tuple[bytes, list[bytes]]] = []
        while at < attributes_end:
            at, attribute_end = _container(message, at, SEQUENCE, attributes_end)
            kind, at = _octets(message, at, attribute_end)
            at, values_end = _container(message, at, SET, attribute_end)
            if values_end != attribute_end:
                return None
            values = []
            while at < values_end:
                if message[at] != OCTET_STRING:
                    return None
                size = message[at + 1]
                if size < 0x80:
                    start = at + 2
                else:
                    size, start = _length(message, at + 1)
                at = start + size
                if at > values_end:
                    return None
                values.append(message[start:at])
            attributes.append((kind, values))
        return message_id, name, attributes
    except IndexError:
        return None

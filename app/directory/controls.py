"""LDAP controls ldap3 has no helpers for: Assertion, server-side sort, VLV.

Each is a (oid, criticality, BER value) tuple, as ldap3's `controls=` wants.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldap3.operation.search import compile_filter, parse_filter
from ldap3.protocol.rfc4527 import post_read_control
from ldap3.utils.asn1 import encode
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import namedtype, tag, univ

Control = tuple[str, bool, bytes | None]

ASSERTION = "1.3.6.1.1.12"
SORT_REQUEST = "1.2.840.113556.1.4.473"
VLV_REQUEST = "2.16.840.1.113730.3.4.9"
VLV_RESPONSE = "2.16.840.1.113730.3.4.10"
POST_READ = "1.3.6.1.1.13.2"
CASE_IGNORE_ORDERING = "2.5.13.3"  # uid, cn, sn have no ORDERING rule of their own


def assertion(filter_string: str) -> Control:
    """RFC 4528: the operation only happens if the target entry matches.

    Values inside `filter_string` must already be escaped (see names.py).
    """
    parsed = parse_filter(filter_string, None, True, True, None, False)
    return (ASSERTION, True, encode(compile_filter(parsed.elements[0])))


def post_read(attributes: list[str]) -> Control:
    """RFC 4527: the entry as the same atomic operation left it."""
    control: Control = post_read_control(attributes)
    return control


@dataclass(frozen=True)
class SortKey:
    attribute: str
    ordering_rule: str | None = None
    reverse: bool = False


class _SortKey(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("attributeType", univ.OctetString()),
        namedtype.OptionalNamedType(
            "orderingRule",
            univ.OctetString().subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0)
            ),
        ),
        namedtype.DefaultedNamedType(
            "reverseOrder",
            univ.Boolean(False).subtype(
                implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 1)
            ),
        ),
    )


class _SortKeyList(univ.SequenceOf):
    componentType = _SortKey()


def server_sort(keys: list[SortKey]) -> Control:
    """RFC 2891 sort request; entries without a key value sort last."""
    key_list = _SortKeyList()
    for key in keys:
        item = _SortKey()
        item["attributeType"] = key.attribute
        if key.ordering_rule:
            item["orderingRule"] = key.ordering_rule
        if key.reverse:
            item["reverseOrder"] = True
        key_list.append(item)
    return (SORT_REQUEST, True, encoder.encode(key_list))


class _ByOffset(univ.Sequence):
    tagSet = univ.Sequence.tagSet.tagImplicitly(
        tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, 0)
    )
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("offset", univ.Integer()),
        namedtype.NamedType("contentCount", univ.Integer()),
    )


class _Target(univ.Choice):
    componentType = namedtype.NamedTypes(namedtype.NamedType("byOffset", _ByOffset()))


class _VlvRequest(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("beforeCount", univ.Integer()),
        namedtype.NamedType("afterCount", univ.Integer()),
        namedtype.NamedType("target", _Target()),
        namedtype.OptionalNamedType("contextID", univ.OctetString()),
    )


def virtual_list_view(offset: int, after: int, context: bytes | None = None) -> Control:
    """draft-ietf-ldapext-ldapv3-vlv-09, by offset (1-based), `after` entries after it."""
    request = _VlvRequest()
    request["beforeCount"] = 0
    request["afterCount"] = after
    request["target"]["byOffset"]["offset"] = offset
    request["target"]["byOffset"]["contentCount"] = 0
    if context:
        request["contextID"] = context
    return (VLV_REQUEST, True, encoder.encode(request))


@dataclass(frozen=True)
class VlvResponse:
    target_position: int
    content_count: int
    result: int
    context: bytes | None


def parse_vlv_response(value: bytes) -> VlvResponse:
    decoded, _ = decoder.decode(value)
    context = bytes(decoded[3]) if len(decoded) > 3 and decoded[3].hasValue() else None
    return VlvResponse(int(decoded[0]), int(decoded[1]), int(decoded[2]), context)

"""Two hot spots of ldap3 2.9, worked around where they are used.

Decoding: ldap3 decodes every attribute name and value of every entry it
receives through `ldap3.utils.conv.to_unicode`, which first looks up four
configuration parameters, each a chain of string comparisons: for a
one-user read that is a tenth of the CPU the whole request costs. Data from
the server only needs the server encoding, which is read here once. Bytes
that are not in that encoding, and everything else, still go through
ldap3's own function, so the results are the same.

Entries: ldap3 reads every answer with a generic BER decoder into tuples,
then walks them into dicts. A SearchResultEntry without controls (nearly
every message a search brings back) is read by ber.search_entry straight
into the same dict (tests/test_ber.py compares both on real answers); any
other message, a connection that checks names against a schema, or ldap3's
extended logging, goes ldap3's own way.

Encoding: ldap3 builds each search request as a tree of pyasn1 objects,
walks it with pyasn1's generic encoder, then reads it back into a dict for
its bookkeeping (`Connection.request`): with userdir's thirty attribute
names that is most of the client CPU of the search (measured: ~1.4 ms of
~2 ms). A search with nothing unusual about it (see `is_plain`) is written
by ber.py instead, from ldap3's own parse of the filter: the same bytes
(tests/test_ber.py) and the same dict. Anything else, including anything
ldap3 would refuse, takes ldap3's own path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ldap3
import ldap3.operation.search as search_module
import ldap3.strategy.sync as sync_module
from ldap3 import (
    ALL_ATTRIBUTES,
    ALL_OPERATIONAL_ATTRIBUTES,
    BASE,
    DEREF_ALWAYS,
    DEREF_BASE,
    DEREF_NEVER,
    DEREF_SEARCH,
    DIGEST_MD5,
    LEVEL,
    NO_ATTRIBUTES,
    SUBTREE,
    Connection,
)
from ldap3.core.exceptions import LDAPSocketSendError, communication_exception_factory
from ldap3.core.results import RESULT_SUCCESS
from ldap3.protocol.rfc2696 import paged_search_control
from ldap3.protocol.rfc4511 import LDAPOID, Control, ControlValue
from ldap3.strategy.base import BaseStrategy
from ldap3.strategy.sync import SyncStrategy
from ldap3.utils.asn1 import encode
from ldap3.utils.ciDict import CaseInsensitiveDict
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import safe_dn
from ldap3.utils.log import ERROR, EXTENDED, log_enabled

from app.directory import ber

_ORIGINAL = search_module.to_unicode
STOCK_SEARCH = Connection.search
STOCK_DECODE_MESSAGE = sync_module.decode_message_fast
_READ = "userdir-entry"  # the key of an entry ber.search_entry has read
MEASURED = "2.9.1"
_SELECTIONS: dict[tuple[str, ...], bytes] = {}


def install() -> None:
    """Put both shortcuts in place (idempotent; only on the ldap3 line they
    were measured on)."""
    if not ldap3.__version__.startswith("2.9"):
        return
    if search_module.to_unicode is _ORIGINAL:
        search_module.to_unicode = _decoder(ldap3.get_config_parameter("DEFAULT_SERVER_ENCODING"))
    if ldap3.__version__ == MEASURED and Connection.search is STOCK_SEARCH:
        Connection.search = search
    if ldap3.__version__ == MEASURED and sync_module.decode_message_fast is STOCK_DECODE_MESSAGE:
        insensitive = bool(ldap3.get_config_parameter("CASE_INSENSITIVE_ATTRIBUTE_NAMES"))
        sync_module.decode_message_fast = decode_message
        SyncStrategy.decode_response_fast = _entry_reader(
            ldap3.get_config_parameter("DEFAULT_SERVER_ENCODING"), insensitive)


def decode_message(message: bytes) -> dict[str, Any]:
    """ldap3's decode_message_fast, but an entry is read by ber.search_entry
    (its tuples are kept aside for decode_response_fast)."""
    if not log_enabled(EXTENDED):  # that log prints ldap3's own decoded tree
        entry = ber.search_entry(message)
        if entry is not None:
            return {"messageID": entry[0], "protocolOp": 4, "payload": None,
                    "controls": None, _READ: (entry, message)}
    decoded: dict[str, Any] = STOCK_DECODE_MESSAGE(message)
    return decoded


def _entry_reader(server_encoding: str, insensitive: bool) -> Any:
    def decode_response_fast(self: Any, ldap_message: dict[str, Any]) -> dict[str, Any]:
        """BaseStrategy.decode_response_fast, given an entry read by
        ber.search_entry; an entry comes with every attribute its search
        asked for, those it lacks as [] (see `fills_empty_attributes`)."""
        found = ldap_message.get(_READ)
        if found is None:
            return _filled(self, ldap_message,
                           BaseStrategy.decode_response_fast(self, ldap_message))
        (message_id, dn, attributes), message = found
        if self.connection.check_names:  # values formatted by the schema: ldap3's way
            return _filled(self, ldap_message, BaseStrategy.decode_response_fast(
                self, STOCK_DECODE_MESSAGE(message)))
        names: list[str] = []
        raw: list[Any] = []
        decoded: list[Any] = []
        for kind, values in attributes:
            name = _NAMES.get(kind)
            if name is None:
                try:
                    name = kind.decode(server_encoding)
                except UnicodeDecodeError:
                    name = search_module.to_unicode(kind, from_server=True)
                if len(_NAMES) < 4096:
                    _NAMES[kind] = name
            names.append(name)
            if not values:
                raw.append(None)
                decoded.append(None)
                continue
            raw.append(values)
            try:
                decoded.append([value.decode(server_encoding) for value in values])
            except UnicodeDecodeError:  # ldap3's other encodings, then bytes
                decoded.append(search_module.decode_vals_fast(
                    [(0, False, 4, value) for value in values]))
        wanted = _wanted(self, message_id)
        if insensitive:
            layout = _layout(tuple(names), wanted)
            raw_attributes = _insensitive(layout, raw)
            decoded_attributes = _insensitive(layout, decoded)
        else:
            raw_attributes = dict(zip(names, raw, strict=True))
            decoded_attributes = dict(zip(names, decoded, strict=True))
            for _, name in wanted:
                if name not in raw_attributes:
                    raw_attributes[name] = []
                    decoded_attributes[name] = []
        return {"raw_dn": dn, "dn": search_module.to_unicode(dn, from_server=True),
                "raw_attributes": raw_attributes, "attributes": decoded_attributes,
                "type": "searchResEntry"}
    decode_response_fast.fills_empty_attributes = True  # type: ignore[attr-defined]
    return decode_response_fast


def fills_empty_attributes() -> bool:
    """Whether entries come with the attributes they lack as [] from here,
    so connections can turn ldap3's own filling off (return_empty_attributes
    and auto_range, app/directory/pool.py): that loop looks every asked-for
    name up in every entry's two case-insensitive dicts, and cost a third of
    the API's CPU for a SCIM page of 100 users (py-spy)."""
    reader = SyncStrategy.__dict__.get("decode_response_fast")
    return reader is not None and getattr(reader, "fills_empty_attributes", False)


# The names a search asked for that every entry is to have (ldap3 leaves out
# the wildcards), each with its folded form; remembered for the message the
# entries belong to, on its connection's strategy.
_WANTED = "_userdir_wanted"
_WILDCARDS = frozenset({ALL_ATTRIBUTES, ALL_OPERATIONAL_ATTRIBUTES, NO_ATTRIBUTES})
_NAMES: dict[bytes, str] = {}  # attribute names as slapd sends them, decoded
_LAYOUTS: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], _Layout] = {}


def _wanted(strategy: Any, message_id: int) -> tuple[tuple[str, str], ...]:
    known = getattr(strategy, _WANTED, None)
    if known is not None and known[0] == message_id:
        return known[1]  # type: ignore[no-any-return]
    request = strategy._outstanding.get(message_id) if strategy._outstanding else None
    names = (request or {}).get("attributes") or ()
    wanted = tuple((name.strip().lower(), name) for name in names
                   if isinstance(name, str) and name not in _WILDCARDS)
    setattr(strategy, _WANTED, (message_id, wanted))
    return wanted


def _filled(strategy: Any, ldap_message: dict[str, Any],
            response: dict[str, Any]) -> dict[str, Any]:
    """An entry ldap3 decoded, with what its search asked for and it lacks as []."""
    if response.get("type") != "searchResEntry":
        return response
    for _, name in _wanted(strategy, ldap_message["messageID"]):
        if name not in response["raw_attributes"]:
            response["raw_attributes"][name] = []
            response["attributes"][name] = []
    return response


@dataclass(frozen=True)
class _Layout:
    """How the entries of one search with these attribute names (nearly all
    of its entries) fill a CaseInsensitiveDict: worked out once, not per entry."""

    slots: tuple[str, ...]  # the key each value goes under (a name met again: the first)
    keymap: dict[str, str]  # folded name -> key, the dict's _case_insensitive_keymap
    missing: tuple[str, ...]  # names asked for that no value came under


def _layout(names: tuple[str, ...], wanted: tuple[tuple[str, str], ...]) -> _Layout:
    found = _LAYOUTS.get((names, wanted))
    if found is not None:
        return found
    slots: list[str] = []
    keymap: dict[str, str] = {}
    for name in names:
        folded = name.strip().lower()
        first = keymap.setdefault(folded, name)
        slots.append(first)
    missing: list[str] = []
    for folded, name in wanted:
        if folded not in keymap:
            keymap[folded] = name
            missing.append(name)
    found = _Layout(tuple(slots), keymap, tuple(missing))
    if len(_LAYOUTS) >= 1024:
        _LAYOUTS.clear()
    _LAYOUTS[(names, wanted)] = found
    return found


def _insensitive(layout: _Layout, values: list[Any]) -> Any:
    """The CaseInsensitiveDict its __setitem__ would make one value at a time
    (a name met again in another case updates the first), then each missing
    name asked for, as []."""
    store = dict(zip(layout.slots, values, strict=True))
    for name in layout.missing:
        store[name] = []
    made = CaseInsensitiveDict.__new__(CaseInsensitiveDict)
    made._store = store
    made._case_insensitive_keymap = dict(layout.keymap)
    return made


def _decoder(server_encoding: str) -> Any:
    def to_unicode(obj: Any, encoding: str | None = None, from_server: bool = False) -> Any:
        if from_server and encoding is None and type(obj) is bytes:
            try:
                return obj.decode(server_encoding)
            except UnicodeDecodeError:
                pass  # ldap3 tries its additional encodings, then raises
        return _ORIGINAL(obj, encoding, from_server)
    return to_unicode


@dataclass
class Request:
    """One encoded request, and what ldap3 would have recorded of it."""

    operation: bytes
    controls: bytes
    record: dict[str, Any]  # Connection.request, without 'type' and 'controls'
    given_controls: Any


def search(self: Any, search_base: Any, search_filter: Any, search_scope: Any = SUBTREE,
           dereference_aliases: Any = DEREF_ALWAYS, attributes: Any = None,
           size_limit: Any = 0, time_limit: Any = 0, types_only: Any = False,
           get_operational_attributes: Any = False, controls: Any = None,
           paged_size: Any = None, paged_criticality: Any = False, paged_cookie: Any = None,
           auto_escape: Any = None) -> Any:
    """`Connection.search` of ldap3 2.9.1, its SYNC branch without logging."""
    with self.connection_lock:
        request = None
        # With get_operational_attributes ldap3 appends '+' to the caller's list.
        if is_plain(self) and not get_operational_attributes:
            request = search_request(
                self, search_base, search_filter, search_scope, dereference_aliases, attributes,
                size_limit, time_limit, types_only, controls, paged_size, paged_criticality,
                paged_cookie, auto_escape)
        if request is None:
            return STOCK_SEARCH(self, search_base, search_filter, search_scope,
                                dereference_aliases, attributes, size_limit, time_limit,
                                types_only, get_operational_attributes, controls, paged_size,
                                paged_criticality, paged_cookie, auto_escape)
        response = self.post_send_search(send(self, "searchRequest", request))
        self._entries = []
        return_value = self.result["type"] == "searchResDone" and len(response) > 0
        if not return_value and self.result["result"] != RESULT_SUCCESS and not self.last_error:
            self.last_error = self.result["description"]
        return self._prepare_return_value(return_value, response=True)


def is_plain(conn: Any) -> bool:
    """A connection whose requests ldap3 would send exactly as ber.py writes
    them: no schema to check names and values against, no signing, no
    usage counts, no ldap3 logging (which prints the pyasn1 objects)."""
    return (type(conn.strategy) is SyncStrategy and conn.listening and not conn.lazy
            and not conn.sasl_in_progress and conn.sasl_mechanism != DIGEST_MD5
            and not conn._usage and not conn.server.schema and not log_enabled(ERROR))


def search_request(conn: Any, base: Any, filter_string: Any, scope: Any, deref: Any,
                   attributes: Any, size_limit: Any, time_limit: Any, types_only: Any,
                   controls: Any, paged_size: Any, paged_criticality: Any, paged_cookie: Any,
                   auto_escape: Any) -> Request | None:
    """What `Connection.search` and `search_operation` would send, or None
    where they would do anything else (including raise: they will again)."""
    try:
        if conn.check_names and base:
            base = safe_dn(base)
        if not attributes:
            attributes = [NO_ATTRIBUTES]
        elif attributes == ALL_ATTRIBUTES:
            attributes = [ALL_ATTRIBUTES]
        if isinstance(attributes, str):
            attributes = [attributes]
        if isinstance(paged_size, int):
            controls = [] if controls is None else list(controls)
            controls.append(paged_search_control(paged_criticality, paged_size, paged_cookie))
        root = search_module.parse_filter(
            filter_string, None, conn.auto_escape if auto_escape is None else auto_escape,
            conn.auto_encode, conn.server.custom_validator, conn.check_names)
        node = root.elements[0]
        scope_number, deref_number = _scope(scope), _deref(deref)
        if type(attributes) not in (list, tuple) or not _counted(size_limit) \
                or not _counted(time_limit) or scope_number is None or deref_number is None:
            return None
        operation = ber.search_request(
            ber.text(base), scope_number, deref_number, size_limit, time_limit,
            bool(types_only), ber.search_filter(node), _selection(attributes))
        record = {"base": base, "scope": scope_number, "dereferenceAlias": deref_number,
                  "sizeLimit": size_limit, "timeLimit": time_limit,
                  "typesOnly": bool(types_only), "filter": _filter_text(node),
                  "attributes": list(attributes)}
        return Request(operation, _controls(controls), record, controls)
    except Exception:  # ldap3's own path raises it again, as ldap3 does
        return None


def send(conn: Any, message_type: str, request: Request) -> int:
    """`BaseStrategy.send` and `SyncStrategy.sending`, for bytes already written."""
    conn.request = None
    message_id: int = conn.server.next_message_id()
    record = {**request.record, "type": message_type, "controls": request.given_controls}
    conn.request = record
    conn.strategy._outstanding[message_id] = record
    try:
        conn.socket.sendall(ber.message(message_id, request.operation, request.controls))
    except OSError as e:
        conn.last_error = "socket sending error" + str(e)
        raise communication_exception_factory(LDAPSocketSendError, type(e)(str(e)))(
            conn.last_error) from None
    return message_id


def _scope(scope: Any) -> int | None:
    if scope == BASE or scope == 0:
        return 0
    if scope == LEVEL or scope == 1:
        return 1
    if scope == SUBTREE or scope == 2:
        return 2
    return None


def _deref(deref: Any) -> int | None:
    if deref == DEREF_NEVER or deref == 0:
        return 0
    if deref == DEREF_SEARCH or deref == 1:
        return 1
    if deref == DEREF_BASE or deref == 2:
        return 2
    if deref == DEREF_ALWAYS or deref == 3:
        return 3
    return None


def _counted(value: Any) -> bool:
    """An int pyasn1 takes as it is for INTEGER (0..maxInt)."""
    return type(value) is int and 0 <= value <= 2147483647


def _selection(attributes: list[str] | tuple[str, ...]) -> bytes:
    """The attribute list, encoded once per distinct list (userdir asks for a few)."""
    key = tuple(attributes)
    if not all(type(name) is str for name in key):
        raise ber.Unencodable("attribute names other than str")
    encoded = _SELECTIONS.get(key)
    if encoded is None:
        encoded = ber.attribute_selection([ber.text(name) for name in key])
        if len(_SELECTIONS) >= 256:
            _SELECTIONS.clear()
        _SELECTIONS[key] = encoded
    return encoded


def _controls(controls: Any) -> bytes:
    """`build_controls_list`, encoded."""
    if not controls:
        return b""
    if type(controls) not in (list, tuple):
        raise ber.Unencodable("controls that are not a list")
    encoded = []
    for control in controls:
        if isinstance(control, Control):
            encoded.append(encode(control))
        elif len(control) == 3 and isinstance(control[1], bool):
            oid, critical, value = control
            encoded.append(ber.control(_octets(oid, LDAPOID.encoding), critical,
                                       None if value is None else
                                       _octets(value, ControlValue.encoding)))
        else:
            raise ber.Unencodable("a control ldap3 refuses")
    return ber.controls(encoded)


def _octets(value: Any, encoding: str) -> bytes:
    """An OCTET STRING as pyasn1 takes it: bytes as they are, str encoded."""
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode(encoding)
    raise ber.Unencodable(f"an octet string from {type(value).__name__}")


def _filter_text(node: Any) -> str:
    """ldap3's `filter_to_string` of the filter `compile_filter` would make."""
    tag, assertion = node.tag, node.assertion
    attribute: str = assertion["attr"] if assertion else ""
    if tag == search_module.AND:
        return "(&" + "".join(_filter_text(e) for e in node.elements) + ")"
    if tag == search_module.OR:
        return "(|" + "".join(_filter_text(e) for e in node.elements) + ")"
    if tag == search_module.NOT:
        return "(!" + _filter_text(node.elements[0]) + ")"
    if tag == search_module.MATCH_PRESENT:
        return "(" + attribute + "=*)"
    if tag == search_module.MATCH_SUBSTRING:
        return "(" + attribute + "=" + _substrings_text(assertion) + ")"
    if tag == search_module.MATCH_EXTENSIBLE:  # pyasn1's own printout of the assertion
        text: str = search_module.filter_to_string(search_module.compile_filter(node))
        return text
    value: str = _ava_text(assertion["value"])  # bytes would fail here as in ldap3
    return "(" + attribute + _OPERATORS[tag] + value + ")"


_OPERATORS = {search_module.MATCH_EQUAL: "=", search_module.MATCH_GREATER_OR_EQUAL: ">=",
              search_module.MATCH_LESS_OR_EQUAL: "<=", search_module.MATCH_APPROX: "~="}


def _substrings_text(assertion: dict[str, Any]) -> str:
    text = ""
    if assertion.get("initial"):
        text += ber.assertion_value(assertion["initial"]).decode("utf-8") + "*"
    for middle in assertion.get("any") or ():
        value = ber.assertion_value(middle).decode("utf-8")
        text += (value if text.endswith("*") else "*" + value) + "*"
    if assertion.get("final"):
        text += "*" + ber.assertion_value(assertion["final"]).decode("utf-8")
    return text


def _ava_text(value: Any) -> Any:
    """ldap3's `ava_to_dict` value: the octets as UTF-8 text, escaped (RFC 4515)."""
    raw = ber.assertion_value(value)
    try:
        # escape_filter_chars of a str, without its four configuration look-ups
        return raw.decode("utf-8").replace("\\", "\\5c").replace("*", "\\2a") \
            .replace("(", "\\28").replace(")", "\\29").replace("\x00", "\\00")
    except UnicodeDecodeError:
        try:
            return escape_filter_chars(raw)
        except Exception:  # as ava_to_dict
            return raw

"""One hot spot of ldap3 2.9, worked around where it is used.

ldap3 decodes every attribute name and value of every entry it receives
through `ldap3.utils.conv.to_unicode`, which first looks up four
configuration parameters, each a chain of string comparisons: for a
one-user read that is a tenth of the CPU the whole request costs. Data from
the server only needs the server encoding, which is read here once. Bytes
that are not in that encoding, and everything else, still go through
ldap3's own function, so the results are the same.
"""

from __future__ import annotations

from typing import Any

import ldap3
import ldap3.operation.search as search_module
from ldap3.utils import conv

_ORIGINAL = conv.to_unicode


def install() -> None:
    """Replace the function ldap3's search decoder calls (idempotent; only
    on the ldap3 line it was measured on)."""
    if not ldap3.__version__.startswith("2.9") or search_module.to_unicode is not _ORIGINAL:
        return
    server_encoding = ldap3.get_config_parameter("DEFAULT_SERVER_ENCODING")

    def to_unicode(obj: Any, encoding: str | None = None, from_server: bool = False) -> Any:
        if from_server and encoding is None and type(obj) is bytes:
            try:
                return obj.decode(server_encoding)
            except UnicodeDecodeError:
                pass  # ldap3 tries its additional encodings, then raises
        return _ORIGINAL(obj, encoding, from_server)

    search_module.to_unicode = to_unicode

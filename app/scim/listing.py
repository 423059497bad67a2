"""Pages of users published straight from the directory's accounts.

scim2-server answers a search by validating every account into a pydantic
resource, copying it to publish its URLs, dumping it, validating the dumps
again into a ListResponse and dumping that: about 1 ms of CPU per user, on
the event loop, so a page of 100 cost 100 ms before any LDAP work. For the
request IdPs send over and over (a page of users, every attribute as
returned by default) this module writes the same JSON from
convert.user_document directly; tests/test_scim_listing.py holds it equal
to scim2-server's own answer. Any other search (attributes or
excludedAttributes asked for, groups, a search of several types, cursors)
goes the library's way.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from scim2_models import SearchRequest
from scim2_server.handler import AsyncScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.routing import Operation

from app.scim import convert
from app.scim.schemas import CORE_USER, ENTERPRISE, USERDIR
from app.scim.storage import DirectoryStorage, listing_of, scim_errors

LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


def _utc(text: str) -> str:
    """An ISO time as pydantic writes it: UTC as "Z"."""
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _located(reference: dict[str, Any], root: str) -> dict[str, Any]:
    return {**reference, "$ref": f"{root}/{reference['$ref']}"}


def published_user(document: dict[str, Any], base_url: str) -> dict[str, Any]:
    """convert.user_document's output as ScimService.publish and a default
    dump make it: every schema present listed, the location and references
    as URLs, times in UTC written with "Z"."""
    root = base_url.rstrip("/")
    out = dict(document)
    out["schemas"] = [CORE_USER, *(urn for urn in (ENTERPRISE, USERDIR) if urn in document)]
    meta = {**document["meta"], "location": f"{root}/Users/{document['id']}"}
    for key in ("created", "lastModified"):
        if key in meta:
            meta[key] = _utc(meta[key])
    out["meta"] = meta
    if "groups" in out:
        out["groups"] = [_located(g, root) for g in out["groups"]]
    enterprise = out.get(ENTERPRISE)
    if enterprise and "manager" in enterprise:
        out[ENTERPRISE] = {**enterprise, "manager": _located(enterprise["manager"], root)}
    return out


def page_body(search: SearchRequest[Any], total: int,
              resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The ListResponse of a page by index (RFC 7644 §3.4.2.4)."""
    body: dict[str, Any] = {"schemas": [LIST_RESPONSE], "totalResults": total}
    if search.start_index is not None:
        body["startIndex"] = search.start_index
    body["itemsPerPage"] = len(resources)
    body["Resources"] = resources
    return body


def is_plain(search: SearchRequest[Any]) -> bool:
    """A page by index with every attribute as returned by default."""
    return (not search.attributes and not search.excluded_attributes
            and search.cursor is None)


class ScimHandler(AsyncScimHandler):
    """scim2-server's handler, with plain pages of users written directly."""

    storage: DirectoryStorage

    async def search(self, request: ScimRequest) -> ScimResponse:
        with self.service.provider:
            target = self.service.route(request, Operation.search)
            types = self.service.searched_types(target.endpoint)
            allowed = self.service.authorized_types(request, target, types)
            search, _ = self.service.read_search_query(types, request.query)
            if (len(types) != 1 or allowed != types or not self.storage.is_user(types[0])
                    or not is_plain(search)):
                return await super().search(request)
            with scim_errors():
                accounts, total = await self.storage.accounts.accounts(listing_of(search))
            return ScimResponse(HTTPStatus.OK, page_body(
                search, total,
                [published_user(convert.user_document(a), request.base_url) for a in accounts]))

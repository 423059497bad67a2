"""scim2-server's storage over the directory: every call is one call of app/service."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from scim2_models import (
    ConflictException,
    InvalidFilterException,
    InvalidPathException,
    InvalidValueException,
    NotFoundException,
    NotImplementedException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import AsyncScimStorage, SearchPage

from app.accounts import Listing, VersionMismatch
from app.domain import (
    AlreadyExists,
    Busy,
    InvalidInput,
    LastAdmin,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    Throttled,
    Unavailable,
)
from app.scim import convert
from app.scim.schemas import MAX_RESULTS, Models
from app.service.accounts import Provisioning


class Unavailable503(SCIMException):
    status = 503
    _default_detail = "The directory is unavailable or busy; retry shortly."


class TooMany429(SCIMException):
    status = 429
    _default_detail = "Too many requests; retry later."


@contextlib.contextmanager
def scim_errors() -> Iterator[None]:
    """The service's errors in SCIM's words (RFC 7644 §3.12): status and scimType."""
    try:
        yield
    except VersionMismatch as e:
        raise PreconditionFailedException(detail=e.message) from e
    except NotFound as e:
        raise NotFoundException(detail=e.message) from e
    except AlreadyExists as e:
        raise UniquenessException(detail=f"{_scim_name(e.field)} is already taken") from e
    except InvalidInput as e:
        if e.field == "filter":
            raise InvalidFilterException(detail=e.message) from e
        if e.field == "sortBy":
            raise InvalidPathException(detail=e.message) from e
        raise InvalidValueException(detail=f"{_scim_name(e.field)}: {e.message}") from e
    except PolicyViolation as e:
        raise InvalidValueException(detail=f"password: {e.message}") from e
    except (LastAdmin, PermissionDenied) as e:
        raise ConflictException(detail=e.message) from e
    except Throttled as e:
        raise TooMany429(detail=e.message) from e
    except (Busy, Unavailable) as e:
        raise Unavailable503() from e


def _scim_name(field: str) -> str:
    return {"username": "userName", "email": "emails", "first_name": "name.givenName",
            "last_name": "name.familyName", "display_name": "displayName",
            "phone": "phoneNumbers", "address": "addresses", "location": "addresses",
            "country": "addresses.country", "language": "preferredLanguage",
            "account_type": "accountType", "external_id": "externalId",
            "name": "displayName"}.get(field, field)


def _members_wanted(parameters: ResponseParameters[Any] | SearchRequest[Any] | None) -> bool:
    """Whether a group's members are to be read (Okta and Entra list groups
    with excludedAttributes=members: a large group then costs nothing)."""
    if parameters is None:
        return True
    excluded = [str(p).lower() for p in parameters.excluded_attributes or []]
    wanted = [str(p).lower() for p in parameters.attributes or []]
    if any(p == "members" or p.startswith("members.") for p in excluded):
        return False
    return not wanted or any("members" in p for p in wanted)


def listing_of(search: SearchRequest[Any]) -> Listing:
    """The directory listing a SCIM search asks for."""
    where = search.filter
    return Listing(
        where=convert.condition(where.ast) if where is not None else None,
        sort_by=convert.path_of(search.sort_by) if search.sort_by is not None else None,
        descending=search.sort_order == SearchRequest.SortOrder.descending,
        offset=search.start_index_0 or 0,
        limit=MAX_RESULTS if search.count is None else search.count,
        with_members=_members_wanted(search))


class DirectoryStorage(AsyncScimStorage):
    def __init__(self, accounts: Provisioning, models: Models) -> None:
        self.accounts = accounts
        self.models = models

    def is_user(self, resource_type: ResourceType) -> bool:
        return resource_type.id == self.models.user_type.id

    def _user(self, document: dict[str, Any]) -> Resource[Any]:
        return self.models.user.model_validate(document)

    def _group(self, document: dict[str, Any]) -> Resource[Any]:
        return self.models.group.model_validate(document)

    async def get(self, resource_type: ResourceType, resource_id: str, *,
                  response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        with scim_errors():
            if self.is_user(resource_type):
                return self._user(convert.user_document(
                    await self.accounts.account(resource_id)))
            team = await self.accounts.team(resource_id, _members_wanted(response_parameters))
            return self._group(convert.group_document(team))

    async def search(self, resource_types: list[ResourceType],
                     search_request: SearchRequest[Any], *, position: Any = None) -> SearchPage:
        if len(resource_types) != 1:
            raise NotImplementedException(detail="search Users or Groups, one at a time")
        listing = listing_of(search_request)
        with scim_errors():
            if self.is_user(resource_types[0]):
                accounts, total = await self.accounts.accounts(listing)
                found = [self._user(convert.user_document(a)) for a in accounts]
            else:
                teams, total = await self.accounts.teams(listing)
                found = [self._group(convert.group_document(t)) for t in teams]
        return SearchPage(total=total, resources=found)

    async def create(self, resource_type: ResourceType,
                     resource: Resource[Any]) -> Resource[Any]:
        with scim_errors():
            if self.is_user(resource_type):
                account = await self.accounts.create_account(convert.account_state(resource))
                return self._user(convert.user_document(account))
            name, external_id, members = convert.group_state(resource)
            team = await self.accounts.create_team(name, external_id, members)
            return self._group(convert.group_document(team))

    async def update(self, resource_type: ResourceType, resource: Resource[Any], *,
                     expected_version: str | None = None) -> Resource[Any]:
        version = convert.csn(expected_version)
        with scim_errors():
            if resource.id is None:
                raise NotFound("no id")
            if self.is_user(resource_type):
                account = await self.accounts.replace_account(
                    resource.id, convert.account_state(resource), version)
                return self._user(convert.user_document(account))
            name, external_id, members = convert.group_state(resource)
            team = await self.accounts.replace_team(resource.id, name, external_id, members,
                                                    version)
            return self._group(convert.group_document(team))

    async def delete(self, resource_type: ResourceType, resource_id: str, *,
                     expected_version: str | None = None) -> None:
        version = convert.csn(expected_version)
        with scim_errors():
            if self.is_user(resource_type):
                await self.accounts.delete_account(resource_id, version)
            else:
                await self.accounts.delete_team(resource_id, version)

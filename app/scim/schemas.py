"""What /scim/v2 publishes and validates with: RFC 7643's schemas, cut to what LDAP keeps.

An attribute userdir cannot keep is not published (and, sent anyway, is
ignored): a client never writes a value that silently disappears. Value
spaces the directory restricts (a country is 2 letters, a time zone an IANA
name) are published as canonicalValues.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from scim2_models import (
    AuthenticationScheme,
    Extension,
    Resource,
    ResourceType,
    Schema,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
)
from scim2_server.utils import load_json_resource

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USERDIR = "urn:userdir:params:scim:schemas:extension:2.0:User"
MAX_RESULTS = 200  # largest page; an IdP asking for more pages on

# Published attribute -> its published sub-attributes (None: a simple attribute).
USER_ATTRIBUTES: dict[str, list[str] | None] = {
    "userName": None, "name": ["givenName", "familyName"], "displayName": None,
    "title": None, "preferredLanguage": None, "locale": None, "timezone": None,
    "active": None, "password": None, "emails": ["value", "type"],
    "phoneNumbers": ["value", "type"],
    "addresses": ["formatted", "streetAddress", "locality", "region", "postalCode",
                  "country", "type"],
    "groups": ["value", "$ref", "display", "type"],
}
ENTERPRISE_ATTRIBUTES: dict[str, list[str] | None] = {
    "employeeNumber": None, "department": None, "manager": ["value", "$ref"]}
GROUP_ATTRIBUTES: dict[str, list[str] | None] = {
    "displayName": None, "members": ["value", "$ref", "type"]}
CANONICAL = {
    "emails.type": ["work"], "addresses.type": ["work"], "groups.type": ["direct"],
    "phoneNumbers.type": ["work", "mobile", "home", "fax"], "members.type": ["User"],
    "preferredLanguage": ["en", "en-US", "fr", "de", "es", "ja"],
    "locale": ["en-US", "en-GB", "fr-FR", "de-DE", "ja-JP"],
    "timezone": ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"],
    "addresses.country": ["US", "GB", "FR", "DE", "JP"],
}
BEARER = AuthenticationScheme(
    type=AuthenticationScheme.Type.oauthbearertoken, name="Bearer token", primary=True,
    description="An admin's access token (POST /auth/token), or a provisioning token "
                "(`userdir token create --scope scim`, POST /tokens)")


def _cut(schema: dict[str, Any], keep: dict[str, list[str] | None]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    attributes = [a for a in schema["attributes"] if a["name"] in keep]
    for attribute in attributes:
        subs = keep[attribute["name"]]
        if subs is not None:
            attribute["subAttributes"] = [s for s in attribute["subAttributes"]
                                          if s["name"] in subs]
        for sub in [attribute, *attribute.get("subAttributes", [])]:
            path = attribute["name"] if sub is attribute else f"{attribute['name']}.{sub['name']}"
            if path in CANONICAL:
                sub["canonicalValues"] = CANONICAL[path]
            if path == "members.$ref":
                sub["referenceTypes"] = ["User"]
    # The directory always knows whether an account is disabled: `active` has
    # a value on every account, so it cannot be removed (a request without it
    # is completed: see app/scim/requests.py). So is the account type.
    for attribute in attributes:
        if attribute["name"] == "active":
            attribute["required"] = True
    schema["attributes"] = attributes
    return schema


def _userdir_schema(account_types: Sequence[str]) -> dict[str, Any]:
    return {
        "id": USERDIR, "name": "UserdirUser",
        "description": "userdir's own attributes of a user",
        "attributes": [{
            "name": "accountType", "type": "string", "multiValued": False,
            "description": "The account type: each user has exactly one "
                           "(a group under ou=groups, not a SCIM Group).",
            "required": True, "caseExact": True, "canonicalValues": list(account_types),
            "mutability": "readWrite", "returned": "default", "uniqueness": "none"}],
    }


@dataclass(frozen=True)
class Models:
    provider: ScimProvider
    user: type[Resource[Any]]
    group: type[Resource[Any]]
    user_type: ResourceType
    group_type: ResourceType


def build(account_types: Sequence[str]) -> Models:
    """The provider (schemas, resource types, configuration, tolerance) of this service."""
    defaults = {s["id"]: s for s in load_json_resource("default-schemas.json")}
    schemas = [
        Schema.model_validate(_cut(defaults[CORE_USER], USER_ATTRIBUTES)),
        Schema.model_validate(_cut(defaults[CORE_GROUP], GROUP_ATTRIBUTES)),
        Schema.model_validate(_cut(defaults[ENTERPRISE], ENTERPRISE_ATTRIBUTES)),
        Schema.model_validate(_userdir_schema(account_types)),
    ]
    user, group, enterprise, userdir = (
        Resource.from_schema(schemas[0]), Resource.from_schema(schemas[1]),
        Extension.from_schema(schemas[2]), Extension.from_schema(schemas[3]))
    user_type = ResourceType.model_validate({
        "id": "User", "name": "User", "endpoint": "/Users", "description": "User Account",
        "schema": CORE_USER, "schemaExtensions": [{"schema": ENTERPRISE, "required": False},
                                                  {"schema": USERDIR, "required": True}]})
    group_type = ResourceType.model_validate({
        "id": "Group", "name": "Group", "endpoint": "/Groups", "description": "Group",
        "schema": CORE_GROUP})
    config = ServiceProviderConfig.model_validate({
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": True}, "sort": {"supported": True},
        "etag": {"supported": True}})
    config.authentication_schemes = [BEARER]
    policy = ScimPolicy(
        # IdPs send attributes of their own mapping (nickName, userType...):
        # ignored, as userdir publishes it keeps none of them.
        unknown=ScimPolicy.Unknown.ignore,
        # Entra ID: `remove` with a value, and `Add emails[type eq "work"].value`
        # on a user without one.
        remove_value_as_filter=ScimPolicy.RemoveValue.apply,
        unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create)
    provider = ScimProvider([user, group, enterprise, userdir], [user_type, group_type],
                            config, policy)
    return Models(provider, cast(type[Resource[Any]], provider.model_for(user_type)),
                  cast(type[Resource[Any]], provider.model_for(group_type)),
                  user_type, group_type)

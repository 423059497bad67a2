"""scim2-server's ScimStorageContract for the LDAP storage, on a directory of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ldap3 import LEVEL
from scim2_models import ScimProvider
from scim2_server.testing import SEARCH_USERS, AsyncScimStorageContract

from app.runtime import Runtime
from app.scim.schemas import Models, build
from app.scim.storage import DirectoryStorage
from app.service.accounts import Provisioning
from tests.conftest import SlapdInstance, make_config
from tests.scim_support import quick_slapd


@pytest.fixture(scope="module")
def contract_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdInstance]:
    with quick_slapd(tmp_path_factory.mktemp("contract")) as slapd:
        yield slapd


@pytest.fixture(scope="module")
def contract_runtime(contract_slapd: SlapdInstance,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    built = Runtime.build(make_config(contract_slapd, tmp_path_factory.mktemp("contract-api")))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(scope="module")
def models() -> Models:
    return build(["user", "staff", "admin"])


def empty(runtime: Runtime) -> None:
    """No user and no ordinary group: the contract wants a new, empty storage
    each time (the service may delete admins in LDAP; userdir never lets the last go)."""
    ldap, tree = runtime.directory.ldap, runtime.directory.tree
    people, _ = ldap.search(tree.people, "(objectClass=*)", ["1.1"], scope=LEVEL)
    groups, _ = ldap.search(tree.groups, "(!(|(cn=user)(cn=staff)(cn=admin)))", ["1.1"],
                            scope=LEVEL)
    for entry in people + groups:
        ldap.delete(entry["dn"])
    runtime.directory.listing.invalidate()


class TestDirectoryStorage(AsyncScimStorageContract):
    supports_root_search = False  # /scim/v2/.search answers 501: search Users or Groups

    @pytest.fixture
    def provider(self, models: Models) -> ScimProvider:
        return models.provider

    @pytest.fixture
    def async_storage(self, contract_runtime: Runtime,
                      models: Models) -> DirectoryStorage:
        empty(contract_runtime)
        return DirectoryStorage(Provisioning.beside(contract_runtime.service), models)

    def search_users(self) -> list[dict[str, Any]]:
        """The contract's users, but "dave_%" is no username here (letters,
        digits and @ . + - _ only), and emails[].primary is not published
        (one address is kept: the primary one, see app/scim/convert.py)."""
        users = []
        for user in SEARCH_USERS:
            user = {**user, "userName": user["userName"].replace("%", "+")}
            if "emails" in user:
                user["emails"] = [{k: v for k, v in e.items() if k != "primary"}
                                  for e in user["emails"]]
            users.append(user)
        return users

    def test_create_fills_the_identifier_and_the_meta(self, storage: Any, user_type: Any,
                                                      user_model: Any) -> None:
        """As the contract's, but meta.lastModified may be a second past
        meta.created: createTimestamp is the entry's add in ou=staging,
        modifyTimestamp its move into ou=people moments later, both in whole
        seconds (app/service/users.py _create)."""
        (user,) = self.create_users(storage, user_type, user_model, "bjensen")
        assert user.id and user.meta.version and user.meta.location is None
        assert user.meta.resource_type == user_type.name
        assert 0 <= (user.meta.last_modified - user.meta.created).total_seconds() <= 1

    @pytest.mark.parametrize("parameters", [
        {"excludedAttributes": "members"}, {"attributes": "displayName"},
        {"attributes": "members.value"}])
    def test_get_keeps_what_the_response_returns(  # type: ignore[override]
            self, storage: Any, user_type: Any, group_type: Any, user_model: Any,
            group_model: Any, parameters: dict[str, str]) -> None:
        """As the contract's, without members.display: a member is kept by id
        only (groupOfNames holds DNs), so it is not published."""
        from scim2_models import Context, ResponseParameters
        from scim2_server.storage import projection
        from scim2_server.utils import parametrize

        (user,) = self.create_users(storage, user_type, user_model, "bjensen")
        group = storage.create(group_type, group_model.model_validate(
            {"displayName": "Admins", "members": [{"value": user.id}]}))
        wanted = parametrize(ResponseParameters, group_model).model_validate(parameters)
        whole = storage.get(group_type, group.id)
        projected = storage.get(group_type, group.id, **projection(storage, wanted))
        context = Context.RESOURCE_QUERY_RESPONSE
        assert projected.model_dump(scim_ctx=context, response_parameters=wanted) == \
            whole.model_dump(scim_ctx=context, response_parameters=wanted)

"""SCIM 2.0 at /scim/v2: what scim2-tester does not check, and the IdPs' own request sequences."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.accounts import AllOf, AnyOf, Compare, Negation, Within
from app.config import Config
from app.directory.schema import GroupTypes
from app.directory.scim_filters import user_translator
from app.domain import AccountTypes
from app.scim import route_template
from tests.conftest import ADMIN, ADMIN_PASSWORD, PASSWORD, SlapdInstance, serving
from tests.scim_support import (
    ENTERPRISE,
    GROUP,
    PATCH,
    SCIM_JSON,
    USER,
    USERDIR,
    bootstrapped_config,
    quick_slapd,
)

BASE = "dc=example,dc=org"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[SlapdInstance, Config, str, httpx.Client]]:
    where = tmp_path_factory.mktemp("scim")
    with quick_slapd(where) as slapd:
        config = bootstrapped_config(slapd, where / "api")
        with serving(config) as url:
            token = httpx.post(f"{url}/auth/token", json={
                "username": ADMIN, "password": ADMIN_PASSWORD}).json()["access_token"]
            with httpx.Client(base_url=f"{url}/scim/v2", timeout=30,
                              headers={"Authorization": f"Bearer {token}"}) as client:
                yield slapd, config, url, client


@pytest.fixture
def scim(served: tuple[SlapdInstance, Config, str, httpx.Client]) -> httpx.Client:
    return served[3]


def new_user(scim: httpx.Client, username: str, **extra: Any) -> dict[str, Any]:
    response = scim.post("/Users", json={"schemas": [USER], "userName": username, **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


def patch(scim: httpx.Client, path: str, *operations: dict[str, Any],
          **headers: str) -> httpx.Response:
    return scim.patch(path, headers=headers,
                      json={"schemas": [PATCH], "Operations": list(operations)})


def search(scim: httpx.Client, **query: Any) -> dict[str, Any]:
    response = scim.get("/Users", params=query)
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- filters: one escaped LDAP filter -----------------------------------------

def test_a_filter_becomes_one_escaped_ldap_filter() -> None:
    types = GroupTypes(AccountTypes(["user", "staff", "admin"], "user"),
                       {t: f"cn={t},ou=groups,{BASE}" for t in ("user", "staff", "admin")})
    translator = user_translator(types, lambda _: None, lambda _: None,
                                 lambda name: f"cn={name},ou=groups,{BASE}")
    where = AllOf((Compare("username", "sw", "a*)(uid=*"),
                   AnyOf((Compare("title", "gt", "m"), Negation(Compare("title", "pr")))),
                   Within("emails", AllOf((Compare("type", "eq", "work"),
                                           Compare("value", "ew", "@example.org"))))))
    assert translator.filter(where) == (
        r"(&(uid=a\2a\29\28uid=\2a*)"
        "(|(&(title=*)(!(title:2.5.13.3:=m))(!(title=m)))(!(title=*)))"
        "(&(mail=*)(&(objectClass=*)(mail=*@example.org))))")


@pytest.mark.parametrize(("scim_filter", "why"), [
    ('nickName eq "x"', "not published"),
    ("name.familyName pr", "sn stands in for a missing family name"),
    ('emails.value gt "a"', "mail has no ordering rule"),
])
def test_what_ldap_cannot_answer_exactly_is_400_invalid_filter(scim: httpx.Client,
                                                               scim_filter: str,
                                                               why: str) -> None:
    response = scim.get("/Users", params={"filter": scim_filter})
    assert response.status_code == 400, why
    assert response.json()["scimType"] == "invalidFilter"


def test_every_operator_and_value_paths_match_as_rfc_7644_says(scim: httpx.Client) -> None:
    bob = new_user(scim, "FiltBob", title="Chef", externalId="ext-Bob",
                   emails=[{"value": "bob@filter.example", "type": "work"}],
                   phoneNumbers=[{"value": "+33 1 23", "type": "mobile"}])
    new_user(scim, "filtann", title="Able")
    ids = {"FiltBob": bob["id"]}
    cases = {
        'userName eq "FILTBOB"': ["FiltBob"], 'userName ne "filtbob" and userName sw "filt"':
        ["filtann"], 'userName co "ltb"': ["FiltBob"], 'userName ew "ANN"': ["filtann"],
        'userName sw "filt" and title gt "b"': ["FiltBob"],
        'userName sw "filt" and title le "able"': ["filtann"],
        'userName sw "filt" and not (title lt "chef")': ["FiltBob"],
        'externalId eq "ext-Bob"': ["FiltBob"], 'externalId eq "EXT-BOB"': [],
        'emails[type eq "work"].value eq "bob@filter.example"': ["FiltBob"],
        'emails[type eq "home"]': [],
        'phoneNumbers[type eq "mobile" and value sw "+33"]': ["FiltBob"],
        f'id eq "{bob["id"]}"': ["FiltBob"],
        'userName sw "filt" and (emails pr or title eq "able")': ["FiltBob", "filtann"],
        'userName sw "filt" and meta.created gt "2000-01-01T00:00:00Z"': ["FiltBob", "filtann"],
    }
    for scim_filter, expected in cases.items():
        found = search(scim, filter=scim_filter, sortBy="userName")
        assert [r["userName"] for r in found["Resources"]] == sorted(
            expected, key=str.lower), scim_filter
        assert found["totalResults"] == len(expected), scim_filter
    assert ids


# --- paging and sorting: slapd's sort and VLV ---------------------------------

def test_pages_and_totals_come_from_slapds_sort(scim: httpx.Client) -> None:
    names = [f"page{c}" for c in "edcba"]
    for name in names:
        new_user(scim, name)
    query = {"filter": 'userName sw "page"', "sortBy": "userName", "count": 2}
    second = search(scim, **query, sortOrder="descending", startIndex=2)
    assert second["totalResults"] == 5 and second["startIndex"] == 2
    assert [r["userName"] for r in second["Resources"]] == ["paged", "pagec"]
    beyond = search(scim, **query, startIndex=9)
    assert beyond["totalResults"] == 5 and beyond.get("Resources", []) == []
    assert search(scim, **{**query, "count": 0})["totalResults"] == 5
    created = search(scim, filter='userName sw "page"', sortBy="meta.created")
    assert [r["userName"] for r in created["Resources"]] == names


# --- versions ---------------------------------------------------------------

def test_a_stale_if_match_is_412_and_changes_nothing(scim: httpx.Client) -> None:
    user = new_user(scim, "etagged", title="one")
    old = scim.get(f"/Users/{user['id']}").headers["etag"]
    assert old.startswith('W/"') and old == user["meta"]["version"]
    assert patch(scim, f"/Users/{user['id']}", {"op": "replace", "path": "title",
                                                 "value": "two"}).status_code == 204
    stale = patch(scim, f"/Users/{user['id']}", {"op": "replace", "path": "title",
                                                  "value": "three"}, **{"If-Match": old})
    assert stale.status_code == 412
    now = scim.get(f"/Users/{user['id']}")
    assert now.json()["title"] == "two" and now.headers["etag"] != old
    assert scim.delete(f"/Users/{user['id']}", headers={"If-Match": old}).status_code == 412
    assert scim.delete(f"/Users/{user['id']}",
                       headers={"If-Match": now.headers["etag"]}).status_code == 204


# --- one directory: groups through memberOf and the other APIs ------------------

def test_group_members_are_memberof_for_ldap_tools_and_every_api(
        served: tuple[SlapdInstance, Config, str, httpx.Client]) -> None:
    slapd, _, url, scim = served
    ann = new_user(scim, "grpann", password=PASSWORD)
    bob = new_user(scim, "grpbob")
    group = scim.post("/Groups", json={"schemas": [GROUP], "displayName": "pilots",
                                       "members": [{"value": ann["id"]}]}).json()
    assert patch(scim, f"/Groups/{group['id']}", {"op": "add", "path": "members",
                                                   "value": [{"value": bob["id"]}]}
                 ).status_code == 204
    found = slapd.ldap("ldapsearch", "-LLL", "-b", f"uid=grpbob,ou=people,{BASE}", "memberOf")
    assert f"memberOf: cn=pilots,ou=groups,{BASE}" in found.stdout
    token = httpx.post(f"{url}/auth/token", json={"username": ADMIN, "password": ADMIN_PASSWORD}
                       ).json()["access_token"]
    native = httpx.get(f"{url}/groups/pilots", headers={"Authorization": f"Bearer {token}"})
    assert sorted(native.json()["members"]) == ["grpann", "grpbob"]
    assert [g["display"] for g in scim.get(f"/Users/{ann['id']}").json()["groups"]] == ["pilots"]
    # Entra ID removes a member by a value filter in the path.
    assert patch(scim, f"/Groups/{group['id']}", {
        "op": "Remove", "path": f'members[value eq "{ann["id"]}"]'}).status_code == 204
    members = scim.get(f"/Groups/{group['id']}").json().get("members", [])
    assert [m["value"] for m in members] == [bob["id"]]
    assert "groups" not in scim.get(f"/Users/{ann['id']}").json()
    type_groups = scim.get("/Groups", params={"filter": 'displayName eq "admin"'}).json()
    assert type_groups["totalResults"] == 0  # account types are no SCIM groups


# --- the identity providers' sequences ------------------------------------------

def test_okta_provisions_updates_deactivates_and_reactivates(
        served: tuple[SlapdInstance, Config, str, httpx.Client]) -> None:
    """Okta's SCIM 2.0 guide: look up by userName, create, read, PUT the
    profile, PATCH active and password (path-less replace)."""
    _, _, url, scim = served
    lookup = search(scim, filter='userName eq "okta.user@example.com"', startIndex=1,
                    count=100)
    assert lookup["totalResults"] == 0
    created = new_user(scim, "okta.user@example.com", active=True, password=PASSWORD,
                       name={"givenName": "Okta", "familyName": "User"},
                       emails=[{"primary": True, "value": "okta.user@example.com",
                                "type": "work"}], displayName="Okta User",
                       locale="en-US", externalId="00u1ab", groups=[])
    assert created["active"] is True and "password" not in created
    assert created[USERDIR] == {"accountType": "user"}
    uid = created["id"]
    login = {"username": "okta.user@example.com", "password": PASSWORD}
    assert httpx.post(f"{url}/auth/token", json=login).status_code == 200
    put = scim.put(f"/Users/{uid}", json={**{k: v for k, v in created.items() if k != "meta"},
                                          "name": {"givenName": "Okta", "familyName": "Renamed"}})
    assert put.status_code == 200, put.text
    assert put.json()["name"]["familyName"] == "Renamed"
    assert patch(scim, f"/Users/{uid}", {"op": "replace", "value": {"active": False}}
                 ).status_code == 204
    assert scim.get(f"/Users/{uid}").json()["active"] is False
    assert httpx.post(f"{url}/auth/token", json=login).status_code == 401
    assert patch(scim, f"/Users/{uid}", {"op": "replace", "value": {"active": True}},
                 {"op": "replace", "value": {"password": "Another-Horse-7z"}}).status_code == 204
    assert httpx.post(f"{url}/auth/token", json={**login, "password": "Another-Horse-7z"}
                      ).status_code == 200


def test_entra_id_sends_its_own_patch_forms(scim: httpx.Client) -> None:
    """Microsoft's SCIM guide: capitalised ops, "False" as a string, an
    Add emails[type eq "work"].value on a user without one, manager as a
    plain id, and externalId/email lookups."""
    boss = new_user(scim, "entra.boss")
    user = new_user(scim, "entra.user", externalId="e-1", active=True,
                    displayName="Entra User")
    uid = user["id"]
    response = patch(
        scim, f"/Users/{uid}",
        {"op": "Add", "path": 'emails[type eq "work"].value', "value": "entra@example.com"},
        {"op": "Replace", "path": "displayName", "value": "Entra Renamed"},
        {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": boss["id"]},
        {"op": "Replace", "path": "active", "value": "False"})
    assert response.status_code == 204, response.text
    got = scim.get(f"/Users/{uid}").json()
    assert got["emails"] == [{"value": "entra@example.com", "type": "work"}]
    assert got["displayName"] == "Entra Renamed" and got["active"] is False
    assert got[ENTERPRISE]["manager"]["value"] == boss["id"]
    for scim_filter in ('externalId eq "e-1"',
                        'emails[type eq "work"].value eq "entra@example.com"'):
        assert [r["id"] for r in search(scim, filter=scim_filter)["Resources"]] == [uid]
    assert patch(scim, f"/Users/{uid}", {"op": "Remove", "path": f"{ENTERPRISE}:manager"}
                 ).status_code == 204
    assert "manager" not in scim.get(f"/Users/{uid}").json().get(ENTERPRISE, {})


# --- all or nothing, and the rules every dialect keeps --------------------------

def test_a_refused_change_changes_nothing(scim: httpx.Client) -> None:
    new_user(scim, "taken.mail", emails=[{"value": "taken@example.com"}])
    user = new_user(scim, "whole", title="kept")
    for operations, status in [
        ([{"op": "replace", "path": "title", "value": "lost"},
          {"op": "replace", "path": "emails", "value": [{"value": "taken@example.com"}]}], 409),
        ([{"op": "replace", "path": "title", "value": "lost"},
          {"op": "replace", "path": "password", "value": "short"}], 400),
        ([{"op": "replace", "path": "title", "value": "lost"},
          {"op": "add", "path": "phoneNumbers", "value": [{"value": "x", "type": "work"}]}], 400),
    ]:
        assert patch(scim, f"/Users/{user['id']}", *operations).status_code == status
        assert scim.get(f"/Users/{user['id']}").json()["title"] == "kept"


def test_the_last_admin_stays_and_types_are_one_per_user(scim: httpx.Client) -> None:
    admin = search(scim, filter=f'userName eq "{ADMIN}"')["Resources"][0]
    refused = patch(scim, f"/Users/{admin['id']}", {"op": "replace", "path": "active",
                                                     "value": False})
    assert refused.status_code == 409
    user = new_user(scim, "promoted")
    assert patch(scim, f"/Users/{user['id']}", {"op": "replace",
                                                 "path": f"{USERDIR}:accountType",
                                                 "value": "staff"}).status_code == 204
    staff = search(scim, filter=f'{USERDIR}:accountType eq "staff"')["Resources"]
    assert [r["userName"] for r in staff] == ["promoted"]


# --- who may call ---------------------------------------------------------------

def test_only_admins_and_provisioning_tokens_get_in(
        served: tuple[SlapdInstance, Config, str, httpx.Client]) -> None:
    slapd, _, url, scim = served
    anonymous = httpx.get(f"{url}/scim/v2/Users")
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == SCIM_JSON
    assert anonymous.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    new_user(scim, "plain.user", password=PASSWORD)
    token = httpx.post(f"{url}/auth/token", json={"username": "plain.user",
                                                  "password": PASSWORD}).json()["access_token"]
    plain = httpx.get(f"{url}/scim/v2/Users", headers={"Authorization": f"Bearer {token}"})
    assert plain.status_code == 403
    admin = {"Authorization": scim.headers["authorization"]}
    made = httpx.post(f"{url}/tokens", headers=admin, json={"name": "okta", "scopes": ["scim"]})
    assert made.status_code == 201
    secret = made.json()["token"]
    as_okta = httpx.get(f"{url}/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"})
    assert as_okta.status_code == 200
    listed = httpx.get(f"{url}/tokens", headers=admin).json()
    assert [(t["name"], t["last_used"] is not None) for t in listed] == [("okta", True)]
    assert secret not in httpx.get(f"{url}/tokens", headers=admin).text
    stored = slapd.ldap("ldapsearch", "-LLL", "-b", f"ou=tokens,{BASE}", "(cn=okta)",
                        bind="root").stdout
    assert secret not in stored and "userdirTokenHash" in stored
    assert httpx.delete(f"{url}/tokens/okta", headers=admin).status_code == 204
    gone = httpx.get(f"{url}/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"})
    assert gone.status_code == 401


def test_the_token_command_creates_lists_and_revokes(
        served: tuple[SlapdInstance, Config, str, httpx.Client]) -> None:
    import argparse
    import io

    from app import tokens

    config = served[1]
    out = io.StringIO()
    tokens.run(config, argparse.Namespace(action="create", name="entra", scope=["scim"],
                                          description=None), out)
    secret = next(w for w in out.getvalue().split() if w.startswith("udt_"))
    tokens.run(config, argparse.Namespace(action="list"), out)
    assert "entra\tscopes=scim" in out.getvalue() and out.getvalue().count(secret) == 1
    tokens.run(config, argparse.Namespace(action="revoke", name="entra"), out)
    answer = served[3].get("/Users", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 401


@pytest.mark.parametrize(("path", "template"), [
    ("/scim/v2/Users", "/scim/v2/Users"),
    ("/scim/v2/Users/2819c223-7f76-453a-919d-413861904646", "/scim/v2/Users/{id}"),
    ("/scim/v2/Groups/.search", "/scim/v2/Groups/.search"),
    ("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User", "/scim/v2/Schemas/{id}"),
    ("/scim/v2/", "/scim/v2"),
    ("/scim/v2/Users/a/b", "/scim/v2/{unknown}"),
    ("/scim/v2/%00evil", "/scim/v2/{unknown}"),
])
def test_scim_paths_are_counted_and_logged_by_template(path: str, template: str) -> None:
    """Metrics labels and audit routes stay few whatever ids clients send."""
    assert route_template(path) == template

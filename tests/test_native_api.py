"""The native API over HTTP: every route, who may call it, and its errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.config import Config
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import ADMIN, ADMIN_PASSWORD, PASSWORD, SlapdInstance, create, unique
from tests.conftest import native_login as login

Client = TestClient[Any]


@pytest.fixture(scope="module")
def client(config: Config, bootstrapped: None) -> Iterator[Client]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: Client) -> dict[str, str]:
    return login(client, ADMIN, ADMIN_PASSWORD)


def new_user(runtime: Runtime, client: Client, account_type: str = "user",
             **profile: Any) -> tuple[str, dict[str, str]]:
    user = create(runtime, account_type=account_type, **profile)
    return user.username, login(client, user.username)


def assert_problem(response: Any, status: int, title: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and "detail" in body
    if title:
        assert body["title"] == title
    return body


# --- authentication ----------------------------------------------------------

def test_token_by_username_and_by_email(client: Client, runtime: Runtime) -> None:
    name = unique("tok")
    create(runtime, name, email=f"{name}@example.org")
    for body in ({"username": name, "password": PASSWORD},
                 {"email": f"{name}@example.org", "password": PASSWORD}):
        response = client.post("/auth/token", json=body)
        assert response.status_code == 200  # a login creates nothing
        token = response.json()
        assert token["token_type"] == "bearer" and token["expires_in"] == 900
        me = client.get("/auth/me", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert me.json()["username"] == name
        assert "password" not in me.text.lower()


@pytest.mark.parametrize("body", [
    {"username": "admin", "password": "wrong"},
    {"username": "nobody-at-all", "password": "wrong"},
    {"username": "admin", "password": ""},
    {"email": "nobody@example.org", "password": "x"},
])
def test_failed_logins_look_alike(client: Client, body: dict[str, str]) -> None:
    response = client.post("/auth/token", json=body)
    if body["password"] == "":
        assert_problem(response, 400)
        return
    problem = assert_problem(response, 401, "invalid credentials")
    assert problem["detail"] == "Invalid credentials."


@pytest.mark.parametrize("body", ['{"username": "a"}', "not json", '{"username": "a", '
                                  '"password": "b", "extra": 1}', '{"password": 5}'])
def test_malformed_login_bodies(client: Client, body: str) -> None:
    response = client.post("/auth/token", content=body,
                           headers={"content-type": "application/json"})
    assert_problem(response, 400)


def test_refresh(client: Client, runtime: Runtime) -> None:
    name = create(runtime).username
    tokens = client.post("/auth/token", json={"username": name, "password": PASSWORD}).json()
    refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    me = client.get("/auth/me", headers={
        "Authorization": f"Bearer {refreshed.json()['access_token']}"})
    assert me.json()["username"] == name
    # an access token is no refresh token, and the other way round
    assert_problem(client.post("/auth/refresh", json={"refresh_token": tokens["access_token"]}),
                   401)
    assert_problem(client.get("/auth/me", headers={
        "Authorization": f"Bearer {tokens['refresh_token']}"}), 401)
    assert_problem(client.post("/auth/refresh", json={"refresh_token": "garbage"}), 401)


@pytest.mark.parametrize("header", [None, "Bearer", "Basic YWxhZGRpbjpvcGVu", "Bearer a b",
                                    "Bearer not-a-jwt"])
def test_missing_or_bad_authorization(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = client.get("/auth/me", headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


# --- people ------------------------------------------------------------------

def test_create_person(client: Client, admin: dict[str, str]) -> None:
    name = unique("api")
    response = client.post("/people", headers=admin, json={
        "username": name, "password": PASSWORD, "email": f"{name}@example.org",
        "first_name": "Api", "account_type": "staff", "country": "fr"})
    assert response.status_code == 201, response.text
    person = response.json()
    assert (person["username"], person["account_type"], person["country"]) == \
        (name, "staff", "FR")
    assert "password" not in response.text.lower()
    duplicate = client.post("/people", headers=admin, json={"username": name,
                                                            "password": PASSWORD})
    assert assert_problem(duplicate, 409)["field"] == "username"


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"username": "bad name", "password": PASSWORD}, 422, "username"),
    ({"username": "okname1", "password": "short"}, 422, None),
    ({"username": "okname2", "password": PASSWORD, "account_type": "root"}, 422, "account_type"),
    ({"username": "okname3", "password": PASSWORD, "email": "not-an-email"}, 422, "email"),
    ({"username": "okname4"}, 400, None),
    ({"username": "okname5", "password": PASSWORD, "birthday": "yesterday"}, 400, None),
    ({"username": "okname6", "password": PASSWORD, "is_admin": True}, 400, None),
])
def test_create_person_refuses_bad_input(client: Client, admin: dict[str, str],
                                         body: dict[str, Any], status: int,
                                         field: str | None) -> None:
    problem = assert_problem(client.post("/people", headers=admin, json=body), status)
    if field:
        assert problem["field"] == field
    assert client.get(f"/people/{body['username']}", headers=admin).status_code in (404, 422)


def test_only_admins_create(client: Client, runtime: Runtime) -> None:
    _, staff = new_user(runtime, client, "staff")
    body = {"username": unique(), "password": PASSWORD}
    assert_problem(client.post("/people", headers=staff, json=body), 403)
    assert_problem(client.post("/people", json=body), 401)


def test_list_people(client: Client, runtime: Runtime, admin: dict[str, str]) -> None:
    tag = unique("lst")
    for i in range(5):
        create(runtime, f"{tag}{i}")
    _, staff = new_user(runtime, client, "staff")
    _, user = new_user(runtime, client)
    response = client.get("/people", headers=staff,
                          params={"q": tag, "sort": "username", "order": "desc",
                                  "page": 2, "per_page": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 5 and body["page"] == 2 and body["per_page"] == 2
    assert [p["username"] for p in body["items"]] == [f"{tag}2", f"{tag}1"]
    assert_problem(client.get("/people", headers=user), 403)
    assert_problem(client.get("/people"), 401)
    for params in ({"sort": "password"}, {"page": 0}, {"per_page": "many"}, {"order": "up"}):
        assert_problem(client.get("/people", headers=admin, params=params), 400)
    capped = client.get("/people", headers=admin, params={"per_page": 1000}).json()
    assert capped["per_page"] == 100


def test_get_person(client: Client, runtime: Runtime, admin: dict[str, str]) -> None:
    name, own = new_user(runtime, client)
    _, other_headers = new_user(runtime, client)
    _, staff = new_user(runtime, client, "staff")
    assert client.get(f"/people/{name}", headers=own).json()["username"] == name
    assert client.get(f"/people/{name}", headers=staff).status_code == 200
    assert_problem(client.get(f"/people/{name}", headers=other_headers), 403)
    assert_problem(client.get("/people/no-such-user", headers=admin), 404)
    assert_problem(client.get("/people/*", headers=admin), 404)


def test_patch_person(client: Client, runtime: Runtime, admin: dict[str, str]) -> None:
    name, own = new_user(runtime, client, location="Paris")
    changed = client.patch(f"/people/{name}", headers=own,
                           json={"bio": "hello", "location": None}).json()
    assert changed["bio"] == "hello" and changed["location"] is None
    assert_problem(client.patch(f"/people/{name}", headers=own, json={"username": unique()}), 403)
    assert_problem(client.patch(f"/people/{name}", headers=own, json={"email": "x"}), 422)
    assert_problem(client.patch(f"/people/{name}", headers=own, json={"account_type": "admin"}),
                   400)
    _, other = new_user(runtime, client)
    assert_problem(client.patch(f"/people/{name}", headers=other, json={"bio": "x"}), 403)
    new_name = unique("ren")
    assert client.patch(f"/people/{name}", headers=admin,
                        json={"username": new_name}).json()["username"] == new_name


def test_delete_person(client: Client, runtime: Runtime, admin: dict[str, str]) -> None:
    name, own = new_user(runtime, client)
    assert_problem(client.delete(f"/people/{name}", headers=own), 403)
    assert client.delete(f"/people/{name}", headers=admin).status_code == 204
    assert_problem(client.delete(f"/people/{name}", headers=admin), 404)
    assert_problem(client.get("/auth/me", headers=own), 401)  # the token died with the user


def test_account_type(client: Client, runtime: Runtime, admin: dict[str, str]) -> None:
    name, own = new_user(runtime, client)
    assert_problem(client.put(f"/people/{name}/type", headers=own,
                              json={"account_type": "admin"}), 403)
    assert client.put(f"/people/{name}/type", headers=admin,
                      json={"account_type": "staff"}).json()["account_type"] == "staff"
    # the role change counts at once, with the token issued before it
    assert client.get("/people", headers=own).status_code == 200
    assert_problem(client.put(f"/people/{name}/type", headers=admin,
                              json={"account_type": "root"}), 422)


def test_disable_and_enable(client: Client, runtime: Runtime, admin: dict[str, str]) -> None:
    name, own = new_user(runtime, client)
    assert_problem(client.post(f"/people/{name}/disable", headers=own), 403)
    assert client.post(f"/people/{name}/disable", headers=admin).json()["active"] is False
    assert_problem(client.get("/auth/me", headers=own), 401, "account disabled")
    assert_problem(client.post("/auth/token", json={"username": name, "password": PASSWORD}),
                   401)
    assert client.post(f"/people/{name}/enable", headers=admin).json()["active"] is True
    assert client.get("/auth/me", headers=own).status_code == 200


def test_password(client: Client, runtime: Runtime, admin: dict[str, str]) -> None:
    name, own = new_user(runtime, client)
    url = f"/people/{name}/password"
    assert_problem(client.put(url, headers=own, json={"new_password": "Other-Horse-5"}), 422)
    assert_problem(client.put(url, headers=own, json={"new_password": "Other-Horse-5",
                                                      "current_password": "wrong"}), 401)
    assert_problem(client.put(url, headers=own, json={"new_password": "short",
                                                      "current_password": PASSWORD}), 422)
    assert client.put(url, headers=own, json={"new_password": "Other-Horse-5",
                                              "current_password": PASSWORD}).status_code == 204
    _, other = new_user(runtime, client)
    assert_problem(client.put(url, headers=other, json={"new_password": "Third-Horse-6"}), 403)
    assert client.put(url, headers=admin, json={"new_password": "Third-Horse-6"}).status_code \
        == 204
    login(client, name, "Third-Horse-6")


# --- groups ------------------------------------------------------------------

def test_groups(client: Client, runtime: Runtime, admin: dict[str, str]) -> None:
    member, user = new_user(runtime, client)
    _, staff = new_user(runtime, client, "staff")
    name = unique("grp")
    assert_problem(client.post("/groups", headers=staff, json={"name": name}), 403)
    created = client.post("/groups", headers=admin, json={"name": name, "description": "D"})
    assert created.status_code == 201 and created.json()["members"] == []
    assert_problem(client.post("/groups", headers=admin, json={"name": name}), 409)
    assert_problem(client.post("/groups", headers=admin, json={"name": "bad,name"}), 422)
    added = client.put(f"/groups/{name}/members/{member}", headers=admin)
    assert added.json()["members"] == [member]
    assert client.get(f"/groups/{name}", headers=staff).json()["members"] == [member]
    assert name in [g["name"] for g in client.get("/groups", headers=staff).json()]
    assert_problem(client.get("/groups", headers=user), 403)
    assert_problem(client.put(f"/groups/{name}/members/nobody-x", headers=admin), 404)
    assert client.delete(f"/groups/{name}/members/{member}", headers=admin).json()["members"] \
        == []
    assert_problem(client.delete(f"/groups/{name}/members/{member}", headers=admin), 404)
    assert_problem(client.put(f"/groups/admin/members/{member}", headers=admin), 422)
    assert_problem(client.delete("/groups/admin", headers=admin), 422)
    assert client.delete(f"/groups/{name}", headers=admin).status_code == 204
    assert_problem(client.get(f"/groups/{name}", headers=admin), 404)


# --- service endpoints -------------------------------------------------------

def test_health_and_jwks(client: Client) -> None:
    assert client.get("/health").json() == {"status": "ok", "ldap": "ok"}
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert keys[0]["kty"] == "EC" and keys[0]["alg"] == "ES256" and "d" not in keys[0]


def test_openapi_lists_every_route_with_examples(client: Client) -> None:
    document = client.get("/schema/openapi.json").json()
    paths = document["paths"]
    for path in ("/auth/token", "/auth/refresh", "/auth/me", "/people", "/people/{username}",
                 "/people/{username}/type", "/people/{username}/disable",
                 "/people/{username}/enable", "/people/{username}/password", "/groups",
                 "/groups/{name}", "/groups/{name}/members/{username}", "/health",
                 "/.well-known/jwks.json"):
        assert path in paths, path
    text = str(document["components"]["schemas"])
    assert "examples" in text and "alice" in text


def test_unknown_route_is_a_problem(client: Client) -> None:
    assert_problem(client.get("/no/such/route"), 404)
    assert_problem(client.delete("/health"), 405)


def test_body_too_large(client: Client, admin: dict[str, str]) -> None:
    response = client.post("/people", headers={**admin, "content-type": "application/json"},
                           content=b"x" * (2 * 1024 * 1024))
    assert_problem(response, 413)


def test_users_are_shared_with_ldap_tools(client: Client, admin: dict[str, str],
                                          slapd: SlapdInstance) -> None:
    name = unique("shared")
    assert client.post("/people", headers=admin, json={"username": name, "password": PASSWORD,
                                                       "account_type": "staff"}).status_code == 201
    dn = f"uid={name},ou=people,dc=example,dc=org"
    assert slapd.ldap("ldapwhoami", "-D", dn, "-w", PASSWORD, bind="none").stdout.strip() == \
        f"dn:{dn}"
    tool_made = unique("tool")
    slapd.ldap("ldapadd", stdin=(
        f"dn: uid={tool_made},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n"
        f"uid: {tool_made}\ncn: T\nsn: T\nuserPassword: {PASSWORD}\n"))
    headers = login(client, tool_made)
    assert client.get("/auth/me", headers=headers).json()["username"] == tool_made


@pytest.mark.parametrize(("path", "method", "status", "body"), [
    ("/no/such/route", "GET", 404, "problem"),
    ("/people/x/y/z", "GET", 404, "problem"),
    ("/users/x/y/z", "GET", 404, "nervai"),
    ("/users/check/x", "DELETE", 405, "nervai"),
    ("/api/v1/nothing/here", "GET", 404, "problem"),
    ("/api/v1/users/1/password/x", "GET", 404, "library"),
    ("/api/v1/login", "GET", 405, "library"),
])
def test_unrouted_requests_answer_in_the_format_of_their_dialect(
        client: Client, path: str, method: str, status: int, body: str) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    if body == "problem":
        assert response.headers["content-type"].startswith("application/problem+json")
    else:
        assert response.headers["content-type"].startswith("application/json")
        assert set(response.json()) == {"message"}

"""compat/library.md over HTTP: every row and every error, always {"message": ...}."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from app.auth import Authenticator
from app.config import Config
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    PASSWORD,
    SlapdInstance,
    create,
    make_config,
    run,
    unique,
)

Client = TestClient[Any]
PEOPLE = "ou=people,dc=example,dc=org"
USER_FIELDS = {"id", "name", "username", "password", "email", "isAdmin", "created", "updated"}
NO_JWT = "Missing or invalid jwt in the request header"


@pytest.fixture(scope="module")
def client(config: Config, bootstrapped: None) -> Iterator[Client]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


def login(client: Client, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/api/v1/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


@pytest.fixture(scope="module")
def admin(client: Client) -> dict[str, str]:
    return login(client, ADMIN, ADMIN_PASSWORD)


def assert_message(response: Any, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"message"}
    if message is not None:
        assert body["message"] == message


def member_of(slapd: SlapdInstance, username: str) -> list[str]:
    shown = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", f"uid={username},{PEOPLE}",
                       "-s", "base", "memberOf").stdout
    return [line.split(": ", 1)[1] for line in shown.splitlines() if line.startswith("memberOf:")]


def binds(slapd: SlapdInstance, username: str, password: str = PASSWORD) -> bool:
    dn = f"uid={username},{PEOPLE}"
    whoami = slapd.ldap("ldapwhoami", "-D", dn, "-w", password, bind="none", check=False)
    return whoami.returncode == 0 and whoami.stdout.strip() == f"dn:{dn}"


# --- POST /api/v1/login ----------------------------------------------------------

def test_login_with_json_or_a_form(client: Client, runtime: Runtime) -> None:
    name = create(runtime).username
    credentials = {"username": name, "password": PASSWORD}
    sent_as: list[dict[str, Any]] = [{"json": credentials}, {"data": credentials}]
    for sent in sent_as:
        response = client.post("/api/v1/login", **sent)
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"token"}
        me = client.get("/auth/me", headers={"Authorization": f"Bearer {response.json()['token']}"})
        assert me.json()["username"] == name


@pytest.mark.parametrize("sent", [
    {"json": {"username": ADMIN}}, {"json": {"password": "x"}}, {"data": {"username": ADMIN}},
    {"json": {"username": "", "password": ""}}, {"content": b"not json"}, {},
    {"json": {"username": 5, "password": "x"}},
])
def test_login_missing_field(client: Client, sent: dict[str, Any]) -> None:
    assert_message(client.post("/api/v1/login", **sent), 400,
                   "Please provide a username and password.")


@pytest.mark.parametrize("body", [{"username": ADMIN, "password": "wrong"},
                                  {"username": "nobody-lib", "password": "wrong"}])
def test_login_bad_credentials(client: Client, body: dict[str, str]) -> None:
    assert_message(client.post("/api/v1/login", json=body), 401, "Wrong username or password.")


# --- protected calls ---------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "Bearer", "Basic YWxhZGRpbjpvcGVu", "Bearer a b"])
def test_missing_or_malformed_header_is_400(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    assert_message(client.get("/api/v1/users", headers=headers), 400, NO_JWT)


def test_invalid_or_expired_token_is_401(client: Client, runtime: Runtime) -> None:
    user = run(runtime.service.get_user(ADMIN))
    expired = Authenticator(runtime.service, runtime.auth.key, issuer=runtime.auth.issuer,
                            access_ttl=-120, refresh_ttl=60, leeway=0).issue(user, "access")
    refresh = runtime.auth.issue(user, "refresh")
    for token in ("not-a-jwt", expired, refresh):
        assert_message(client.get("/api/v1/users", headers={"Authorization": f"Bearer {token}"}),
                       401, "Unauthorized")


def test_admin_routes_are_forbidden_to_others(client: Client, runtime: Runtime) -> None:
    user = create(runtime, account_type="staff")
    headers = login(client, user.username)
    for method, path in (("GET", "/api/v1/users"), ("PUT", "/api/v1/users"),
                         ("GET", f"/api/v1/users/{user.id}"), ("POST", f"/api/v1/users/{user.id}"),
                         ("DELETE", f"/api/v1/users/{user.id}")):
        assert_message(client.request(method, path, headers=headers, json={"name": "x"}), 403,
                       "Forbidden")


# --- the user object ---------------------------------------------------------------

def test_user_object(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    before = int(time.time()) - 2
    user = create(runtime, email=f"{unique('m')}@example.org", display_name="That Guy")
    response = client.get(f"/api/v1/users/{user.id}", headers=admin)
    assert response.status_code == 200
    shown = response.json()
    assert set(shown) == USER_FIELDS
    assert (shown["id"], shown["name"], shown["username"], shown["password"], shown["email"],
            shown["isAdmin"]) == (user.id, "That Guy", user.username, "", user.email, False)
    assert before <= shown["created"] <= shown["updated"] <= time.time() + 2
    assert PASSWORD not in response.text
    admin_id = run(runtime.service.get_user(ADMIN)).id
    assert client.get(f"/api/v1/users/{admin_id}", headers=admin).json()["isAdmin"] is True


# --- GET /api/v1/users ---------------------------------------------------------------

def test_list_users(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    tag = unique("lib")
    by_username = create(runtime, f"{tag}a").username
    by_name = create(runtime, display_name=f"Reader {tag.upper()}").username
    # No display name: shown (and found) by the name made of first and last name.
    by_full_name = create(runtime, first_name="Ann", last_name=f"Lee{tag}").username
    create(runtime, email=f"{tag}@example.org")  # the email is not searched
    everyone = client.get("/api/v1/users", headers=admin)
    assert everyone.status_code == 200
    names = [u["username"] for u in everyone.json()]
    assert {ADMIN, by_username, by_name} <= set(names)
    assert all(u["password"] == "" for u in everyone.json())
    found = client.get("/api/v1/users/", headers=admin, params={"s": tag})
    assert sorted(u["username"] for u in found.json()) == \
        sorted([by_username, by_name, by_full_name])
    assert {u["name"] for u in found.json() if u["username"] == by_full_name} == \
        {f"Ann Lee{tag}"}
    assert client.get("/api/v1/users", headers=admin, params={"s": f"{tag}zz"}).json() == []



# --- GET /api/v1/users/{id} -----------------------------------------------------------

def test_get_user_errors(client: Client, admin: dict[str, str]) -> None:
    for bad in ("abc", "1.5", "0x10", "9" * 40):
        assert_message(client.get(f"/api/v1/users/{bad}", headers=admin), 400,
                       "User ID is invalid.")
    assert_message(client.get("/api/v1/users/987654321", headers=admin), 404,
                   "The user does not exist.")


# --- PUT /api/v1/users ----------------------------------------------------------------

def test_create_user_from_json(client: Client, admin: dict[str, str],
                               slapd: SlapdInstance) -> None:
    name = unique("libj")
    response = client.put("/api/v1/users", headers=admin, json={
        "name": "Noom", "username": name, "password": PASSWORD,
        "email": f"{name}@example.org", "id": 1, "unknown": True})
    assert response.status_code == 200, response.text
    user = response.json()
    assert set(user) == USER_FIELDS
    assert (user["name"], user["username"], user["email"], user["password"], user["isAdmin"]) \
        == ("Noom", name, f"{name}@example.org", "", False)
    assert user["id"] != 1
    assert binds(slapd, name)
    assert member_of(slapd, name) == ["cn=user,ou=groups,dc=example,dc=org"]


def test_create_user_from_a_form_field(client: Client, admin: dict[str, str],
                                       slapd: SlapdInstance) -> None:
    name = unique("libf")
    user = json.dumps({"name": "Noom", "username": name, "password": PASSWORD, "isAdmin": True})
    response = client.put("/api/v1/users", headers=admin, data={"user": user})
    assert response.status_code == 200, response.text
    assert response.json()["isAdmin"] is True
    assert binds(slapd, name)
    assert member_of(slapd, name) == ["cn=admin,ou=groups,dc=example,dc=org"]


@pytest.mark.parametrize("sent", [
    {}, {"content": b"{broken", "headers": {"content-type": "application/json"}},
    {"json": ["a list"]}, {"json": {"username": 5, "password": PASSWORD}},
    {"data": {"user": "{broken"}}, {"data": {"username": "formfields"}},
])
def test_create_user_without_a_model(client: Client, admin: dict[str, str],
                                     sent: dict[str, Any]) -> None:
    headers = {**admin, **sent.pop("headers", {})}
    assert_message(client.put("/api/v1/users", headers=headers, **sent), 400,
                   "No user model provided.")


@pytest.mark.parametrize("user", [{"username": "libnopass"}, {"password": PASSWORD},
                                  {"username": "", "password": PASSWORD, "name": "N"}])
def test_create_user_needs_username_and_password(client: Client, admin: dict[str, str],
                                                 user: dict[str, str]) -> None:
    assert_message(client.put("/api/v1/users", headers=admin, json=user), 400,
                   "Please specify a username and a password.")


def test_create_user_taken(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    taken = create(runtime, email=f"{unique('t')}@example.org")
    assert_message(client.put("/api/v1/users", headers=admin, json={
        "username": taken.username, "password": PASSWORD}), 400,
        "A user with this username already exists.")
    assert_message(client.put("/api/v1/users", headers=admin, json={
        "username": unique("libe"), "password": PASSWORD, "email": taken.email}), 400,
        "A user with this email address already exists.")


def test_create_user_invalid_values(client: Client, admin: dict[str, str]) -> None:
    """The origin's database refused these with a 500; here they are the client's 400."""
    for user in ({"username": "bad name", "password": PASSWORD},
                 {"username": unique("libv"), "password": PASSWORD, "email": "not-an-email"},
                 {"username": unique("libp"), "password": "short"}):
        assert_message(client.put("/api/v1/users", headers=admin, json=user), 400)


# --- POST /api/v1/users/{id} ------------------------------------------------------------

def test_update_user(client: Client, admin: dict[str, str], runtime: Runtime,
                     slapd: SlapdInstance) -> None:
    user = create(runtime, email=f"{unique('u')}@example.org", display_name="Before")
    url = f"/api/v1/users/{user.id}"
    renamed = unique("libr")
    response = client.post(url, headers=admin, json={"name": "Lorem Ipsum", "username": renamed,
                                                     "password": "Ignored-Horse-7"})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert (changed["id"], changed["name"], changed["username"], changed["email"]) == \
        (user.id, "Lorem Ipsum", renamed, user.email)
    # empty values change nothing, and the password never changes here
    same = client.post(url, headers=admin, json={"name": "", "username": "", "email": ""}).json()
    assert (same["name"], same["username"], same["email"]) == ("Lorem Ipsum", renamed, user.email)
    assert binds(slapd, renamed) and not binds(slapd, renamed, "Ignored-Horse-7")
    promoted = client.post(url, headers=admin, data={"user": '{"isAdmin": true}'}).json()
    assert promoted["isAdmin"] is True
    assert member_of(slapd, renamed) == ["cn=admin,ou=groups,dc=example,dc=org"]
    assert client.post(url, headers=admin, json={"isAdmin": False}).json()["isAdmin"] is False
    assert member_of(slapd, renamed) == ["cn=user,ou=groups,dc=example,dc=org"]


def test_update_keeps_a_staff_member_staff(client: Client, admin: dict[str, str],
                                           runtime: Runtime) -> None:
    user = create(runtime, account_type="staff")
    client.post(f"/api/v1/users/{user.id}", headers=admin, json={"isAdmin": False, "name": "S"})
    assert run(runtime.service.get_user(user.username)).account_type == "staff"


def test_update_user_errors(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    assert_message(client.post("/api/v1/users/x1", headers=admin, json={"name": "n"}), 400,
                   "User ID is invalid.")
    assert_message(client.post("/api/v1/users/987654321", headers=admin, json={"name": "n"}),
                   404, "The user does not exist.")
    user = create(runtime)
    assert_message(client.post(f"/api/v1/users/{user.id}", headers=admin), 400,
                   "No user model provided.")
    other = create(runtime)
    assert_message(client.post(f"/api/v1/users/{user.id}", headers=admin,
                               json={"username": other.username}), 400,
                   "A user with this username already exists.")



def test_a_refused_update_changes_nothing(client: Client, admin: dict[str, str],
                                          runtime: Runtime) -> None:
    """A taken address refuses the whole update, the promotion in it too."""
    user = create(runtime, email=f"{unique('u')}@example.org")
    other = create(runtime, email=f"{unique('u')}@example.org")
    assert_message(client.post(f"/api/v1/users/{user.id}", headers=admin, json={
        "isAdmin": True, "name": "Changed", "username": unique("libn"),
        "email": other.email}), 400, "A user with this email address already exists.")
    after = run(runtime.service.get_user(user.username))
    assert (after.account_type, after.display_name, after.email) == \
        ("user", user.display_name, user.email)


# --- DELETE /api/v1/users/{id} -----------------------------------------------------------

def test_delete_user(client: Client, admin: dict[str, str], runtime: Runtime,
                     slapd: SlapdInstance) -> None:
    user = create(runtime)
    response = client.delete(f"/api/v1/users/{user.id}", headers=admin)
    assert response.status_code == 200 and response.json() == {"message": "success"}
    assert not binds(slapd, user.username)
    assert_message(client.delete(f"/api/v1/users/{user.id}", headers=admin), 404,
                   "The user does not exist.")
    assert_message(client.delete("/api/v1/users/me", headers=admin), 400, "User ID is invalid.")


# --- POST /api/v1/users/{id}/password ----------------------------------------------------

def test_password_by_admin_for_anyone(client: Client, admin: dict[str, str],
                                      runtime: Runtime, slapd: SlapdInstance) -> None:
    user = create(runtime)
    response = client.post(f"/api/v1/users/{user.id}/password", headers=admin,
                           data={"password": "Second-Horse-8"})
    assert response.status_code == 200
    assert response.json() == {"message": "The password was updated successfully"}
    assert binds(slapd, user.username, "Second-Horse-8")
    assert not binds(slapd, user.username)


def test_password_by_a_user_for_himself(client: Client, runtime: Runtime,
                                        slapd: SlapdInstance) -> None:
    user = create(runtime)
    headers = login(client, user.username)
    response = client.post(f"/api/v1/users/{user.id}/password", headers=headers,
                           json={"password": "Own-Horse-9"})
    assert response.json() == {"message": "The password was updated successfully"}
    assert binds(slapd, user.username, "Own-Horse-9")
    login(client, user.username, "Own-Horse-9")


def test_password_errors(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    user = create(runtime)
    headers = login(client, user.username)
    url = f"/api/v1/users/{user.id}/password"
    empty: list[dict[str, Any]] = [{"json": {"password": ""}}, {"json": {}},
                                   {"data": {"password": ""}}, {}]
    for sent in empty:
        assert_message(client.post(url, headers=headers, **sent), 400,
                       "Please provide a password.")
    assert_message(client.post(url, headers=headers, json={"password": "short"}), 400)
    someone = create(runtime)
    assert_message(client.post(f"/api/v1/users/{someone.id}/password", headers=headers,
                               json={"password": "Their-Horse-1"}), 403, "Forbidden")
    assert_message(client.post("/api/v1/users/987654321/password", headers=admin,
                               json={"password": "Their-Horse-1"}), 404,
                   "The user does not exist.")
    assert_message(client.post("/api/v1/users/abc/password", headers=admin,
                               json={"password": "Their-Horse-1"}), 400, "User ID is invalid.")


# --- one token for every dialect ------------------------------------------------------

def test_a_library_token_works_everywhere(client: Client, admin: dict[str, str]) -> None:
    assert client.get("/auth/me", headers=admin).json()["username"] == ADMIN
    assert client.get("/users/", headers=admin).status_code == 200


def test_other_dialects_tokens_work_here(client: Client) -> None:
    for path, field in (("/auth/login", "access_token"), ("/auth/token", "access_token")):
        token = client.post(path, json={"username": ADMIN, "password": ADMIN_PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()[field]}"}
        assert client.get("/api/v1/users", headers=headers).status_code == 200


# --- errors outside the table ---------------------------------------------------------

def test_body_too_large(client: Client, admin: dict[str, str]) -> None:
    response = client.put("/api/v1/users", headers={**admin, "content-type": "application/json"},
                          content=b"x" * (2 * 1024 * 1024))
    assert_message(response, 413)


# --- the last admin (a directory of our own: we know who is admin) ----------------------

@pytest.fixture(scope="module")
def private_client(private_config: Config) -> Iterator[Client]:
    runtime = Runtime.build(private_config)
    run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
    runtime.close()
    with TestClient(app=create_app(private_config)) as test_client:
        yield test_client


def test_the_last_admin_stays(private_client: Client, private_slapd: SlapdInstance) -> None:
    admin = login(private_client, ADMIN, ADMIN_PASSWORD)
    me = next(u for u in private_client.get("/api/v1/users", headers=admin).json()
              if u["username"] == ADMIN)
    url = f"/api/v1/users/{me['id']}"
    assert_message(private_client.delete(url, headers=admin), 400, "Cannot delete the last admin.")
    assert_message(private_client.post(url, headers=admin, json={"isAdmin": False, "name": "X"}),
                   400, "Cannot remove the last admin.")
    # refused, so nothing changed
    assert private_client.get(url, headers=admin).json()["name"] == ADMIN
    assert member_of(private_slapd, ADMIN) == ["cn=admin,ou=groups,dc=example,dc=org"]
    second = private_client.put("/api/v1/users", headers=admin, json={
        "username": unique("liba"), "password": PASSWORD, "isAdmin": True}).json()
    assert private_client.post(url, headers=admin, json={"isAdmin": False}).json()["isAdmin"] \
        is False
    other = login(private_client, second["username"])
    assert_message(private_client.delete(f"/api/v1/users/{second['id']}", headers=other), 400,
                   "Cannot delete the last admin.")
    private_client.post(url, headers=other, json={"isAdmin": True})


# --- configuration: the prefix moves, the dialect can be off --------------------------

def test_prefix_and_switch(slapd: SlapdInstance, bootstrapped: None,
                           tmp_path_factory: pytest.TempPathFactory) -> None:
    body = {"username": ADMIN, "password": ADMIN_PASSWORD}
    moved = make_config(slapd, tmp_path_factory.mktemp("lib-moved"), library={"prefix": "/lib"})
    with TestClient(app=create_app(moved)) as moved_client:
        assert moved_client.post("/lib/login", json=body).status_code == 200
        assert moved_client.post("/api/v1/login", json=body).status_code == 404
    off = make_config(slapd, tmp_path_factory.mktemp("lib-off"), library={"enabled": False})
    with TestClient(app=create_app(off)) as off_client:
        assert off_client.post("/api/v1/login", json=body).status_code == 404

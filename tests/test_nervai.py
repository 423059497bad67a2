"""compat/nervai.md over HTTP: every row and every error, in flask-restx's bodies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

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
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
VALIDATION_FAILED = "Input payload validation failed"
PEOPLE = "ou=people,dc=example,dc=org"


@pytest.fixture(scope="module")
def client(config: Config, bootstrapped: None) -> Iterator[Client]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


def login(client: Client, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture(scope="module")
def admin(client: Client) -> dict[str, str]:
    return login(client, ADMIN, ADMIN_PASSWORD)


def new_user(runtime: Runtime, client: Client,
             account_type: str = "user") -> tuple[str, dict[str, str]]:
    user = create(runtime, account_type=account_type)
    return user.username, login(client, user.username)


def assert_message(response: Any, status: int, message: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body["message"], str)
    if message is not None:
        assert body["message"] == message
    return body


def assert_field_errors(response: Any, errors: dict[str, str]) -> None:
    body = assert_message(response, 400, VALIDATION_FAILED)
    assert body["errors"] == errors


def member_of(slapd: SlapdInstance, username: str) -> list[str]:
    shown = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b", f"uid={username},{PEOPLE}",
                       "-s", "base", "memberOf").stdout
    return [line.split(": ", 1)[1] for line in shown.splitlines() if line.startswith("memberOf:")]


def binds(slapd: SlapdInstance, username: str, password: str = PASSWORD) -> bool:
    dn = f"uid={username},{PEOPLE}"
    whoami = slapd.ldap("ldapwhoami", "-D", dn, "-w", password, bind="none", check=False)
    return whoami.returncode == 0 and whoami.stdout.strip() == f"dn:{dn}"


def jpeg(size: tuple[int, int] = (600, 400)) -> bytes:
    out = BytesIO()
    Image.new("RGB", size, "blue").save(out, "JPEG")
    return out.getvalue()


# --- POST /auth/login ----------------------------------------------------------

def test_login(client: Client, runtime: Runtime) -> None:
    name = create(runtime).username
    response = client.post("/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.json()["username"] == name
    listed = client.get("/users/", headers=login(client, ADMIN, ADMIN_PASSWORD)).json()
    assert ISO_UTC.fullmatch(next(u for u in listed if u["username"] == name)["last_login"])


@pytest.mark.parametrize(("body", "errors"), [
    ({"password": PASSWORD}, {"username": "Username cannot be blank"}),
    ({"username": "admin"}, {"password": "Password cannot be blank"}),
    ({"username": " ", "password": ""}, {"username": "Username cannot be blank",
                                         "password": "Password cannot be blank"}),
])
def test_login_missing_field(client: Client, body: dict[str, str],
                             errors: dict[str, str]) -> None:
    assert_field_errors(client.post("/auth/login", json=body), errors)


@pytest.mark.parametrize("body", [{"username": ADMIN, "password": "wrong"},
                                  {"username": "nobody-here", "password": "wrong"},
                                  {"username": "bad name", "password": "wrong"}])
def test_login_bad_credentials(client: Client, body: dict[str, str]) -> None:
    assert_message(client.post("/auth/login", json=body), 401, "Invalid username or password.")


# --- POST /users/ ------------------------------------------------------------------

def test_create_user(client: Client, admin: dict[str, str], slapd: SlapdInstance) -> None:
    name = unique("nv")
    response = client.post("/users/", headers=admin, json={
        "username": name, "password": PASSWORD, "account_type": "staff"})
    assert response.status_code == 201, response.text
    user = response.json()
    assert set(user) == {"id", "username", "account_type", "email", "created_at", "updated_at",
                         "last_login"}
    assert (user["username"], user["account_type"], user["email"]) == (name, "staff", None)
    assert isinstance(user["id"], int) and user["last_login"] is None
    assert ISO_UTC.fullmatch(user["created_at"]) and ISO_UTC.fullmatch(user["updated_at"])
    assert PASSWORD not in response.text and "password" not in response.text
    # the directory is the truth: LDAP tools see the same user, in the staff group
    assert binds(slapd, name)
    assert member_of(slapd, name) == ["cn=staff,ou=groups,dc=example,dc=org"]


@pytest.mark.parametrize(("body", "errors"), [
    ({"password": PASSWORD, "account_type": "user"}, {"username": "Username cannot be blank"}),
    ({"username": "nvblank1", "account_type": "user"}, {"password": "Password cannot be blank"}),
    ({"username": "nvblank2", "password": PASSWORD},
     {"account_type": "Account type cannot be blank"}),
    ({"username": "", "password": PASSWORD, "account_type": " "},
     {"username": "Username cannot be blank", "account_type": "Account type cannot be blank"}),
    ({}, {"username": "Username cannot be blank", "password": "Password cannot be blank",
          "account_type": "Account type cannot be blank"}),
])
def test_create_user_missing_or_blank_field(client: Client, admin: dict[str, str],
                                             body: dict[str, str],
                                             errors: dict[str, str]) -> None:
    assert_field_errors(client.post("/users/", headers=admin, json=body), errors)


def test_create_user_unknown_account_type(client: Client, admin: dict[str, str]) -> None:
    name = unique("nvt")
    response = client.post("/users/", headers=admin, json={
        "username": name, "password": PASSWORD, "account_type": "root"})
    assert "user, staff, admin" in assert_message(response, 400)["message"]
    assert client.get(f"/users/check/{name}").json()["available"] is True


def test_create_user_username_taken(client: Client, admin: dict[str, str],
                                    runtime: Runtime) -> None:
    name = create(runtime).username
    response = client.post("/users/", headers=admin, json={
        "username": name, "password": PASSWORD, "account_type": "user"})
    assert_message(response, 400, "The username is already taken.")


def test_create_user_invalid_values(client: Client, admin: dict[str, str]) -> None:
    bad_name = client.post("/users/", headers=admin, json={
        "username": "bad name", "password": PASSWORD, "account_type": "user"})
    assert set(assert_message(bad_name, 400, VALIDATION_FAILED)["errors"]) == {"username"}
    weak = client.post("/users/", headers=admin, json={
        "username": unique("nvw"), "password": "short", "account_type": "user"})
    assert_message(weak, 400)  # the password policy's own words
    typed = client.post("/users/", headers=admin, json={
        "username": 5, "password": PASSWORD, "account_type": "user"})
    assert set(assert_message(typed, 400, VALIDATION_FAILED)["errors"]) == {"username"}
    not_json = client.post("/users/", headers={**admin, "content-type": "application/json"},
                           content=b"{not json")
    assert_message(not_json, 400)


def test_create_user_needs_an_admin(client: Client, runtime: Runtime) -> None:
    body = {"username": unique("nvx"), "password": PASSWORD, "account_type": "user"}
    assert_message(client.post("/users/", json=body), 401, "Authentication required.")
    # as with flask-restx's decorators, the token is checked before the body is read
    assert_message(client.post("/users/", content=b"{not json",
                               headers={"content-type": "application/json"}), 401,
                   "Authentication required.")
    assert_message(client.post("/users/", json=body, headers={"Authorization": "Bearer junk"}),
                   401, "Authentication required.")
    for account_type in ("user", "staff"):
        _, headers = new_user(runtime, client, account_type)
        assert_message(client.post("/users/", json=body, headers=headers), 403,
                       "Admin rights required.")
    assert client.get(f"/users/check/{body['username']}").json()["available"] is True


# --- GET /users/ ---------------------------------------------------------------------

def test_list_users(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    made = [create(runtime, account_type=t).username for t in ("user", "staff", "admin")]
    response = client.get("/users/", headers=admin)
    assert response.status_code == 200
    users = response.json()
    assert isinstance(users, list)
    by_name = {u["username"]: u for u in users}
    assert [by_name[name]["account_type"] for name in made] == ["user", "staff", "admin"]
    ids = [u["id"] for u in users if u["id"] is not None]  # tool-made entries may have none
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert "password" not in response.text



def test_list_users_needs_an_admin(client: Client, runtime: Runtime) -> None:
    assert_message(client.get("/users/"), 401, "Authentication required.")
    _, staff = new_user(runtime, client, "staff")
    assert_message(client.get("/users/", headers=staff), 403, "Admin rights required.")


# --- DELETE /users/ -------------------------------------------------------------------

def test_delete_user_named_in_body(client: Client, admin: dict[str, str], runtime: Runtime,
                                   slapd: SlapdInstance) -> None:
    name = create(runtime).username
    response = client.request("DELETE", "/users/", headers=admin, json={"username": name})
    assert response.status_code == 200
    assert response.json() == {"message": "User successfully deleted."}
    assert not binds(slapd, name)
    assert client.get(f"/users/check/{name}").json()["available"] is True


def test_delete_user_named_in_query(client: Client, admin: dict[str, str],
                                    runtime: Runtime) -> None:
    name = create(runtime).username
    response = client.delete("/users", headers=admin, params={"username": name})
    assert response.json() == {"message": "User successfully deleted."}


def test_delete_user_errors(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    assert_field_errors(client.delete("/users/", headers=admin),
                        {"username": "Username cannot be blank"})
    assert_field_errors(client.request("DELETE", "/users/", headers=admin, json={}),
                        {"username": "Username cannot be blank"})
    assert_message(client.delete("/users/", headers=admin, params={"username": "nobody-nv"}),
                   400, "User does not exist.")
    assert_message(client.request("DELETE", "/users/", headers=admin, json={"username": 7}), 400)
    name = create(runtime).username
    assert_message(client.delete("/users/", params={"username": name}), 401,
                   "Authentication required.")
    _, user = new_user(runtime, client)
    assert_message(client.delete("/users/", headers=user, params={"username": name}), 403,
                   "Admin rights required.")
    assert client.get(f"/users/check/{name}").json()["available"] is False


# --- GET /users/check/{username} --------------------------------------------------------

def test_check_username(client: Client, runtime: Runtime) -> None:
    taken = create(runtime).username
    free = unique("free")
    assert client.get(f"/users/check/{free}").json() == {"username": free, "available": True}
    assert client.get(f"/users/check/{taken}").json() == {"username": taken, "available": False}
    # LDAP matches uid without regard to case
    assert client.get(f"/users/check/{taken.upper()}").json()["available"] is False
    for invalid in ("bad name", "-dash", "a*", "x" * 65):
        response = client.get(f"/users/check/{invalid}")
        assert response.status_code == 200
        assert response.json() == {"username": invalid, "available": False}


def test_a_user_named_check(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    """/users/check/... is the availability check's path too: as in the
    original, a POST there and the picture routes (ending in a slash, where
    the check does not) are the user's."""
    create(runtime, "check")
    try:
        assert client.get("/users/check/profile_picture/").json() == {"message": "No picture."}
        assert client.get("/users/check/thumbnail/").status_code == 404
        run(runtime.service.set_picture("check", jpeg()))
        for route in ("profile_picture", "thumbnail"):
            picture = client.get(f"/users/check/{route}/")
            assert picture.status_code == 200 and picture.content.startswith(b"\xff\xd8")
        for route in ("profile_picture", "thumbnail", "type"):
            free = client.get(f"/users/check/{route}")
            assert free.json() == {"username": route, "available": True}
        changed = client.post("/users/check/type", headers=admin, json={"account_type": "staff"})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["username"], changed.json()["account_type"]) == ("check", "staff")
        assert client.post("/users/check/type", json={"account_type": "user"}).status_code == 401
    finally:
        run(runtime.service.delete_user("check"))


# --- POST /users/{user_id}/type -----------------------------------------------------------

def test_change_type_by_id_and_by_username(client: Client, admin: dict[str, str],
                                           runtime: Runtime, slapd: SlapdInstance) -> None:
    user = create(runtime)
    by_id = client.post(f"/users/{user.id}/type", headers=admin, json={"account_type": "staff"})
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["account_type"] == "staff" and by_id.json()["id"] == user.id
    assert member_of(slapd, user.username) == ["cn=staff,ou=groups,dc=example,dc=org"]
    by_name = client.post(f"/users/{user.username}/type/", headers=admin,
                          json={"account_type": "admin"})
    assert by_name.json()["account_type"] == "admin"
    assert member_of(slapd, user.username) == ["cn=admin,ou=groups,dc=example,dc=org"]


def test_change_type_of_a_numeric_username(client: Client, admin: dict[str, str],
                                           runtime: Runtime) -> None:
    """A username made of digits that is nobody's id still names its user."""
    name = unique("9").replace("x", "0")
    create(runtime, name)
    response = client.post(f"/users/{name}/type", headers=admin, json={"account_type": "staff"})
    assert response.json()["username"] == name


def test_change_type_errors(client: Client, admin: dict[str, str], runtime: Runtime) -> None:
    name, own = new_user(runtime, client)
    url = f"/users/{name}/type"
    assert_field_errors(client.post(url, headers=admin, json={}),
                        {"account_type": "Account type cannot be blank"})
    assert_field_errors(client.post(url, headers=admin, json={"account_type": ""}),
                        {"account_type": "Account type cannot be blank"})
    unknown = client.post(url, headers=admin, json={"account_type": "root"})
    assert "user, staff, admin" in assert_message(unknown, 400)["message"]
    for missing in ("nobody-nv", "999999999"):
        assert_message(client.post(f"/users/{missing}/type", headers=admin,
                                   json={"account_type": "staff"}), 404, "User does not exist.")
    assert_message(client.post(url, json={"account_type": "admin"}), 401,
                   "Authentication required.")
    assert_message(client.post(url, headers=own, json={"account_type": "admin"}), 403,
                   "Admin rights required.")


# --- GET /users/{username}/profile_picture/ and /thumbnail/ ---------------------------------

def test_picture_and_thumbnail(client: Client, runtime: Runtime) -> None:
    name = create(runtime).username
    run(runtime.service.set_picture(name, jpeg()))
    picture = client.get(f"/users/{name}/profile_picture/")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    with Image.open(BytesIO(picture.content)) as image:
        assert image.size == (600, 400)
    again = client.get(f"/users/{name}/profile_picture", headers={
        "If-None-Match": picture.headers["etag"]})
    assert again.status_code == 304
    thumb = client.get(f"/users/{name}/thumbnail/")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(BytesIO(thumb.content)) as image:
        assert image.size == (128, 85)


def test_picture_errors(client: Client, runtime: Runtime) -> None:
    name = create(runtime).username
    for kind in ("profile_picture", "thumbnail"):
        assert_message(client.get(f"/users/nobody-nv/{kind}/"), 404, "User does not exist.")
        assert_message(client.get(f"/users/{name}/{kind}/"), 404, "No picture.")


# --- one token for every dialect ----------------------------------------------------

def test_a_nervai_token_works_everywhere(client: Client, admin: dict[str, str]) -> None:
    assert client.get("/auth/me", headers=admin).json()["username"] == ADMIN
    assert client.get("/api/v1/users", headers=admin).status_code == 200


def test_other_dialects_tokens_work_here(client: Client) -> None:
    for path, field in (("/api/v1/login", "token"), ("/auth/token", "access_token")):
        token = client.post(path, json={"username": ADMIN, "password": ADMIN_PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()[field]}"}
        assert client.get("/users/", headers=headers).status_code == 200


# --- errors outside the table --------------------------------------------------------

def test_body_too_large(client: Client, admin: dict[str, str]) -> None:
    response = client.post("/users/", headers={**admin, "content-type": "application/json"},
                           content=b"x" * (2 * 1024 * 1024))
    assert_message(response, 413)


# --- the last admin (a directory of our own: we know who is admin) --------------------

@pytest.fixture(scope="module")
def private_client(private_config: Config) -> Iterator[Client]:
    runtime = Runtime.build(private_config)
    run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
    runtime.close()
    with TestClient(app=create_app(private_config)) as test_client:
        yield test_client


def test_the_last_admin_stays(private_client: Client, private_slapd: SlapdInstance) -> None:
    admin = login(private_client, ADMIN, ADMIN_PASSWORD)
    assert_message(private_client.delete("/users/", headers=admin, params={"username": ADMIN}),
                   400, "Cannot delete the last admin.")
    assert_message(private_client.post(f"/users/{ADMIN}/type", headers=admin,
                                       json={"account_type": "user"}),
                   400, "Cannot demote the last admin.")
    assert member_of(private_slapd, ADMIN) == ["cn=admin,ou=groups,dc=example,dc=org"]
    # with a second admin, the first may go
    second = unique("nva")
    private_client.post("/users/", headers=admin, json={
        "username": second, "password": PASSWORD, "account_type": "admin"})
    demoted = private_client.post(f"/users/{ADMIN}/type", headers=admin,
                                  json={"account_type": "user"})
    assert demoted.json()["account_type"] == "user"
    other = login(private_client, second)
    assert_message(private_client.request("DELETE", "/users/", headers=other,
                                          json={"username": second}),
                   400, "Cannot delete the last admin.")
    private_client.post(f"/users/{ADMIN}/type", headers=other, json={"account_type": "admin"})


# --- configuration: the prefix moves, the dialect can be off --------------------------

def test_prefix_and_switch(slapd: SlapdInstance, bootstrapped: None,
                           tmp_path_factory: pytest.TempPathFactory) -> None:
    moved = make_config(slapd, tmp_path_factory.mktemp("nv-moved"),
                        nervai={"prefix": "/nervai"})
    with TestClient(app=create_app(moved)) as moved_client:
        assert moved_client.get("/nervai/users/check/someone").json()["available"] is True
        assert moved_client.get("/users/check/someone").status_code == 404
    off = make_config(slapd, tmp_path_factory.mktemp("nv-off"), nervai={"enabled": False})
    with TestClient(app=create_app(off)) as off_client:
        assert off_client.get("/users/check/someone").status_code == 404
        assert off_client.post("/auth/login", json={}).status_code == 404

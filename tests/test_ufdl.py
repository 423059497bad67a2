"""compat/ufdl.md over HTTP: simplejwt logins, DRF errors, every route and the list filter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
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
    run,
    unique,
)

Client = TestClient[Any]
Headers = dict[str, str]
PEOPLE = "ou=people,dc=example,dc=org"
GROUPS = "ou=groups,dc=example,dc=org"
USER_KEYS = ["username", "pk", "last_login", "is_superuser", "first_name", "last_name", "email",
             "is_staff", "is_active", "date_joined"]
NOT_PROVIDED = {"detail": "Authentication credentials were not provided."}
NOT_VALID = {"detail": "Given token not valid for any token type", "code": "token_not_valid"}
FORBIDDEN = {"detail": "You do not have permission to perform this action."}
NO_ACCOUNT = {"detail": "No active account found with the given credentials"}
NOT_FOUND = {"detail": "Not found."}
REQUIRED = ["This field is required."]
INVALID_USERNAME = ("Enter a valid username. This value may contain only letters, numbers, "
                    "and @/./+/-/_ characters.")


# slapd's refusal, in our words
POLICY = "The password does not meet the password policy (at least 8 characters)."


@pytest.fixture(scope="module")
def client(config: Config, bootstrapped: None) -> Iterator[Client]:
    with TestClient(app=create_app(config)) as test_client:
        yield test_client


def obtain(client: Client, username: str, password: str = PASSWORD) -> Headers:
    response = client.post("/v1/auth/obtain", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access']}"}


@pytest.fixture(scope="module")
def admin(client: Client) -> Headers:
    return obtain(client, ADMIN, ADMIN_PASSWORD)


@pytest.fixture(scope="module")
def staff(client: Client, config: Config, bootstrapped: None) -> Headers:
    runtime = Runtime.build(config)
    try:
        name = create(runtime, account_type="staff").username
    finally:
        runtime.close()
    return obtain(client, name)


def answer(response: Any, status: int, body: Any) -> None:
    """Status and the whole body, as a DRF client sees them."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == body


def member_of(slapd: SlapdInstance, username: str) -> list[str]:
    shown = slapd.ldap("ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-b",
                       f"uid={username},{PEOPLE}", "-s", "base", "memberOf").stdout
    return [line.split(": ", 1)[1] for line in shown.splitlines() if line.startswith("memberOf:")]


def binds(slapd: SlapdInstance, username: str, password: str = PASSWORD) -> bool:
    dn = f"uid={username},{PEOPLE}"
    whoami = slapd.ldap("ldapwhoami", "-D", dn, "-w", password, bind="none", check=False)
    return whoami.returncode == 0 and whoami.stdout.strip() == f"dn:{dn}"


# --- Login -------------------------------------------------------------------

def test_obtain_gives_refresh_and_access(client: Client, runtime: Runtime) -> None:
    name = create(runtime).username
    response = client.post("/v1/auth/obtain/", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["refresh", "access"]
    # one bearer token for every dialect
    bearer = {"Authorization": f"Bearer {response.json()['access']}"}
    assert client.get("/auth/me", headers=bearer).json()["username"] == name
    assert client.get(f"/v1/users/{name}", headers=bearer).json()["username"] == name


@pytest.mark.parametrize(("body", "errors"), [
    ({}, {"username": REQUIRED, "password": REQUIRED}),
    ({"username": "someone"}, {"password": REQUIRED}),
    ({"password": "x"}, {"username": REQUIRED}),
    ({"username": "", "password": ""}, {"username": ["This field may not be blank."],
                                        "password": ["This field may not be blank."]}),
    ({"username": None, "password": "x"}, {"username": ["This field may not be null."]}),
])
def test_obtain_missing_fields(client: Client, body: dict[str, Any],
                               errors: dict[str, list[str]]) -> None:
    answer(client.post("/v1/auth/obtain", json=body), 400, errors)


def test_obtain_without_a_body_names_both_fields(client: Client) -> None:
    answer(client.post("/v1/auth/obtain"), 400, {"username": REQUIRED, "password": REQUIRED})


def test_obtain_wrong_credentials_or_inactive(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    inactive = create(runtime)
    run(runtime.service.disable_user(inactive.username))
    for username, password in ((user.username, "Wrong-Password-1"),
                               (unique("nobody"), PASSWORD), (inactive.username, PASSWORD)):
        response = client.post("/v1/auth/obtain", json={"username": username,
                                                         "password": password})
        answer(response, 401, NO_ACCOUNT)
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'


def test_refresh_gives_a_new_access_token(client: Client, runtime: Runtime) -> None:
    name = create(runtime).username
    pair = client.post("/v1/auth/obtain", json={"username": name, "password": PASSWORD}).json()
    response = client.post("/v1/auth/refresh/", json={"refresh": pair["refresh"]})
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["access"]
    bearer = {"Authorization": f"Bearer {response.json()['access']}"}
    assert client.get(f"/v1/users/{name}", headers=bearer).status_code == 200


def test_refresh_refuses_bad_tokens(client: Client, runtime: Runtime) -> None:
    user = run(runtime.service.get_user(ADMIN))
    expired = Authenticator(runtime.service, runtime.auth.key, issuer=runtime.auth.issuer,
                            access_ttl=60, refresh_ttl=-120, leeway=0).issue(user, "refresh")
    access = runtime.auth.issue(user, "access")
    for token in ("garbage", expired, access):
        answer(client.post("/v1/auth/refresh", json={"refresh": token}), 401,
               {"detail": "Token is invalid or expired", "code": "token_not_valid"})
    answer(client.post("/v1/auth/refresh", json={}), 400, {"refresh": REQUIRED})


# --- protected calls ---------------------------------------------------------

ROUTES = [("POST", "/v1/users/list"), ("POST", "/v1/users/create"), ("GET", "/v1/users/1"),
          ("GET", "/v1/users/someone"), ("PUT", "/v1/users/1"), ("PATCH", "/v1/users/1"),
          ("DELETE", "/v1/users/1")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_no_credentials(client: Client, method: str, path: str) -> None:
    # authentication comes first: the (invalid) body is never looked at
    for headers in ({}, {"Authorization": "Basic YWxhZGRpbjpvcGVu"}):
        response = client.request(method, path, headers=headers, json={"username": 5})
        answer(response, 401, NOT_PROVIDED)
        assert response.headers["www-authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_invalid_token(client: Client, runtime: Runtime, method: str, path: str) -> None:
    user = run(runtime.service.get_user(ADMIN))
    expired = Authenticator(runtime.service, runtime.auth.key, issuer=runtime.auth.issuer,
                            access_ttl=-120, refresh_ttl=60, leeway=0).issue(user, "access")
    refresh = runtime.auth.issue(user, "refresh")
    for token in ("not-a-jwt", expired, refresh):
        answer(client.request(method, path, headers={"Authorization": f"Bearer {token}"}),
               401, NOT_VALID)
    answer(client.request(method, path, headers={"Authorization": "Bearer a b"}), 401,
           {"detail": "Authorization header must contain two space-delimited values"})


def test_token_of_an_inactive_user(client: Client, runtime: Runtime) -> None:
    user = create(runtime, account_type="staff")
    headers = obtain(client, user.username)
    run(runtime.service.disable_user(user.username))
    for method, path in ROUTES:
        answer(client.request(method, path, headers=headers), 401, {"detail": "User is inactive"})


def test_token_of_a_removed_user(client: Client, runtime: Runtime) -> None:
    user = create(runtime)
    headers = obtain(client, user.username)
    run(runtime.service.delete_user(user.username))  # by another dialect, or an LDAP tool
    answer(client.get(f"/v1/users/{user.id}", headers=headers), 401, {"detail": "User not found"})


# --- who may do what: staff, the user himself, another user, anonymous ---------

def test_permission_matrix(client: Client, admin: Headers, staff: Headers,
                           runtime: Runtime) -> None:
    me = create(runtime)
    others = obtain(client, create(runtime).username)
    patch = {"first_name": "Changed"}
    put = {"username": me.username, "password": PASSWORD}
    calls: list[tuple[str, str, Any]] = [
        ("POST", "/v1/users/list", {}),
        ("POST", "/v1/users/create", "new"),
        ("GET", f"/v1/users/{me.id}", None),
        ("GET", f"/v1/users/{me.username}", None),
        ("PUT", f"/v1/users/{me.id}", put),
        ("PATCH", f"/v1/users/{me.id}", patch),
        ("DELETE", f"/v1/users/{me.id}", None),
    ]
    for method, path, body in calls:
        reads = method == "GET"
        # afresh each time: a PUT resets the password, which revokes older tokens
        mine = obtain(client, me.username)
        for who, headers, allowed in (("self", mine, reads), ("other", others, False),
                                      ("staff", staff, True), ("admin", admin, True)):
            sent = {"username": unique("perm"), "password": PASSWORD} if body == "new" else body
            response = client.request(method, path, headers=headers, json=sent)
            if allowed:
                assert response.status_code in (200, 201, 204), (who, method, path, response.text)
            else:
                answer(response, 403, FORBIDDEN)
            if method == "DELETE" and allowed:
                run(runtime.service.enable_user(me.username))
        answer(client.request(method, path, json=body), 401, NOT_PROVIDED)


def test_staff_cannot_change_an_admin(client: Client, admin: Headers, staff: Headers,
                                      runtime: Runtime) -> None:
    # A deviation (compat README: nothing unsafe): staff setting an admin's
    # password would become that admin.
    target = create(runtime, account_type="admin")
    for method, body in (("PUT", {"username": target.username, "password": "Taken-Over-42"}),
                         ("PATCH", {"password": "Taken-Over-42"}), ("DELETE", None)):
        answer(client.request(method, f"/v1/users/{target.id}", headers=staff, json=body), 403,
               FORBIDDEN)
    assert client.get(f"/v1/users/{target.id}", headers=staff).json()["is_active"] is True
    response = client.patch(f"/v1/users/{target.id}", headers=admin, json={"first_name": "Ok"})
    assert response.json()["first_name"] == "Ok"


# --- the user object -----------------------------------------------------------

def test_user_object(client: Client, admin: Headers, runtime: Runtime) -> None:
    user = create(runtime, first_name="Ada", last_name="Lovelace",
                  email=f"{unique('ada')}@example.org")
    response = client.get(f"/v1/users/{user.id}", headers=admin)
    assert response.status_code == 200
    shown = response.json()
    assert list(shown) == USER_KEYS
    assert (shown["username"], shown["pk"], shown["first_name"], shown["last_name"],
            shown["email"]) == (user.username, user.id, "Ada", "Lovelace", user.email)
    assert (shown["is_superuser"], shown["is_staff"], shown["is_active"]) == (False, False, True)
    assert shown["last_login"] is None  # never logged in
    assert datetime.fromisoformat(shown["date_joined"]).utcoffset() is not None
    assert "password" not in response.text and PASSWORD not in response.text
    obtain(client, user.username)
    last_login = client.get(f"/v1/users/{user.id}", headers=admin).json()["last_login"]
    assert datetime.fromisoformat(last_login).utcoffset() is not None


@pytest.mark.parametrize(("account_type", "superuser", "is_staff"),
                         [("user", False, False), ("staff", False, True), ("admin", True, True)])
def test_account_types_as_flags(client: Client, admin: Headers, runtime: Runtime,
                                account_type: str, superuser: bool, is_staff: bool) -> None:
    user = create(runtime, account_type=account_type)
    shown = client.get(f"/v1/users/{user.id}", headers=admin).json()
    assert (shown["is_superuser"], shown["is_staff"]) == (superuser, is_staff)
    assert (shown["first_name"], shown["last_name"], shown["email"]) == ("", "", "")


# --- POST /v1/users/create -------------------------------------------------------

def test_create_with_username_and_password_only(client: Client, staff: Headers,
                                                slapd: SlapdInstance) -> None:
    name = unique("ucr")
    response = client.post("/v1/users/create/", headers=staff,
                           json={"username": name, "password": PASSWORD, "first_name": "",
                                 "last_name": "", "email": ""})
    assert response.status_code == 201, response.text
    created = response.json()
    assert list(created) == USER_KEYS
    assert (created["username"], created["first_name"], created["email"]) == (name, "", "")
    assert (created["is_staff"], created["is_superuser"], created["is_active"]) == (
        False, False, True)
    assert PASSWORD not in response.text
    assert member_of(slapd, name) == [f"cn=user,{GROUPS}"]
    assert binds(slapd, name)


def test_create_staff_with_all_fields(client: Client, staff: Headers,
                                      slapd: SlapdInstance) -> None:
    name = unique("ucs")
    response = client.post("/v1/users/create", headers=staff, json={
        "username": name, "password": PASSWORD, "first_name": "Grace", "last_name": "Hopper",
        "email": f"{name}@example.org", "is_staff": True, "is_active": True})
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["first_name"], created["last_name"], created["email"]) == (
        "Grace", "Hopper", f"{name}@example.org")
    assert (created["is_staff"], created["is_superuser"]) == (True, False)
    assert member_of(slapd, name) == [f"cn=staff,{GROUPS}"]


def test_create_ignores_read_only_fields(client: Client, staff: Headers,
                                         slapd: SlapdInstance) -> None:
    name = unique("ucro")
    response = client.post("/v1/users/create", headers=staff, json={
        "username": name, "password": PASSWORD, "is_superuser": True, "pk": 1,
        "date_joined": "2000-01-01T00:00:00Z", "last_login": "2000-01-01T00:00:00Z"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["is_superuser"], created["is_staff"], created["last_login"]) == (
        False, False, None)
    assert created["pk"] != 1 and not created["date_joined"].startswith("2000")
    assert member_of(slapd, name) == [f"cn=user,{GROUPS}"]


def test_create_inactive(client: Client, staff: Headers, slapd: SlapdInstance) -> None:
    name = unique("uci")
    response = client.post("/v1/users/create", headers=staff,
                           json={"username": name, "password": PASSWORD, "is_active": False})
    assert response.status_code == 201, response.text
    assert response.json()["is_active"] is False
    answer(client.post("/v1/auth/obtain", json={"username": name, "password": PASSWORD}),
           401, NO_ACCOUNT)
    assert not binds(slapd, name)


@pytest.mark.parametrize(("body", "errors"), [
    ({}, {"username": REQUIRED, "password": REQUIRED}),
    ({"username": "", "password": PASSWORD}, {"username": ["This field may not be blank."]}),
    ({"username": "bad name!", "password": PASSWORD}, {"username": [INVALID_USERNAME]}),
    ({"username": "ok-name", "password": PASSWORD, "email": "not-an-address"},
     {"email": ["Enter a valid email address."]}),
    ({"username": "ok-name", "password": "short"},
     {"password": [POLICY]}),
    ({"username": 5, "password": PASSWORD}, {"username": ["Not a valid string."]}),
    ({"username": "ok-name", "password": PASSWORD, "is_staff": "yes"},
     {"is_staff": ["Must be a valid boolean."]}),
])
def test_create_validation(client: Client, staff: Headers, body: dict[str, Any],
                           errors: dict[str, list[str]]) -> None:
    answer(client.post("/v1/users/create", headers=staff, json=body), 400, errors)


def test_create_taken_username(client: Client, staff: Headers, runtime: Runtime) -> None:
    taken = create(runtime).username
    answer(client.post("/v1/users/create", headers=staff,
                       json={"username": taken, "password": PASSWORD}),
           400, {"username": ["A user with that username already exists."]})


def test_create_taken_email(client: Client, staff: Headers, runtime: Runtime) -> None:
    # Django's User allows shared addresses; the directory keeps mail unique (a deviation).
    address = f"{unique('mail')}@example.org"
    create(runtime, email=address)
    answer(client.post("/v1/users/create", headers=staff,
                       json={"username": unique("ucm"), "password": PASSWORD, "email": address}),
           400, {"email": ["A user with that email already exists."]})


def test_create_malformed_bodies(client: Client, staff: Headers) -> None:
    answer(client.post("/v1/users/create", headers=staff, json=[1]), 400,
           {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]})
    response = client.post("/v1/users/create", headers=staff, content=b"{not json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error - ")
    huge = {"username": "x", "password": "y" * 2_000_000}
    answer(client.post("/v1/users/create", headers=staff, json=huge), 413,
           {"detail": "Request body is too large."})


# --- GET /v1/users/{pk} and /v1/users/{name} -------------------------------------

def test_retrieve_by_pk_and_by_name(client: Client, staff: Headers, runtime: Runtime) -> None:
    user = create(runtime)
    by_pk = client.get(f"/v1/users/{user.id}", headers=staff)
    by_name = client.get(f"/v1/users/{user.username}/", headers=staff)
    assert by_pk.status_code == by_name.status_code == 200
    assert by_pk.json() == by_name.json()
    assert by_pk.json()["username"] == user.username


def test_retrieve_unknown(client: Client, staff: Headers) -> None:
    for key in ("987654321", unique("ghost"), "9" * 40):
        answer(client.get(f"/v1/users/{key}", headers=staff), 404, NOT_FOUND)


def test_digits_always_mean_a_pk(client: Client, staff: Headers, runtime: Runtime) -> None:
    digits = create(runtime, "7" + str(abs(hash(unique())))[:12]).username
    answer(client.get(f"/v1/users/{digits}", headers=staff), 404, NOT_FOUND)
    answer(client.patch(f"/v1/users/{digits}", headers=staff, json={}), 404, NOT_FOUND)


def test_a_name_serves_get_only(client: Client, staff: Headers, runtime: Runtime) -> None:
    name = create(runtime).username
    for method in ("PUT", "PATCH", "DELETE"):
        answer(client.request(method, f"/v1/users/{name}", headers=staff), 405,
               {"detail": f'Method "{method}" not allowed.'})
    answer(client.get("/v1/users/list", headers=staff), 405,
           {"detail": 'Method "GET" not allowed.'})
    answer(client.get("/v1/users", headers=staff), 404, NOT_FOUND)


# --- PUT and PATCH /v1/users/{pk} --------------------------------------------------

def test_put_requires_username_and_password(client: Client, staff: Headers,
                                            runtime: Runtime) -> None:
    user = create(runtime)
    answer(client.put(f"/v1/users/{user.id}", headers=staff, json={"first_name": "X"}), 400,
           {"username": REQUIRED, "password": REQUIRED})
    assert client.get(f"/v1/users/{user.id}", headers=staff).json()["first_name"] == ""


def test_put_replaces(client: Client, staff: Headers, runtime: Runtime,
                      slapd: SlapdInstance) -> None:
    user = create(runtime, first_name="Old")
    renamed = unique("uput")
    response = client.put(f"/v1/users/{user.id}/", headers=staff, json={
        "username": renamed, "password": "New-Password-77", "first_name": "New",
        "last_name": "Name", "email": f"{renamed}@example.org", "is_staff": True})
    assert response.status_code == 200, response.text
    shown = response.json()
    # Staff are no admins: the new address waits for the code mailed to it.
    assert (shown["pk"], shown["username"], shown["first_name"], shown["last_name"],
            shown["email"], shown["is_staff"]) == (
        user.id, renamed, "New", "Name", "", True)
    assert run(runtime.service.get_user(renamed)).pending_email == f"{renamed}@example.org"
    assert binds(slapd, renamed, "New-Password-77") and not binds(slapd, renamed)
    assert member_of(slapd, renamed) == [f"cn=staff,{GROUPS}"]
    obtain(client, renamed, "New-Password-77")


def test_patch_any_subset(client: Client, staff: Headers, runtime: Runtime) -> None:
    user = create(runtime, first_name="Keep", last_name="Me")
    response = client.patch(f"/v1/users/{user.id}", headers=staff, json={"last_name": "Else"})
    assert response.status_code == 200, response.text
    assert (response.json()["first_name"], response.json()["last_name"]) == ("Keep", "Else")
    response = client.patch(f"/v1/users/{user.id}", headers=staff, json={"first_name": ""})
    assert response.json()["first_name"] == ""
    unchanged = client.patch(f"/v1/users/{user.id}", headers=staff)
    assert unchanged.status_code == 200 and unchanged.json()["last_name"] == "Else"


def test_a_refused_patch_changes_nothing(client: Client, admin: Headers,
                                         runtime: Runtime) -> None:
    """A password that cannot be set refuses the whole request: the other
    fields and the type stay as they were."""
    user = create(runtime, first_name="Keep", last_name="Me")
    response = client.patch(f"/v1/users/{user.id}", headers=admin, json={
        "first_name": "Changed", "is_staff": True, "password": "short"})
    assert response.status_code == 400 and set(response.json()) == {"password"}
    after = run(runtime.service.get_user(user.username))
    assert (after.first_name, after.account_type) == ("Keep", "user")


def test_patch_is_staff(client: Client, admin: Headers, runtime: Runtime,
                        slapd: SlapdInstance) -> None:
    user = create(runtime)
    url = f"/v1/users/{user.id}"
    assert client.patch(url, headers=admin, json={"is_staff": True}).json()["is_staff"] is True
    assert member_of(slapd, user.username) == [f"cn=staff,{GROUPS}"]
    assert client.patch(url, headers=admin, json={"is_staff": False}).json()["is_staff"] is False
    assert member_of(slapd, user.username) == [f"cn=user,{GROUPS}"]
    boss = create(runtime, account_type="admin")
    shown = client.patch(f"/v1/users/{boss.id}", headers=admin, json={"is_staff": False}).json()
    assert (shown["is_staff"], shown["is_superuser"]) == (True, True)  # an admin stays admin
    assert member_of(slapd, boss.username) == [f"cn=admin,{GROUPS}"]


def test_patch_ignores_read_only_fields(client: Client, staff: Headers,
                                        runtime: Runtime) -> None:
    user = create(runtime)
    response = client.patch(f"/v1/users/{user.id}", headers=staff, json={
        "is_superuser": True, "pk": 1, "date_joined": "2000-01-01T00:00:00Z",
        "last_login": None})
    assert response.status_code == 200, response.text
    assert (response.json()["pk"], response.json()["is_superuser"]) == (user.id, False)


def test_patch_is_active(client: Client, staff: Headers, runtime: Runtime,
                         slapd: SlapdInstance) -> None:
    user = create(runtime)
    url = f"/v1/users/{user.id}"
    assert client.patch(url, headers=staff, json={"is_active": False}).json()["is_active"] is False
    assert not binds(slapd, user.username)
    assert client.patch(url, headers=staff, json={"is_active": True}).json()["is_active"] is True
    assert binds(slapd, user.username)
    obtain(client, user.username)


def test_patch_validation(client: Client, staff: Headers, runtime: Runtime) -> None:
    user, other = create(runtime), create(runtime)
    url = f"/v1/users/{user.id}"
    answer(client.patch(url, headers=staff, json={"username": other.username}), 400,
           {"username": ["A user with that username already exists."]})
    answer(client.patch(url, headers=staff, json={"email": "nope", "username": "a b"}), 400,
           {"email": ["Enter a valid email address."], "username": [INVALID_USERNAME]})
    answer(client.patch(url, headers=staff, json={"username": "", "is_active": None}), 400,
           {"username": ["This field may not be blank."],
            "is_active": ["This field may not be null."]})
    answer(client.patch(url, headers=staff, json={"password": "short"}), 400,
           {"password": [POLICY]})
    answer(client.patch("/v1/users/987654321", headers=staff, json={}), 404, NOT_FOUND)


# --- DELETE /v1/users/{pk}: inactive, not removed ------------------------------------

def test_delete_marks_inactive(client: Client, staff: Headers, runtime: Runtime,
                               slapd: SlapdInstance) -> None:
    user = create(runtime)
    headers = obtain(client, user.username)
    assert binds(slapd, user.username)
    for _ in range(2):  # repeatable
        response = client.delete(f"/v1/users/{user.id}/", headers=staff)
        assert response.status_code == 204 and response.content == b""
    shown = client.get(f"/v1/users/{user.id}", headers=staff)
    assert shown.status_code == 200 and shown.json()["is_active"] is False
    answer(client.post("/v1/auth/obtain", json={"username": user.username,
                                                "password": PASSWORD}), 401, NO_ACCOUNT)
    answer(client.get(f"/v1/users/{user.id}", headers=headers), 401,
           {"detail": "User is inactive"})
    assert not binds(slapd, user.username)
    assert member_of(slapd, user.username) == [f"cn=user,{GROUPS}"]
    mine = {"expressions": [{"type": "exact", "field": "username", "value": user.username}]}
    assert client.post("/v1/users/list", headers=staff, json=mine).json() == []
    listed = client.post("/v1/users/list", headers=staff,
                         json={**mine, "include_inactive": True}).json()
    assert [u["username"] for u in listed] == [user.username]


def test_delete_unknown(client: Client, staff: Headers) -> None:
    answer(client.delete("/v1/users/987654321", headers=staff), 404, NOT_FOUND)


@pytest.fixture
def private_client(private_config: Config, private_runtime: Runtime) -> Iterator[Client]:
    with TestClient(app=create_app(private_config)) as test_client:
        yield test_client


def test_the_last_active_admin_stays(private_client: Client,
                                     private_runtime: Runtime) -> None:
    admin = obtain(private_client, ADMIN, ADMIN_PASSWORD)
    me = run(private_runtime.service.get_user(ADMIN))
    refused = {"detail": "The last active admin cannot be made inactive."}
    answer(private_client.delete(f"/v1/users/{me.id}", headers=admin), 400, refused)
    answer(private_client.patch(f"/v1/users/{me.id}", headers=admin,
                                json={"is_active": False, "first_name": "Gone"}), 400, refused)
    shown = private_client.get(f"/v1/users/{me.id}", headers=admin).json()
    assert (shown["is_active"], shown["first_name"]) == (True, "")


# --- POST /v1/users/list -----------------------------------------------------------

@pytest.fixture(scope="module")
def people(config: Config, bootstrapped: None) -> dict[str, str]:
    """Four users sharing a tag; every query below is narrowed to the tag."""
    runtime = Runtime.build(config)
    tag = unique("flt")
    try:
        made = {
            "a": create(runtime, f"{tag}a", first_name="Alice", last_name="Smith",
                        email=f"alice.{tag}@example.org"),
            "b": create(runtime, f"{tag}b", account_type="staff", first_name="Bob",
                        last_name="Jones", email=f"bob.{tag}@example.org"),
            "c": create(runtime, f"{tag}c", account_type="admin", first_name="alice",
                        last_name="Brown"),
            "d": create(runtime, f"{tag}d", first_name="Dan", last_name="Adams"),
        }
        run(runtime.service.disable_user(made["d"].username))
    finally:
        runtime.close()
    return {"tag": tag, **{key: user.username for key, user in made.items()}}


def listed(client: Client, headers: Headers, people: dict[str, str],
           *expressions: dict[str, Any], **rest: Any) -> list[str]:
    """The letters of the users found, in the order given, within the tag."""
    mine = {"type": "contains", "field": "username", "sub_string": people["tag"]}
    response = client.post("/v1/users/list", headers=headers,
                           json={"expressions": [mine, *expressions], **rest})
    assert response.status_code == 200, response.text
    return [user["username"].removeprefix(people["tag"]) for user in response.json()]


def exact(field: str, value: Any, **flags: bool) -> dict[str, Any]:
    return {"type": "exact", "field": field, "value": value, **flags}


def contains(field: str, sub_string: str, **flags: bool) -> dict[str, Any]:
    return {"type": "contains", "field": field, "sub_string": sub_string, **flags}


def test_list_without_a_body(client: Client, staff: Headers, people: dict[str, str]) -> None:
    for response in (client.post("/v1/users/list", headers=staff),
                     client.post("/v1/users/list/", headers=staff, json={})):
        assert response.status_code == 200, response.text
        names = [user["username"] for user in response.json()]
        assert ADMIN in names and people["a"] in names and people["d"] not in names
        assert all(list(user) == USER_KEYS for user in response.json())
        assert names.index(ADMIN) == 0  # by pk: the first admin came first


def test_exact(client: Client, staff: Headers, people: dict[str, str]) -> None:
    assert listed(client, staff, people, exact("username", people["b"])) == ["b"]
    assert listed(client, staff, people, exact("first_name", "Alice")) == ["a"]
    assert listed(client, staff, people,
                  exact("first_name", "ALICE", case_insensitive=True)) == ["a", "c"]
    assert listed(client, staff, people, exact("email", f"BOB.{people['tag']}@example.org",
                                               case_insensitive=True)) == ["b"]
    assert listed(client, staff, people, exact("first_name", "Alice", invert=True)) == ["b", "c"]
    # A blank value: users without the field (blank is no attribute in LDAP).
    assert listed(client, staff, people, exact("email", "")) == ["c"]
    assert listed(client, staff, people, exact("email", "", invert=True)) == ["a", "b"]


def test_exact_on_flags_and_pk(client: Client, staff: Headers, people: dict[str, str],
                               runtime: Runtime) -> None:
    assert listed(client, staff, people, exact("is_staff", True)) == ["b", "c"]
    assert listed(client, staff, people, exact("is_staff", False)) == ["a"]
    assert listed(client, staff, people, exact("is_staff", "false", invert=True)) == ["b", "c"]
    assert listed(client, staff, people, exact("is_superuser", True)) == ["c"]
    assert listed(client, staff, people, exact("is_superuser", False)) == ["a", "b"]
    assert listed(client, staff, people, exact("is_active", False),
                  include_inactive=True) == ["d"]
    pk = run(runtime.service.get_user(people["a"])).id
    assert listed(client, staff, people, exact("pk", pk)) == ["a"]
    assert listed(client, staff, people, exact("pk", str(pk), invert=True)) == ["b", "c"]


def test_contains(client: Client, staff: Headers, people: dict[str, str]) -> None:
    assert listed(client, staff, people, contains("first_name", "LIC",
                                                  case_insensitive=True)) == ["a", "c"]
    # LDAP's substring rules ignore case for names and addresses (a deviation)
    assert listed(client, staff, people, contains("first_name", "lic")) == ["a", "c"]
    assert listed(client, staff, people, contains("email", "bob.")) == ["b"]
    assert listed(client, staff, people, contains("last_name", "o", invert=True)) == ["a"]
    assert listed(client, staff, people, contains("first_name", "")) == ["a", "b", "c"]
    assert listed(client, staff, people, contains("first_name", "", invert=True)) == []


def test_and_or_alone_and_nested(client: Client, staff: Headers,
                                 people: dict[str, str]) -> None:
    alice = exact("first_name", "alice", case_insensitive=True)
    staff_only = exact("is_staff", True)
    both = {"type": "and", "sub_expressions": [alice, staff_only]}
    either = {"type": "or", "sub_expressions": [alice, staff_only]}
    assert listed(client, staff, people, both) == ["c"]
    assert listed(client, staff, people, either) == ["a", "b", "c"]
    assert listed(client, staff, people, {**both, "invert": True}) == ["a", "b"]
    assert listed(client, staff, people, {**either, "invert": True}) == []
    nested = {"type": "and", "sub_expressions": [
        {"type": "or", "sub_expressions": [exact("last_name", "Smith"),
                                           exact("last_name", "Jones")]},
        {"type": "or", "sub_expressions": [contains("email", "alice"),
                                           {"type": "and", "invert": True,
                                            "sub_expressions": [staff_only]}]}]}
    assert listed(client, staff, people, nested) == ["a"]
    assert listed(client, staff, people, {"type": "or", "sub_expressions": [
        {"type": "and", "sub_expressions": [exact("is_active", False), contains("first_name",
                                                                                "an")]},
        exact("username", people["b"])]}, include_inactive=True) == ["b", "d"]


def test_order_by(client: Client, staff: Headers, people: dict[str, str]) -> None:
    assert listed(client, staff, people, order_by=[{"field": "username",
                                                    "ascending": False}]) == ["c", "b", "a"]
    assert listed(client, staff, people, order_by=[{"field": "first_name"},
                                                   {"field": "username",
                                                    "ascending": False}]) == ["c", "a", "b"]
    assert listed(client, staff, people, order_by=[{"field": "last_name"}]) == ["c", "b", "a"]
    # A flag orders by its value alone: staff and admins are both is_staff,
    # users and staff both not is_superuser; the next key orders within.
    assert listed(client, staff, people, order_by=[
        {"field": "is_staff", "ascending": False}, {"field": "username"}]) == ["b", "c", "a"]
    assert listed(client, staff, people, order_by=[
        {"field": "is_superuser"}, {"field": "username", "ascending": False}]) == ["b", "a", "c"]
    assert listed(client, staff, people, order_by=[  # a repeated key changes nothing
        {"field": "is_staff", "ascending": False}, {"field": "username"},
        {"field": "is_staff"}]) == ["b", "c", "a"]
    assert listed(client, staff, people, order_by=[  # both flags: admins, staff, users
        {"field": "is_superuser", "ascending": False}, {"field": "is_staff", "ascending": False},
        {"field": "username"}]) == ["c", "b", "a"]
    assert listed(client, staff, people, include_inactive=True,
                  order_by=[{"field": "is_active"}, {"field": "username"}]) == ["d", "a", "b", "c"]
    assert listed(client, staff, people, include_inactive=True, order_by=[
        {"field": "is_active", "ascending": False}, {"field": "username"}]) == ["a", "b", "c", "d"]
    newest_first = client.post("/v1/users/list", headers=staff, json={
        "order_by": [{"field": "date_joined", "ascending": False}]}).json()
    joined = [datetime.fromisoformat(user["date_joined"]) for user in newest_first]
    assert joined == sorted(joined, reverse=True) and len(joined) > 3
    assert listed(client, staff, people, order_by=[{"field": "last_login"},
                                                   {"field": "pk"}]) == ["a", "b", "c"]


def test_include_inactive(client: Client, staff: Headers, people: dict[str, str]) -> None:
    assert listed(client, staff, people) == ["a", "b", "c"]
    assert listed(client, staff, people, include_inactive=True) == ["a", "b", "c", "d"]
    assert listed(client, staff, people, include_inactive=False) == ["a", "b", "c"]


def test_filter_values_are_escaped(client: Client, staff: Headers,
                                   people: dict[str, str]) -> None:
    for value in ("*", ")(uid=*", "*)(|(uid=*", "\\2a", people["tag"] + "*"):
        assert listed(client, staff, people, exact("username", value)) == []
        assert listed(client, staff, people, contains("first_name", value)) == []


@pytest.mark.parametrize(("body", "detail"), [
    ({"expressions": [exact("password", "x")]}, "Cannot resolve keyword 'password' into field."),
    ({"expressions": [exact("date_joined", "2020")]}, "Filtering on 'date_joined' is not"),
    ({"expressions": [contains("pk", "1")]}, "'contains' applies to"),
    ({"expressions": [exact("pk", "abc")]}, "Field 'pk' expected a number but got 'abc'."),
    ({"expressions": [exact("is_staff", "maybe")]}, "Field 'is_staff' expected true or false"),
    ({"expressions": [{"type": "and", "sub_expressions": []}]}, "An 'and' expression needs"),
    ({"expressions": [{"type": "isnull", "field": "email"}]}, "Invalid filter body: Invalid "
                                                              "value 'isnull'"),
    ({"expressions": [{"type": "exact", "field": "email"}]}, "Invalid filter body: Object "
                                                             "missing required field `value`"),
    ({"expressions": {"type": "exact"}}, "Invalid filter body: Expected `array`"),
    ({"order_by": [{"field": "password"}]}, "Cannot order by 'password'."),
    ({"order_by": [{"field": "username"}, {"field": "is_staff"}]},
     "is_staff and is_superuser can only come before other order_by fields."),
    ({"include_inactive": "yes"}, "Invalid filter body: Expected `bool`, got `str`"),
    ([], "Invalid filter body: Expected `object`, got `array`."),
])
def test_bad_filter_bodies(client: Client, staff: Headers, body: Any, detail: str) -> None:
    response = client.post("/v1/users/list", headers=staff, json=body)
    assert response.status_code == 400, response.text
    assert list(response.json()) == ["detail"]
    assert response.json()["detail"].startswith(detail), response.json()


def test_filters_nest_to_a_bounded_depth(client: Client, staff: Headers) -> None:
    deep: dict[str, Any] = exact("username", ADMIN)
    for _ in range(20):
        deep = {"type": "and", "sub_expressions": [deep]}
    response = client.post("/v1/users/list", headers=staff, json={"expressions": [deep]})
    answer(response, 400, {"detail": "Filter expressions may nest at most 16 levels deep."})
    response = client.post("/v1/users/list", headers=staff, content=b"{not json")
    assert response.status_code == 400 and response.json()["detail"].startswith("JSON parse")

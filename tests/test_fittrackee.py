"""compat/fittrackee.md, rule by rule, over HTTP against a directory of its own.

As in the origin's tests, three users are created in this order: test (the
admin), toto and sam; every ordering example below counts on exactly them.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import jwt
import pytest
from litestar.testing import TestClient
from PIL import Image

from app.config import Config
from app.domain import NewUser, Profile
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import PASSWORD, SlapdInstance, make_config, run, start_slapd

Client = TestClient[Any]
Headers = dict[str, str]
USER_KEYS = {"username", "email", "created_at", "admin", "first_name", "last_name", "bio",
             "location", "birth_date", "picture", "timezone", "weekm", "language", "nb_sports",
             "nb_workouts", "sports_list", "total_distance", "total_duration"}
RFC822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SlapdInstance, Config]]:
    base: Path = tmp_path_factory.mktemp("fittrackee")
    slapd = start_slapd(base / "slapd")
    config = make_config(slapd, base / "api")
    runtime = Runtime.build(config)
    try:
        run(runtime.service.bootstrap("test", PASSWORD, "test@test.com"))
        for name in ("toto", "sam"):
            run(runtime.service.create_user(NewUser(
                username=name, password=PASSWORD, profile=Profile(email=f"{name}@test.com"))))
    finally:
        runtime.close()
    try:
        yield slapd, config
    finally:
        slapd.process.stop()


@pytest.fixture(scope="module")
def client(world: tuple[SlapdInstance, Config]) -> Iterator[Client]:
    with TestClient(app=create_app(world[1])) as test_client:
        yield test_client


def login(client: Client, email: str) -> Headers:
    response = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success" and body["message"] == "Successfully logged in."
    return {"Authorization": f"Bearer {body['auth_token']}"}


@pytest.fixture(scope="module")
def admin(client: Client) -> Headers:
    return login(client, "test@test.com")


@pytest.fixture(scope="module")
def toto(client: Client) -> Headers:
    return login(client, "toto@test.com")


def error(response: Any, status: int, message: str, kind: str = "error") -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"status": kind, "message": message}


def names(client: Client, headers: Headers, **params: Any) -> list[str]:
    response = client.get("/api/users", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [user["username"] for user in response.json()["data"]["users"]]


# --- login -------------------------------------------------------------------

def test_login_is_by_email(client: Client) -> None:
    assert client.post("/api/auth/login", json={"email": "toto@test.com",
                                                "password": PASSWORD}).status_code == 200
    error(client.post("/api/auth/login", json={"email": "toto", "password": PASSWORD}),
          401, "Invalid credentials.")
    error(client.post("/api/auth/login", json={"email": "toto@test.com", "password": "x"}),
          401, "Invalid credentials.")
    error(client.post("/api/auth/login", json={"email": "nobody@test.com", "password": "x"}),
          401, "Invalid credentials.")


@pytest.mark.parametrize("body", [b"", b"{}", b"[]", b"not json", b'"text"'])
def test_login_with_an_empty_or_invalid_payload(client: Client, body: bytes) -> None:
    error(client.post("/api/auth/login", content=body,
                      headers={"Content-Type": "application/json"}), 400, "Invalid payload.")


# --- the three 401 texts -----------------------------------------------------

def test_token_problems(client: Client, world: tuple[SlapdInstance, Config],
                        admin: Headers) -> None:
    no_token = "Provide a valid auth token."
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        error(client.get("/api/users", headers=headers), 401, no_token)
    error(client.get("/api/users", headers={"Authorization": "Bearer abc.def.ghi"}),
          401, "Invalid token. Please log in again.")
    token = admin["Authorization"].removeprefix("Bearer ")
    runtime = client.app.state.runtime
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600},
                         runtime.auth.key.private_key, algorithm="ES256",
                         headers={"kid": runtime.auth.key.kid})
    error(client.get("/api/users", headers={"Authorization": f"Bearer {expired}"}),
          401, "Signature expired. Please log in again.")
    gone = jwt.encode({**claims, "sub": "00000000-0000-0000-0000-000000000000"},
                      runtime.auth.key.private_key, algorithm="ES256",
                      headers={"kid": runtime.auth.key.kid})
    error(client.get("/api/users", headers={"Authorization": f"Bearer {gone}"}), 401, no_token)


# --- GET /api/users ----------------------------------------------------------

def test_user_list_shape(client: Client, toto: Headers) -> None:
    response = client.get("/api/users", headers=toto)
    body = response.json()
    assert body["status"] == "success"
    users = body["data"]["users"]
    assert [u["username"] for u in users] == ["test", "toto", "sam"]  # creation order
    assert body["pagination"] == {"has_next": False, "has_prev": False, "page": 1,
                                  "pages": 1, "total": 3}
    for user in users:
        assert set(user) == USER_KEYS
        assert RFC822.match(user["created_at"]), user["created_at"]
        assert (user["nb_sports"], user["nb_workouts"], user["sports_list"],
                user["total_distance"], user["total_duration"]) == (0, 0, [], 0, "0:00:00")
        assert user["weekm"] is False and user["timezone"] == "Europe/Paris"
        assert user["bio"] is None and user["birth_date"] is None
    assert [u["admin"] for u in users] == [True, False, False]
    assert "password" not in response.text


@pytest.mark.parametrize(("params", "expected"), [
    ({"order_by": "username"}, ["sam", "test", "toto"]),
    ({"order_by": "username", "order": "asc"}, ["sam", "test", "toto"]),
    ({"order_by": "username", "order": "desc"}, ["toto", "test", "sam"]),
    ({"order_by": "created_at"}, ["test", "toto", "sam"]),
    ({"order_by": "created_at", "order": "desc"}, ["sam", "toto", "test"]),
    ({"order_by": "workouts_count"}, ["test", "toto", "sam"]),
    ({"order_by": "workouts_count", "order": "desc"}, ["test", "toto", "sam"]),
    ({"order_by": "admin"}, ["toto", "sam", "test"]),
    ({"order_by": "admin", "order": "desc"}, ["test", "toto", "sam"]),
    ({"order_by": "nonsense"}, ["test", "toto", "sam"]),
    ({"order_by": "username", "order": "sideways"}, ["test", "toto", "sam"]),
    ({}, ["test", "toto", "sam"]),
])
def test_orderings(client: Client, toto: Headers, params: dict[str, str],
                   expected: list[str]) -> None:
    assert names(client, toto, **params) == expected


def test_the_complex_query(client: Client, toto: Headers) -> None:
    response = client.get("/api/users", headers=toto, params={
        "order_by": "username", "order": "desc", "page": 2, "per_page": 2})
    body = response.json()
    assert [u["username"] for u in body["data"]["users"]] == ["sam"]
    assert body["pagination"] == {"has_next": False, "has_prev": True, "page": 2,
                                  "pages": 2, "total": 3}


def test_an_empty_filter(client: Client, toto: Headers) -> None:
    body = client.get("/api/users", headers=toto, params={"q": "not_existing"}).json()
    assert body["data"]["users"] == []
    assert body["pagination"] == {"has_next": False, "has_prev": False, "page": 1,
                                  "pages": 0, "total": 0}


def test_q_is_a_substring_of_the_username(client: Client, toto: Headers) -> None:
    assert names(client, toto, q="t") == ["test", "toto"]
    assert names(client, toto, q="test.com") == []  # not the email


def test_pages_and_their_limits(client: Client, toto: Headers) -> None:
    body = client.get("/api/users", headers=toto, params={"per_page": 1, "page": 2}).json()
    assert [u["username"] for u in body["data"]["users"]] == ["toto"]
    assert body["pagination"] == {"has_next": True, "has_prev": True, "page": 2,
                                  "pages": 3, "total": 3}
    past = client.get("/api/users", headers=toto, params={"page": 9}).json()
    assert past["data"]["users"] == [] and past["pagination"] == {
        "has_next": False, "has_prev": True, "page": 9, "pages": 1, "total": 3}
    capped = client.get("/api/users", headers=toto, params={"per_page": 500}).json()
    assert capped["pagination"]["pages"] == 1  # 50 at most: one page of three


def test_ten_per_page_unless_asked_and_fifty_at_most(client: Client, toto: Headers) -> None:
    runtime = client.app.state.runtime
    made = [f"many{i:02d}" for i in range(55)]
    for name in made:
        run(runtime.service.create_user(NewUser(username=name, password=PASSWORD,
                                                profile=Profile(email=f"{name}@test.com"))))
    try:
        default = client.get("/api/users", headers=toto, params={"q": "many"}).json()
        assert [u["username"] for u in default["data"]["users"]] == made[:10]
        assert default["pagination"] == {"has_next": True, "has_prev": False, "page": 1,
                                         "pages": 6, "total": 55}
        capped = client.get("/api/users", headers=toto,
                            params={"q": "many", "per_page": 500, "page": 2}).json()
        assert [u["username"] for u in capped["data"]["users"]] == made[50:]
        assert capped["pagination"] == {"has_next": False, "has_prev": True, "page": 2,
                                        "pages": 2, "total": 55}
    finally:
        for name in made:
            run(runtime.service.delete_user(name))


@pytest.mark.parametrize("params", [{"page": "two"}, {"per_page": "ten"}, {"page": "1.5"},
                                    {"page": "0"}, {"per_page": "-1"}])
def test_non_integer_pages_are_an_invalid_payload(client: Client, toto: Headers,
                                                  params: dict[str, str]) -> None:
    error(client.get("/api/users", headers=toto, params=params), 400, "Invalid payload.")


# --- GET /api/users/{name} and its picture -------------------------------------

def test_one_user(client: Client, toto: Headers) -> None:
    body = client.get("/api/users/sam", headers=toto).json()
    assert body["status"] == "success" and [u["username"] for u in body["data"]] == ["sam"]
    error(client.get("/api/users/nobody", headers=toto), 404, "User does not exist.",
          "not found")
    error(client.get("/api/users/sam"), 401, "Provide a valid auth token.")


def test_picture_needs_no_authentication(client: Client, world: tuple[SlapdInstance, Config],
                                         toto: Headers) -> None:
    error(client.get("/api/users/toto/picture"), 404, "No picture.", "not found")
    error(client.get("/api/users/nobody/picture"), 404, "User does not exist.", "not found")
    out = BytesIO()
    Image.new("RGB", (40, 30), "green").save(out, "JPEG")
    photo = base64.b64encode(out.getvalue()).decode()
    world[0].ldap("ldapmodify", stdin=(
        "dn: uid=toto,ou=people,dc=example,dc=org\nchangetype: modify\n"
        f"replace: jpegPhoto\njpegPhoto:: {photo}\n"))
    response = client.get("/api/users/toto/picture")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content == out.getvalue()
    assert client.get("/api/users/toto", headers=toto).json()["data"][0]["picture"] is True
    assert client.get("/api/users/sam", headers=toto).json()["data"][0]["picture"] is False


def test_picture_flag_follows_ldap_tool_changes_at_once(
        client: Client, world: tuple[SlapdInstance, Config], admin: Headers) -> None:
    """The flag is remembered per entry version (entryCSN): any write, by any
    LDAP tool, makes a new version, so a remembered answer is never stale."""
    name = "flagged"
    world[0].ldap("ldapadd", stdin=(
        f"dn: uid={name},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\n"
        f"uid: {name}\ncn: {name}\nsn: {name}\nmail: {name}@test.com\n"))

    def flags() -> tuple[bool, bool]:
        one = client.get(f"/api/users/{name}", headers=admin).json()["data"][0]["picture"]
        listed = client.get("/api/users", headers=admin, params={"q": name}).json()
        return one, listed["data"]["users"][0]["picture"]

    assert flags() == (False, False)
    assert flags() == (False, False)  # now remembered
    out = BytesIO()
    Image.new("RGB", (20, 20), "blue").save(out, "JPEG")
    dn = f"dn: uid={name},ou=people,dc=example,dc=org\nchangetype: modify\n"
    world[0].ldap("ldapmodify", stdin=(
        f"{dn}replace: jpegPhoto\njpegPhoto:: {base64.b64encode(out.getvalue()).decode()}\n"))
    assert flags() == (True, True)
    world[0].ldap("ldapmodify", stdin=f"{dn}delete: jpegPhoto\n")
    assert flags() == (False, False)


# --- PATCH /api/users/{name} {admin} ------------------------------------------

@pytest.mark.parametrize("body", [b"", b"{}", b'{"admin": null}', b'{"admin": "yes"}',
                                  b'{"admin": 1}', b"[true]", b"not json"])
def test_admin_flag_needs_a_boolean(client: Client, admin: Headers, body: bytes) -> None:
    error(client.patch("/api/users/sam", content=body,
                      headers={**admin, "Content-Type": "application/json"}),
          400, "Invalid payload.")


def test_admin_rights(client: Client, world: tuple[SlapdInstance, Config], admin: Headers,
                      toto: Headers) -> None:
    error(client.patch("/api/users/sam", headers=toto, json={"admin": True}), 403,
          "You do not have permissions.")
    error(client.patch("/api/users/nobody", headers=admin, json={"admin": True}), 404,
          "User does not exist.", "not found")
    granted = client.patch("/api/users/sam", headers=admin, json={"admin": True}).json()
    assert granted["status"] == "success" and granted["data"][0]["admin"] is True
    shown = world[0].ldap("ldapsearch", "-LLL", "-b", "uid=sam,ou=people,dc=example,dc=org",
                          "-s", "base", "memberOf").stdout
    assert "memberOf: cn=admin,ou=groups,dc=example,dc=org" in shown
    revoked = client.patch("/api/users/sam", headers=admin, json={"admin": False}).json()
    assert revoked["data"][0]["admin"] is False
    error(client.patch("/api/users/test", headers=admin, json={"admin": False}), 403,
          "You can not remove admin rights, no other user has admin rights.")


# --- DELETE /api/users/{name} -------------------------------------------------

def test_delete_checks_in_order(client: Client, admin: Headers, toto: Headers) -> None:
    error(client.delete("/api/users/nobody", headers=toto), 404, "User does not exist.",
          "not found")
    error(client.delete("/api/users/sam", headers=toto), 403, "You do not have permissions.")
    error(client.delete("/api/users/test", headers=admin), 403,
          "You can not delete your account, no other user has admin rights.")


def test_delete_self_and_by_admin(client: Client, admin: Headers) -> None:
    runtime = client.app.state.runtime
    for name in ("gone1", "gone2"):
        run(runtime.service.create_user(NewUser(
            username=name, password=PASSWORD,
            profile=Profile(email=f"{name}@test.com", timezone="Asia/Tokyo"))))
    out = BytesIO()
    Image.new("RGB", (40, 30), "blue").save(out, "JPEG")
    run(runtime.service.set_picture("gone2", out.getvalue()))
    shown = client.get("/api/users/gone2", headers=admin).json()["data"][0]
    assert (shown["timezone"], shown["picture"]) == ("Asia/Tokyo", True)  # his own timezone
    assert client.get("/api/users/gone2/picture").status_code == 200
    own = login(client, "gone1@test.com")
    response = client.delete("/api/users/gone1", headers=own)
    assert response.status_code == 204 and response.content == b""
    response = client.delete("/api/users/gone2", headers=admin)
    assert response.status_code == 204
    error(client.get("/api/users/gone2", headers=admin), 404, "User does not exist.",
          "not found")
    # The picture went with him.
    error(client.get("/api/users/gone2/picture"), 404, "User does not exist.", "not found")
    error(client.get("/api/users", headers=own), 401, "Provide a valid auth token.")


def test_a_search_the_directory_cannot_take_is_an_invalid_payload(client: Client,
                                                                  toto: Headers) -> None:
    error(client.get("/api/users", headers=toto, params={"q": "a\x00b"}), 400,
          "Invalid payload.")

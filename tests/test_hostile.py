"""Hostile input against the native API: LDAP injection, malformed bodies, secrets."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from litestar.testing import TestClient

from app.config import Config
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import ADMIN, ADMIN_PASSWORD, PASSWORD, create, run

Client = TestClient[Any]

INJECTIONS = ["*", ")(uid=*", "*)(|(uid=*", "\\00", "\\2a", ",", "+", '"', "<", ">", ";", "=",
              "#admin", " admin", "admin ", "a\x00b", "admin)", "(admin", "x" * 10_000,
              "adm*", "*dmin", "\u00e9\u00e8", "admin,ou=people"]


@pytest.fixture(scope="module")
def client(private_config: Config) -> Iterator[Client]:
    runtime = Runtime.build(private_config)
    run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, "admin@example.org"))
    create(runtime, "victim", email="victim@example.org", first_name="Victor")
    runtime.close()
    # Every injection string is tried as a login from one client: the throttle
    # (tests/test_availability.py) would stop them before they reach the directory.
    roomy = msgspec.structs.replace(private_config, throttle=msgspec.structs.replace(
        private_config.throttle, address_free=1000))
    with TestClient(app=create_app(roomy)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: Client) -> dict[str, str]:
    token = client.post("/auth/token", json={"username": ADMIN, "password": ADMIN_PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_in_paths_and_filters(client: Client, admin: dict[str, str],
                                        value: str) -> None:
    assert client.get(f"/people/{quote(value, safe='')}", headers=admin).status_code == 404
    for params in ({"q": value}, {"email": value}, {"account_type": value}):
        response = client.get("/people", headers=admin, params=params)
        if "\x00" in value:
            assert response.status_code == 422  # slapd would end the value at a NUL
            continue
        assert response.status_code in (200, 400, 422), response.text  # 400: too long
        if response.status_code == 200 and value.strip() == value:
            assert response.json()["total"] == 0, (params, response.json())
    login = client.post("/auth/token", json={"username": value, "password": ADMIN_PASSWORD})
    assert login.status_code in (400, 401)
    created = client.post("/people", headers=admin, json={"username": value,
                                                          "password": PASSWORD})
    assert created.status_code in (400, 422), created.text
    assert client.get(f"/groups/{quote(value, safe='')}", headers=admin).status_code in (404, 422)


def test_insignificant_spaces_follow_ldap_matching(client: Client,
                                                  admin: dict[str, str]) -> None:
    """LDAP string matching ignores leading/trailing spaces (RFC 4518 §2.6.1):
    " admin" finds what "admin" finds, nothing more."""
    plain = client.get("/people", headers=admin, params={"q": "admin"}).json()
    for spaced in (" admin", "admin "):
        assert client.get("/people", headers=admin, params={"q": spaced}).json() == plain


def test_exact_match_semantics_are_kept(client: Client, admin: dict[str, str]) -> None:
    found = client.get("/people", headers=admin, params={"email": "VICTIM@example.org"})
    assert [p["username"] for p in found.json()["items"]] == ["victim"]  # LDAP ignores case
    for near in ("victim@example.or", "*@example.org", "victim@example.org*",
                 "victim@example.org)(uid=*"):
        assert client.get("/people", headers=admin, params={"email": near}).json()["total"] == 0
    assert client.get("/people/victi*", headers=admin).status_code == 404


def test_non_utf8_is_refused_cleanly(client: Client, admin: dict[str, str]) -> None:
    assert client.get("/people/%FF%FE", headers=admin).status_code in (400, 404)
    assert client.get("/people?q=%FF%FE", headers=admin).status_code in (200, 400)
    body = b'{"username": "\xff\xfe", "password": "x"}'
    response = client.post("/people", headers={**admin, "Content-Type": "application/json"},
                           content=body)
    assert response.status_code == 400


@pytest.mark.parametrize("body", [
    b"{" * 5000 + b"}" * 5000,
    b"[" * 100_000,
    b'{"username": "dup1", "username": "dup2", "password": "Correct-Horse-9x", "x": 1}',
    b'{"username": 5, "password": []}',
    b"username=a&password=b",
    b"",
    b"null",
    b'"just a string"',
])
def test_malformed_bodies(client: Client, admin: dict[str, str], body: bytes) -> None:
    response = client.post("/people", headers={**admin, "Content-Type": "application/json"},
                           content=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_form_where_json_is_expected(client: Client, admin: dict[str, str]) -> None:
    response = client.post("/people", headers=admin, data={"username": "formuser",
                                                           "password": PASSWORD})
    assert response.status_code in (400, 415)
    assert client.get("/people/formuser", headers=admin).status_code == 404


def test_huge_body(client: Client, admin: dict[str, str]) -> None:
    response = client.post("/people", headers={**admin, "Content-Type": "application/json"},
                           content=b'{"username": "' + b"x" * (3 * 1024 * 1024) + b'"}')
    assert response.status_code == 413


def test_no_password_in_any_response_or_log(client: Client, admin: dict[str, str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    secret, wrong, new = "Sekrit-Canary-77x", "Wrong-Canary-88y", "Newer-Canary-99z"
    bodies: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for method, url, payload in [
            ("POST", "/people", {"username": "canary", "password": secret}),
            ("POST", "/people", {"username": "canary", "password": secret}),
            ("POST", "/people", {"username": "canary2", "password": "short"}),
            ("POST", "/auth/token", {"username": "canary", "password": wrong}),
            ("POST", "/auth/token", {"username": "canary", "password": secret}),
            ("PUT", "/people/canary/password", {"new_password": new}),
            ("GET", "/people/canary", None),
            ("GET", "/people?q=canary", None),
        ]:
            response = client.request(method, url, headers=admin, json=payload)
            bodies.append(response.text + str(dict(response.headers)))
    text = "\n".join(bodies) + "\n".join(r.getMessage() for r in caplog.records)
    for canary in (secret, wrong, new, ADMIN_PASSWORD):
        assert canary not in text
    assert "userPassword" not in text and "argon2" not in text.lower()

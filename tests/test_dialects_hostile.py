"""Races, faults, hostile input and bad tokens against every dialect, each judged
by its own compat file's error format. One real server, one private slapd."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    PASSWORD,
    SlapdInstance,
    make_config,
    released_together,
    run,
    serving,
    start_slapd,
)

Headers = dict[str, str]


@dataclass(frozen=True)
class Dialect:
    name: str
    login: Callable[[str, str, str], str]  # (url, username, password) -> token
    create: Callable[[str, Headers, str], httpx.Response] | None  # (url, admin, username)
    created: int
    taken: Callable[[httpx.Response], bool]
    protected: Callable[[str, Headers], httpx.Response]  # a route needing an admin token
    error_shape: Callable[[dict[str, Any]], bool]
    lookups: list[Callable[[str, Headers, str], httpx.Response]]  # hostile value in the path


def _post_token(path: str, field: str, key: str) -> Callable[[str, str, str], str]:
    def login(url: str, username: str, password: str) -> str:
        response = httpx.post(f"{url}{path}", json={field: username, "password": password})
        assert response.status_code in (200, 201), response.text
        token: str = response.json()[key]
        return token
    return login


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


DIALECTS = [
    Dialect(
        name="native",
        login=_post_token("/auth/token", "username", "access_token"),
        create=lambda url, h, u: httpx.post(f"{url}/people", headers=h, timeout=60,
                                            json={"username": u, "password": PASSWORD}),
        created=201,
        taken=lambda r: r.status_code == 409 and r.json()["field"] == "username",
        protected=lambda url, h: httpx.get(f"{url}/people", headers=h, timeout=30),
        error_shape=lambda body: {"type", "title", "status", "detail"} <= set(body),
        lookups=[lambda url, h, v: httpx.get(f"{url}/people/{quote(v, safe='')}", headers=h)],
    ),
    Dialect(
        name="nervai",
        login=_post_token("/auth/login", "username", "access_token"),
        create=lambda url, h, u: httpx.post(f"{url}/users/", headers=h, timeout=60, json={
            "username": u, "password": PASSWORD, "account_type": "user"}),
        created=201,
        taken=lambda r: r.status_code == 400 and "taken" in r.json()["message"],
        protected=lambda url, h: httpx.get(f"{url}/users/", headers=h, timeout=30),
        error_shape=lambda body: "message" in body,
        lookups=[
            lambda url, h, v: httpx.get(f"{url}/users/check/{quote(v, safe='')}", headers=h),
            lambda url, h, v: httpx.post(f"{url}/users/{quote(v, safe='')}/type", headers=h,
                                         json={"account_type": "user"}),
            lambda url, h, v: httpx.request("DELETE", f"{url}/users/", headers=h,
                                            params={"username": v}),
        ],
    ),
    Dialect(
        name="library",
        login=_post_token("/api/v1/login", "username", "token"),
        create=lambda url, h, u: httpx.put(f"{url}/api/v1/users", headers=h, timeout=60,
                                           json={"username": u, "password": PASSWORD}),
        created=200,
        taken=lambda r: r.status_code == 400 and "username already exists" in r.json()["message"],
        protected=lambda url, h: httpx.get(f"{url}/api/v1/users", headers=h, timeout=30),
        error_shape=lambda body: set(body) == {"message"},
        lookups=[
            lambda url, h, v: httpx.get(f"{url}/api/v1/users", headers=h, params={"s": v}),
            lambda url, h, v: httpx.get(f"{url}/api/v1/users/{quote(v, safe='')}", headers=h),
        ],
    ),
    Dialect(
        name="ufdl",
        login=_post_token("/v1/auth/obtain", "username", "access"),
        create=lambda url, h, u: httpx.post(f"{url}/v1/users/create", headers=h, timeout=60,
                                            json={"username": u, "password": PASSWORD}),
        created=201,
        taken=lambda r: r.status_code == 400 and "username" in r.json(),
        protected=lambda url, h: httpx.post(f"{url}/v1/users/list", headers=h, timeout=30),
        error_shape=lambda body: "detail" in body or all(isinstance(v, list)
                                                         for v in body.values()),
        lookups=[
            lambda url, h, v: httpx.get(f"{url}/v1/users/{quote(v, safe='')}", headers=h),
            lambda url, h, v: httpx.post(f"{url}/v1/users/list", headers=h, json={
                "expressions": [{"type": "exact", "field": "username", "value": v}]}),
            lambda url, h, v: httpx.post(f"{url}/v1/users/list", headers=h, json={
                "expressions": [{"type": "contains", "field": "first_name", "sub_string": v}]}),
        ],
    ),
]
DIALECTS.append(Dialect(
    name="fittrackee",
    login=lambda url, username, password: httpx.post(f"{url}/api/auth/login", json={
        "email": f"{username}@example.org", "password": password}).json()["auth_token"],
    create=None,  # FitTrackee's user API has no create
    created=0,
    taken=lambda r: False,
    protected=lambda url, h: httpx.patch(f"{url}/api/users/{ADMIN}", headers=h, timeout=30,
                                         json={"admin": True}),
    error_shape=lambda body: set(body) == {"status", "message"},
    lookups=[
        lambda url, h, v: httpx.get(f"{url}/api/users/{quote(v, safe='')}", headers=h),
        lambda url, h, v: httpx.get(f"{url}/api/users", headers=h, params={"q": v}),
    ],
))
INJECTIONS = ["*", ")(uid=*", "*)(|(uid=*", "\\00", "\\2a", ",", "+", '"', "<", ">", ";", "=",
              "#admin", " admin", "a\x00b", "x" * 10_000, "adm*", "admin)"]


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SlapdInstance, str]]:
    base: Path = tmp_path_factory.mktemp("dialects")
    slapd = start_slapd(base / "slapd")
    config = make_config(slapd, base / "api")
    runtime = Runtime.build(config)
    run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, "admin@example.org"))
    runtime.close()
    try:
        with serving(config) as url:
            yield slapd, url
    finally:
        if slapd.process.process is not None:
            os.kill(slapd.process.process.pid, signal.SIGCONT)
        slapd.process.stop()


@pytest.fixture(scope="module")
def url(system: tuple[SlapdInstance, str]) -> str:
    return system[1]


@pytest.fixture(scope="module")
def admin(url: str) -> Headers:
    return bearer(DIALECTS[0].login(url, ADMIN, ADMIN_PASSWORD))


@pytest.mark.parametrize("dialect", [d for d in DIALECTS if d.create], ids=lambda d: d.name)
def test_twenty_creates_of_one_name(url: str, admin: Headers, dialect: Dialect) -> None:
    name = f"race{dialect.name}"
    create = dialect.create
    assert create is not None
    responses = released_together([lambda: create(url, admin, name)] * 20)
    statuses = Counter(r.status_code for r in responses)
    assert statuses[dialect.created] == 1, statuses
    losers = [r for r in responses if r.status_code != dialect.created]
    assert len(losers) == 19 and all(dialect.taken(r) for r in losers), \
        [(r.status_code, r.text) for r in losers]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_token_from_any_login_works_everywhere(url: str, dialect: Dialect) -> None:
    token = dialect.login(url, ADMIN, ADMIN_PASSWORD)
    for other in DIALECTS:
        assert other.protected(url, bearer(token)).status_code == 200, (dialect.name, other.name)


def _forged_tokens(url: str, runtime_key: Any) -> dict[str, str]:
    good = DIALECTS[0].login(url, ADMIN, ADMIN_PASSWORD)
    claims = jwt.decode(good, options={"verify_signature": False})
    header = jwt.get_unverified_header(good)
    now = int(time.time())
    head, body, signature = good.split(".")
    public_x = httpx.get(f"{url}/.well-known/jwks.json").json()["keys"][0]["x"]
    other_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "HS256 with the public key": jwt.encode(claims, public_x, algorithm="HS256"),
        "wrong key": jwt.encode(claims, other_key, algorithm="ES256", headers=header),
        "expired": jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, other_key,
                              algorithm="ES256", headers=header),
        "tampered": f"{head}.{body[:-2]}AA.{signature}",
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_bad_tokens_are_refused_in_each_format(url: str, dialect: Dialect) -> None:
    for label, token in _forged_tokens(url, None).items():
        response = dialect.protected(url, bearer(token))
        assert response.status_code == 401, (label, response.status_code, response.text)
        assert dialect.error_shape(response.json()), (label, response.text)


def test_a_deleted_users_token_is_refused_everywhere(url: str, admin: Headers) -> None:
    assert DIALECTS[0].create(url, admin, "shortlived").status_code == 201
    httpx.put(f"{url}/people/shortlived/type", headers=admin, json={"account_type": "admin"})
    token = bearer(DIALECTS[0].login(url, "shortlived", PASSWORD))
    assert httpx.delete(f"{url}/people/shortlived", headers=admin).status_code == 204
    for dialect in DIALECTS:
        response = dialect.protected(url, token)
        assert response.status_code == 401, (dialect.name, response.text)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_injection_in_every_lookup(url: str, admin: Headers, dialect: Dialect) -> None:
    for value in INJECTIONS:
        for lookup in dialect.lookups:
            response = lookup(url, admin, value)
            assert response.status_code < 500, (dialect.name, value[:20], response.text)
            found = response.json() if response.status_code == 200 else None
            if isinstance(found, dict) and isinstance(found.get("data"), dict):
                found = found["data"]["users"]  # fittrackee's list
            if isinstance(found, list) and found != response.json():
                expected = lookup(url, admin, value.strip()).json()["data"]["users"] \
                    if value.strip() != value else []
                assert all(item in expected for item in found), (dialect.name, value[:20])
            elif response.status_code == 200 and isinstance(response.json(), list):
                # LDAP may ignore spaces at either end (RFC 4518): " admin" may
                # find what "admin" finds, and never anything more.
                expected = lookup(url, admin, value.strip()).json() if value.strip() != value \
                    else []
                assert all(item in expected for item in response.json()), \
                    (dialect.name, value[:20])
            if response.status_code == 200 and isinstance(response.json(), dict):
                assert response.json().get("available", True) is False or \
                    response.json().get("username") != ADMIN, (dialect.name, value[:20])
        if dialect.create is not None:
            assert dialect.create(url, admin, value).status_code in (400, 409, 422)


def test_slapd_frozen_every_dialect_fails_fast_in_its_format(
        system: tuple[SlapdInstance, str], admin: Headers) -> None:
    slapd, url = system
    assert slapd.process.process is not None
    pid = slapd.process.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for dialect in DIALECTS:
            started = time.monotonic()
            response = dialect.protected(url, admin)
            assert time.monotonic() - started <= 5, dialect.name
            assert response.status_code == 503, (dialect.name, response.text)
            assert dialect.error_shape(response.json()), (dialect.name, response.text)
            assert response.headers.get("retry-after")
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.monotonic() + 5
    while httpx.get(f"{url}/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for dialect in DIALECTS:
        assert dialect.protected(url, admin).status_code == 200, dialect.name

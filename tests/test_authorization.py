"""Who may call what, for every dialect, as the compat files say: anonymous, a
plain user on himself and on another user, staff, admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from app.domain import NewUser, Profile
from app.main import create_app
from app.runtime import Runtime
from tests.conftest import ADMIN, ADMIN_PASSWORD, PASSWORD, make_config, run, start_slapd

Client = TestClient[Any]
ROLES = ("anonymous", "self", "other", "staff", "admin")
# (method, path, body, {role: status}); in paths, {name}/{id} are the target
# user's, who is "self" for the self role and someone else for every other role.
MATRIX: list[tuple[str, str, Any, dict[str, int]]] = [
    # native
    ("GET", "/people", None, dict(anonymous=401, self=403, other=403, staff=200, admin=200)),
    ("GET", "/people/{name}", None,
     dict(anonymous=401, self=200, other=403, staff=200, admin=200)),
    ("PATCH", "/people/{name}", {"bio": "x"},
     dict(anonymous=401, self=200, other=403, staff=403, admin=200)),
    ("PUT", "/people/{name}/type", {"account_type": "user"},
     dict(anonymous=401, self=403, other=403, staff=403, admin=200)),
    ("GET", "/groups", None, dict(anonymous=401, self=403, other=403, staff=200, admin=200)),
    # nervai
    ("GET", "/users/", None, dict(anonymous=401, self=403, other=403, staff=403, admin=200)),
    ("GET", "/users/check/{name}", None,
     dict(anonymous=200, self=200, other=200, staff=200, admin=200)),
    ("POST", "/users/{name}/type", {"account_type": "user"},
     dict(anonymous=401, self=403, other=403, staff=403, admin=200)),
    # library: no or a malformed header is a 400 there
    ("GET", "/api/v1/users", None, dict(anonymous=400, self=403, other=403, staff=403, admin=200)),
    ("GET", "/api/v1/users/{id}", None,
     dict(anonymous=400, self=403, other=403, staff=403, admin=200)),
    # ufdl
    ("POST", "/v1/users/list", None,
     dict(anonymous=401, self=403, other=403, staff=200, admin=200)),
    ("GET", "/v1/users/{id}", None, dict(anonymous=401, self=200, other=403, staff=200, admin=200)),
    ("GET", "/v1/users/{name}", None,
     dict(anonymous=401, self=200, other=403, staff=200, admin=200)),
    # fittrackee: any signed-in user lists and reads; only admins grant rights
    ("GET", "/api/users", None, dict(anonymous=401, self=200, other=200, staff=200, admin=200)),
    ("GET", "/api/users/{name}", None,
     dict(anonymous=401, self=200, other=200, staff=200, admin=200)),
    ("PATCH", "/api/users/{name}", {"admin": False},
     dict(anonymous=401, self=403, other=403, staff=403, admin=200)),
    # accounts: the user himself or an admin
    ("GET", "/api/v1/accounts/users/{id}/", None,
     dict(anonymous=401, self=200, other=403, staff=403, admin=200)),
    ("PATCH", "/api/v1/accounts/users/{id}/", {"first_name": "Zed"},
     dict(anonymous=401, self=200, other=403, staff=403, admin=200)),
]


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, dict[str, Any]]]:
    base: Path = tmp_path_factory.mktemp("matrix")
    slapd = start_slapd(base / "slapd")
    config = make_config(slapd, base / "api")
    runtime = Runtime.build(config)
    users = {}
    try:
        run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, "admin@example.org"))
        for name, kind in (("plain", "user"), ("another", "user"), ("helper", "staff")):
            users[name] = run(runtime.service.create_user(NewUser(
                username=name, password=PASSWORD, account_type=kind,
                profile=Profile(email=f"{name}@example.org"))))
    finally:
        runtime.close()
    with TestClient(app=create_app(config)) as client:
        def token(username: str, password: str = PASSWORD) -> dict[str, str]:
            response = client.post("/auth/token", json={"username": username,
                                                        "password": password})
            return {"Authorization": f"Bearer {response.json()['access_token']}"}

        headers = {"anonymous": {}, "self": token("plain"), "other": token("plain"),
                   "staff": token("helper"), "admin": token(ADMIN, ADMIN_PASSWORD)}
        yield client, {"headers": headers, "users": users}
    slapd.process.stop()


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_authorization_matrix(setting: tuple[Client, dict[str, Any]], method: str, path: str,
                              body: Any, expected: dict[str, int]) -> None:
    client, context = setting
    users = context["users"]
    seen = {}
    for role in ROLES:
        target = users["plain"] if role == "self" else users["another"]
        url = path.format(name=target.username, id=target.id)
        response = client.request(method, url, headers=context["headers"][role],
                                  json=body)
        seen[role] = response.status_code
    assert seen == expected

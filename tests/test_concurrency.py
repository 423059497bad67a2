"""Races over HTTP, as clients make them: many requests released at the same moment
against a real server (uvicorn, two workers' worth of threads) and a real slapd."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from ldap3 import SAFE_SYNC, SUBTREE, Connection, Server

from app.config import Config
from app.runtime import Runtime
from tests.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    PASSWORD,
    SlapdInstance,
    client_at,
    released_together,
    run,
    serving,
)

SOAK = os.environ.get("USERDIR_SOAK") == "1"  # `make soak`: more rounds, same checks
TYPE_GROUPS = {f"cn={t},ou=groups,dc=example,dc=org" for t in ("user", "staff", "admin")}


@pytest.fixture(scope="module")
def url(private_config: Config) -> Iterator[str]:
    runtime = Runtime.build(private_config)
    run(runtime.service.bootstrap(ADMIN, ADMIN_PASSWORD, ""))
    runtime.close()
    # Hundreds of requests wait for the directory at once here: the races are
    # the point, not the admission limits (tests/test_availability.py).
    roomy = msgspec.structs.replace(private_config, ldap=msgspec.structs.replace(
        private_config.ldap, queue_limit=1000))
    with serving(roomy) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def admin(url: str) -> dict[str, str]:
    token = httpx.post(f"{url}/auth/token", json={"username": ADMIN, "password": ADMIN_PASSWORD})
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def create_call(url: str, headers: dict[str, str], username: str,
                client: int = 0) -> Callable[[], httpx.Response]:
    """A create, from 127.0.0.<client+2> (clients up to 252 apart: one request each)."""
    def call() -> httpx.Response:
        with client_at(2 + client % 252, timeout=60) as http:
            return http.post(f"{url}/people", headers=headers,
                             json={"username": username, "password": PASSWORD})
    return call


def scan(slapd: SlapdInstance) -> dict[str, dict[str, Any]]:
    conn = Connection(Server(slapd.url), slapd.root_dn, slapd.root_password,
                      client_strategy=SAFE_SYNC, auto_bind=True)
    _, _, entries, _ = conn.search("ou=people,dc=example,dc=org", "(objectClass=inetOrgPerson)",
                                   SUBTREE, attributes=["uid", "memberOf", "userPassword",
                                                        "uidNumber"])
    conn.unbind()
    return {e["attributes"]["uid"][0]: e["attributes"] for e in entries
            if e["type"] == "searchResEntry"}


def test_twenty_creates_of_one_username(url: str, admin: dict[str, str]) -> None:
    responses = released_together([create_call(url, admin, "contested", i) for i in range(20)])
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 19}, statuses
    assert all(r.json()["field"] == "username" for r in responses if r.status_code == 409)


def test_two_hundred_creates_of_distinct_users(url: str, admin: dict[str, str],
                                               private_slapd: SlapdInstance) -> None:
    count = 400 if SOAK else 200
    names = [f"crowd{i}" for i in range(count)]
    responses = released_together([create_call(url, admin, n, i) for i, n in enumerate(names)])
    assert Counter(r.status_code for r in responses) == {201: count}
    assert len({r.json()["id"] for r in responses}) == count
    people = scan(private_slapd)
    for name in names:
        assert len(TYPE_GROUPS & set(people[name]["memberOf"])) == 1
        assert people[name]["userPassword"][0].startswith(b"{ARGON2}")
    numbers = [p["uidNumber"] for p in people.values()]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("action", ["demote", "delete"])
def test_two_admins_removing_each_other_over_http(url: str, admin: dict[str, str],
                                                  private_runtime: Runtime, action: str) -> None:
    rounds = 100 if SOAK else 50
    for round_number in range(rounds):
        a, b = f"{action}a{round_number}", f"{action}b{round_number}"
        tokens = {}
        for name in (a, b):
            assert create_call(url, admin, name)().status_code == 201
            httpx.put(f"{url}/people/{name}/type", headers=admin, json={"account_type": "admin"})
            tokens[name] = {"Authorization": "Bearer " + httpx.post(
                f"{url}/auth/token", json={"username": name, "password": PASSWORD}
            ).json()["access_token"]}
        httpx.put(f"{url}/people/{ADMIN}/type", headers=tokens[a], json={"account_type": "user"})

        def remove(actor: str, target: str,
                   tokens: dict[str, dict[str, str]] = tokens) -> Callable[[], httpx.Response]:
            headers = tokens[actor]
            if action == "demote":
                return lambda: httpx.put(f"{url}/people/{target}/type", headers=headers,
                                         json={"account_type": "user"}, timeout=60)
            return lambda: httpx.delete(f"{url}/people/{target}", headers=headers, timeout=60)

        responses = released_together([remove(a, b), remove(b, a)])
        statuses = sorted(r.status_code for r in responses)
        members = run(private_runtime.service.get_group("admin")).members
        assert len(members) == 1, (round_number, statuses)
        # One succeeded. The other was refused as the last admin (409), or came
        # second and found itself no longer admin (403) or deleted (401).
        assert statuses[0] in (200, 204) and statuses[1] in (401, 403, 409), statuses
        survivor = members[0]
        httpx.put(f"{url}/people/{ADMIN}/type", json={"account_type": "admin"},
                  headers=tokens[survivor])
        httpx.put(f"{url}/people/{survivor}/type", headers=admin, json={"account_type": "user"})
